"""Qdrant Edge backend: named vectors, validation, persistence, published generations for
readers, HNSW after optimize()."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from engine.errors import StoreError
from engine.store import (CollectionOptions, Filter, Match, MatchAny, Point, Range, VectorSpec,
                          open_store)
from engine.store.generations import sparse_copy
from tests.engine.store.conftest import DIMS, INDEXES, VECTORS, make_points


@pytest.fixture
def writer(tmp_path):
    s = open_store(path=tmp_path / "s")
    s.create_collection("c", VECTORS, INDEXES)
    s.upsert("c", make_points(400, seed=11))
    yield s
    s.close()


def test_points_carry_only_some_named_vectors(writer):
    q = np.ones(DIMS["gaia_xp"])
    hits = writer.search("c", "gaia_xp", q, 50, with_vectors=True)
    assert len(hits) == 50 and {h.payload["survey"] for h in hits} == {"gaia_xp"}
    assert all(set(h.vectors) == {"shared", "gaia_xp"} for h in hits)
    assert writer.count("c", Filter(must=(Match("survey", "lamost"),))) == 200


def test_bool_match_works_despite_edge_binding_quirk(writer):
    """qdrant-edge 0.9 turns Python bools into ints (matching nothing); edge.py works
    around it. The expected counts come from the payloads themselves."""
    payloads = [h.payload for h in writer.scroll("c")]
    n_true = sum(p["has_label"] for p in payloads)
    assert 0 < n_true < len(payloads)
    assert writer.count("c", Filter(must=(Match("has_label", True),))) == n_true
    assert writer.count("c", Filter(must=(Match("has_label", False),))) == len(payloads) - n_true
    assert writer.count("c", Filter(must=(MatchAny("has_label", (True, False)),))) == 400


@pytest.mark.parametrize("bad", [
    Point("not-a-uuid", {"shared": np.ones(16)}, {}),
    Point("00000000-0000-0000-0000-00000000000A", {"shared": np.ones(16)}, {}),   # not canonical
    Point("00000000-0000-0000-0000-0000000f0000", {"shared": np.ones(15)}, {}),   # wrong dim
    Point("00000000-0000-0000-0000-0000000f0000", {"nope": np.ones(16)}, {}),     # unknown name
    Point("00000000-0000-0000-0000-0000000f0000", {}, {}),                       # no vector
])
def test_a_bad_point_refuses_the_whole_batch(writer, bad):
    good = make_points(10, seed=12, start=5000)
    with pytest.raises(StoreError):
        writer.upsert("c", good + [bad])
    assert writer.count("c") == 400          # nothing of the batch was written


def test_create_is_idempotent_but_refuses_another_spec(writer):
    writer.create_collection("c", VECTORS, INDEXES)               # same spec: no-op
    assert writer.count("c") == 400
    with pytest.raises(StoreError, match="another spec"):
        writer.create_collection("c", [VectorSpec("shared", 32)], INDEXES)
    with pytest.raises(StoreError):
        writer.create_collection("d", VECTORS, {"snr": "floaty"})
    with pytest.raises(StoreError, match="no collection"):
        writer.count("missing")


def test_an_older_collection_gets_the_payload_indexes_it_lacks(writer, tmp_path):
    """A store built before an index existed (here: the geo index of sky positions) is
    brought up to date by the indexer's create call; other differences are still refused."""
    from engine.store import GeoRadius

    pts = [Point(p.id, p.vectors, {**p.payload, "sky": {"lon": 10.0 + i * 1e-3, "lat": 5.0}})
           for i, p in enumerate(make_points(5, seed=13, start=9000))]
    writer.upsert("c", pts)
    writer.create_collection("c", VECTORS, {**INDEXES, "sky": "geo"})
    meta = json.loads((tmp_path / "s" / "collections" / "c" / "meta.json").read_text())
    assert meta["payload_indexes"]["sky"] == "geo"
    near = Filter(must=(GeoRadius("sky", 10.0, 5.0, 250.0),))   # 1e-3 deg ~ 111 m apart
    assert writer.count("c", near) == 3
    writer.flush()
    with open_store(path=tmp_path / "s", read_only=True) as reader:
        assert reader.count("c", near) == 3
    with pytest.raises(StoreError, match="another spec"):
        writer.create_collection("c", VECTORS, {**INDEXES, "sky": "keyword"})


def test_order_by_needs_a_range_index(writer):
    with pytest.raises(StoreError, match="order_by"):
        writer.order_by("c", "object_id", 5)


def test_store_persists_across_reopen(tmp_path):
    path = tmp_path / "s"
    q = np.random.default_rng(0).normal(size=16)
    with open_store(path=path) as s:
        s.create_collection("c", VECTORS, INDEXES)
        s.upsert("c", make_points(300, seed=13))
        s.set_alias("spectra", "c")
        before = s.search("spectra", "shared", q, 10)
    with open_store(path=path) as s:
        assert s.list_collections() == ["c"] and s.resolve("spectra") == "c"
        assert s.count("spectra") == 300
        assert s.search("spectra", "shared", q, 10) == before


def test_read_only_store_refuses_writes_and_missing_folders(writer, tmp_path):
    writer.flush()
    r = open_store(path=tmp_path / "s", read_only=True)
    for call in (lambda: r.upsert("c", make_points(1)), lambda: r.delete("c", []),
                 lambda: r.set_alias("a", "c"), lambda: r.optimize("c"),
                 lambda: r.create_collection("x", VECTORS, {})):
        with pytest.raises(StoreError, match="read-only"):
            call()
    r.close()
    with pytest.raises(StoreError, match="no embedded store"):
        open_store(path=tmp_path / "nothing", read_only=True)


def test_reader_sees_writes_only_once_published(writer, tmp_path):
    writer.flush()
    r = open_store(path=tmp_path / "s", read_only=True)
    assert r.count("c") == 400
    writer.upsert("c", make_points(50, seed=14, start=9000))
    writer.flush(publish=False)
    assert r.count("c") == 400                # durable but not yet published
    writer.publish()
    assert r.count("c") == 450
    assert r.info("c")["generation"] == 2     # first flush, then publish
    r.close()


def test_generation_held_by_a_reader_is_not_pruned(writer, tmp_path):
    writer.flush()
    pub = tmp_path / "s" / "published" / "c"
    r = open_store(path=tmp_path / "s", read_only=True)
    held = r.info("c")["generation"]
    for i in range(2):
        writer.upsert("c", make_points(5, seed=15 + i, start=7000 + 10 * i))
        writer.flush()
    names = {p.name for p in pub.iterdir() if p.is_dir()}
    assert f"{held:010d}" in names and len(names) == 2   # held + current, middle one pruned
    r.close()
    writer.upsert("c", make_points(5, seed=18, start=8000))
    writer.flush()
    assert len([p for p in pub.iterdir() if p.is_dir()]) == 1


def test_deleted_collection_fails_cleanly_for_readers(writer, tmp_path):
    writer.set_alias("spectra", "c")
    writer.flush()
    r = open_store(path=tmp_path / "s", read_only=True)
    assert r.count("spectra") == 400
    writer.delete_collection("c")
    assert writer.resolve("spectra") is None
    with pytest.raises(StoreError):
        r.count("c")
    r.close()


@pytest.mark.slow
@pytest.mark.parametrize("quantization", [None, "int8"])
def test_hnsw_after_optimize_keeps_recall(tmp_path, quantization):
    """Above indexing_threshold, optimize() builds HNSW; recall@10 against Edge's exact scan
    and against qdrant-client's brute force (:memory:) stays >= 0.99, filtered or not."""
    opts = CollectionOptions(indexing_threshold=500, quantization=quantization, search_ef=64)
    spec, indexes = [VectorSpec("shared", 16)], {"obj_class": "keyword", "snr": "float"}
    pts = [Point(p.id, {"shared": p.vectors["shared"]}, p.payload)
           for p in make_points(3000, seed=16)]
    mem = open_store(memory=True)
    mem.create_collection("c", spec, indexes, opts)
    mem.upsert("c", pts)
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", spec, indexes, opts)
        s.upsert("c", pts)
        assert s.info("c")["indexed_vectors"] == 0
        s.optimize("c")
        assert s.info("c")["indexed_vectors"] >= 3000
        rng = np.random.default_rng(17)
        flt = Filter(must=(Match("obj_class", "STAR"), Range("snr", 10, 70)))
        vs_exact, vs_memory = [], []
        for _ in range(40):
            q = rng.normal(size=16)
            for f in (None, flt):
                approx = {h.id for h in s.search("c", "shared", q, 10, filter=f)}
                exact = {h.id for h in s.search("c", "shared", q, 10, filter=f, exact=True)}
                brute = {h.id for h in mem.search("c", "shared", q, 10, filter=f)}
                vs_exact.append(len(approx & exact) / 10)
                vs_memory.append(len(approx & brute) / 10)
        assert np.mean(vs_exact) >= 0.99 and np.mean(vs_memory) >= 0.99
    mem.close()


def test_sparse_copy_keeps_content_and_holes(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(8 << 20)
        f.write(b"tail")
    sparse_copy(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_blocks <= os.stat(src).st_blocks + 16


def test_writer_killed_before_publishing_is_recovered_and_published(tmp_path):
    """Writes acknowledged by a writer that dies before flush() come back from the WAL and
    reach readers after the next writer's flush."""
    path = tmp_path / "s"
    with open_store(path=path) as s:
        s.create_collection("c", VECTORS, INDEXES)
        s.upsert("c", make_points(100, seed=30))
    script = ("import os, sys; from engine.store import open_store; "
              "from tests.engine.store.conftest import make_points; "
              "s = open_store(path=sys.argv[1]); s.upsert('c', make_points(50, seed=31, "
              "start=1000)); os._exit(0)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=root, check=True, timeout=60)
    r = open_store(path=path, read_only=True)
    assert r.count("c") == 100                      # never published by the dead writer
    with open_store(path=path) as s:
        assert s.count("c") == 150                  # the WAL replayed them
    assert r.count("c") == 150                      # and the new writer published them
    r.close()


def test_collection_options_reach_the_edge_config(tmp_path):
    """What Edge can honour is persisted in the shard's config."""
    import json
    opts = CollectionOptions(hnsw_m=32, hnsw_ef_construct=200, quantization="int8",
                             on_disk=True, indexing_threshold=20_000)
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, opts)
    cfg = json.loads((tmp_path / "s/collections/c/shard/edge_config.json").read_text())
    text = json.dumps(cfg).lower()
    assert cfg["hnsw_config"]["m"] == 32 and cfg["hnsw_config"]["ef_construct"] == 200
    assert "int8" in text
    assert all(v.get("on_disk") for v in cfg["vectors"].values())
    assert cfg["optimizers"]["indexing_threshold"] == 1250     # KB: 20k x 16 dims x 4 B


def test_segments_are_capped_during_a_bulk_load(tmp_path):
    """Edge never splits a segment, so a bulk load without optimize() calls ends in one
    segment of every point; with max_segment_points the store optimizes as it goes. With
    the cap at 500 points, 3,000 points written in batches of 100 and one final optimize
    make at least 6 segments (without the cap: 1 or 2), and searches still find each point."""
    opts = CollectionOptions(indexing_threshold=300, max_segment_points=500)
    with open_store(path=tmp_path / "capped") as s:
        s.create_collection("c", VECTORS, INDEXES, opts)
        pts = make_points(3000, seed=21)
        for lo in range(0, 3000, 100):
            s.upsert("c", pts[lo:lo + 100])
        s.optimize("c")
        info = s.info("c")
        assert info["points"] == 3000 and info["segments"] >= 6, info
        assert info["indexed_vectors"] > 0
        for p in pts[::500]:
            top = s.search("c", "shared", p.vectors["shared"], 1, exact=True)
            assert top[0].id == p.id
    cfg = json.loads((tmp_path / "capped/collections/c/shard/edge_config.json").read_text())
    assert cfg["optimizers"]["max_segment_size"] == 32        # KB: 500 x 16 dims x 4 B
    with open_store(path=tmp_path / "uncapped") as s:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(indexing_threshold=300))
        for lo in range(0, 3000, 100):
            s.upsert("c", pts[lo:lo + 100])
        s.optimize("c")
        assert s.info("c")["segments"] <= 2


def test_a_bulk_load_leaves_no_rewritten_segment_behind(tmp_path):
    """Edge removes the segments optimize() rewrote only at a flush; the store flushes after
    each optimize the segment cap triggers, so a bulk load crossing the cap several times
    holds on disk what a flush would leave (before: 13 segment folders where a flush leaves
    7)."""
    opts = CollectionOptions(indexing_threshold=300, max_segment_points=500)
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, opts)
        pts = make_points(3000, seed=22)
        for lo in range(0, 3000, 500):
            s.upsert("c", pts[lo:lo + 500])              # each batch reaches the cap
        segments = tmp_path / "s" / "collections" / "c" / "shard" / "segments"
        during = sorted(p.name for p in segments.iterdir())
        s.flush(publish=False)
        assert during == sorted(p.name for p in segments.iterdir())
        assert len(during) <= s.info("c")["segments"] + 1   # the flush may add an empty one
        assert s.count("c") == 3000


def test_a_segment_cap_below_the_indexing_threshold_is_refused(tmp_path):
    with open_store(path=tmp_path / "s") as s:
        with pytest.raises(StoreError, match="max_segment_points"):
            s.create_collection("c", VECTORS, INDEXES, CollectionOptions(
                indexing_threshold=1000, max_segment_points=999))


def test_a_collection_made_before_segment_caps_is_kept_not_refused(writer, tmp_path):
    """Its meta lacks max_segment_points: asking for a cap now keeps it uncapped (its Edge
    config has none) instead of refusing it as another spec; other options still count."""
    meta_path = tmp_path / "s" / "collections" / "c" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["options"]["max_segment_points"]
    meta_path.write_text(json.dumps(meta))
    writer.close()
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(max_segment_points=50_000))
        assert "max_segment_points" not in json.loads(meta_path.read_text())["options"]
        s.upsert("c", make_points(10, seed=3, start=5000))     # no cap: no optimize
        assert s.count("c") == 410
        with pytest.raises(StoreError, match="another spec"):
            s.create_collection("c", VECTORS, INDEXES, CollectionOptions(hnsw_m=8))
    with open_store(path=tmp_path / "t") as s:      # a collection with the key is compared
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(max_segment_points=50_000))
        with pytest.raises(StoreError, match="another spec"):
            s.create_collection("c", VECTORS, INDEXES, CollectionOptions())


@pytest.mark.parametrize("payload_hnsw", [True, False])
def test_payload_hnsw_option_reaches_the_payload_indexes(tmp_path, payload_hnsw):
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(payload_hnsw=payload_hnsw))
        s.upsert("c", make_points(20, seed=40))
        schema = s._coll("c").shard.info().payload_schema
        flags = {getattr(v.params, "enable_hnsw", None) for v in schema.values()}
        assert set(schema) == set(INDEXES)
        assert flags == ({None} if payload_hnsw else {False})
        # the indexes still filter and order either way
        assert s.count("c", Filter(must=(Range("source_index", 2, 5),))) == 4
        assert s.order_by("c", "source_index", 1)[0].score == 19


def _option_beside_default(tmp_path, options, seed):
    """Collection "c" with `options` and "ref" with the defaults, holding the same points.
    Returns the Edge configs of c's working shard and of the generation readers load, and
    both collections' answers to one query, asked by a reader."""
    pts = make_points(200, seed=seed)
    q = np.random.default_rng(seed + 1).normal(size=16)
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, options)
        s.create_collection("ref", VECTORS, INDEXES)
        for name in ("c", "ref"):
            s.upsert(name, pts)
    r = open_store(path=tmp_path / "s", read_only=True)
    pub = tmp_path / "s" / "published" / "c" / f"{r.info('c')['generation']:010d}"
    configs = [json.loads((shard / "edge_config.json").read_text())
               for shard in (tmp_path / "s" / "collections" / "c" / "shard", pub / "shard")]
    a, b = r.search("c", "shared", q, 10), r.search("ref", "shared", q, 10)
    r.close()
    assert [(h.id, h.payload) for h in a] == [(h.id, h.payload) for h in b]
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
    return configs


def test_search_threads_option_is_persisted_for_readers_and_keeps_answers(tmp_path):
    """search_threads reaches Edge's config of the working shard and of the published
    generation readers load; the answers are those of a default collection."""
    with open_store(path=tmp_path / "bad") as s:
        with pytest.raises(StoreError, match="search_threads"):
            s.create_collection("bad", VECTORS, INDEXES, CollectionOptions(search_threads=0))
    configs = _option_beside_default(tmp_path, CollectionOptions(search_threads=1), seed=50)
    assert [c["max_search_threads"] for c in configs] == [1, 1]


@pytest.mark.parametrize("on_disk, memory", [(False, "cached"), (True, "cold")])
def test_payload_placement_is_persisted_for_readers_and_keeps_answers(tmp_path, on_disk,
                                                                      memory):
    """Payloads are held in RAM by default (Edge Memory.Cached): the published generation
    that readers load says so too, and the answers do not depend on where payloads live."""
    configs = _option_beside_default(tmp_path, CollectionOptions(payload_on_disk=on_disk),
                                     seed=60)
    assert [c["payload_memory"] for c in configs] == [memory, memory]


def test_a_collection_built_with_payloads_on_disk_by_an_older_version_is_reported(tmp_path,
                                                                                 caplog):
    """Before payloads were held in RAM by default, collections kept them on disk and their
    meta.json had no payload_on_disk key: opening one says how to get the fast default."""
    with open_store(path=tmp_path / "s") as s:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions(payload_on_disk=True))
        s.upsert("c", make_points(20, seed=70))
    meta_path = tmp_path / "s" / "collections" / "c" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["options"]["payload_on_disk"]          # what an older version wrote
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="engine.store.edge"):
        with open_store(path=tmp_path / "s") as s:
            assert s.count("c") == 20
    assert "keeps its payloads on disk" in caplog.text
    caplog.clear()
    with open_store(path=tmp_path / "t") as s:       # a new default collection: no warning
        s.create_collection("c", VECTORS, INDEXES)
        s.upsert("c", make_points(20, seed=71))
    with caplog.at_level("WARNING", logger="engine.store.edge"):
        with open_store(path=tmp_path / "t") as s:
            assert s.count("c") == 20
    assert "keeps its payloads on disk" not in caplog.text
