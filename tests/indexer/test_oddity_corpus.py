"""Every documented injection (benchmarks/oddities.py) ranks in the top 1 % of its survey's
`anomaly` when indexed with real spectra it was not fitted on (issue 11). The corpus is built
from ../shared/data at test time and indexed by the real indexer through a Parquet
catalogue, so the scores are those a user's store gets. On the XP background, the outlier
ranking is also checked not to be a temperature ranking."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from engine import payload as P
from engine.bundle import load_bundle
from engine.catalogue import write_catalogue
from engine.inference import Embedder
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from benchmarks.oddities import lamost_corpus, xp_corpus

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.real_data, pytest.mark.slow,
              pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")]


Ranks = tuple[dict[str, int], int, np.ndarray]


def _ranks(tmp_path, background, injections) -> Ranks:
    """For each injection, how many background spectra score higher on `anomaly`; the
    background's size and its [anomaly, label Teff, anomaly_peak, SNR] rows."""
    write_catalogue(background + list(injections.values()), tmp_path / "corpus.parquet")
    store = open_store(path=str(tmp_path / "store"))
    try:
        Syncer(store=store, embedder=Embedder(load_bundle()),
               state_path=str(tmp_path / "state.json")).run(
            parse_sources([str(tmp_path / "corpus.parquet")]))
        names = {r.object_id: name for name, r in injections.items()}
        points = {h.payload[P.OBJECT_ID]: (h.payload[P.ANOMALY],
                                           *(h.payload.get(k, np.nan) for k in (
                                               P.label_key("teff"), P.ANOMALY_PEAK, P.SNR)))
                  for h in store.scroll("spectra")}
    finally:
        store.close()
    scores = {k: v[0] for k, v in points.items()}
    bg = np.array([v for k, v in scores.items() if k not in names])
    above = {names[k]: int((bg > v).sum()) for k, v in scores.items() if k in names}
    print(f"background spectra above each injection (of {len(bg)}): {above}")
    rows = np.array([v for k, v in points.items() if k not in names], float)
    return above, len(bg), rows


_CACHE: dict[str, Ranks] = {}


def _survey_ranks(tmp_path_factory, survey: str) -> Ranks:
    if survey not in _CACHE:
        background, injections = lamost_corpus(DATA) if survey == "lamost" else xp_corpus()
        _CACHE[survey] = _ranks(tmp_path_factory.mktemp(survey), background, injections)
        assert set(_CACHE[survey][0]) == set(injections)      # every injection was indexed
    return _CACHE[survey]


CASES = [("lamost", k) for k in ("emission", "blend", "cosmic_ray", "dead_segment", "inverted",
                                  "redshifted_galaxy")] + \
        [("gaia_xp", k) for k in ("emission", "flat", "blend", "cosmic_ray", "dead_segment")]
# The XP background is the model's validation split (stars the network never trained on).
# There the single-sample spike and the 25-sample dead segment are diluted in a mean chi^2
# over 343 samples (bundle 5cfd28776e28346b: 214 and 58 of 3,993 above them; tried: the mean
# of the 3-30 worst samples, 23-128 and 49-56 above). `anomaly_peak`, the worst single
# sample in units of own noise + look-alikes' model error, Fisher-combined into XP's
# `anomaly` (indexer/scoring.py), brings them to 16 and 22 of 3,993 (bundle ecbb89c7471bf007).


@pytest.mark.parametrize(("survey", "injection"), CASES)
def test_each_injection_ranks_in_the_top_percent_of_its_survey(tmp_path_factory, survey,
                                                               injection):
    above, n, _ = _survey_ranks(tmp_path_factory, survey)
    assert above[injection] < 0.01 * n, f"{injection}: {above[injection]} of {n} above it"


def test_xp_outliers_are_not_a_temperature_ranking(tmp_path_factory):
    """Issue 11 on the XP validation stars of the corpus (the whole library is measured by
    benchmarks/anomaly_teff.py): the share of the top 100 below 4000 K at most 1.5x the
    background's, and |Spearman(anomaly, APOGEE Teff)| < 0.3."""
    from scipy.stats import spearmanr

    _, _, rows = _survey_ranks(tmp_path_factory, "gaia_xp")
    rows = rows[np.isfinite(rows[:, :2]).all(axis=1)]
    anomaly, teff = rows[:, 0], rows[:, 1]
    cool = float(np.mean(teff[np.argsort(-anomaly)[:100]] < 4000))
    rho = float(spearmanr(anomaly, teff).correlation)
    print(f"XP validation: top-100 share below 4000 K {cool:.2f} (background "
          f"{np.mean(teff < 4000):.2f}), Spearman(anomaly, Teff) {rho:+.3f}")
    assert len(rows) > 3000
    assert cool <= 1.5 * np.mean(teff < 4000) and abs(rho) < 0.3


def test_xp_peak_score_is_not_raised_by_noise(tmp_path_factory):
    """`anomaly_peak` is in units of each spectrum's own noise (+ its look-alikes' model
    error): on the XP validation stars it must not follow SNR (measured Spearman -0.07)."""
    from scipy.stats import spearmanr

    _, _, rows = _survey_ranks(tmp_path_factory, "gaia_xp")
    rows = rows[np.isfinite(rows[:, 2:]).all(axis=1)]
    rho = float(spearmanr(rows[:, 2], rows[:, 3]).correlation)
    print(f"XP validation: Spearman(anomaly_peak, SNR) {rho:+.3f} over {len(rows)} stars")
    assert len(rows) > 3000 and abs(rho) < 0.15
