"""The deferred-refresh sidecar seen from both sides (engine/stale_scores.py): what the indexer
writes, and the `scores_stale` flag a reader adds on every query path, picked up as soon as
the sidecar changes, never stored; a server store is not wrapped."""

from __future__ import annotations

import numpy as np

from engine import payload as P
from engine.hit_table import hits_table
from engine.query_types import SearchHit
from engine.stale_scores import DeferredScores, FlaggedStore, flagged, sidecar_path
from engine.store import CollectionOptions, open_store
from tests.engine.store.conftest import INDEXES, VECTORS, make_points


def _store(tmp_path, n=60):
    store = open_store(path=tmp_path / "store")
    store.create_collection("c_v1", VECTORS, INDEXES, CollectionOptions())
    store.set_alias("c", "c_v1")
    points = make_points(n, seed=3)
    store.upsert("c_v1", points)
    store.flush()
    return store, points


def test_readers_flag_exactly_the_deferred_ids_on_every_query_path(tmp_path):
    store, points = _store(tmp_path)
    reader = flagged(open_store(path=tmp_path / "store", read_only=True))
    assert isinstance(reader, FlaggedStore)
    ids = [p.id for p in points]
    assert not any(P.SCORES_STALE in h.payload for h in reader.scroll("c"))
    deferred = DeferredScores(sidecar_path(store, "c_v1"))
    deferred.add({ids[0]: {P.KNN_DISTANCE: 0.1}, ids[5]: {P.ANOMALY: 2.0}})
    deferred.save()
    stale = {ids[0], ids[5]}
    # every path, through the alias: the new sidecar is read at once (its stamp changed)
    assert {h.id for h in reader.scroll("c") if h.payload.get(P.SCORES_STALE)} == stale
    assert [h.payload.get(P.SCORES_STALE) for h in reader.retrieve("c", ids[:2])] == [True, None]
    q = points[0].vectors["shared"]
    top = reader.search("c", "shared", q, 60)
    assert {h.id for h in top if h.payload.get(P.SCORES_STALE)} == stale
    [batch] = reader.search_batch("c", "shared", [q], 60)
    assert [h.payload.get(P.SCORES_STALE) for h in batch] == \
        [h.payload.get(P.SCORES_STALE) for h in top]
    ordered = reader.order_by("c", "anomaly", 60)
    assert {h.id for h in ordered if h.payload.get(P.SCORES_STALE)} == stale
    # the store itself never holds the flag
    assert not any(P.SCORES_STALE in h.payload for h in store.scroll("c_v1"))
    # the CLI's table shows it, and only when some hit has it
    shown = [SearchHit.from_hit(h) for h in top[:3]]
    assert ("stale" in hits_table(shown)) == any(h.payload.get(P.SCORES_STALE) for h in shown)
    deferred.clear()
    assert not sidecar_path(store, "c_v1").exists()
    assert not any(h.payload.get(P.SCORES_STALE) for h in reader.scroll("c"))
    reader.close()
    store.close()


def test_deferred_entries_merge_and_drop(tmp_path):
    path = tmp_path / "d" / "x.json"
    d = DeferredScores(path)
    d.add({"a": {P.KNN_DISTANCE: 0.2}})
    d.add({"a": {P.ANOMALY: 1.5}, "b": {P.KNN_DISTANCE: float("nan")}})
    d.save()
    again = DeferredScores(path)
    assert again.entries["a"] == {P.KNN_DISTANCE: 0.2, P.ANOMALY: 1.5}
    assert np.isnan(again.entries["b"][P.KNN_DISTANCE])    # written as a missing score later
    again.drop(["a", "b"])
    again.save()
    assert not path.exists()


def test_a_server_store_is_not_wrapped():
    store = open_store(memory=True)
    assert flagged(store) is store and sidecar_path(store, "c") is None
    store.close()
