"""XP parameters from a path of their own (config heads.xp_params_hidden).

A wider XP encoder gives better XP parameters on validation (`python -m training.tune_head
--survey gaia_xp`), but when the main run's XP encoder is widened, the shared space the
alignment builds on its fine-tuned copy changes too, and with it every outlier and OOD score
(bundle e0ac0633 failed the oddity corpus that way). This path holds its own XP encoder of
other widths and its own XP head; the main run keeps its XP encoder, head copy and shared
space, and only the XP parameters come from here. Its weights live in this module, so they
travel in weights.safetensors and change the version id.
"""

from __future__ import annotations

import torch
import torch.nn as nn

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
