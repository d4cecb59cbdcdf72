"""The sync contract: stable ids, skip unchanged, update changed, delete gone, refuse bad
files without stopping, versioned collections behind an alias."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine import payload as P
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


class CountingStore:
    """Wraps a real store and counts the writes that reach it."""

    def __init__(self, store):
        self._store = store
        self.writes = 0

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name in ("upsert", "delete", "delete_collection", "set_alias", "create_collection"):
            def counted(*a, **k):
                # create_collection of an existing collection only checks its spec
                if name != "create_collection" or a[0] not in self._store.list_collections():
                    self.writes += 1
                return attr(*a, **k)
            return counted
        return attr


def make_syncer(store, tmp_path, embedder=None):
    return Syncer(store=store, embedder=embedder or ProjectionEmbedder(),
                  state_path=str(tmp_path / "state.json"), batch_size=5)


def test_first_run_adds_second_run_skips_and_writes_nothing(tmp_path, lamost_folder):
    store = open_store(path=str(tmp_path / "store"))
    sources = parse_sources([str(lamost_folder)])
    first = make_syncer(store, tmp_path).run(sources)
    assert (first.added, first.updated, first.skipped, first.deleted) == (12, 0, 0, 0)
    counting = CountingStore(store)
    second = make_syncer(counting, tmp_path).run(sources)
    assert (second.added, second.updated, second.skipped, second.deleted) == (0, 0, 12, 0)
    assert counting.writes == 0
    assert store.count("spectra") == 12
    store.close()


def test_changed_added_and_deleted_files(tmp_path, lamost_folder):
    store = open_store(path=str(tmp_path / "store"))
    sources = parse_sources([str(lamost_folder)])
    make_syncer(store, tmp_path).run(sources)
    write_lamost_file(str(lamost_folder / "spec-1003.fits"), 1003, teff=7000, seed=99)  # changed
    os.remove(lamost_folder / "spec-1005.fits")                                         # gone
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, seed=5)               # new
    report = make_syncer(store, tmp_path).run(sources)
    assert (report.added, report.updated, report.deleted, report.skipped) == (1, 1, 1, 10)
    ids = {h.payload[P.OBJECT_ID] for h in store.scroll("spectra")}
    assert "1005" not in ids and "2000" in ids and len(ids) == 12
    store.close()


def test_bad_file_is_refused_and_batch_goes_on(tmp_path, lamost_folder):
    bad = lamost_folder / "spec-broken.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    store = open_store(path=str(tmp_path / "store"))
    report = make_syncer(store, tmp_path).run(parse_sources([str(lamost_folder)]))
    assert report.added == 12
    assert [r["path"] for r in report.refused] == [str(bad)]
    assert report.refused[0]["reason"]
    store.close()


def test_anomaly_scores_are_stored(tmp_path, lamost_folder):
    store = open_store(path=str(tmp_path / "store"))
    make_syncer(store, tmp_path).run(parse_sources([str(lamost_folder)]))
    hits = list(store.scroll("spectra"))
    for h in hits:
        # Fisher's -sum(log(1 - p)) over three percentiles: >= 0, larger = odder
        assert 0 < h.payload[P.ANOMALY] < 3 * np.log(2 * len(hits)) + 1e-9
        assert h.payload[P.ANOMALY_KNN] >= 0
        assert P.ANOMALY_RECON in h.payload and P.SCORES_PENDING not in h.payload
    store.close()


def test_new_model_version_builds_new_collection_then_switches_alias(tmp_path, lamost_folder):
    store = open_store(path=str(tmp_path / "store"))
    sources = parse_sources([str(lamost_folder)])
    make_syncer(store, tmp_path).run(sources)
    old = store.resolve("spectra")
    report = make_syncer(store, tmp_path, ProjectionEmbedder("test-projection-2")).run(sources)
    assert report.added == 12
    new = store.resolve("spectra")
    assert new != old and new.endswith("test-projection-2")
    assert old not in store.list_collections()
    assert {h.payload[P.MODEL_VERSION] for h in store.scroll("spectra")} == {"test-projection-2"}
    store.close()


def test_resync_without_sources_uses_registered_ones_and_deletes_gone_source(tmp_path,
                                                                              lamost_folder):
    store = open_store(path=str(tmp_path / "store"))
    make_syncer(store, tmp_path).run(parse_sources([str(lamost_folder)]))
    for f in lamost_folder.iterdir():
        f.unlink()
    lamost_folder.rmdir()
    report = make_syncer(store, tmp_path).run([])
    assert report.deleted == 12
    assert store.count("spectra") == 0
    store.close()


@pytest.mark.parametrize("n_cycles", [2])
def test_watch_picks_up_new_files(tmp_path, lamost_folder, n_cycles):
    from indexer.watch import watch

    store = open_store(path=str(tmp_path / "store"))
    syncer = make_syncer(store, tmp_path)
    reports = []

    def arrive(_seconds):  # a new file lands between cycles
        write_lamost_file(str(lamost_folder / "spec-3000.fits"), 3000, seed=3)

    cycles = watch(syncer, parse_sources([str(lamost_folder)]), interval_s=0,
                   max_cycles=n_cycles, on_report=reports.append, sleep=arrive)
    assert cycles == 2
    assert reports[0].added == 12 and reports[1].added == 1 and reports[1].skipped == 12
    store.close()


def test_a_spectrum_the_model_refuses_does_not_make_later_runs_write(tmp_path, lamost_folder):
    import numpy as np

    from tests.indexer.doubles import ProjectionEmbedder as Base

    class RefusesOne(Base):
        def embed(self, records):
            batch = super().embed(records)
            batch.valid = np.array([r.object_id != "1004" for r in records])
            return batch

    store = open_store(path=str(tmp_path / "store"))
    sources = parse_sources([str(lamost_folder)])
    first = make_syncer(store, tmp_path, RefusesOne()).run(sources)
    assert first.added == 11 and [r["reason"] for r in first.refused if "1004" in r["reason"]]
    counting = CountingStore(store)
    second = make_syncer(counting, tmp_path, RefusesOne()).run(sources)
    assert second.skipped == 11 and not second.scored and counting.writes == 0
    assert len(second.refused) == 1          # still reported, every run
    store.close()


def test_prefetch_keeps_order_reraises_and_frees_its_thread_when_abandoned():
    import threading
    import time

    from indexer.sources import prefetch

    assert list(prefetch(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]

    gen = prefetch(iter(range(1000)), depth=1)
    next(gen)
    gen.close()                       # the consumer stops early
    deadline = time.time() + 5
    while any(t.name == "specclip-prefetch" for t in threading.enumerate()):
        assert time.time() < deadline, "prefetch thread left blocked"
        time.sleep(0.05)


def _filter_keys(f) -> set[str]:
    if f is None:
        return set()
    if hasattr(f, "key"):
        return {f.key}
    return set().union(*(_filter_keys(c) for part in ("must", "should", "must_not")
                         for c in (getattr(f, part, None) or ())))


class FilterSpy(CountingStore):
    """Records every payload key a store call filters on."""

    def __init__(self, store):
        super().__init__(store)
        self.keys: set[str] = set()

    def __getattr__(self, name):
        attr = super().__getattr__(name)
        if not callable(attr):
            return attr

        def spied(*a, **k):
            for x in (*a, *k.values()):
                if type(x).__name__ == "Filter":
                    self.keys |= _filter_keys(x)
            return attr(*a, **k)
        return spied


def test_every_key_a_sync_filters_on_has_a_payload_index(tmp_path, lamost_folder,
                                                         monkeypatch):
    """A filter on a key without a payload index is a scan of every payload: looking up who
    still names a rewritten point's archive file (spectrum_file) took 4-5 s at 1M points."""
    from indexer import scoring

    monkeypatch.setattr(scoring, "STALE_FRACTION", 10.0)   # a big store: scored incrementally
    store = open_store(path=str(tmp_path / "store"))
    spy = FilterSpy(store)
    sources = parse_sources([str(lamost_folder)])
    make_syncer(spy, tmp_path).run(sources)
    write_lamost_file(str(lamost_folder / "spec-1003.fits"), 1003, teff=7000, seed=99)
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, seed=5)
    report = make_syncer(spy, tmp_path).run(sources)
    assert (report.added, report.updated, report.scoring["mode"]) == (1, 1, "incremental")
    os.remove(lamost_folder / "spec-1005.fits")
    assert make_syncer(spy, tmp_path).run(sources).deleted == 1
    assert {P.SPECTRUM_FILE, P.SOURCE_ROOT, P.SCORES_PENDING} <= spy.keys, spy.keys
    assert spy.keys <= set(P.PAYLOAD_INDEXES), spy.keys - set(P.PAYLOAD_INDEXES)
    store.close()


def test_scores_written_by_another_scoring_version_get_a_full_pass_once(tmp_path,
                                                                         lamost_folder,
                                                                         monkeypatch):
    import indexer.sync as sync_mod
    from indexer.state import SyncState

    store = open_store(path=str(tmp_path / "store"))
    sources = parse_sources([str(lamost_folder)])
    state_path = str(tmp_path / "state.json")
    first = make_syncer(store, tmp_path).run(sources)
    target = first.collection
    assert SyncState.load(state_path).scoring_version == {target: sync_mod.SCORING_VERSION}
    # an unchanged re-sync with the same scoring scores nothing
    assert make_syncer(store, tmp_path).run(sources).scoring["mode"] == "none"
    # a state written before versions were recorded is taken as current: no pass either
    old = SyncState.load(state_path)
    old.scoring_version = {}
    old.save(state_path)
    assert make_syncer(store, tmp_path).run(sources).scoring["mode"] == "none"
    assert SyncState.load(state_path).scoring_version == {target: sync_mod.SCORING_VERSION}
    # the scoring code moves on: the next sync, though nothing changed, rescores everything
    monkeypatch.setattr(sync_mod, "SCORING_VERSION", sync_mod.SCORING_VERSION + 1)
    bumped = make_syncer(store, tmp_path).run(sources)
    assert bumped.scoring["mode"] == "full" and bumped.scoring["scored"] == 12
    assert SyncState.load(state_path).scoring_version == {target: sync_mod.SCORING_VERSION}
    assert make_syncer(store, tmp_path).run(sources).scoring["mode"] == "none"
    store.close()
