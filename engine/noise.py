"""Per-pixel flux errors in model-input units, from each spectrum's own inverse variance.

The anomaly scores divide residuals by these, so a noisy spectrum is not called odd for its
noise (issue 11: "noise is not oddity").

- LAMOST: model inputs are continuum-normalised, so sigma_model = sigma_native / continuum.
  The continuum is flux_native / flux_model at usable pixels, smoothed over ~50 pixels so that
  line cores (where both are small) do not make it jump.
- XP: model inputs are the spectrum divided by one number per row (its 550 nm level), so
  sigma_model = sigma_native / that number, recovered as the median ratio of the two.
Pixels without a usable error get +inf (they then weigh nothing).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.grids import LAMOST_MODEL_FIRST_NATIVE_PIXEL, LAMOST_MODEL_N_PIXELS
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord

SMOOTH_PX = 51


def _lamost_native(records: Sequence[SpectrumRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar) of the model window's native pixels (zeros where uncovered)."""
    first, n = LAMOST_MODEL_FIRST_NATIVE_PIXEL, LAMOST_MODEL_N_PIXELS
    flux, ivar = np.zeros((len(records), n)), np.zeros((len(records), n))
    for i, r in enumerate(records):
        if r.pixel_offset is None:
            continue
        lo, hi = max(first, r.pixel_offset), min(first + n, r.pixel_offset + r.n_pixels)
        if hi > lo:
            src = slice(lo - r.pixel_offset, hi - r.pixel_offset)
            flux[i, lo - first:hi - first] = r.flux[src]
            ivar[i, lo - first:hi - first] = r.ivar[src]
    return flux, np.nan_to_num(ivar, nan=0.0, posinf=0.0)


def _smooth_rows(values: np.ndarray) -> np.ndarray:
    """Box-smooth each row over its finite values (gaps filled by interpolation)."""
    n = values.shape[1]
    box = np.ones(SMOOTH_PX)
    norm = np.convolve(np.ones(n), box, "same")
    out = np.full(values.shape, np.nan)
    for i, row in enumerate(values):
        ok = np.isfinite(row)
        if ok.sum() < 10:
            continue
        filled = np.interp(np.arange(n), np.flatnonzero(ok), row[ok])
        out[i] = np.convolve(filled, box, "same") / norm
    return out


def model_sigma(records: Sequence[SpectrumRecord], flux: np.ndarray,
                weight: np.ndarray) -> np.ndarray:
    """[N, L] 1-sigma errors of the model-input `flux` (as `Embedder.model_input` gives it)."""
    survey = records[0].survey if records else SURVEY_LAMOST
    flux = np.asarray(flux, np.float64)
    good = np.asarray(weight) > 0
    if survey == SURVEY_LAMOST:
        native, ivar = _lamost_native(records)
        with np.errstate(divide="ignore", invalid="ignore"):
            continuum = np.where(good & (flux > 0.2), native / flux, np.nan)
            continuum = _smooth_rows(continuum)
            sigma = np.where(good & (ivar > 0) & (continuum > 0),
                             1.0 / np.sqrt(ivar) / continuum, np.inf)
        return sigma
    if survey == SURVEY_XP:
        sigma = np.full(flux.shape, np.inf)
        for i, r in enumerate(records):
            if r.n_pixels != flux.shape[1]:
                continue
            ok = good[i] & (np.abs(flux[i]) > 0.1) & (r.ivar > 0)
            if ok.sum() < 10:
                continue
            level = float(np.median(r.flux[ok] / flux[i][ok]))
            with np.errstate(divide="ignore"):
                sigma[i] = np.where(good[i] & (r.ivar > 0),
                                    1.0 / np.sqrt(np.where(r.ivar > 0, r.ivar, 1.0)) / level,
                                    np.inf)
        return sigma
    raise ValueError(f"unknown survey {survey!r}")
