"""How sure the evaluation's comparisons are: 95 % intervals for the numbers `specclip evaluate`
reports side by side (model vs baseline robust sigma, search vs predicted-label baseline,
coverage of the sigmas).

A test split of a few hundred LAMOST stars makes a robust sigma uncertain by several per cent,
so "model better" or "within the band" can flip with the sample. These intervals say which
differences the data can resolve. Resampling is over stars (or over queries for retrieval,
whose 10 neighbours move together), paired: both sides of a comparison see the same resample.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95


def _robust_sigma_rows(x: np.ndarray) -> np.ndarray:
    """1.4826 MAD along the last axis over its finite values (as metrics.robust_sigma)."""
    median = np.nanmedian if np.isnan(x).any() else np.median
    med = median(x, axis=-1, keepdims=True)
    return 1.4826 * median(np.abs(x - med), axis=-1)


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.quantile(values, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return [float(lo), float(hi)]


def paired_sigma_difference(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
                            ) -> dict:
    """Robust sigma of residuals `a` minus that of residuals `b` (same rows, [N] or [N, k]),
    with its 95 % percentile bootstrap interval over rows and the share of resamples in which
    `a`'s is the lower. A row enters when both sides have a finite value in it; within a row
    of k values, non-finite ones are left out as metrics.robust_sigma leaves them out."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired residuals need one shape, got {a.shape} and {b.shape}")
    a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a2, b2 = np.where(np.isfinite(a2), a2, np.nan), np.where(np.isfinite(b2), b2, np.nan)
    ok = np.isfinite(a2).any(axis=1) & np.isfinite(b2).any(axis=1)
    a2, b2 = a2[ok], b2[ok]
    n = len(a2)
    if n < 2:
        return {"difference": float("nan"), "ci95": [float("nan")] * 2,
                "share_lower": float("nan"), "n": n}
    point = float(_robust_sigma_rows(a2.ravel()) - _robust_sigma_rows(b2.ravel()))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    step = max(1, 4_000_000 // a2.size)  # resamples per chunk, to bound memory
    for s in range(0, n_boot, step):
        idx = rng.integers(0, n, (min(step, n_boot - s), n))
        ra = _robust_sigma_rows(a2[idx].reshape(len(idx), -1))
        rb = _robust_sigma_rows(b2[idx].reshape(len(idx), -1))
        diffs[s:s + len(idx)] = ra - rb
    return {"difference": point, "ci95": _interval(diffs),
            "share_lower": float(np.mean(diffs < 0)), "n": int(n)}


def wilson_interval(hits: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Wilson score interval of a proportion hits / n (coverage of a sigma level)."""
    if n == 0:
        return [float("nan"), float("nan")]
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def label_comparison(model_pred: dict[str, np.ndarray], base_pred: dict[str, np.ndarray],
                     truth: np.ndarray, names: tuple[str, ...], seed: int = 0) -> dict:
    """Per label: model minus baseline robust sigma on the same stars, with its interval."""
    out = {}
    for k, name in enumerate(names):
        out[name] = paired_sigma_difference(
            np.asarray(model_pred[name], np.float64) - truth[:, k],
            np.asarray(base_pred[name], np.float64) - truth[:, k], seed=seed + k)
    return out
