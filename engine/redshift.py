"""Redshift evidence: does a LAMOST spectrum match a star better at a galaxy's redshift than at
any velocity a star can have? A feature no star has, so it separates galaxies (and other
redshifted objects read as stars) from stars at every SNR that shows lines at all.

Templates: noise-free reconstructions of reference (training) stars spanning their Teff
range (`stellar_templates`, fitted by `specclip fit-reference`). Both the templates and the
spectrum are high-passed (a running mean over `HIGHPASS_PX` pixels subtracted), so only
line-scale structure correlates: a broad continuum misfit (cool stars normalised by their own
continuum) would otherwise correlate at any shift. The spectrum is divided by its own noise
per pixel, so the cross-correlation with a unit-norm template has unit variance under noise
and its peaks are in noise units.

`redshift_evidence` = (highest peak over shifts of `FAR_PX` to `MAX_PX` model pixels to the
red, z ~ 0.007-0.17: |v| >= 2,000 km/s, beyond any star) minus (highest peak within
+-`NEAR_PX`, |v| <= 1,000 km/s). Measured (bundle 5cfd28776e28346b): every one of 708 real
star spectra (321 DR7 plate / DR8 repeat / pair stars, 387 LAMOST validation spectra) is
below 0.3; the 8 embeddable DR7 galaxies are at 1.3-16.8, their best redshifts within 0.002
of the pipeline's.
"""

from __future__ import annotations

import numpy as np

HIGHPASS_PX = 41
NEAR_PX = 15          # 15 x 1e-4 dex = 1,040 km/s
FAR_PX = 30           # 2,070 km/s
MAX_PX = 700          # z = 0.175: the shifted template still overlaps half the window
N_TEMPLATES = 30
# Above this the spectrum is not read as a star (OOD, engine/spectrum_scores.py). Chosen on a
# null, not on galaxies: on pure noise the evidence's 99th percentile is below 5 (the far
# window holds ~20x more shifts than the near one, so its noise maximum is higher;
# tests/engine/test_redshift.py), the LAMOST validation spectra are all below -4.7
# (reference.json redshift_evidence quantiles) and 321 DR7/DR8/pair stars below 0.3.
NOT_A_STAR = 5.0
_NFFT = 4096


def highpass(a: np.ndarray, width: int = HIGHPASS_PX) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, float))
    box = np.ones(width) / width
    pad = np.pad(a, ((0, 0), (width // 2, width // 2)), mode="edge")
    return a - np.stack([np.convolve(r, box, "valid") for r in pad])


def stellar_templates(recon: np.ndarray, teff: np.ndarray, n: int = N_TEMPLATES
                      ) -> np.ndarray:
    """[n, L] unit-norm high-passed reconstructions of stars at `n` Teff quantiles (2-98 %)."""
    teff = np.asarray(teff, float)
    ok = np.flatnonzero(np.isfinite(teff))
    picks = [ok[np.argmin(np.abs(teff[ok] - q))]
             for q in np.quantile(teff[ok], np.linspace(0.02, 0.98, n))]
    t = highpass(np.asarray(recon, float)[picks] - 1.0)
    return (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)


def _whitened(flux: np.ndarray, sigma: np.ndarray, weight: np.ndarray) -> np.ndarray:
    good = (np.asarray(weight) > 0) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(flux)
    out = np.zeros(flux.shape)
    for i in range(len(flux)):
        g = np.flatnonzero(good[i])
        if len(g) < 2 * HIGHPASS_PX:
            continue
        # bad pixels are interpolated for the running mean only, then weigh nothing
        filled = np.interp(np.arange(flux.shape[1]), g, flux[i, g])
        out[i, g] = highpass(filled)[0, g] / sigma[i, g]
    return out


def redshift_evidence(flux: np.ndarray, sigma: np.ndarray, weight: np.ndarray,
                      templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(evidence [N] in noise units, redshift z [N] of the best far peak); NaN when the
    spectrum has too few usable pixels."""
    x = _whitened(np.asarray(flux, float), np.asarray(sigma, float), weight)
    tf = np.conj(np.fft.rfft(np.asarray(templates, float), _NFFT))
    lags = np.r_[np.arange(-NEAR_PX, 0), np.arange(0, MAX_PX + 1)]
    near = np.abs(lags) <= NEAR_PX
    far = lags >= FAR_PX
    evidence, z = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for i in range(len(x)):
        if not x[i].any():
            continue
        # c[s] = sum_j x[j + s] t[j]: the spectrum's features s pixels redder than a star's
        c = np.fft.irfft(np.fft.rfft(x[i], _NFFT)[None, :] * tf, _NFFT)[:, lags % _NFFT]
        best = c.max(axis=0)
        evidence[i] = best[far].max() - best[near].max()
        z[i] = 10 ** (lags[far][np.argmax(best[far])] * 1e-4) - 1
    return evidence, z
