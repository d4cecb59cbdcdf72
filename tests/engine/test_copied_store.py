"""The store stands on its own: every point's spectrum lives in the store (its archive), so a
store folder copied elsewhere, with the source files gone, answers every query and gives
every spectrum; stores indexed before spectra were kept get them on the next sync."""

from __future__ import annotations

import os
import shutil

import pytest

from engine import payload as P
from engine import readers
from engine.catalogue import write_catalogue
from engine.query import Engine
from engine.store import Point, open_store
from indexer.ids import content_hash
from indexer.sources import parse_sources
from indexer.sync import Syncer, index_path_for
from tests.indexer.conftest import write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder


def _sources(data):
    folder = write_lamost_folder(data / "lamost", 8, 500, 4200, 200)
    xp = readers.read_xp_library(limit=30)
    write_catalogue(xp, data / "xp.parquet")
    return parse_sources([str(folder), str(data / "xp.parquet")]), xp


def _sync(store, state, sources):
    return Syncer(store=store, embedder=ProjectionEmbedder(), state_path=str(state)).run(sources)


def test_a_copied_store_answers_everything_without_its_sources(tmp_path, monkeypatch):
    data = tmp_path / "data"
    sources, xp = _sources(data)
    store = open_store(path=str(tmp_path / "store"))
    report = _sync(store, tmp_path / "store" / "indexer_state.json", sources)
    assert report.added == 38
    assert all(os.path.isabs(h.payload[P.SOURCE_PATH]) for h in store.scroll("spectra"))
    store.close()
    copy = tmp_path / "elsewhere" / "store"
    shutil.copytree(tmp_path / "store", copy)
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "store")

    def no_source_reads(payload):
        raise AssertionError(f"re-read a source file for {payload.get(P.OBJECT_ID)}")

    monkeypatch.setattr("engine.source_reread.load_record", no_source_reads)
    engine = Engine.open(store_path=str(copy))
    engine._embedder = ProjectionEmbedder()
    try:
        points = list(engine.store.scroll("spectra"))
        assert len(points) == 38
        for h in points:                          # every spectrum, exactly as indexed
            assert content_hash(engine.get_spectrum(h.id)) == h.payload[P.CONTENT_HASH]
        lean = engine.search(("obsid", "503"), target="lamost", k=3, payload_keys=["snr"])
        assert len(lean) == 3 and P.SPECTRUM_FILE not in lean[0].payload
        assert engine.get_spectrum(lean[0]).object_id == lean[0].object_id
        star = xp[4]
        found = engine.search(("source_id", star.object_id), target="gaia_xp", k=2)
        assert len(found) == 2
        record = engine.get_spectrum(engine.lookup(source_id=star.object_id)[0])
        assert engine.search(record, target="any", k=4)
        wave, flux = engine.predict_counterpart(record)
        assert len(wave) == len(flux)
        cone = engine.cone_search(star.ra, star.dec)
        assert cone[0].object_id == star.object_id and cone[0].separation_arcsec < 1e-6
    finally:
        engine.close()


def test_points_indexed_before_spectra_were_kept_get_them_on_the_next_sync(tmp_path):
    sources, _ = _sources(tmp_path / "data")
    store = open_store(path=str(tmp_path / "store"))
    state = tmp_path / "state.json"
    _sync(store, state, sources)
    old = [Point(h.id, h.vectors, {k: v for k, v in h.payload.items()
                                   if k not in (P.SPECTRUM_FILE, P.SPECTRUM_ROW)})
           for h in store.scroll("spectra", with_vectors=True)]
    store.upsert("spectra", old)                  # as an older indexer left them
    os.remove(index_path_for(str(state)))         # whose file index had another point format
    again = _sync(store, state, sources)
    assert (again.added, again.updated, again.skipped) == (0, 38, 0)
    assert all(P.SPECTRUM_FILE in h.payload for h in store.scroll("spectra"))
    third = _sync(store, state, sources)
    assert (third.added, third.updated, third.skipped) == (0, 0, 38)
    store.close()


def test_a_server_store_names_its_spectra_by_absolute_paths(tmp_path):
    sources, _ = _sources(tmp_path / "data")
    store = open_store(memory=True)
    _sync(store, tmp_path / "state" / "state.json", sources)
    engine = Engine(store)
    try:
        for h in store.scroll("spectra"):
            assert h.payload[P.SPECTRUM_FILE].startswith(str(tmp_path / "state" / "spectra"))
            assert content_hash(engine.get_spectrum(h.id)) == h.payload[P.CONTENT_HASH]
    finally:
        engine.close()


@pytest.mark.parametrize("kind", ["edge"])
def test_unchanged_points_keep_their_spectrum_file(kind, tmp_path):
    sources, _ = _sources(tmp_path / "data")
    store = open_store(path=str(tmp_path / "store"))
    state = tmp_path / "state.json"
    _sync(store, state, sources)
    before = {h.id: h.payload[P.SPECTRUM_FILE] for h in store.scroll("spectra")}
    _sync(store, state, sources)
    assert {h.id: h.payload[P.SPECTRUM_FILE] for h in store.scroll("spectra")} == before
    files = list((tmp_path / "store" / "spectra").rglob("*.arrow"))
    assert {str(f.relative_to(tmp_path / "store")) for f in files} == set(before.values())
    store.close()


def test_archive_files_of_replaced_spectra_are_deleted_one_sync_later(tmp_path):
    from tests.indexer.conftest import write_lamost_file

    folder = tmp_path / "lamost"
    folder.mkdir()
    store = open_store(path=str(tmp_path / "store"))
    state = tmp_path / "state.json"
    files = []
    for version in range(3):            # each version changes both spectra: a new file
        for i in range(2):
            write_lamost_file(str(folder / f"spec-{i}.fits"), 700 + i, teff=4000 + 300 * version,
                              seed=version)
        _sync(store, state, parse_sources([str(folder)]))
        files.append({h.payload[P.SPECTRUM_FILE] for h in store.scroll("spectra")})
        assert len(files[-1]) == 1
        if version == 0:
            stale = Engine(store).lookup(obsid="700")[0]    # a hit a user still holds
    on_disk = {str(p.relative_to(tmp_path / "store"))
               for p in (tmp_path / "store" / "spectra").rglob("*.arrow")}
    # version 0's file was found unreferenced by the 2nd sync and deleted by the 3rd;
    # version 1's waits for the next sync (a reader may still answer from it)
    assert on_disk == files[1] | files[2]
    engine = Engine(store)
    for h in store.scroll("spectra"):
        assert content_hash(engine.get_spectrum(h.id)) == h.payload[P.CONTENT_HASH]
    # its file is gone: the engine looks the point up again and gives today's spectrum
    assert stale.payload[P.SPECTRUM_FILE] not in on_disk
    (now,) = engine.lookup(obsid="700")
    assert content_hash(engine.get_spectrum(stale)) == now.payload[P.CONTENT_HASH]
    engine.close()
