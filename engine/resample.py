"""Put a spectrum with any wavelength sampling onto the LAMOST log-linear grid: the one place
where non-LAMOST spectra (generic tables, FITS images, SDSS/BOSS) meet the model.

The target is LAMOST's native grid, log10(lambda / A) = 3.5682 + 1e-4 i (vacuum, i < 3909), of
which the model grid (log10 lambda = 3.602 + 1e-4 k, k < 1462) is pixels 338..1799. Output
records carry `pixel_offset` like native LAMOST records, so `engine.preprocess` treats them
the same way (own continuum fit over the window and 100 px either side).

Flux-conserving resampling: each input pixel is a bin of constant flux density between its
edges (geometric midpoints between neighbouring wavelengths; the two outer edges half a step
out; across a step more than GAP_FACTOR times its neighbours', a gap: each side keeps half
its other step and the space between is uncovered), and each output pixel gets the
overlap-weighted mean flux density of the usable input bins it covers, so integrals of flux
over any range of whole output pixels are kept.
Variances add with the squared overlap weights. An output pixel is masked when less than
`min_coverage` of its width is covered by usable input (gaps, masked pixels, beyond the ends).

Resolution (`degrade_to_lamost`): LAMOST LRS is R ~ 1800; a sharper spectrum (SDSS/BOSS,
R ~ 2000 in the blue) is convolved with a Gaussian of sigma sqrt(sigma_LAMOST^2 - sigma_in^2)
(in pixels of 1e-4 in log10 lambda, where a constant R is a constant width), pixel by pixel.
A spectrum already broader than LAMOST is left alone (it cannot be sharpened).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from engine.grids import LAMOST_LOG10_STEP, LAMOST_NATIVE_LOG10_START, LAMOST_NATIVE_MAX_PIXELS

log = logging.getLogger(__name__)

MIN_COVERAGE = 0.5
GAP_FACTOR = 2.0               # a step this many times its neighbours' is a gap, not a pixel
EDGE_TOLERANCE_PX = 0.01
LAMOST_RESOLUTION = 1800.0
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
KERNEL_HALF_WIDTH = 4          # pixels each side; 4 sigma of the widest kernel needed here


@dataclass(frozen=True)
class Resampled:
    """A spectrum on LAMOST native pixels pixel_offset .. pixel_offset + len(flux) - 1."""

    flux: np.ndarray       # mean flux density per output pixel (0 where masked)
    ivar: np.ndarray       # 0 where masked or where the input had no uncertainty
    mask: np.ndarray       # True where < min_coverage of the pixel had usable input
    pixel_offset: int
    coverage: np.ndarray   # fraction of each pixel covered by usable input


def log10_edges(wavelength: np.ndarray) -> np.ndarray:
    """Bin edges (log10 Angstrom) of pixels centred on increasing `wavelength`, contiguous."""
    loglam = np.log10(wavelength)
    mid = 0.5 * (loglam[1:] + loglam[:-1])
    return np.concatenate([[loglam[0] - (mid[0] - loglam[0])], mid,
                           [loglam[-1] + (loglam[-1] - mid[-1])]])


def _bins_with_gaps(wave: np.ndarray, arrays: list[np.ndarray], good: np.ndarray
                    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Input bin edges with gaps cut out: where a step is more than GAP_FACTOR times both
    neighbouring steps, the samples either side get half their other step, and an unusable
    pseudo-bin fills the gap (so samples far apart never claim the space between them)."""
    edges = log10_edges(wave)
    step = np.diff(np.log10(wave))
    if step.size < 3:
        return edges, arrays, good
    left = np.r_[step[1], step[:-1]]      # the step before each step (first: the next one)
    right = np.r_[step[1:], step[-2]]     # the step after each step (last: the previous one)
    gaps = np.flatnonzero(step > GAP_FACTOR * np.maximum(left, right))
    if not gaps.size:
        return edges, arrays, good
    loglam = np.log10(wave)
    lo = loglam[gaps] + 0.5 * left[gaps]
    hi = loglam[gaps + 1] - 0.5 * right[gaps]
    edges = edges.copy()
    edges[gaps + 1] = lo
    edges = np.insert(edges, gaps + 2, hi)
    arrays = [np.insert(a, gaps + 1, 0.0) for a in arrays]
    return edges, arrays, np.insert(good, gaps + 1, False)


def _check_axis(wavelength: np.ndarray, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wave = np.asarray(wavelength, dtype=np.float64).ravel()
    flux = np.asarray(flux, dtype=np.float64).ravel()
    if wave.shape != flux.shape:
        raise ValueError(f"wavelength ({wave.size}) and flux ({flux.size}) differ in length")
    if wave.size < 2:
        raise ValueError("fewer than 2 pixels")
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError("wavelengths must all be finite and positive")
    step = np.diff(wave)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise ValueError("wavelengths are not strictly increasing or decreasing")
    return wave, flux


def resample_to_lamost_grid(wavelength: np.ndarray, flux: np.ndarray,
                            ivar: np.ndarray | None = None, mask: np.ndarray | None = None,
                            min_coverage: float = MIN_COVERAGE) -> Resampled:
    """Resample vacuum-wavelength samples (Angstrom) onto LAMOST native pixels.

    Parameters
    ----------
    wavelength : pixel centres, vacuum Angstrom, monotonic (either direction).
    flux : flux density per pixel (any scale).
    ivar : inverse variance, <= 0 or non-finite where unknown or bad; None = no uncertainty.
    mask : True where a pixel is bad.
    min_coverage : an output pixel needs this fraction of its width in usable input.

    Raises ValueError (callers add the file name) when the axis is unusable or does not
    overlap the LAMOST grid (3700-9100 A).
    """
    wave, flux = _check_axis(wavelength, flux)
    ivar_in = None if ivar is None else np.asarray(ivar, dtype=np.float64).ravel()
    bad = np.zeros(wave.size, bool) if mask is None else np.asarray(mask, bool).ravel().copy()
    for name, arr in (("ivar", ivar_in), ("mask", bad)):
        if arr is not None and arr.shape != wave.shape:
            raise ValueError(f"{name} ({arr.size}) and wavelength ({wave.size}) differ in length")
    if wave[0] > wave[-1]:
        wave, flux, bad = wave[::-1], flux[::-1], bad[::-1]
        ivar_in = None if ivar_in is None else ivar_in[::-1]
    good = ~bad & np.isfinite(flux)
    if ivar_in is not None:
        good &= np.isfinite(ivar_in) & (ivar_in > 0)

    var_in = np.zeros(wave.size) if ivar_in is None else \
        np.where(good, 1.0 / np.where(good, ivar_in, 1.0), 0.0)
    e_in, (flux, var_in), good = _bins_with_gaps(wave, [np.where(good, flux, 0.0), var_in], good)
    # Output pixels whose bins lie inside the input's span (to EDGE_TOLERANCE_PX, so that
    # float32 wavelengths on the same grid keep their end pixels; coverage decides the rest).
    first = int(np.ceil((e_in[0] - LAMOST_NATIVE_LOG10_START) / LAMOST_LOG10_STEP + 0.5
                        - EDGE_TOLERANCE_PX))
    last = int(np.floor((e_in[-1] - LAMOST_NATIVE_LOG10_START) / LAMOST_LOG10_STEP - 0.5
                        + EDGE_TOLERANCE_PX))
    first, last = max(first, 0), min(last, LAMOST_NATIVE_MAX_PIXELS - 1)
    if last < first:
        raise ValueError(f"the spectrum ({wave[0]:.0f}-{wave[-1]:.0f} A, vacuum) does not "
                         "cover one pixel of the LAMOST grid (3700-9100 A)")
    n_out = last - first + 1
    e_out = LAMOST_NATIVE_LOG10_START + LAMOST_LOG10_STEP * (
        np.arange(first, last + 2, dtype=np.float64) - 0.5)

    # Every (input bin, output bin) overlap is exactly one segment between merged edges.
    edges = np.union1d(e_in[(e_in >= e_out[0]) & (e_in <= e_out[-1])], e_out)
    mid = 0.5 * (edges[1:] + edges[:-1])
    j = np.searchsorted(e_in, mid) - 1
    k = np.searchsorted(e_out, mid) - 1
    inside = (j >= 0) & (j < flux.size) & (k >= 0) & (k < n_out)
    j, k = j[inside], k[inside]
    length = (10.0 ** edges[1:] - 10.0 ** edges[:-1])[inside]
    weight = length * good[j]
    den = np.bincount(k, weight, minlength=n_out)
    num = np.bincount(k, weight * flux[j], minlength=n_out)
    width = 10.0 ** e_out[1:] - 10.0 ** e_out[:-1]
    coverage = den / width
    out_mask = coverage < min_coverage
    with np.errstate(divide="ignore", invalid="ignore"):
        out_flux = np.where(out_mask, 0.0, num / den)
        if ivar_in is None:
            out_ivar = np.zeros(n_out)
        else:
            var = np.bincount(k, weight ** 2 * var_in[j], minlength=n_out) / den ** 2
            out_ivar = np.where(out_mask | ~(var > 0), 0.0, 1.0 / var)
    return Resampled(flux=out_flux, ivar=out_ivar, mask=out_mask, pixel_offset=first,
                     coverage=coverage)


def sigma_pixels(resolution: float | np.ndarray) -> np.ndarray:
    """Gaussian sigma, in pixels of 1e-4 in log10 lambda, of a spectrum of resolution R."""
    return 1.0 / (np.asarray(resolution, dtype=np.float64) * FWHM_PER_SIGMA
                  * np.log(10.0) * LAMOST_LOG10_STEP)


def degrade_to_lamost(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray,
                      sigma_in: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convolve a spectrum sampled at 1e-4 in log10 lambda down to LAMOST's R ~ 1800.

    `sigma_in` is the spectrum's own line-spread sigma in those pixels (per pixel or one
    value). Masked pixels do not contribute; a pixel whose kernel weight falls below half on
    usable pixels is masked. Returns (flux, ivar, mask).
    """
    flux = np.asarray(flux, dtype=np.float64)
    n = flux.size
    sigma_in = np.broadcast_to(np.asarray(sigma_in, dtype=np.float64), (n,))
    target = float(sigma_pixels(LAMOST_RESOLUTION))
    sigma_k = np.sqrt(np.clip(target ** 2 - np.nan_to_num(sigma_in, nan=target) ** 2, 0, None))
    good = ~np.asarray(mask, bool) & np.isfinite(flux)
    offsets = np.arange(-KERNEL_HALF_WIDTH, KERNEL_HALF_WIDTH + 1)
    idx = np.arange(n)[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < n)
    idx = np.clip(idx, 0, n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kern = np.exp(-0.5 * (offsets[None, :] / sigma_k[:, None]) ** 2)
    kern = np.where(sigma_k[:, None] > 0, kern, (offsets == 0)[None, :].astype(float))
    kern /= kern.sum(axis=1, keepdims=True)
    w = kern * (inside & good[idx])
    total = w.sum(axis=1)
    new_mask = total < 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (w * np.where(good, flux, 0.0)[idx]).sum(axis=1) / total
        var = np.where(good & (ivar > 0), 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0)
        out_var = (w ** 2 * var[idx]).sum(axis=1) / total ** 2
        out_ivar = np.where(new_mask | ~(out_var > 0), 0.0, 1.0 / out_var)
    return np.where(new_mask, 0.0, out), out_ivar, new_mask
