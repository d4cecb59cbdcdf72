"""Issue 15 on the tables beside the spectra and on uploads: catalogue rows refused one by
one with a reason in the index report (6); cross-match and label tables that say which line
is wrong and warn about conflicting duplicates (14); upload names that are not file names
and an upload limit that holds however the app is started (19)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import readers
from engine.catalogue import write_catalogue
from engine.pair_table import read_crossmatch
from engine.readers.lamost_labels import load_lamost_labels
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


def _catalogue_with_bad_rows(tmp_path: Path) -> Path:
    files = [write_lamost_file(str(tmp_path / f"spec-{800 + i}.fits"), 800 + i, seed=i)
             for i in range(5)]
    records, _ = readers.read_many(files)
    path = tmp_path / "cat.parquet"
    write_catalogue(records, path)
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[1]["mask"] = rows[1]["mask"][:100]           # truncated mask
    rows[3]["survey"] = "foo"                         # unknown survey
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return path


def test_catalogue_rows_are_refused_one_by_one_in_the_report(tmp_path):
    """Before: the truncated mask aborted the run with an unexplained ValueError, and the
    'foo' row was dropped silently (added 0, refused 0)."""
    path = _catalogue_with_bad_rows(tmp_path)
    store = open_store(path=tmp_path / "store")
    try:
        report = Syncer(store=store, embedder=ProjectionEmbedder(), batch_size=2,
                        state_path=str(tmp_path / "state.json")).run(parse_sources([str(path)]))
    finally:
        store.close()
    assert report.added == 3
    reasons = {r["row"]: r["reason"] for r in report.refused}
    assert set(reasons) == {1, 3} and all(r["path"] == str(path) for r in report.refused)
    assert "mask is 100 values, flux has" in reasons[1]
    assert "survey 'foo'" in reasons[3]


def test_crossmatch_rows_that_are_not_ids_are_skipped_with_file_and_line(tmp_path, caplog):
    """Before: a raw ValueError ('abc', 'nan') without file or row stopped `index`."""
    path = tmp_path / "pairs.csv"
    path.write_text("\ufeffobsid,source_id\n101,4295806720\nabc,42\n102,nan\n"
                    "103,99999999999999999999999\n104.0,5851893451412334336\n105,\n"
                    "101,4295806721\n")
    with caplog.at_level(logging.WARNING):
        pairs = read_crossmatch(str(path))
    assert pairs == {"101": 4295806721, "104": 5851893451412334336}
    text = caplog.text
    for line, value in ((3, "'abc'"), (4, "'nan'"), (5, "'99999999999999999999999'")):
        assert f"{path} line {line} skipped" in text and value in text
    assert "obsid 101 was matched to Gaia 4295806720 on line 2" in text


def test_a_crossmatch_without_the_columns_says_so(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(readers.SpectrumReadError, match="x.csv.*needs an 'obsid'"):
        read_crossmatch(str(path))


def test_conflicting_duplicate_labels_are_warned_about(tmp_path, caplog):
    """Before: the last row won silently."""
    path = tmp_path / "labels.csv"
    path.write_text("obsid,teff,logg,feh\n5,5000,4.0,0.0\n6,6000,4.2,-0.5\n5,5100,4.0,0.0\n"
                    "6,6000,4.2,-0.5\n")
    with caplog.at_level(logging.WARNING):
        table = load_lamost_labels(str(path))
    assert table["5"][0]["teff"] == 5100.0
    assert f"{path} line 4: 5 already has different labels (line 2)" in caplog.text
    assert "6 already" not in caplog.text            # an identical repeat is no conflict


@pytest.mark.parametrize("name", ["..", ".", "a\0b.fits", "x" * 300 + ".fits",
                                  "../../etc/passwd", "dir\\evil.csv", ""])
def test_odd_upload_names_end_as_messages_and_write_nothing_outside(tmp_path, monkeypatch,
                                                                    name):
    """Before: '..', '.', a NUL or 300 characters raised raw OS errors."""
    upload = pytest.importorskip("app.upload")
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(upload.UploadError) as err:
        upload.read_upload(name, b"SIMPLE  =  nonsense" * 10)
    message = str(err.value)
    assert "\0" not in message and len(message) < 400 and "/" not in message.split(":")[0]
    assert os.listdir(temp) == [] and sorted(os.listdir(tmp_path)) == ["tmp"]
    good = Path(write_lamost_file(str(tmp_path / "spec-9.fits"), 9)).read_bytes()
    assert upload.read_upload(name, good)[0].object_id == "9"


def test_a_gzipped_upload_is_bounded_before_the_readers(tmp_path):
    """Before: a 20 MB upload (under the limit) could inflate to ~20 GB."""
    upload = pytest.importorskip("app.upload")
    from tests.reliability import hostile

    good = Path(write_lamost_file(str(tmp_path / "spec-10.fits"), 10)).read_bytes()
    bomb = hostile.gzip_bomb(good, inflated_mb=upload.MAX_INFLATED_BYTES // (1024 * 1024) + 8)
    assert len(bomb) < upload.MAX_UPLOAD_BYTES
    with pytest.raises(upload.UploadError, match="inflates to more than"):
        upload.read_upload("spec.fits.gz", bomb)
    assert upload.read_upload("spec.fits.gz", hostile.gzip_bomb(good, 0))[0].object_id == "10"


def test_streamlit_run_from_the_repository_root_has_the_server_limit():
    """The server side for `streamlit run app/main.py` (started from the repository root, as
    app/main.py says): .streamlit/config.toml holds the same limit as `specclip app`."""
    import tomllib

    upload = pytest.importorskip("app.upload")
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == upload.MAX_UPLOAD_MB


def test_a_corrupt_catalogue_is_refused_and_the_other_sources_go_on(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    folder = tmp_path / "spectra"
    folder.mkdir()
    write_lamost_file(str(folder / "spec-901.fits"), 901)
    store = open_store(path=tmp_path / "store")
    try:
        report = Syncer(store=store, embedder=ProjectionEmbedder(),
                        state_path=str(tmp_path / "state.json")
                        ).run(parse_sources([str(bad), str(folder)]))
    finally:
        store.close()
    assert report.added == 1
    assert [r["path"] for r in report.refused] == [str(bad)]
    assert "cannot read the catalogue" in report.refused[0]["reason"]
