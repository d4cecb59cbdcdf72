"""Decoders from embeddings back to spectra: own reconstruction and cross-instrument translation.

Own reconstruction reads shared + private; translation reads the shared part only (the split
model's point: the shared space must carry what the other instrument needs). Decoders work in
a "target space" per instrument so that one MSE treats both fairly:
LAMOST: flux - 1 on the continuum-normalised model grid (values near 0);
XP: asinh(flux / 0.1) of the flux normalised at 550 nm, close to log-flux for bright samples
(the coolest library stars reach ~5,800 at 1020 nm) and linear near zero (XP fluxes can be
negative).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.xp_encoder import mlp
from engine.records import SURVEY_LAMOST, SURVEY_XP

XP_ASINH_SOFTENING = 0.1


def to_target_space(survey: str, flux: torch.Tensor) -> torch.Tensor:
    if survey == SURVEY_LAMOST:
        return flux - 1.0
    if survey == SURVEY_XP:
        return torch.asinh(flux / XP_ASINH_SOFTENING)
    raise ValueError(f"unknown survey {survey!r}")


def from_target_space(survey: str, y: torch.Tensor) -> torch.Tensor:
    if survey == SURVEY_LAMOST:
        return y + 1.0
    if survey == SURVEY_XP:
        return torch.sinh(y) * XP_ASINH_SOFTENING
    raise ValueError(f"unknown survey {survey!r}")


class SpectrumDecoder(nn.Module):
    """MLP: embedding [B, in_dim] -> spectrum in `survey`'s target space [B, n_out]."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], n_out: int, survey: str):
        super().__init__()
        self.survey = survey
        self.net = mlp([in_dim, *hidden, n_out])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def loss(self, z: torch.Tensor, flux: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Good-pixel MSE in target space."""
        good = (weight > 0).to(flux.dtype)
        err = (self(z) - to_target_space(self.survey, flux)) ** 2 * good
        return err.sum() / good.sum().clamp_min(1.0)

    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded spectrum in the instrument's model-input units."""
        return from_target_space(self.survey, self(z))
