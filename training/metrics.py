"""Small metric functions shared by evaluation (robust sigma, calibration, retrieval, spectra)."""

from __future__ import annotations

import numpy as np

from training.bootstrap import wilson_interval


def robust_sigma(d: np.ndarray) -> float:
    """1.4826 * median(|d - median(d)|) over finite values (NaN when none)."""
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def param_metrics(pred: dict[str, np.ndarray], truth: np.ndarray, names: tuple[str, ...]
                  ) -> dict[str, dict]:
    """{name: {robust_sigma, bias (median of pred - truth), n}}."""
    out = {}
    for k, name in enumerate(names):
        d = np.asarray(pred[name], np.float64) - truth[:, k]
        ok = np.isfinite(d)
        out[name] = {"robust_sigma": robust_sigma(d[ok]),
                     "bias": float(np.median(d[ok])) if ok.any() else float("nan"),
                     "n": int(ok.sum())}
    return out


def calibration(pred: dict[str, np.ndarray], sigma: dict[str, np.ndarray], truth: np.ndarray,
                names: tuple[str, ...]) -> dict[str, float]:
    """Share of stars with |pred - truth| < predicted sigma (0.683 if Gaussian and calibrated)."""
    out = {}
    for k, name in enumerate(names):
        d = np.abs(np.asarray(pred[name], np.float64) - truth[:, k])
        ok = np.isfinite(d) & np.isfinite(sigma[name])
        out[name] = float(np.mean(d[ok] < sigma[name][ok])) if ok.any() else float("nan")
    return out


def top_k(query: np.ndarray, pool: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices [Q, k] of the k most cosine-similar pool rows (rows are L2-normalised)."""
    out = []
    for i in range(0, len(query), chunk):
        sim = query[i:i + chunk] @ pool.T
        idx = np.argpartition(-sim, kth=min(k, sim.shape[1] - 1), axis=1)[:, :k]
        order = np.take_along_axis(sim, idx, 1).argsort(axis=1)[:, ::-1]
        out.append(np.take_along_axis(idx, order, 1))
    return np.concatenate(out) if out else np.zeros((0, k), int)


def rank_of(query: np.ndarray, pool: np.ndarray, true_index: int) -> int:
    """1-based rank of pool[true_index] among all pool rows by cosine similarity to query."""
    sim = pool @ query
    return int(1 + np.sum(sim > sim[true_index]))


def frac_rms(pred: np.ndarray, true: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per spectrum sqrt(sum w (p - t)^2 / sum w t^2) over good pixels (w > 0)."""
    good = (weight > 0) & np.isfinite(true) & np.isfinite(pred)
    num = np.where(good, (pred - true) ** 2, 0.0).sum(axis=1)
    den = np.where(good, true ** 2, 0.0).sum(axis=1)
    return np.sqrt(num / np.maximum(den, 1e-12))


def coverage(pred: dict[str, np.ndarray], sigma: dict[str, np.ndarray], truth: np.ndarray,
             names: tuple[str, ...], levels: tuple[int, ...] = (1, 2, 3)) -> dict[str, dict]:
    """Share of stars with |pred - truth| < n sigma for n in `levels` (Gaussian: 0.683, 0.954,
    0.997), per label, each with its 95 % Wilson interval (`{n}sigma_ci95`), and the number of
    stars."""
    out = {}
    for k, name in enumerate(names):
        d = np.abs(np.asarray(pred[name], np.float64) - truth[:, k])
        s = np.asarray(sigma[name], np.float64)
        ok = np.isfinite(d) & np.isfinite(s)
        out[name] = {}
        for n in levels:
            hits = int(np.sum(d[ok] < n * s[ok]))
            out[name][f"{n}sigma"] = hits / int(ok.sum()) if ok.any() else float("nan")
            out[name][f"{n}sigma_ci95"] = wilson_interval(hits, int(ok.sum()))
        out[name]["n"] = int(ok.sum())
    return out


def label_neighbours(query: np.ndarray, pool: np.ndarray, k: int, chunk: int = 64
                     ) -> np.ndarray:
    """Indices [Q, k] of the k pool rows nearest in standardised label space (rows with NaN
    coordinates are skipped on both sides: a NaN query gets -1)."""
    from training.data import standardised_label_space

    q = standardised_label_space(query[:, :3])
    p = standardised_label_space(pool[:, :3])
    p_ok = np.where(np.isfinite(p).all(axis=1))[0]
    out = np.full((len(q), k), -1, dtype=np.int64)
    for i in range(0, len(q), chunk):
        qq = q[i:i + chunk]
        d = ((qq[:, None, :] - p[None, p_ok, :]) ** 2).sum(axis=2)
        d = np.where(np.isfinite(d), d, np.inf)
        nn = np.argpartition(d, kth=min(k, d.shape[1] - 1), axis=1)[:, :k]
        rows = p_ok[nn]
        rows[~np.isfinite(qq).all(axis=1)] = -1
        out[i:i + chunk] = rows
    return out
