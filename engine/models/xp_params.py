"""XP parameters from a path of their own (config heads.xp_params_hidden).

A wider XP encoder gives better XP parameters on validation (`python -m training.tune_head
--survey gaia_xp`), but when the main run's XP encoder is widened, the shared space the
alignment builds on its fine-tuned copy changes too, and with it every outlier and OOD score
(bundle e0ac0633 failed the oddity corpus that way). This path holds its own XP encoder of
other widths and its own XP head; the main run keeps its XP encoder, head copy and shared
space, and only the XP parameters come from here. Its weights live in this module, so they
travel in weights.safetensors and change the version id.

With config heads.xp_params_members = K > 1 the XP parameters are the average of K such paths
(seeds seed, seed + 1, ...), combined as the LAMOST ensemble combines its paths
(engine/models/ensemble.py): the mean value; sigma^2 = the mean of the paths' own sigma^2 +
the variance of their values, then recalibrated on XP validation
(training/sigma_calibration.py), because the paths' errors are correlated.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.models.ensemble import combine_paths, recalibrate
from engine.models.heads import ParameterHead
from engine.models.xp_encoder import XpEncoder


class XpParamsPath(nn.Module):
    """Fine-tuned XP encoder -> XP head: (value, sigma) in physical units."""

    def __init__(self, encoder: XpEncoder, head: ParameterHead):
        super().__init__()
        if getattr(encoder, "decoder", None) is not None:
            encoder.decoder = None   # the autoencoder's decoder is for pretraining only
        self.encoder, self.head = encoder, head

    def forward(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`scale` already standardised by the main model."""
        return self.head.predict(self.encoder(flux, weight, scale))


class XpParamsEnsemble(nn.Module):
    """K XP parameter paths: the mean value and the recalibrated combined sigma."""

    def __init__(self, paths: list[XpParamsPath], labels: tuple[str, ...]):
        super().__init__()
        if len(paths) < 2:
            raise ValueError(f"an XP parameter ensemble needs at least 2 paths, got {len(paths)}")
        self.labels = tuple(labels)
        self.paths = nn.ModuleList(paths)
        n = len(labels)
        # the combined sigma's recalibration (training/xp_path_fit.py); defaults: none
        self.register_buffer("sigma_scale", torch.ones(n))
        self.register_buffer("sigma_floor", torch.zeros(n))    # physical units
        self.register_buffer("sigma_power", torch.zeros(n))
        self.register_buffer("sigma_ref", torch.ones(n))       # physical units

    def path_outputs(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """[K, B, L] values and sigmas, one row per path."""
        outs = [p(flux, weight, scale) for p in self.paths]
        return torch.stack([v for v, _ in outs]), torch.stack([s for _, s in outs])

    def forward(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`scale` already standardised by the main model."""
        mean, raw = combine_paths(*self.path_outputs(flux, weight, scale))
        return mean, recalibrate(raw, self.sigma_scale, self.sigma_floor, self.sigma_power,
                                 self.sigma_ref)
