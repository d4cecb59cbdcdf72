"""The quality cut, similarity percentiles and per-instrument groups of `Engine.search`
(real embedded store, the projection test double as the model)."""

from __future__ import annotations

import pytest

from engine import payload as P
from engine.query import Engine
from engine.store import open_store
from engine.store.types import Point
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("quality")
    folder = write_lamost_folder(tmp_path / "spectra", 16, 300, 4000, 120)
    store = open_store(path=str(tmp_path / "store"))
    Syncer(store=store, embedder=ProjectionEmbedder(),
           state_path=str(tmp_path / "state.json")).run(parse_sources([str(folder)]))
    # flag every other spectrum as low quality, as the indexer does for low-SNR ones
    hits = list(store.scroll("spectra", with_vectors=True))
    store.upsert("spectra", [Point(h.id, h.vectors, {**h.payload, P.LOW_QUALITY: i % 2 == 0})
                             for i, h in enumerate(hits)])
    eng = Engine(store)
    eng._embedder = ProjectionEmbedder()
    yield eng
    eng.close()


def test_the_quality_cut_is_visible_and_overridable(engine):
    kept = engine.search(("obsid", "305"), target="lamost", k=15, quality_cut=False)
    cut = engine.search(("obsid", "305"), target="lamost", k=15, quality_cut=True)
    assert any(h.payload[P.LOW_QUALITY] for h in kept)
    assert cut and not any(h.payload[P.LOW_QUALITY] for h in cut)
    # the default cuts only the other instrument's hits: same-instrument keeps them
    default = engine.search(("obsid", "305"), target="lamost", k=15)
    assert [h.id for h in default] == [h.id for h in kept]


def test_hits_carry_their_space_and_a_similarity_percentile(engine):
    hits = engine.search(("obsid", "305"), target="lamost", k=5)
    assert all(h.space == P.VECTOR_OWN["lamost"] or h.space.startswith("lamost") for h in hits)
    pct = [h.similarity_percentile for h in hits]
    assert all(0.0 <= p <= 1.0 for p in pct)
    assert pct == sorted(pct, reverse=True)        # same order as the cosines
    assert "similarity_percentile" in hits[0].to_dict()


def test_search_by_instrument_returns_groups(engine):
    groups = engine.search_by_instrument(("obsid", "305"), k=4)
    assert set(groups) == {"lamost", "gaia_xp"}
    assert len(groups["lamost"]) == 4 and groups["gaia_xp"] == []   # no XP indexed here
