"""An exponential moving average of a head's weights during fine-tuning (config
`train.heads_xp_ema`).

Why: the XP head's validation NLL jumps from check to check (in the small config's second
half of training, checks 100 steps apart, by a median 0.02-0.08 and up to 0.19 nats; seeds
0, 3 and 4, `val_history` in provenance.json), so early stopping keeps whichever check happened
to land low, and runs that differ only in their seed ended with validation Teff from 73.6 to
87.2 K (`python -m training.tune_head --survey gaia_xp --variant train.heads_xp_ema=0
--seeds 0 1 2 3 4`). The average of the last few hundred steps' weights is steadier than any
one of them; the checks then score the average, and the best average is kept. With a decay
of 0.998 the same five seeds gave 72.6-78.3 K (`benchmarks/results/tune_xp_head_ema.json`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class WeightAverage:
    """avg <- decay * avg + (1 - decay) * current for every parameter of the modules; their
    buffers (label normalisation, sigma scales) are constants of the fit, copied as they are."""

    def __init__(self, modules: list[torch.nn.Module], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"a weight-average decay must be in (0, 1), not {decay}")
        self.modules, self.decay = modules, decay
        self.params = [{n for n, _ in m.named_parameters()} for m in modules]
        self.average = [{k: v.detach().clone() for k, v in m.state_dict().items()}
                        for m in modules]

    @torch.no_grad()
    def update(self) -> None:
        for m, names, avg in zip(self.modules, self.params, self.average, strict=True):
            for k, v in m.state_dict().items():
                if k in names:
                    avg[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    avg[k].copy_(v)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The modules hold the average inside the block and their own weights after it."""
        own = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]
        for m, avg in zip(self.modules, self.average, strict=True):
            m.load_state_dict(avg)
        try:
            yield
        finally:
            for m, state in zip(self.modules, own, strict=True):
                m.load_state_dict(state)
