"""Congruence: the same upserts and queries on Qdrant Edge and on qdrant-client's :memory:
mode give the same answers (ids, and scores to 1e-5; tied scores compared as sets)."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest

from engine.store import CollectionOptions, Filter, HasId, Match, MatchAny, Range, open_store
from tests.engine.store.conftest import DIMS, INDEXES, VECTORS, make_points

N = 3000
FILTERS = {
    "none": None,
    "match": Filter(must=(Match("obj_class", "STAR"),)),
    "range": Filter(must=(Range("snr", gte=20.0, lte=60.0),)),
    "open_range": Filter(must=(Range("label_teff", gte=6000.0),)),
    "must_not": Filter(must_not=(Match("obj_class", "QSO"),)),
    "match_any": Filter(must=(MatchAny("obj_class", ("GALAXY", "QSO")),)),
    "should": Filter(should=(Range("snr", lte=10.0), Range("snr", gte=90.0))),
    "bool": Filter(must=(Match("has_label", True),)),
    "bool_false": Filter(must=(Match("has_label", False),), must_not=(Match("survey", "lamost"),)),
    "integer": Filter(must=(Range("source_index", gte=100, lte=1500),)),
    "nested": Filter(must=(Filter(should=(Match("obj_class", "STAR"),
                                          Range("anomaly", gte=0.9))),),
                     must_not=(Range("snr", lte=5.0),)),
    "has_id": Filter(must=(HasId(tuple(p.id for p in make_points(40, start=0)[::3])),)),
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(edge, memory) holding the same points; module scope: building costs ~1 s."""
    points = make_points(N, seed=1)
    stores = (open_store(path=tmp_path_factory.mktemp("edge") / "s"), open_store(memory=True))
    for s in stores:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions())
        for i in range(0, N, 500):
            s.upsert("c", points[i:i + 500])
    yield stores
    for s in stores:
        s.close()


def assert_same_hits(a, b, k=None, tol=1e-5):
    """Same scores (to tol) in the same order; ids equal, tie groups compared as sets (a tie
    group that the cut at k truncates is only checked for size)."""
    sa, sb = np.array([h.score for h in a]), np.array([h.score for h in b])
    assert len(a) == len(b)
    np.testing.assert_allclose(sa, sb, atol=tol, rtol=0)
    i = 0
    while i < len(a):
        j = i + 1
        while j < len(a) and abs(sa[j] - sa[i]) <= tol:
            j += 1
        truncated = k is not None and j == len(a) == k
        if not truncated:
            assert {h.id for h in a[i:j]} == {h.id for h in b[i:j]}, (i, j)
        for ha, hb in zip(a[i:j], b[i:j], strict=True):
            if j - i == 1:
                assert ha.payload == pytest.approx(hb.payload)
        i = j


@pytest.mark.parametrize("fname", list(FILTERS))
@pytest.mark.parametrize("vector_name", ["shared", "lamost", "gaia_xp"])
def test_search(pair, vector_name, fname):
    rng = np.random.default_rng(zlib.crc32(f"{vector_name}/{fname}".encode()))
    excluded = vector_name == "lamost" and fname == "bool_false"   # that filter drops LAMOST
    edge, mem = pair
    for _ in range(3):
        q = rng.normal(size=DIMS[vector_name]).astype(np.float32)
        a = edge.search("c", vector_name, q, 10, filter=FILTERS[fname])
        b = mem.search("c", vector_name, q, 10, filter=FILTERS[fname])
        assert bool(a) != excluded, "the query should match something (or nothing if excluded)"
        assert_same_hits(a, b, k=10)
        if vector_name != "shared" and a:      # points without that vector never match
            assert {h.payload["survey"] for h in a} == {vector_name}


@pytest.mark.parametrize("fname", ["none", "match", "range"])
def test_search_batch_is_search_per_vector(pair, fname):
    """A batch (the incremental scorer's searches) answers each vector as search() does,
    on both backends, with the payload cut to the asked keys."""
    rng = np.random.default_rng(zlib.crc32(f"batch/{fname}".encode()))
    queries = [rng.normal(size=DIMS["shared"]).astype(np.float32) for _ in range(5)]
    edge, mem = pair
    for store in (edge, mem):
        batch = store.search_batch("c", "shared", queries, 12, filter=FILTERS[fname],
                                   payload_keys=["snr"])
        assert len(batch) == len(queries)
        for q, hits in zip(queries, batch, strict=True):
            one = store.search("c", "shared", q, 12, filter=FILTERS[fname],
                               payload_keys=["snr"])
            assert [h.id for h in hits] == [h.id for h in one] and hits
            assert all(set(h.payload) <= {"snr"} for h in hits)
    for a, b in zip(*(s.search_batch("c", "shared", queries, 12, filter=FILTERS[fname])
                      for s in pair), strict=True):
        assert_same_hits(a, b, k=12)
    assert edge.search_batch("c", "shared", [], 12) == []
    assert mem.search_batch("c", "shared", [], 12) == []


@pytest.mark.parametrize("fname", list(FILTERS))
def test_count(pair, fname):
    edge, mem = pair
    n = edge.count("c", FILTERS[fname])
    assert n == mem.count("c", FILTERS[fname])
    assert 0 < n <= N


def test_an_estimated_count_without_a_filter_is_the_exact_count(tmp_path):
    """The incremental scoring bounds staleness by an estimated size (count(exact=False)):
    without a filter it is the exact count, deleted and replaced points included, in
    indexed and appendable segments alike."""
    points = make_points(1200, seed=4)
    for s in (open_store(path=tmp_path / "s"), open_store(memory=True)):
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(indexing_threshold=300))
        s.upsert("c", points)
        s.optimize("c")
        s.delete("c", [p.id for p in points[:50]])
        s.upsert("c", [replace(p, payload={**p.payload, "snr": -1.0}) for p in points[100:130]])
        s.upsert("c", make_points(7, seed=5, start=5000))
        assert s.count("c", exact=False) == s.count("c") == 1157
        s.close()


@pytest.mark.parametrize("fname", ["none", "match", "range"])
def test_facet_counts_keyword_values(pair, fname):
    edge, mem = pair
    a = edge.facet("c", "obj_class", FILTERS[fname])
    assert a == mem.facet("c", "obj_class", FILTERS[fname])
    assert sum(a.values()) == edge.count("c", FILTERS[fname]) and len(a) > 0
    for value, n in a.items():
        assert n == edge.count("c", Filter(must=(*(FILTERS[fname] or Filter()).must,
                                                 Match("obj_class", value))))


@pytest.mark.parametrize("key", ["anomaly", "snr", "source_index"])
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("fname", ["none", "match", "must_not", "range"])
def test_order_by(pair, key, descending, fname):
    edge, mem = pair
    a = edge.order_by("c", key, 15, descending=descending, filter=FILTERS[fname])
    b = mem.order_by("c", key, 15, descending=descending, filter=FILTERS[fname])
    assert_same_hits(a, b, k=15, tol=0)
    values = [h.payload[key] for h in a]
    assert values == sorted(values, reverse=descending)
    assert [h.score for h in a] == pytest.approx(values)


def test_retrieve_with_vectors(pair):
    edge, mem = pair
    ids = [p.id for p in make_points(6, start=10)] + ["00000000-0000-0000-0000-0000ffffffff"]
    a, b = edge.retrieve("c", ids, with_vectors=True), mem.retrieve("c", ids, with_vectors=True)
    assert [h.id for h in a] == [h.id for h in b] == ids[:6]
    for ha, hb in zip(a, b, strict=True):
        assert ha.payload == hb.payload
        assert set(ha.vectors) == set(hb.vectors) == {"shared", ha.payload["survey"]}
        for name in ha.vectors:                # cosine: both store unit vectors
            np.testing.assert_allclose(ha.vectors[name], hb.vectors[name], atol=1e-6)
            assert np.linalg.norm(ha.vectors[name]) == pytest.approx(1.0, abs=1e-5)


def test_scroll(pair):
    edge, mem = pair
    for f in (None, FILTERS["match"], FILTERS["bool"]):
        a = [h.id for h in edge.scroll("c", filter=f, batch_size=700)]
        b = [h.id for h in mem.scroll("c", filter=f, batch_size=700)]
        assert sorted(a) == sorted(b) and len(set(a)) == len(a) == edge.count("c", f)


def test_delete_then_query(tmp_path):
    points = make_points(1500, seed=2)
    stores = (open_store(path=tmp_path / "s"), open_store(memory=True))
    gone = [p.id for p in points[::7]]
    q = np.random.default_rng(3).normal(size=DIMS["shared"])
    results = []
    for s in stores:
        s.create_collection("c", VECTORS, INDEXES)
        s.upsert("c", points)
        s.delete("c", gone)
        results.append((s.count("c"), s.search("c", "shared", q, 20), s.retrieve("c", gone[:3])))
        s.close()
    (na, ha, ra), (nb, hb, rb) = results
    assert na == nb == 1500 - len(gone)
    assert ra == rb == []
    assert_same_hits(ha, hb, k=20)
    assert not set(gone) & {h.id for h in ha}


def test_upsert_replaces(tmp_path):
    """Re-upserting an id replaces its vectors and payload (no duplicate)."""
    p = make_points(50, seed=4)
    newer = make_points(1, seed=5, start=0)[0]        # same id as p[0], other data
    for s in (open_store(path=tmp_path / "s"), open_store(memory=True)):
        s.create_collection("c", VECTORS, INDEXES)
        s.upsert("c", p)
        s.upsert("c", [newer])
        assert s.count("c") == 50
        got = s.retrieve("c", [newer.id], with_vectors=True)[0]
        assert got.payload == newer.payload
        v = newer.vectors["shared"] / np.linalg.norm(newer.vectors["shared"])
        np.testing.assert_allclose(got.vectors["shared"], v, atol=1e-6)
        s.close()


def test_alias_switch(tmp_path):
    """Queries through an alias follow it to the new collection; old data is not mixed in."""
    old, new = make_points(300, seed=6), make_points(200, seed=7, start=5000)
    q = np.random.default_rng(8).normal(size=DIMS["shared"])
    answers = []
    for s in (open_store(path=tmp_path / "s"), open_store(memory=True)):
        for name, pts in (("v1", old), ("v2", new)):
            s.create_collection(name, VECTORS, INDEXES)
            s.upsert(name, pts)
        s.set_alias("spectra", "v1")
        before = s.search("spectra", "shared", q, 5)
        assert s.resolve("spectra") == "v1" and s.count("spectra") == 300
        s.set_alias("spectra", "v2")
        after = s.search("spectra", "shared", q, 5)
        assert s.resolve("spectra") == "v2" and s.count("spectra") == 200
        assert {h.id for h in after} <= {p.id for p in new}
        s.delete_collection("v1")
        assert s.list_collections() == ["v2"] and s.resolve("v1") is None
        answers.append((before, after))
        s.close()
    for a, b in zip(*answers, strict=True):
        assert_same_hits(a, b, k=5)
