"""Unchanged files are skipped by their stat, unopened; changed, new and gone files are
handled by the file index; --verify and a changed label table read everything again."""

from __future__ import annotations

import os
import time

import pytest

from engine import payload as P
from engine import readers
from engine.store import open_store
from indexer.file_index import file_stat
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder

HOUR_AGO = time.time() - 3600


def age(folder) -> None:
    """Files written an hour ago: older than the racy window, so their stat is trusted."""
    for f in folder.iterdir():
        os.utime(f, (HOUR_AGO, HOUR_AGO))


@pytest.fixture
def opened(monkeypatch):
    """The files the reader opens (reading in this process)."""
    paths: list[str] = []
    real = readers.read_many

    def spy(files, *a, **k):
        files = list(files)
        paths.extend(os.path.basename(str(f)) for f in files)
        return real(files, *a, **k)
    monkeypatch.setattr(readers, "read_many", spy)
    return paths


def sync(store, tmp_path, sources, verify=False, labels=()):
    return Syncer(store=store, embedder=ProjectionEmbedder(), read_workers=0, batch_size=5,
                  state_path=str(tmp_path / "state.json"), verify=verify
                  ).run(parse_sources(sources, list(labels)))


def test_unchanged_files_are_not_opened(tmp_path, lamost_folder, opened):
    age(lamost_folder)
    store = open_store(path=tmp_path / "store")
    first = sync(store, tmp_path, [str(lamost_folder)])
    assert first.added == 12 and first.files_read == 12 and len(opened) == 12
    opened.clear()
    second = sync(store, tmp_path, [str(lamost_folder)])
    assert opened == []
    assert (second.skipped, second.files_unchanged, second.files_read) == (12, 12, 0)
    assert not second.wrote and not second.scored
    verified = sync(store, tmp_path, [str(lamost_folder)], verify=True)
    assert len(opened) == 12 and verified.files_read == 12 and verified.skipped == 12
    store.close()


def test_touched_changed_new_and_gone_files(tmp_path, lamost_folder, opened):
    age(lamost_folder)
    store = open_store(path=tmp_path / "store")
    sync(store, tmp_path, [str(lamost_folder)])
    os.utime(lamost_folder / "spec-1001.fits", (HOUR_AGO + 5, HOUR_AGO + 5))   # touched only
    write_lamost_file(str(lamost_folder / "spec-1003.fits"), 1003, teff=7000, seed=99)
    os.remove(lamost_folder / "spec-1005.fits")
    write_lamost_file(str(lamost_folder / "spec-2000.fits"), 2000, seed=5)
    for name in ("spec-1003.fits", "spec-2000.fits"):
        os.utime(lamost_folder / name, (HOUR_AGO + 9, HOUR_AGO + 9))
    opened.clear()
    report = sync(store, tmp_path, [str(lamost_folder)])
    assert sorted(opened) == ["spec-1001.fits", "spec-1003.fits", "spec-2000.fits"]
    assert (report.added, report.updated, report.deleted, report.skipped) == (1, 1, 1, 10)
    ids = {h.payload[P.OBJECT_ID] for h in store.scroll("spectra")}
    assert "1005" not in ids and "2000" in ids and len(ids) == 12
    opened.clear()
    again = sync(store, tmp_path, [str(lamost_folder)])
    assert opened == [] and again.skipped == 12 and not again.wrote
    store.close()


def test_a_file_changed_within_the_racy_window_is_read_again(tmp_path, lamost_folder, opened):
    store = open_store(path=tmp_path / "store")   # files just written: not yet trusted
    sync(store, tmp_path, [str(lamost_folder)])
    opened.clear()
    # rewritten with the same size in the same instant: the stat alone could not tell
    write_lamost_file(str(lamost_folder / "spec-1002.fits"), 1002, teff=6800, seed=42)
    report = sync(store, tmp_path, [str(lamost_folder)])
    assert len(opened) == 12 and report.updated == 1
    store.close()


def test_a_changed_label_table_reads_the_files_again(tmp_path, lamost_folder, opened):
    age(lamost_folder)
    labels = tmp_path / "labels.csv"
    labels.write_text("obsid,teff,logg,feh\n1000,5000,4.5,0.0\n")
    os.utime(labels, (HOUR_AGO, HOUR_AGO))
    store = open_store(path=tmp_path / "store")
    sync(store, tmp_path, [str(lamost_folder)], labels=[str(labels)])
    labels.write_text("obsid,teff,logg,feh\n1000,6000,4.0,0.1\n")
    opened.clear()
    report = sync(store, tmp_path, [str(lamost_folder)], labels=[str(labels)])
    assert len(opened) == 12 and report.updated == 1
    store.close()


def test_file_stat_marks_racily_new_files(tmp_path):
    f = tmp_path / "x"
    f.write_text("a")
    assert file_stat(str(f))[2] == -1
    os.utime(f, (HOUR_AGO, HOUR_AGO))
    assert file_stat(str(f))[2] == os.stat(f).st_mtime_ns
    assert file_stat(str(tmp_path / "missing")) is None


def test_a_file_gone_before_a_verify_run_is_deleted_once(tmp_path, lamost_folder, opened):
    """--verify deletes the points of a file gone since the last run and forgets the file,
    so the next plain run does not report that deletion again."""
    age(lamost_folder)
    store = open_store(path=tmp_path / "store")
    sync(store, tmp_path, [str(lamost_folder)])
    os.remove(lamost_folder / "spec-1005.fits")
    verified = sync(store, tmp_path, [str(lamost_folder)], verify=True)
    assert (verified.deleted, verified.skipped) == (1, 11)
    again = sync(store, tmp_path, [str(lamost_folder)])
    assert (again.deleted, again.skipped, again.files_read) == (0, 11, 0)
    assert len({h.payload[P.OBJECT_ID] for h in store.scroll("spectra")}) == 11
    store.close()
