"""Wavelength grids, in one place. Models never see units; these constants are the only
bridge between physical wavelengths and model pixels."""

from __future__ import annotations

import numpy as np

# LAMOST LRS native grid: log10(lambda / Angstrom) = 3.5682 + 1e-4 * i (vacuum, heliocentric).
LAMOST_NATIVE_LOG10_START = 3.5682
LAMOST_LOG10_STEP = 1e-4
LAMOST_NATIVE_MAX_PIXELS = 3909

# SpecCLIP's LAMOST model grid: log10 lambda = 3.602 + 1e-4 k, k < 1462 (3999-5599 A),
# i.e. exactly native pixels 338..1799.
LAMOST_MODEL_FIRST_NATIVE_PIXEL = 338
LAMOST_MODEL_N_PIXELS = 1462


def lamost_native_wavelength(n: int = LAMOST_NATIVE_MAX_PIXELS, offset: int = 0) -> np.ndarray:
    """Vacuum wavelengths (Angstrom) of native pixels offset..offset+n-1."""
    i = np.arange(offset, offset + n, dtype=np.float64)
    return 10.0 ** (LAMOST_NATIVE_LOG10_START + LAMOST_LOG10_STEP * i)


def lamost_model_wavelength() -> np.ndarray:
    """Vacuum wavelengths (Angstrom) of the LAMOST model grid (1462 pixels)."""
    return lamost_native_wavelength(LAMOST_MODEL_N_PIXELS, LAMOST_MODEL_FIRST_NATIVE_PIXEL)


# Gaia XP sampled grid: 343 samples, 336-1020 nm in 2 nm steps.
XP_N_SAMPLES = 343
XP_SAMPLING_NM = np.arange(336.0, 1021.0, 2.0)
XP_NORMALISATION_NM = 550.0


def xp_wavelength_angstrom() -> np.ndarray:
    """XP sample wavelengths in Angstrom (the record's unit for both surveys)."""
    return XP_SAMPLING_NM * 10.0
