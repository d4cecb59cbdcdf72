"""An exponential moving average of a head's weights during fine-tuning (config
`train.heads_xp_ema`).

Why: the XP head's validation NLL jumps from check to check (the small config's history
moves by 0.05-0.1 nats between checks 100 steps apart), so early stopping keeps whichever
check happened to land low, and runs that differ only in their seed end 73.6-87.2 K apart in
validation Teff (`python -m training.tune_xp_head --variant base --seeds 0 1 2 3 4`). The
average of the last few hundred steps' weights is steadier than any one of them; the checks
then score the average, and the best average is kept.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class WeightAverage:
    """avg <- decay * avg + (1 - decay) * current, for every floating tensor of the modules'
    state (other buffers are copied)."""

    def __init__(self, modules: list[torch.nn.Module], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"a weight-average decay must be in (0, 1), not {decay}")
        self.modules, self.decay = modules, decay
        self.average = [{k: v.detach().clone() for k, v in m.state_dict().items()}
                        for m in modules]

    @torch.no_grad()
    def update(self) -> None:
        for m, avg in zip(self.modules, self.average, strict=True):
            for k, v in m.state_dict().items():
                if v.is_floating_point():
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
