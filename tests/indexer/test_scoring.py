"""Incremental scoring (indexer/scoring.py, indexer/incremental.py): a sync scores only what
it added plus the points whose neighbourhood that entered, with the same neighbour distances a
full pass gives; on an embedded store the latter wait in the deferred-refresh sidecar, flagged
to readers, until their number passes the bound (then written in one batch) or a full pass;
on a server they are written at once; the staleness bound and deletions trigger the full
pass; `specclip rescore` refreshes; an unreadable counterpart is a named, logged case,
anything else fails loudly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import payload as P
from engine.query import Engine
from engine.stale_scores import DEFERRED_DIR
from engine.store import open_store
from indexer import incremental, scoring
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file, write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder


def _sync(store, embedder, tmp_path, folder):
    return Syncer(store=store, embedder=embedder, state_path=str(tmp_path / "state.json"),
                  read_workers=0).run(parse_sources([str(folder)]))


def _payloads(store):
    return {h.id: h.payload for h in store.scroll("spectra")}


def _deferred(tmp_path) -> dict:
    """The store's deferred refreshes (engine/stale_scores.py): point id -> new values."""
    files = sorted((tmp_path / "store" / DEFERRED_DIR).glob("*.json"))
    return json.loads(files[0].read_text()) if files else {}


def _store_with_deferred_refreshes(tmp_path, folder, embedder, monkeypatch):
    """An embedded store of `folder`, then one added spectrum whose refreshes of existing
    points wait in the sidecar (both bounds lifted)."""
    monkeypatch.setattr(scoring, "STALE_FRACTION", 100.0)
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 100.0)
    store = open_store(path=str(tmp_path / "store"))
    _sync(store, embedder, tmp_path, folder)
    write_lamost_file(str(folder / "spec-2000.fits"), 2000, teff=5230.0, seed=99)
    _sync(store, embedder, tmp_path, folder)
    return store


def _knn_after_full_pass(store) -> dict:
    scoring.score_collection(store, "spectra", ProjectionEmbedder())
    return {i: p[P.KNN_DISTANCE] for i, p in _payloads(store).items()}


def _anomaly_knn_off_a_full_pass(store, tolerance: float) -> list[str]:
    """The points whose stored anomaly_knn a full pass (run here) changes by more than
    `tolerance`."""
    stored = _payloads(store)
    _knn_after_full_pass(store)
    full = _payloads(store)
    return [i for i in full
            if abs(full[i][P.ANOMALY_KNN] - stored[i][P.ANOMALY_KNN]) > tolerance]


def test_adding_a_file_scores_it_incrementally_like_a_full_pass(tmp_path, lamost_folder,
                                                                 embedder, monkeypatch):
    # 12 points: 5 % staleness is less than one point, and 1 % deferred too; lift both
    # bounds so the incremental path runs here and keeps its refreshes deferred
    monkeypatch.setattr(scoring, "STALE_FRACTION", 100.0)
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 100.0)
    store = open_store(path=str(tmp_path / "store"))
    first = _sync(store, embedder, tmp_path, lamost_folder)
    assert first.scoring["mode"] == "full" and first.scoring["scored"] == 12
    before = _payloads(store)
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, teff=5230.0, seed=99)
    second = _sync(store, embedder, tmp_path, lamost_folder)
    assert second.added == 1 and second.scoring["mode"] == "incremental"
    assert second.scoring["scored"] == 1
    after, deferred = _payloads(store), _deferred(tmp_path)
    assert not any(p.get(P.SCORES_PENDING) for p in after.values())
    assert all(P.ANOMALY in p for p in after.values())
    # the existing points whose neighbourhood the new spectrum entered were not rewritten:
    # their new values wait in the sidecar; the points around them wait there flagged, with
    # no value yet (their anomaly_knn is redone at the batch write)
    valued = {i for i, e in deferred.items() if e}
    assert valued and len(valued) == second.scoring["neighbours_updated"]
    assert len(deferred) == second.scoring["deferred"] \
        == len(valued) + second.scoring["second_order_flagged"]
    assert all(after[i] == before[i] for i in deferred)
    # readers flag exactly those hits (fresh or flagged), on every query path
    eng = Engine.open(store_path=str(tmp_path / "store"))
    assert {h.id for h in eng.store.scroll("spectra")
            if h.payload.get(P.SCORES_STALE)} == set(deferred)
    assert all(P.SCORES_STALE not in p for p in after.values())      # never stored
    some = next(iter(deferred))
    assert eng.store.retrieve("spectra", [some])[0].payload[P.SCORES_STALE] is True
    eng.close()
    # the neighbour distances written or deferred are those a full pass computes
    incremental_knn = {i: deferred.get(i, {}).get(P.KNN_DISTANCE, p[P.KNN_DISTANCE])
                       for i, p in after.items()}
    full = _knn_after_full_pass(store)
    changed = [i for i in full if abs(full[i] - incremental_knn[i]) > 1e-5]
    assert changed == [], "a point whose neighbourhood the new spectrum entered kept its old " \
                          f"distance: {changed}"
    store.close()


def test_deferred_refreshes_are_written_in_one_batch_past_the_bound(tmp_path, lamost_folder,
                                                                     embedder, monkeypatch):
    store = _store_with_deferred_refreshes(tmp_path, lamost_folder, embedder, monkeypatch)
    waiting = _deferred(tmp_path)
    assert waiting
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 0.0)
    write_lamost_file(str(lamost_folder / "spec-2001.fits"), 2001, teff=5100.0, seed=7)
    third = _sync(store, embedder, tmp_path, lamost_folder)
    assert third.scoring["deferred_written"] >= len(waiting) and third.scoring["deferred"] == 0
    assert _deferred(tmp_path) == {}                       # dropped once published
    stored = {i: p[P.KNN_DISTANCE] for i, p in _payloads(store).items()}
    full = _knn_after_full_pass(store)
    assert all(abs(full[i] - stored[i]) <= 1e-5 for i in full)
    store.close()


def test_on_a_server_refreshes_are_written_at_once(tmp_path, lamost_folder, embedder,
                                                   monkeypatch):
    """No publication step, so nothing is deferred: the payloads are fresh."""
    monkeypatch.setattr(scoring, "STALE_FRACTION", 100.0)
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 100.0)
    store = open_store(memory=True)
    _sync(store, embedder, tmp_path, lamost_folder)
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, teff=5230.0, seed=99)
    second = _sync(store, embedder, tmp_path, lamost_folder)
    assert second.scoring["neighbours_updated"] > 0 and second.scoring["deferred"] == 0
    stored = _payloads(store)
    full = _knn_after_full_pass(store)
    assert all(abs(full[i] - stored[i][P.KNN_DISTANCE]) <= 1e-5 for i in full)
    store.close()


@pytest.fixture
def wide_folder(tmp_path):
    """40 spectra: enough that the points around a redone one are not all redone too."""
    return write_lamost_folder(tmp_path / "wide", 40, 3000, 4000.0, 60.0)


def test_points_around_redone_ones_are_flagged_then_recomputed(tmp_path, wide_folder,
                                                               embedder, monkeypatch):
    """Embedded store: they join the sidecar with no value (flagged to readers), are never
    counted as stale, and the batch write recomputes their anomaly_knn as a full pass
    would."""
    monkeypatch.setattr(scoring, "STALE_FRACTION", 0.0)     # any stale count: full pass
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 100.0)
    store = open_store(path=str(tmp_path / "store"))
    _sync(store, embedder, tmp_path, wide_folder)
    write_lamost_file(str(wide_folder / "spec-2000.fits"), 2000, teff=5230.0, seed=99)
    second = _sync(store, embedder, tmp_path, wide_folder).scoring
    assert second["mode"] == "incremental" and second["stale"] == 0
    assert second["second_order_flagged"] > 0
    assert sum(1 for e in _deferred(tmp_path).values() if not e) \
        == second["second_order_flagged"]
    monkeypatch.setattr(incremental, "DEFER_FRACTION", 0.0)
    write_lamost_file(str(wide_folder / "spec-2001.fits"), 2001, teff=4400.0, seed=98)
    third = _sync(store, embedder, tmp_path, wide_folder).scoring
    assert third["mode"] == "incremental" and third["deferred_written"] > 0
    assert _deferred(tmp_path) == {}
    off = _anomaly_knn_off_a_full_pass(store, tolerance=1e-4)
    assert off == [], f"{len(off)} anomaly_knn differ from a full pass after the batch write"
    store.close()


def test_on_a_server_points_around_redone_ones_are_recomputed_at_once(
        tmp_path, wide_folder, embedder, monkeypatch):
    """No sidecar on a server: the points around redone ones are rewritten by the same
    sync, with a full pass's anomaly_knn, so they never count as stale nor force the full
    pass."""
    monkeypatch.setattr(scoring, "STALE_FRACTION", 0.0)     # any stale count: full pass
    store = open_store(memory=True)
    _sync(store, embedder, tmp_path, wide_folder)
    for obsid, teff, seed in ((2000, 5230.0, 99), (2001, 4400.0, 98)):
        write_lamost_file(str(wide_folder / f"spec-{obsid}.fits"), obsid, teff=teff,
                          seed=seed)
        report = _sync(store, embedder, tmp_path, wide_folder).scoring
        assert report["mode"] == "incremental" and report["stale"] == 0
        assert report["second_order_redone"] > 0 and report["deferred"] == 0
    # the store's float32 cosines against the full pass's float64: ~1e-4 relative
    off = _anomaly_knn_off_a_full_pass(store, tolerance=1e-3)
    assert off == [], f"{len(off)} anomaly_knn differ from a full pass"
    store.close()


def test_stale_bound_and_deletions_force_the_full_pass(tmp_path, lamost_folder, embedder,
                                                        monkeypatch):
    store = open_store(path=str(tmp_path / "store"))
    _sync(store, embedder, tmp_path, lamost_folder)
    monkeypatch.setattr(scoring, "STALE_FRACTION", 0.0)
    write_lamost_file(str(lamost_folder / "spec-2001.fits"), 2001, teff=5100.0, seed=5)
    report = _sync(store, embedder, tmp_path, lamost_folder)
    # on an embedded store the points around the redone ones are flagged and recomputed by
    # the batch write (1 % of 13 points: this very sync), never counted as stale
    assert report.scoring["mode"] == "incremental" and report.scoring["stale"] == 0
    assert report.scoring["deferred_written"] > 0 and report.scoring["deferred"] == 0
    monkeypatch.setattr(scoring, "STALE_FRACTION", 0.05)
    (lamost_folder / "spec-2001.fits").unlink()
    report = _sync(store, embedder, tmp_path, lamost_folder)
    assert report.deleted == 1 and report.scoring["mode"] == "full"
    unchanged = _sync(store, embedder, tmp_path, lamost_folder)
    assert unchanged.scoring["mode"] == "none" and not unchanged.scored
    store.close()


def test_rescore_command_refreshes_every_point(tmp_path, lamost_folder, embedder, capsys,
                                               monkeypatch):
    from indexer import cli

    store = _store_with_deferred_refreshes(tmp_path, lamost_folder, embedder, monkeypatch)
    assert _deferred(tmp_path)
    store.close()
    monkeypatch.setattr(cli, "Embedder", lambda bundle: embedder)
    monkeypatch.setattr(cli, "load_bundle", lambda path: None)
    args = type("A", (), {"store": str(tmp_path / "store"), "url": None, "bundle": None,
                          "alias": "spectra", "state": str(tmp_path / "state.json")})
    assert cli.run_rescore(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "full" and out["scored"] == 13
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["scores_stale"][out["collection"]] == 0 and state["scores_fresh"][
        out["collection"]]
    assert state["scoring_version"][out["collection"]] == scoring.SCORING_VERSION
    assert _deferred(tmp_path) == {}            # every point written: nothing flagged


def test_an_unreadable_counterpart_is_skipped_but_other_errors_fail_loudly(tmp_path,
                                                                           lamost_folder,
                                                                           embedder, caplog):
    store = open_store(path=str(tmp_path / "store"))
    crossmatch = {"1000": 42}
    syncer = Syncer(store=store, embedder=embedder, state_path=str(tmp_path / "s.json"),
                    read_workers=0, crossmatch=crossmatch)
    syncer.run(parse_sources([str(lamost_folder)]))
    lam = next(h for h in store.scroll("spectra") if h.payload[P.OBJECT_ID] == "1000")
    # an XP point for the same star whose source file is gone
    xp_payload = {**lam.payload, P.SURVEY: "gaia_xp", P.OBJECT_ID: "42",
                  P.SOURCE_PATH: str(tmp_path / "moved.csv")}
    from engine.store.types import Point
    store.upsert("spectra", [Point("00000000-0000-0000-0000-000000000042",
                                   {P.VECTOR_SHARED: lam.vectors[P.VECTOR_SHARED]
                                    if lam.vectors else np.ones(16, np.float32)},
                                   xp_payload)])
    hits = list(store.scroll("spectra", with_vectors=True))
    assert scoring.translation_scores(store, "spectra", hits, embedder) == {}
    assert "no translation score for Gaia 42" in caplog.text

    class Broken(type(embedder)):
        def embed(self, records):
            raise RuntimeError("model exploded")

    (tmp_path / "moved.csv").write_text("")
    pair_lam = next(h for h in hits if h.payload[P.OBJECT_ID] == "1000")
    monkey_load = scoring.__dict__  # noqa: F841  (the loader is imported lazily)
    import engine.source_reread as spectra
    original = spectra.load_record
    spectra.load_record = lambda payload: original(lam.payload)
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            scoring.translation_scores(store, "spectra", [pair_lam], Broken())
    finally:
        spectra.load_record = original
    store.close()
