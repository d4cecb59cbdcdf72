"""The scoring reference's arithmetic (engine/reference.py): percentiles from stored
quantiles, reconstruction chi^2 and feature z that noise does not raise, local isolation,
and a reference fitted for another bundle refused."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import BundleError
from engine.reference import (Reference, SurveyReference, lof_from_distances, load_reference,
                              percentile_from_quantiles, save_reference)
from engine.records import SURVEY_LAMOST


def _reference(n_ref: int = 50, length: int = 400, tau: float = 0.0) -> SurveyReference:
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(n_ref, 8)).astype(np.float32)
    shared /= np.linalg.norm(shared, axis=1, keepdims=True)
    return SurveyReference(SURVEY_LAMOST, shared, np.full((n_ref, length), tau ** 2),
                           {"recon_chi2": np.linspace(0, 3, 101)}, 0.5)


def _star(length: int = 400) -> np.ndarray:
    x = np.arange(length)
    return 1 - sum(0.5 * np.exp(-0.5 * ((x - c) / 3) ** 2) for c in (50, 120, 200, 310))


def test_percentiles_rise_monotonically_past_the_reference_maximum():
    q = np.linspace(1.0, 10.0, 101)
    p = percentile_from_quantiles(np.array([0.5, 1.0, 5.0, 10.0, 20.0, 200.0]), q)
    assert p[0] == 0 and np.all(np.diff(p[1:]) > 0) and p[-1] < 1
    assert np.isnan(percentile_from_quantiles(np.array([np.nan]), q))[0]


@pytest.mark.parametrize("noise", [0.002, 0.05, 0.3])
def test_noise_is_not_oddity(noise):
    """A spectrum its model fits, at any noise level: chi^2 ~ 1 and feature z ~ 0."""
    ref, star = _reference(), _star()
    rng = np.random.default_rng(1)
    n = 200
    flux = star + rng.normal(0, noise, size=(n, len(star)))
    recon = np.tile(star, (n, 1))
    sigma, weight = np.full(flux.shape, noise), np.ones(flux.shape)
    chi2, z, peak = ref.recon_scores(ref.shared[:1].repeat(n, 0), recon, flux, sigma, weight)
    assert abs(np.median(chi2) - 1.0) < 0.1
    assert abs(np.median(z)) < 0.3 and 0.7 < np.std(z) < 1.3
    # the worst of L unit-variance bins: the median of max chi^2_1 over L draws, any noise
    bins = len(star)
    expected = np.median(np.random.default_rng(9).chisquare(1, (2000, bins)).max(axis=1))
    assert abs(np.median(peak) / expected - 1.0) < 0.15


def test_missing_features_and_a_spike_score_high():
    ref, star = _reference(), _star()
    noise = 0.05
    rng = np.random.default_rng(2)
    featureless = 1 + rng.normal(0, noise, len(star))
    spiked = star + rng.normal(0, noise, len(star))
    spiked[260:263] = 10.0
    flux = np.vstack([featureless, spiked])
    chi2, z, peak = ref.recon_scores(ref.shared[:2], np.tile(star, (2, 1)), flux,
                                     np.full(flux.shape, noise), np.ones(flux.shape))
    assert z[0] > 10          # the model's lines are not there
    assert chi2[1] > 10       # three pixels far outside noise + model error
    assert peak[1] > 1000 and peak[1] > 50 * chi2[1]   # one of them, undiluted


def test_local_isolation_is_about_1_in_any_cluster_and_high_alone():
    own = np.array([0.01, 0.5, 2.0])
    around = np.array([[0.01] * 10, [0.5] * 10, [0.2] * 10])
    assert np.allclose(lof_from_distances(own, around), [1.0, 1.0, 10.0])


def test_a_reference_for_another_bundle_is_refused(tmp_path):
    ref = Reference("abc", {SURVEY_LAMOST: _reference()}, {})
    save_reference(tmp_path, ref)
    assert load_reference(tmp_path, "abc").surveys[SURVEY_LAMOST].ood_threshold == 0.5
    with pytest.raises(BundleError, match="fitted for bundle abc"):
        load_reference(tmp_path, "other")
    assert load_reference(tmp_path / "nothing") is None


def test_ood_pvalues_are_conformal_and_two_sided_where_both_tails_are_odd():
    from engine.reference import ood_pvalues, ood_score

    q = {"ood_distance": np.linspace(0.0, 1.0, 1001), "features_z": np.linspace(-3, 3, 1001),
         "sigma_teff": np.linspace(0, 100, 1001), "sigma_logg": np.linspace(0, 1, 1001)}
    signals = {"ood_distance": np.array([0.5, 50.0, 0.5, 0.5]),
               "features_z": np.array([0.0, 0.0, -30.0, 30.0])}
    sigmas = {"teff": np.array([50.0] * 4), "logg": np.array([0.5, 0.5, 0.5, 50.0])}
    p = ood_pvalues(q, signals, sigmas, n=99)
    assert p["ood_distance"][1] == pytest.approx(0.01)      # never below 1 / (n + 1)
    assert p["features_z"][2] == p["features_z"][3] == pytest.approx(0.01)
    assert p["features_z"][0] == pytest.approx(1.0, abs=0.01)
    assert p["sigma"][3] == pytest.approx(0.02)             # Bonferroni over 2 parameters
    s = ood_score(q, signals, sigmas, n=99)
    assert s[0] < 2 and all(s[1:] > 4)
