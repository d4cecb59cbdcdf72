"""Sigma recalibration recipes (training/sigma_calibration.py): each fits what it models, and
the held-out choice picks the recipe that matches how the errors were drawn."""

import numpy as np
import pytest

from training.sigma_calibration import (SigmaRecipe, choose_recipe, coverage_at,
                                        fit_scale_floor, fit_scale_power)


def _errors(sigma_true: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(0, sigma_true))


def test_fit_scale_floor_matches_one_and_two_sigma_coverage():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, 20000)

    def coverage(err, scale, floor):
        z = np.abs(err) / np.hypot(scale * sigma, floor)
        return np.mean(z < 1), np.mean(z < 2)

    err = rng.standard_normal(sigma.size) * 2.0 * sigma          # sigmas 2x too small
    scale, floor = fit_scale_floor(np.abs(err), sigma, max_floor=0.0)
    assert floor == 0.0 and scale == pytest.approx(2.0, rel=0.03)
    err = rng.standard_normal(sigma.size) * np.hypot(sigma, 1.5)  # a shared 1.5 on every star
    c1, c2 = coverage(err, *fit_scale_floor(np.abs(err), sigma, max_floor=3.0))
    assert c1 == pytest.approx(0.683, abs=0.01) and c2 == pytest.approx(0.954, abs=0.01)
    # a scale alone cannot match both for these errors
    s1, s2 = coverage(err, *fit_scale_floor(np.abs(err), sigma, max_floor=0.0))
    assert abs(s1 - 0.683) + abs(s2 - 0.954) > abs(c1 - 0.683) + abs(c2 - 0.954)


def test_scale_power_recovers_a_power_law():
    s = np.random.default_rng(2).uniform(0.05, 0.3, 4000)
    ref = float(np.median(s))
    d = _errors(0.8 * s * (s / ref) ** 1.0)
    scale, power = fit_scale_power(d, s, ref)
    assert 0.7 < power < 1.3 and 0.7 < scale < 0.95


@pytest.mark.parametrize("truth,expected", [("floor", "scale_floor"), ("power", "scale_power")])
def test_choose_recipe_picks_the_one_the_errors_follow(truth, expected):
    s = np.random.default_rng(3).uniform(0.05, 0.3, 600)
    ref = float(np.median(s))
    true_sigma = (np.sqrt(s ** 2 + 0.15 ** 2) if truth == "floor"
                  else s * (s / ref) ** 1.5)
    d = _errors(true_sigma, seed=4)
    recipe, name, report = choose_recipe(d, s, max_floor=0.3)
    assert name == expected, report
    assert report[name]["heldout_msd"] <= min(r["heldout_msd"] for r in report.values())
    cov = coverage_at(d, recipe.apply(s))
    assert abs(cov[1] - 0.9545) < 0.03


def test_recipe_identity_by_default():
    s = np.array([0.1, 0.2])
    assert np.allclose(SigmaRecipe().apply(s), s)
