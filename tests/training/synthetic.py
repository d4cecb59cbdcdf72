"""Synthetic LAMOST/XP model inputs with labels, for CPU smoke tests (no real data needed)."""

from __future__ import annotations

import numpy as np

from engine.grids import LAMOST_MODEL_N_PIXELS, XP_N_SAMPLES
from training.data import SpectraSet


def synthetic_sets(n_lamost: int = 48, n_xp: int = 96, seed: int = 0
                   ) -> tuple[SpectraSet, SpectraSet]:
    """Spectra whose shape depends smoothly on (teff, logg, feh), like real ones."""
    rng = np.random.default_rng(seed)

    def labels(n: int, k: int) -> np.ndarray:
        y = np.stack([rng.uniform(4000, 7500, n), rng.uniform(1.0, 4.8, n),
                      rng.uniform(-1.5, 0.4, n), rng.uniform(-0.1, 0.3, n)], 1)
        return y[:, :k]

    yl, yx = labels(n_lamost, 3), labels(n_xp, 4)
    yl = np.concatenate([yl, rng.uniform(-80, 80, (n_lamost, 1))], 1)  # LAMOST rv (km/s)
    t = np.linspace(0, 1, LAMOST_MODEL_N_PIXELS)
    fl = (1 - 0.1 * (yl[:, 2:3] + 2) * np.exp(-((t - 0.3) / 0.01) ** 2)
          - 0.05 * (yl[:, 1:2]) * np.exp(-((t - 0.7) / 0.02) ** 2)
          + 0.01 * rng.standard_normal((n_lamost, t.size)))
    u = np.linspace(0, 1, XP_N_SAMPLES)
    fx = np.exp(-(u[None] - 5000 / yx[:, :1] + 0.3) ** 2 / 0.1) + 0.05 * yx[:, 2:3] * u
    wl = np.ones_like(fl)
    wl[:, :5] = 0.0
    ids = lambda p, n: [f"{p}{i}" for i in range(n)]  # noqa: E731
    lam = SpectraSet("lamost", fl.astype(np.float32), wl.astype(np.float32),
                     rng.normal(2, 0.3, n_lamost).astype(np.float32), yl, ids("l", n_lamost),
                     rng.uniform(10, 100, n_lamost),
                     {"gaia_source_id": np.zeros(n_lamost, np.int64),
                      "apogee_id": np.array([""] * n_lamost),
                      "source_path": np.array([""] * n_lamost)})
    xp = SpectraSet("gaia_xp", fx.astype(np.float32), np.ones_like(fx, dtype=np.float32),
                    rng.normal(0, 0.3, n_xp).astype(np.float32), yx, ids("x", n_xp),
                    rng.uniform(10, 100, n_xp),
                    {"gaia_source_id": np.arange(n_xp, dtype=np.int64) + 1000,
                     "apogee_id": np.array([f"2M{i}" for i in range(n_xp)]),
                     "source_path": np.array([""] * n_xp)})
    return lam, xp
