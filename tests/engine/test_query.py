"""Engine query API against a real embedded store filled by the real indexer (with the
projection test double as the model, so these tests do not depend on a trained bundle)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import payload as P
from engine.errors import NotFoundError
from engine.query import Engine, angular_separation_deg, build_filter
from engine.store import open_store
from engine.store.types import Match, MatchAny, Range
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("query")
    folder = write_lamost_folder(tmp_path / "spectra", 20, 100, 4000, 100, last_is_galaxy=True)
    store = open_store(path=str(tmp_path / "store"))
    Syncer(store=store, embedder=ProjectionEmbedder(),
           state_path=str(tmp_path / "state.json")).run(parse_sources([str(folder)]))
    eng = Engine(store)
    eng._embedder = ProjectionEmbedder()
    yield eng
    eng.close()


def test_search_by_obsid_excludes_itself_and_ranks_by_similarity(engine):
    hits = engine.search(("obsid", "110"), target="lamost", k=5)
    assert len(hits) == 5
    assert "110" not in [h.object_id for h in hits]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # the projection embeds by continuum slope: the nearest stars are near in Teff, and
    # nearer than the stars of the far end of the sequence
    assert all(abs(int(h.object_id) - 110) <= 3 for h in hits[:2])
    far = engine.search(("obsid", "110"), target="lamost", k=19)[-3:]
    assert all(abs(int(h.object_id) - 110) >= 5 for h in far)


def test_search_with_a_record_and_filters(engine):
    record = engine.get_spectrum(engine.lookup(obsid="105")[0])
    hits = engine.search(record, target="lamost", k=3, filters={"obj_class": "GALAXY"})
    assert [h.object_id for h in hits] == ["119"]


def test_outliers_are_ordered_by_score(engine):
    hits = engine.outliers("lamost", k=20)
    scores = [h.payload[P.ANOMALY] for h in hits]
    assert len(hits) == 20 and scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError):
        engine.outliers("lamost", score="not-a-score")


def test_lookup_and_not_found(engine):
    assert [h.object_id for h in engine.lookup(obsid=101)] == ["101"]
    with pytest.raises(NotFoundError):
        engine.search(("obsid", "999999"))


def test_cone_search_returns_only_points_inside_the_radius(engine):
    # write_lamost_file puts obsid at RA 10 + obsid % 7, Dec 20 + obsid % 5
    hits = engine.cone_search(10.0 + 100 % 7, 20.0 + 100 % 5, radius_arcsec=36.0)
    assert hits and all(h.score == h.separation_arcsec <= 36.0 for h in hits)
    assert all((int(h.object_id) % 7, int(h.object_id) % 5) == (100 % 7, 100 % 5) for h in hits)


def test_stats_counts(engine):
    stats = engine.stats()
    assert stats["healthy"] and stats["by_survey"] == {"lamost": 20}
    assert stats["by_release"] == {"lamost/DR7": 20} or sum(stats["by_release"].values()) == 20


def test_stats_agree_with_a_scan_of_every_point(engine):
    """stats() counts with count and facet calls; a full scroll must give the same numbers."""
    by_survey: dict = {}
    by_release: dict = {}
    for h in engine.store.scroll(engine.collection):
        s, r = h.payload[P.SURVEY], h.payload.get(P.DATA_RELEASE) or "?"
        by_survey[s] = by_survey.get(s, 0) + 1
        by_release[f"{s}/{r}"] = by_release.get(f"{s}/{r}", 0) + 1
    stats = engine.stats()
    assert stats["by_survey"] == by_survey and stats["by_release"] == by_release
    assert stats["total"] == sum(by_survey.values())
    assert stats["model_versions"] == [engine.index_model_version()]


def test_held_instruments_value_ranges_points_and_query_parameters(engine):
    assert engine.surveys_held() == ["lamost"]
    values = [h.payload[P.pred_key("teff")] for h in engine.store.scroll(engine.collection)]
    assert engine.value_range(P.pred_key("teff")) == pytest.approx((min(values), max(values)))
    assert engine.value_range(P.pred_key("teff"), survey="gaia_xp") is None
    hit = engine.lookup(obsid="105")[0]
    assert [p.object_id for p in engine.points([hit.id, "00000000-0000-0000-0000-000000000000"])
            ] == ["105"]
    stored = engine.query_parameters(("obsid", "105"))
    assert stored["teff"] == (hit.payload[P.pred_key("teff")],
                              hit.payload[P.sigma_key("teff")])
    from_model = engine.query_parameters(engine.get_spectrum(hit))
    assert from_model["teff"][0] == pytest.approx(stored["teff"][0], rel=1e-4)


def test_an_empty_store_reports_nothing_held(tmp_path):
    store = open_store(path=str(tmp_path / "empty"))
    eng = Engine(store)
    try:
        assert eng.surveys_held() == [] and eng.value_range(P.SNR) is None
        assert eng.stats()["healthy"] and eng.stats()["total"] == 0
    finally:
        eng.close()


def test_build_filter_translates_ranges_lists_and_values():
    flt = build_filter({"label_teff": (4000, None), "subclass": ["G2", "K1"], "obj_class": "STAR"},
                       survey="lamost")
    assert Match(P.SURVEY, "lamost") in flt.must
    assert Range("label_teff", gte=4000, lte=None) in flt.must
    assert MatchAny("subclass", ("G2", "K1")) in flt.must
    assert build_filter(None) is None


def test_angular_separation_known_values():
    assert np.isclose(angular_separation_deg(0, 0, 90, 0), 90)
    assert np.isclose(angular_separation_deg(359.99, 0, 0.01, 0), 0.02)
    assert np.isclose(angular_separation_deg(10, 89.9, 190, 89.9), 0.2)


def test_a_spectrum_query_with_another_model_than_the_index_is_refused(engine):
    from engine.errors import SpecClipError

    record = engine.get_spectrum(engine.lookup(obsid="105")[0])
    other = Engine(engine.store)
    other._embedder = ProjectionEmbedder("another-model")
    with pytest.raises(SpecClipError, match="built with model test-projection-1"):
        other.search(record, target="lamost")


def test_payload_keys_limit_the_payload_but_not_the_ranking(engine):
    full = engine.search(("obsid", "110"), target="lamost", k=5)
    light = engine.search(("obsid", "110"), target="lamost", k=5, payload_keys=["snr"])
    assert [h.id for h in light] == [h.id for h in full]
    assert [h.score for h in light] == pytest.approx([h.score for h in full])
    for h in light:              # named by survey and object id whatever was asked
        assert set(h.payload) == {P.SURVEY, P.OBJECT_ID, P.SNR}
        assert h.survey == "lamost" and h.object_id
    assert len(full[0].payload) > 10


def test_search_vector_is_search_without_the_lookup(engine):
    point = engine.store.retrieve(engine.collection, [engine.lookup(obsid="110")[0].id],
                                  with_vectors=True)[0]
    name = P.VECTOR_OWN["lamost"]
    by_vector = engine.search_vector(point.vectors[name], name, k=5, target="lamost",
                                     exclude_id=point.id)
    by_id = engine.search(("obsid", "110"), target="lamost", k=5, space="own")
    assert [h.id for h in by_vector] == [h.id for h in by_id]
    with_self = engine.search_vector(point.vectors[name], name, k=1, target="lamost")
    assert with_self[0].id == point.id and with_self[0].score == pytest.approx(1.0, abs=1e-5)
