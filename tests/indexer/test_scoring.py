"""Incremental scoring (indexer/scoring.py): a sync scores only what it added plus the
points whose neighbourhood that entered, with the same neighbour distances a full pass
gives; the staleness bound and deletions trigger the full pass; `specclip rescore` refreshes;
an unreadable counterpart is a named, logged case, anything else fails loudly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import payload as P
from engine.store import open_store
from indexer import scoring
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file


def _sync(store, embedder, tmp_path, folder):
    return Syncer(store=store, embedder=embedder, state_path=str(tmp_path / "state.json"),
                  read_workers=0).run(parse_sources([str(folder)]))


def _payloads(store):
    return {h.id: h.payload for h in store.scroll("spectra")}


def test_adding_a_file_scores_it_incrementally_like_a_full_pass(tmp_path, lamost_folder,
                                                                 embedder, monkeypatch):
    # 12 points: 5 % staleness is less than one point; lift the bound so the incremental
    # path runs here
    monkeypatch.setattr(scoring, "STALE_FRACTION", 100.0)
    store = open_store(path=str(tmp_path / "store"))
    first = _sync(store, embedder, tmp_path, lamost_folder)
    assert first.scoring["mode"] == "full" and first.scoring["scored"] == 12
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, teff=5230.0, seed=99)
    second = _sync(store, embedder, tmp_path, lamost_folder)
    assert second.added == 1 and second.scoring["mode"] == "incremental"
    assert second.scoring["scored"] == 1
    after = _payloads(store)
    assert not any(p.get(P.SCORES_PENDING) for p in after.values())
    assert all(P.ANOMALY in p for p in after.values())
    # the neighbour distances written incrementally are those a full pass computes
    incremental = {i: p[P.KNN_DISTANCE] for i, p in after.items()}
    scoring.score_collection(store, "spectra", embedder)
    full = {i: p[P.KNN_DISTANCE] for i, p in _payloads(store).items()}
    new_id = next(i for i, p in after.items() if p[P.OBJECT_ID] == "2000")
    assert incremental[new_id] == pytest.approx(full[new_id], abs=1e-5)
    changed = [i for i in full if abs(full[i] - incremental[i]) > 1e-5]
    assert changed == [], "a point whose neighbourhood the new spectrum entered kept its old " \
                          f"distance: {changed}"
    store.close()


def test_stale_bound_and_deletions_force_the_full_pass(tmp_path, lamost_folder, embedder,
                                                        monkeypatch):
    store = open_store(path=str(tmp_path / "store"))
    _sync(store, embedder, tmp_path, lamost_folder)
    monkeypatch.setattr(scoring, "STALE_FRACTION", 0.0)
    write_lamost_file(str(lamost_folder / "spec-2001.fits"), 2001, teff=5100.0, seed=5)
    report = _sync(store, embedder, tmp_path, lamost_folder)
    # a new point among 12 always has neighbours: with no staleness allowed, a full pass
    assert report.scoring["mode"] == "full" and report.scoring["stale"] == 0
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

    store = open_store(path=str(tmp_path / "store"))
    _sync(store, embedder, tmp_path, lamost_folder)
    store.close()
    monkeypatch.setattr(cli, "Embedder", lambda bundle: embedder)
    monkeypatch.setattr(cli, "load_bundle", lambda path: None)
    args = type("A", (), {"store": str(tmp_path / "store"), "url": None, "bundle": None,
                          "alias": "spectra", "state": str(tmp_path / "state.json")})
    assert cli.run_rescore(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "full" and out["scored"] == 12
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["scores_stale"][out["collection"]] == 0


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
