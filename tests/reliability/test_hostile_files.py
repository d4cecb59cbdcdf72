"""Issue 15 on the readers: every exception is one file's refusal (1), tiny files never
allocate gigabytes (3), off-grid LAMOST offsets are refused at read time (4), bad XP ids are
refused per row (5), a multi-row COADD table says why it is not read (12), a byte-order mark
hides nothing (13). Memory is measured with tracemalloc (numpy and bytes allocations)."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from engine import readers
from engine.catalogue import read_catalogue, write_catalogue
from engine.errors import SpectrumReadError
from engine.readers import registry
from tests.indexer.conftest import write_lamost_file
from tests.reliability import hostile

MB = 1024 * 1024


def _peak_while(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        try:
            out = fn()
        except SpectrumReadError as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("error", [ZeroDivisionError("boom"), RecursionError("deep"),
                                   OverflowError("big"), MemoryError()])
def test_any_exception_from_a_reader_is_that_files_refusal(tmp_path, monkeypatch, error):
    good = write_lamost_file(str(tmp_path / "spec-1.fits"), 1)
    entry = registry._READERS["lamost-lrs"]

    def broken(source, *, path=""):
        if "bad" in path:
            raise error
        return entry.read(source, path=path)

    monkeypatch.setitem(registry._READERS, "lamost-lrs",
                        registry.ReaderEntry(entry.name, entry.survey, broken, entry.identify))
    bad = tmp_path / "spec-bad.fits"
    bad.write_bytes(Path(good).read_bytes())
    records, refused = readers.read_many([good, str(bad), good])
    assert [r.object_id for r in records] == ["1", "1"]
    assert [Path(r["path"]).name for r in refused] == ["spec-bad.fits"]
    assert type(error).__name__ in refused[0]["reason"] or "memory" in refused[0]["reason"]


@pytest.mark.parametrize("raw, words", [("1E999", "not finite"),
                                        ("1.0E12", "outside LAMOST LRS coverage"),
                                        ("'abc'", "not finite")])
def test_a_bad_coeff0_is_refused_at_read_time(tmp_path, raw, words):
    path = hostile.pilot_with_coeff0(tmp_path, raw, "spec-coeff.fits")
    with pytest.raises(SpectrumReadError, match=words) as err:
        readers.read(str(path))
    assert "spec-coeff.fits" in str(err.value)


def test_an_off_grid_file_no_longer_kills_the_catalogue_write(tmp_path):
    """Before: COEFF0 = 1.0E12 was read with a pixel offset near 1e16 and the Parquet write
    of the whole catalogue failed."""
    bad = hostile.pilot_with_coeff0(tmp_path, "1.0E12", "spec-coeff-1e12.fits")
    good = write_lamost_file(str(tmp_path / "spec-2.fits"), 2)
    records, refused = readers.read_many([str(bad), good])
    assert [Path(r["path"]).name for r in refused] == ["spec-coeff-1e12.fits"]
    write_catalogue(records, tmp_path / "cat.parquet")
    assert [r.object_id for r in read_catalogue(tmp_path / "cat.parquet")] == ["2"]


def test_xp_rows_with_bad_source_ids_are_refused_one_by_one(tmp_path):
    """Before: every empty id became source "0" (one point); one huge id aborted the run."""
    ids = ["", "   ", "99999999999999999999999", "-5", "12abc", str(hostile.XP_GOOD_ID),
           str(hostile.XP_GOOD_ID + 1)]
    path = hostile.xp_csv(tmp_path / "xp-ids.csv", ids)
    records, refused = readers.read_many([str(path)])
    assert [r.object_id for r in records] == [str(hostile.XP_GOOD_ID),
                                              str(hostile.XP_GOOD_ID + 1)]
    assert sorted(r["row"] for r in refused) == [0, 1, 2, 3, 4]
    assert all(r["path"] == str(path) and r["reason"].startswith("row ") for r in refused)
    assert "0" not in {r.object_id for r in records}


@pytest.mark.parametrize("suffix, write", [
    ("ecsv", hostile.ecsv_declaring), ("xml", hostile.votable_declaring)])
def test_a_tiny_table_declaring_huge_arrays_is_refused_before_allocating(tmp_path, suffix,
                                                                       write):
    """Before: 299 bytes declaring float64[1e8] took 4 GB and 13 s (VOTable: 1.25 GB)."""
    path = write(tmp_path / f"xp-declares.{suffix}", 2_000_000)
    assert path.stat().st_size < 1000
    out, peak = _peak_while(lambda: readers.read(str(path)))
    assert isinstance(out, SpectrumReadError), out
    assert "2,000,000 values per cell" in out.reason and "at most 1,485" in out.reason
    assert peak < 4 * MB, f"peak {peak / MB:.0f} MB for a {path.stat().st_size}-byte file"


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path):
    """Before: a 1.1 MB gzip inflating to 1 GiB behind a LAMOST header was inflated in full
    (3-6 GB peak). Here: 256 MB behind the header; the LAMOST bound is 8 MB."""
    good = Path(write_lamost_file(str(tmp_path / "spec-3.fits"), 3)).read_bytes()
    bomb = hostile.gzip_bomb(good, inflated_mb=256)
    path = tmp_path / "spec-bomb.fits.gz"
    path.write_bytes(bomb)
    for source in (str(path), io.BytesIO(bomb)):
        out, peak = _peak_while(lambda s=source: readers.read(s, path="spec-bomb.fits.gz"))
        assert isinstance(out, SpectrumReadError), out
        assert "inflates to more than" in out.reason
        assert peak < 40 * MB, f"peak {peak / MB:.0f} MB"


def test_a_gzipped_table_bomb_is_bounded_too(tmp_path):
    """Tables (XP) have no fixed size: gzip may inflate at most 32x (16 MB for small files)."""
    csv = hostile.xp_csv(tmp_path / "xp.csv", [str(hostile.XP_GOOD_ID)]).read_bytes()
    bomb = hostile.gzip_bomb(csv, inflated_mb=128)
    out, peak = _peak_while(lambda: readers.read(io.BytesIO(bomb), path="xp.csv.gz"))
    assert isinstance(out, SpectrumReadError) and "inflates to more than" in out.reason, out
    assert peak < 64 * MB


def test_a_real_size_lamost_gzip_still_reads(tmp_path):
    good = Path(write_lamost_file(str(tmp_path / "spec-4.fits"), 4)).read_bytes()
    bomb = hostile.gzip_bomb(good, inflated_mb=0)          # the good member alone
    (rec,) = readers.read(io.BytesIO(bomb), path="spec-4.fits.gz")
    assert rec.object_id == "4"


def test_a_coadd_table_with_three_rows_says_why_it_is_not_read(tmp_path):
    """Before: row 0 was read, rows 1-2 ignored without a word."""
    path = hostile.coadd_rows(tmp_path, 3, "spec-3rows.fits")
    with pytest.raises(SpectrumReadError, match="3 rows.*one spectrum"):
        readers.read(str(path))
    (one,) = readers.read(str(hostile.coadd_rows(tmp_path, 1, "spec-1row.fits")))
    assert one.object_id == "9400"


def test_an_xp_csv_with_a_byte_order_mark_is_read_named_or_in_a_folder(tmp_path):
    """Before: skipped silently in a folder; 'missing columns source_id' when named."""
    folder = tmp_path / "bom"
    folder.mkdir()
    path = hostile.xp_csv(folder / "xp-bom.csv", [str(hostile.XP_GOOD_ID)], bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    for source in (str(path), str(folder)):
        records, refused = readers.read_many([source])
        assert [r.object_id for r in records] == [str(hostile.XP_GOOD_ID)] and not refused


def test_a_space_delimited_ecsv_is_not_skipped_in_a_folder(tmp_path):
    """astropy writes ECSV with spaces; the folder scan took such a file for a label table."""
    from astropy.table import Table

    records = readers.read(str(hostile.xp_csv(tmp_path / "x.csv", [str(hostile.XP_GOOD_ID)])))
    folder = tmp_path / "ecsv"
    folder.mkdir()
    t = Table({"source_id": [hostile.XP_GOOD_ID], "flux": [records[0].flux],
               "flux_error": [records[0].flux * 0.02]})
    t.write(folder / "xp.ecsv", format="ascii.ecsv")
    assert list(readers.iter_spectrum_files([folder])) == [str(folder / "xp.ecsv")]
