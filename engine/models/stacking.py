"""A linear stacking layer on top of the LAMOST parameter head (config heads.stack_labels).

For each chosen label it predicts

    value = blend * ridge(head's (log10 Teff, logg, [Fe/H]), PCA coefficients of the input)
            + (1 - blend) * head's value

where the PCA (heads.stack_components components) is fitted on the model inputs
(continuum-normalised flux - 1, masked pixels at 0) of the training split, the ridge on the
training split's labels, and the ridge strength and the blend are chosen on the validation
split (training/stacking_fit.py). Why: with ~1,500 labelled training spectra the fine-tuned
encoder's head lost to a plain PCA(100) regression on logg and [Fe/H]; the head's
predictions and the spectrum's principal components carry partly independent information,
and a linear combination of the two is cheap (one matrix product) and needs no new network.
The head's sigma is kept and recalibrated on validation:
sqrt((sigma_scale * sigma * (sigma / sigma_ref)^sigma_power)^2 + sigma_floor^2), per label
either a scale and floor or a scale and power, matching 68.3 % and 95.4 % coverage at 1 and
2 sigma (training/sigma_calibration.py says how the recipe is chosen; the stacked [Fe/H]
errors have heavier tails than a Gaussian where its sigma is large).

Everything lives in buffers, so it travels in weights.safetensors and changes the version id.
"""

from __future__ import annotations

import torch
from torch import nn

STACK_INPUTS = ("teff", "logg", "feh")   # head outputs fed to the ridge (Teff as log10)


class LinearStack(nn.Module):
    """(flux, weight, head value, head sigma) -> refined (value, sigma) for `labels`."""

    def __init__(self, n_pixels: int, n_components: int, head_labels: tuple[str, ...],
                 labels: tuple[str, ...]):
        super().__init__()
        unknown = [n for n in (*labels, *STACK_INPUTS) if n not in head_labels]
        if unknown:
            raise ValueError(f"heads.stack_labels: {unknown} not among the head's labels "
                             f"{head_labels}")
        self.head_labels = tuple(head_labels)
        self.labels = tuple(labels)
        n_in = len(STACK_INPUTS) + n_components
        self.register_buffer("pca_mean", torch.zeros(n_pixels))
        self.register_buffer("pca_components", torch.zeros(n_components, n_pixels))
        self.register_buffer("input_mean", torch.zeros(n_in))
        self.register_buffer("input_std", torch.ones(n_in))
        self.register_buffer("coef", torch.zeros(len(labels), n_in))
        self.register_buffer("intercept", torch.zeros(len(labels)))
        self.register_buffer("blend", torch.zeros(len(labels)))        # 0 = the head alone
        self.register_buffer("sigma_scale", torch.ones(len(labels)))
        self.register_buffer("sigma_floor", torch.zeros(len(labels)))  # physical units
        self.register_buffer("sigma_power", torch.zeros(len(labels)))  # 0 = plain scale
        self.register_buffer("sigma_ref", torch.ones(len(labels)))     # physical units

    def inputs(self, flux: torch.Tensor, weight: torch.Tensor, value: torch.Tensor
               ) -> torch.Tensor:
        """Standardised ridge inputs [B, 3 + C]."""
        x = torch.where(weight > 0, flux - 1.0, torch.zeros_like(flux))
        pcs = (x - self.pca_mean) @ self.pca_components.T
        head = torch.stack([value[:, self.head_labels.index(n)] for n in STACK_INPUTS], 1)
        head = head.clone()
        head[:, 0] = torch.log10(head[:, 0])
        feats = torch.cat([head.to(pcs.dtype), pcs], 1)
        return (feats - self.input_mean) / self.input_std

    def forward(self, flux: torch.Tensor, weight: torch.Tensor, value: torch.Tensor,
                sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ridge = self.inputs(flux, weight, value) @ self.coef.T + self.intercept   # [B, K]
        value, sigma = value.clone(), sigma.clone()
        for k, name in enumerate(self.labels):
            i = self.head_labels.index(name)
            fit = 10.0 ** ridge[:, k] if name == "teff" else ridge[:, k]  # Teff fit as log10
            value[:, i] = self.blend[k] * fit + (1 - self.blend[k]) * value[:, i]
            s = sigma[:, i] * (sigma[:, i] / self.sigma_ref[k]) ** self.sigma_power[k]
            sigma[:, i] = torch.sqrt((s * self.sigma_scale[k]) ** 2 + self.sigma_floor[k] ** 2)
        return value, sigma
