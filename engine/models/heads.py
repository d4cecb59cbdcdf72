"""Parameter heads: Teff, logg, [Fe/H] (+ RV for LAMOST, [alpha/M] for XP), each with a
Gaussian sigma per star.

The head predicts, per label, a mean and log sigma in standardised units (Teff optionally as
log10 Teff, because Teff errors grow with Teff); training minimises the Gaussian negative log
likelihood over the labels a star has (NaN labels are skipped, e.g. APOGEE [Fe/H] of hot
stars). The label standardisation lives in buffers so it travels with the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.models.xp_encoder import mlp


class ParameterHead(nn.Module):
    """Embedding [B, in_dim] -> (mean, sigma) per label, in physical units via `predict`."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], labels: tuple[str, ...],
                 log_teff: bool = True, min_sigma: float = 1e-3):
        super().__init__()
        self.labels = tuple(labels)
        self.log_teff = log_teff
        self.min_sigma = min_sigma
        self.net = mlp([in_dim, *hidden, 2 * len(labels)])
        self.register_buffer("label_mean", torch.zeros(len(labels)))
        self.register_buffer("label_std", torch.ones(len(labels)))
        # per-label factor on the predicted sigma, fitted on the validation split after
        # training so that 68.3 % of validation stars fall within 1 sigma (1 = uncalibrated)
        self.register_buffer("sigma_scale", torch.ones(len(labels)))

    def _to_internal(self, y: torch.Tensor) -> torch.Tensor:
        """Physical labels [B, K] -> internal units (log10 Teff if configured)."""
        if self.log_teff and "teff" in self.labels:
            i = self.labels.index("teff")
            y = y.clone()
            y[:, i] = torch.log10(y[:, i])
        return y

    def set_label_norms(self, y: torch.Tensor) -> None:
        """Standardisation from a training label matrix (NaN-aware)."""
        z = self._to_internal(y)
        for k in range(z.shape[1]):
            col = z[:, k][torch.isfinite(z[:, k])]
            if col.numel() > 1:
                self.label_mean[k] = col.mean()
                self.label_std[k] = col.std().clamp_min(1e-6)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) [B, K] in standardised internal units."""
        out = self.net(h)
        k = len(self.labels)
        mu, log_sigma = out[:, :k], out[:, k:].clamp(-7.0, 3.0)
        return mu, log_sigma.exp() + self.min_sigma

    def nll(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean Gaussian NLL over finite labels; `y` in physical units [B, K]."""
        mu, sigma = self(h)
        z = (self._to_internal(y) - self.label_mean) / self.label_std
        ok = torch.isfinite(z)
        z = torch.where(ok, z, torch.zeros_like(z))
        nll = 0.5 * ((z - mu) / sigma) ** 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)
        return (nll * ok).sum() / ok.sum().clamp_min(1)

    def predict(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(value, sigma) [B, K] in physical units (K, dex)."""
        mu, sigma = self(h)
        value = mu * self.label_std + self.label_mean
        sig = sigma * self.label_std * self.sigma_scale
        if self.log_teff and "teff" in self.labels:
            i = self.labels.index("teff")
            teff = 10.0 ** value[:, i]
            value = value.clone()
            sig = sig.clone()
            value[:, i] = teff
            sig[:, i] = teff * math.log(10.0) * sig[:, i]  # first-order propagation
        return value, sig
