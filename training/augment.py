"""Augmentations of LAMOST model inputs for the head stage (torch, batched).

Each draws per spectrum and keeps inputs in model units (continuum-normalised flux, binary
weights):
- radial-velocity shift of up to `max_rv` km/s: the spectrum moves by v / (c ln10 1e-4)
  model pixels (linear interpolation; pixels shifted in from outside the window are masked),
  and the `rv` label moves with it, so the RV head learns velocity and the other heads learn
  to ignore it;
- continuum tilt: flux times (1 + a x), x in [-1, 1] across the window, |a| <= `max_tilt`
  (our continuum fit errs by ~0.02 at the edges);
- a masked run of up to `max_run` pixels (bad columns, gaps, cosmic-ray masks).
Noise drawn from the file's own ivar is not applied: the training sets keep binary weights,
not the ivar.
"""

from __future__ import annotations

import torch

LOG_PIXEL = 1e-4
C_KMS = 299792.458


def shift_pixels(v_kms: torch.Tensor) -> torch.Tensor:
    """Model-pixel shift of a radial velocity (positive = redshift = towards larger index)."""
    return torch.log10(1 + v_kms / C_KMS) / LOG_PIXEL


def rv_shift(flux: torch.Tensor, weight: torch.Tensor, pixels: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each row by `pixels` (float) with linear interpolation; f'(k) = f(k - s)."""
    n, length = flux.shape
    src = torch.arange(length, dtype=flux.dtype)[None, :] - pixels[:, None]
    lo = torch.floor(src)
    t = src - lo
    lo = lo.long()
    hi = lo + 1
    inside = (lo >= 0) & (hi < length)
    lo_c, hi_c = lo.clamp(0, length - 1), hi.clamp(0, length - 1)
    f = (1 - t) * flux.gather(1, lo_c) + t * flux.gather(1, hi_c)
    w = torch.minimum(weight.gather(1, lo_c), weight.gather(1, hi_c)) * inside
    return torch.where(w > 0, f, torch.ones_like(f)), w


def augment_lamost(flux: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   label_names: tuple[str, ...], generator: torch.Generator,
                   p: float = 0.5, max_rv: float = 100.0, max_tilt: float = 0.05,
                   max_run: int = 150) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented copies (flux, weight, labels); each augmentation hits a row with chance p."""
    n, length = flux.shape
    flux, weight, labels = flux.clone(), weight.clone(), labels.clone()

    def pick() -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    v = (torch.rand(n, generator=generator) * 2 - 1) * max_rv * pick()
    if "rv" in label_names and bool((v != 0).any()):
        flux, weight = rv_shift(flux, weight, shift_pixels(v.to(flux.dtype)))
        labels[:, label_names.index("rv")] += v.to(labels.dtype)
    x = torch.linspace(-1, 1, length, dtype=flux.dtype)[None, :]
    a = (torch.rand(n, generator=generator) * 2 - 1) * max_tilt * pick()
    flux = torch.where(weight > 0, flux * (1 + a[:, None].to(flux.dtype) * x), flux)
    run = pick()
    start = torch.randint(0, length, (n,), generator=generator)
    width = torch.randint(1, max_run + 1, (n,), generator=generator)
    k = torch.arange(length)[None, :]
    hole = run[:, None] & (k >= start[:, None]) & (k < (start + width)[:, None])
    weight = torch.where(hole, torch.zeros_like(weight), weight)
    flux = torch.where(hole, torch.ones_like(flux), flux)
    return flux, weight, labels

