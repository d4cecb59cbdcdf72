"""Gaia XP encoder: an MLP autoencoder (default) or the patch transformer, chosen by config.

Why the MLP by default: an XP spectrum is 343 samples of a smooth function (it is a projection
of 55+55 Hermite coefficients), so neighbouring samples are strongly correlated and local
attention over patches buys little; SpecCLIP released an MLP autoencoder for XP for the same
reason. On this 2-core CPU the MLP also trains ~20x faster than a transformer of similar size,
which lets the XP encoder see the whole 36k-spectrum library many times within the budget.
`kind = "transformer"` builds the same patch transformer as LAMOST (20 px patches, stride 10)
and pretrains it by masked-patch modelling instead.

Inputs follow SpecCLIP: each spectrum is standardised by its own mean and std over good
samples, and the mean/std (plus the flux scale) enter as extra features so the absolute shape
is not lost.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models.config import XpEncoderConfig
from engine.models.lamost_encoder import PatchTransformerEncoder


def standardise(flux: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
    """Per-spectrum (flux - mean) / std over good samples; returns (z, mean, std)."""
    good = (weight > 0).to(flux.dtype)
    n = good.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (flux * good).sum(dim=1, keepdim=True) / n
    var = (((flux - mean) * good) ** 2).sum(dim=1, keepdim=True) / n
    std = var.sqrt().clamp_min(1e-3)
    return (flux - mean) / std * good, mean, std


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear-GELU stack without an activation after the last layer."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class XpEncoder(nn.Module):
    """XP spectrum [B, 343] -> embedding [B, out_dim], with its own pretraining loss."""

    def __init__(self, cfg: XpEncoderConfig, n_samples: int = 343):
        super().__init__()
        self.cfg = cfg
        self.n_samples = n_samples
        if cfg.kind == "mlp":
            m = cfg.mlp
            n_extra = 3 if m.mean_std_inputs else 0
            self.encoder = mlp([n_samples + n_extra, *m.hidden, m.latent])
            # the autoencoder's decoder predicts the standardised shape plus (mean, std) features
            self.decoder = mlp([m.latent, *reversed(m.hidden), n_samples + 2])
            self._out_dim = m.latent
        elif cfg.kind == "transformer":
            if cfg.transformer.n_pixels != n_samples:
                raise ValueError("xp.transformer.n_pixels must equal the XP sample count")
            self.transformer = PatchTransformerEncoder(cfg.transformer)
            self._out_dim = cfg.transformer.width
        else:
            raise ValueError(f"unknown XP encoder kind {cfg.kind!r}")

    @property
    def out_dim(self) -> int:
        return self._out_dim

    @staticmethod
    def _extra(mean: torch.Tensor, std: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.asinh(mean), torch.log(std), scale[:, None]], dim=1)

    def _mlp_input(self, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                   scale: torch.Tensor) -> torch.Tensor:
        if self.cfg.mlp.mean_std_inputs:
            return torch.cat([z, self._extra(mean, std, scale)], dim=1)
        return z

    def forward(self, flux: torch.Tensor, weight: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
        z, mean, std = standardise(flux, weight)
        if self.cfg.kind == "transformer":
            return self.transformer(z + 1.0, weight, scale)
        return self.encoder(self._mlp_input(z, mean, std, scale))

    def pretrain_loss(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Autoencoder loss (MLP) or masked-patch loss (transformer)."""
        z, mean, std = standardise(flux, weight)
        if self.cfg.kind == "transformer":
            return self.transformer.pretrain_loss(z + 1.0, weight, scale, generator)
        x_in = z
        if self.cfg.mlp.input_noise > 0:  # denoising: the code must not memorise the noise
            noise = torch.randn(z.shape, generator=generator, device=z.device)
            x_in = z + self.cfg.mlp.input_noise * noise
        out = self.decoder(self.encoder(self._mlp_input(x_in, mean, std, scale)))
        good = (weight > 0).to(flux.dtype)
        shape_loss = (((out[:, : self.n_samples] - z) ** 2) * good).sum() / good.sum().clamp_min(1)
        ms_target = self._extra(mean, std, scale)[:, :2]
        return shape_loss + ((out[:, self.n_samples:] - ms_target) ** 2).mean()
