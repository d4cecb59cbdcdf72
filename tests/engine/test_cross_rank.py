"""engine/cross_rank.py and the cross-instrument ordering of `Engine.search` (real embedded
store, the projection test double as the model, predicted parameters written by hand)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from engine import cross_rank as XR
from engine import payload as P
from engine.query import Engine
from engine.store import open_store
from engine.store.types import Point
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder


def test_label_space_units():
    lab = XR.label_space([5000.0, 5000.0 * 10 ** 0.01], [4.0, 4.1], [0.0, -0.1])
    assert np.allclose(lab[1] - lab[0], [1.0, 1.0, -1.0])
    assert np.isnan(XR.label_space([0.0], [1.0], [1.0])[0, 0])
    # 1 % of Teff is 0.00434 dex = 0.434 units
    sig = XR.sigma_space([5000.0], [50.0], [0.2], [0.05])
    assert np.allclose(sig[0], [0.01 / np.log(10) / 0.01, 2.0, 0.5])


def test_the_expected_distance_counts_the_candidates_uncertainty():
    q = np.zeros(3)
    cand = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    sig = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    d = XR.distances(q, cand, sig, np.ones(4), cosine_weight=10.0)
    assert np.allclose(d[:3], [0.0, 5.0, 1.0]) and d[3] == np.inf
    idx, dist = XR.order(q, cand, sig, np.array([0.4, 1.0, 1.0, 1.0]), cosine_weight=10.0)
    # the sure match first even though its cosine is lowest once the weight is small
    assert list(XR.order(q, cand, sig, np.array([0.99, 1.0, 1.0, 1.0]), 10.0)[0]) == [0, 2, 1, 3]
    # a large cosine weight lets the spectral resemblance win
    assert list(idx) == [2, 1, 0, 3] and list(dist) == sorted(dist)
    # sigma_weight 0: the uncertain exact match ties with the sure one, ahead of the 1-off
    d0 = XR.distances(q, cand, sig, np.ones(4), cosine_weight=10.0, sigma_weight=0.0)
    assert np.allclose(d0[:3], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        XR.CrossRank(sigma_weight=-1.0)


def test_settings_come_from_the_bundle_file_or_the_defaults(tmp_path):
    assert XR.load_cross_rank(tmp_path) == XR.CrossRank()
    XR.save_cross_rank(tmp_path, XR.CrossRank(candidates=7, cosine_weight=2.5), {"why": "x"})
    assert XR.load_cross_rank(tmp_path) == XR.CrossRank(candidates=7, cosine_weight=2.5)
    assert json.loads((tmp_path / XR.CROSS_RANK_FILE).read_text())["why"] == "x"
    # one setting, written before the per-direction settings: both directions use it
    assert XR.load_cross_rank(tmp_path, "lamost") == XR.CrossRank(candidates=7, cosine_weight=2.5)
    XR.save_cross_rank(tmp_path, XR.CrossRank(candidates=7, cosine_weight=2.5), {},
                       to_lamost=XR.CrossRank(candidates=30, cosine_weight=0.0))
    assert XR.load_cross_rank(tmp_path, "gaia_xp") == XR.CrossRank(candidates=7,
                                                                   cosine_weight=2.5)
    assert XR.load_cross_rank(tmp_path, "lamost") == XR.CrossRank(candidates=30,
                                                                  cosine_weight=0.0)
    with pytest.raises(ValueError, match="gaia_xp or lamost"):
        XR.load_cross_rank(tmp_path, "any")
    with pytest.raises(ValueError):
        XR.CrossRank(candidates=0)
    with pytest.raises(ValueError):
        XR.CrossRank(cosine_weight=-1.0)


def test_the_shipped_bundle_carries_its_validation_choice():
    from engine.bundle import DEFAULT_BUNDLE

    data = json.loads((DEFAULT_BUNDLE / XR.CROSS_RANK_FILE).read_text())
    assert XR.load_cross_rank(DEFAULT_BUNDLE) == XR.CrossRank(data["candidates"],
                                                              data["cosine_weight"])
    assert "validation" in data["chosen_on"]
    assert XR.load_cross_rank(DEFAULT_BUNDLE, "lamost") == XR.CrossRank(**data["to_lamost"])


QUERY = {"teff": 5800.0, "logg": 4.4, "feh": -0.2}


def _labels(teff: float, logg: float, feh: float, sigma: float) -> dict:
    out = {}
    for name, value in (("teff", teff), ("logg", logg), ("feh", feh)):
        out[P.pred_key(name)] = value
        out[P.sigma_key(name)] = sigma * (value if name == "teff" else 1.0) * 0.01
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """LAMOST spectra, and each copied as a 'Gaia XP' point with the same vectors: the XP
    copies' predicted labels drift away from the query's with shared-space rank, except two
    planted far down the list: one with the query's labels, and one with the query's labels
    but a large sigma."""
    tmp_path = tmp_path_factory.mktemp("cross")
    folder = write_lamost_folder(tmp_path / "spectra", 16, 300, 4000, 120)
    store = open_store(path=str(tmp_path / "store"))
    Syncer(store=store, embedder=ProjectionEmbedder(),
           state_path=str(tmp_path / "state.json")).run(parse_sources([str(folder)]))
    eng = Engine(store)
    eng._embedder = ProjectionEmbedder()
    eng._cross_rank = {"gaia_xp": XR.CrossRank(candidates=50, cosine_weight=1.0)}
    query = eng.lookup(obsid="305")[0]
    store.upsert("spectra", [Point(query.id, eng.store.retrieve("spectra", [query.id], True)[0]
                                   .vectors, {**query.payload, **_labels(**QUERY, sigma=1.0)})])
    qvec = eng.store.retrieve("spectra", [query.id], True)[0].vectors[P.VECTOR_SHARED]
    others = [h for h in store.scroll("spectra", with_vectors=True) if h.id != query.id]
    others.sort(key=lambda h: -float(np.dot(h.vectors[P.VECTOR_SHARED], qvec)))
    points = []
    for rank, h in enumerate(others):
        labels = _labels(5800.0 + 300.0 * (rank + 1), 4.4 - 0.2 * (rank + 1), -0.2, 1.0)
        if rank == len(others) - 2:
            labels = _labels(**QUERY, sigma=1.0)        # the right star, far in cosine
        if rank == len(others) - 1:
            labels = _labels(**QUERY, sigma=300.0)      # right labels, but the model is unsure
        payload = {**h.payload, **labels, P.SURVEY: "gaia_xp",
                   P.OBJECT_ID: f"xp-{h.payload[P.OBJECT_ID]}"}
        points.append(Point(str(uuid.uuid4()), {P.VECTOR_SHARED: h.vectors[P.VECTOR_SHARED]},
                            payload))
    store.upsert("spectra", points)
    eng.planted = (points[-2].payload[P.OBJECT_ID], points[-1].payload[P.OBJECT_ID])
    yield eng
    eng.close()


def test_cross_instrument_hits_are_ordered_by_predicted_parameters(engine):
    right, unsure = engine.planted
    ranked = engine.search(("obsid", "305"), target="gaia_xp", k=15)
    shared = engine.search(("obsid", "305"), target="gaia_xp", k=15, cross_rank=False)
    assert ranked[0].object_id == right
    assert right not in [h.object_id for h in shared][:10]
    dist = [h.rank_distance for h in ranked]
    assert dist == sorted(dist) and "rank_distance" in ranked[0].to_dict()
    assert [h.object_id for h in ranked].index(unsure) > 0   # uncertainty costs rank
    assert all(h.rank_distance is None for h in shared)
    cos = [h.score for h in shared]
    assert cos == sorted(cos, reverse=True)
    # same-instrument searches are untouched; groups use the same ordering
    groups = engine.search_by_instrument(("obsid", "305"), k=3)
    assert groups["gaia_xp"][0].object_id == right
    assert all(h.rank_distance is None for h in groups["lamost"])


def test_payload_keys_do_not_change_the_cross_ranking(engine):
    full = engine.search(("obsid", "305"), target="gaia_xp", k=5)
    slim = engine.search(("obsid", "305"), target="gaia_xp", k=5, payload_keys=["snr"])
    assert [h.id for h in slim] == [h.id for h in full]
    assert set(slim[0].payload) == {P.SURVEY, P.OBJECT_ID, "snr"}
    # the candidates were fetched with the ranking keys only; what is returned is whole
    for h in full:
        assert h.payload == engine.store.retrieve("spectra", [h.id])[0].payload


def test_a_query_without_predicted_parameters_keeps_the_shared_order(engine):
    record = engine.get_spectrum(engine.lookup(obsid="305")[0])   # the double predicts Teff only
    ranked = engine.search(record, target="gaia_xp", k=5)
    shared = engine.search(record, target="gaia_xp", k=5, cross_rank=False)
    assert [h.id for h in ranked] == [h.id for h in shared]


def test_the_sigma_weight_can_be_overridden_per_search(engine):
    right, unsure = engine.planted

    def unsure_hit(**kw):
        hits = engine.search(("obsid", "305"), target="gaia_xp", k=60, **kw)
        return next(h for h in hits if h.object_id == unsure), [h.object_id for h in hits]

    default, order = unsure_hit()
    off, order_off = unsure_hit(sigma_weight=0.0)
    heavy, order_heavy = unsure_hit(sigma_weight=4.0)
    # weight 0: the right labels, sigma not counted -> only the cosine term is left
    assert off.rank_distance == pytest.approx(1.0 * (1.0 - off.score), abs=1e-6)
    assert off.rank_distance < default.rank_distance < heavy.rank_distance
    assert order_off.index(unsure) < order.index(unsure) <= order_heavy.index(unsure)
    assert order_off.index(unsure) <= 1
    # the same through the grouped search
    groups = engine.search_by_instrument(("obsid", "305"), k=60, sigma_weight=0.0)
    assert [h.object_id for h in groups["gaia_xp"]] == order_off


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma_weight": -1.0}, ">= 0"),
    ({"sigma_weight": float("nan")}, ">= 0"),
    ({"sigma_weight": True}, ">= 0"),
    ({"sigma_weight": 1.0, "cross_rank": False}, "cross_rank off"),
    ({"sigma_weight": 1.0, "target": "lamost"}, "has none"),
    ({"sigma_weight": 1.0, "target": "gaia_xp", "space": "shared", "cross_rank": False},
     "cross_rank off"),
])
def test_a_sigma_weight_that_would_do_nothing_is_refused(engine, kwargs, message):
    kwargs = {"target": "gaia_xp", **kwargs}
    with pytest.raises(ValueError, match=message):
        engine.search(("obsid", "305"), k=3, **kwargs)
