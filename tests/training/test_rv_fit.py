"""RV templates built at training time (training/rv_fit.py): rest frame, grouping, sigma
calibration; and the stack fit (training/stacking_fit.py) on synthetic data."""

import numpy as np
import pytest

from engine.grids import LAMOST_MODEL_N_PIXELS
from engine.rv import velocity_to_pixels
from training.rv_fit import build_templates, calibrate, kmeans, rest_frame

L = LAMOST_MODEL_N_PIXELS


def star(kind: int, rv: float, rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
    """Two kinds of star (different line lists) observed at velocity rv, exactly."""
    lines = np.random.default_rng(kind).uniform(30, L - 30, 50)
    k = np.arange(L, dtype=np.float64)
    shift = float(velocity_to_pixels(rv))
    flux = 1 - sum(0.4 * np.exp(-0.5 * ((k - c - shift) / 2.0) ** 2) for c in lines)
    return flux + noise * rng.standard_normal(L)


def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 2, n)
    rv = rng.uniform(-150, 150, n)
    labels = np.stack([np.where(kinds, 6500.0, 4500.0), np.where(kinds, 4.2, 2.4),
                       np.where(kinds, 0.0, -0.6), rv], 1)
    flux = np.stack([star(int(k), v, rng) for k, v in zip(kinds, rv, strict=True)])
    return flux, np.ones_like(flux), labels


def test_rest_frame_undoes_the_velocity():
    rng = np.random.default_rng(0)
    observed = star(0, 120.0, rng, noise=0.0)
    rest, ok = rest_frame(observed[None], np.ones((1, L)), np.array([120.0]))
    truth = star(0, 0.0, rng, noise=0.0)
    inner = ok[0] > 0
    assert np.abs(rest[0, inner] - truth[inner]).max() < 0.01


def test_kmeans_separates_two_groups():
    pts = np.concatenate([np.zeros((10, 3)), np.full((12, 3), 50.0)])
    assign = kmeans(pts, 2, seed=0)
    assert len(set(assign[:10])) == 1 and len(set(assign[10:])) == 1
    assert assign[0] != assign[-1]


def test_templates_measure_new_stars_and_calibrate():
    flux, weight, labels = sample(80, seed=1)
    t = build_templates(flux, weight, labels, n_templates=2)
    assert t.flux.shape == (2, L)
    vf, vw, vl = sample(60, seed=2)
    t, report = calibrate(t, vf, vw, vl[:, :3], vl[:, 3])
    rv, sigma = t.measure(vf, vw, vl[:, :3])
    assert np.median(np.abs(rv - vl[:, 3])) < 2.0
    z = np.abs(rv - vl[:, 3]) / sigma
    assert np.mean(z < 1) == pytest.approx(0.683, abs=0.1)
    assert report["validation_coverage"]["1sigma"] == pytest.approx(np.mean(z < 1), abs=1e-3)


def test_too_few_labelled_spectra_are_refused():
    flux, weight, labels = sample(5, seed=3)
    with pytest.raises(ValueError, match="too few"):
        build_templates(flux, weight, labels, n_templates=8)
