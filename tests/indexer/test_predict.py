"""indexer/predict.py: `specclip predict`, a table of what the model says of each spectrum in
some files (synthetic files with the projection test double; the shipped bundle on the real
files of ../shared/data where present)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine import payload as P
from engine.errors import SpecClipError
from indexer import predict as PR
from tests.indexer.conftest import write_lamost_file, write_lamost_folder
from tests.indexer.doubles import ProjectionEmbedder

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "pairs_lamost_xp").is_dir(),
                                reason="needs ../shared/data")
pytestmark = pytest.mark.usefixtures("restore_root_logger")


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_in_file_order_with_the_payload_keys(tmp_path):
    folder = write_lamost_folder(tmp_path / "spectra", 5, 700, 4500, 400)
    out = tmp_path / "t.csv"
    report = PR.predict_files([str(folder)], str(out), ProjectionEmbedder(), batch_size=2)
    rows = read_csv(out)
    assert report["spectra"] == 5 and report["by_survey"] == {"lamost": 5}
    assert list(rows[0]) == list(PR.COLUMNS)
    assert [r[P.OBJECT_ID] for r in rows] == [str(700 + i) for i in range(5)]
    assert {r[P.MODEL_VERSION] for r in rows} == {ProjectionEmbedder.version}
    assert all(r[P.SOURCE_PATH].startswith(str(folder)) for r in rows)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".predict-")]


def test_a_bad_file_and_a_refused_spectrum_are_reported_and_the_rest_goes_on(tmp_path):
    folder = write_lamost_folder(tmp_path / "spectra", 3, 800, 5000, 300)
    (folder / "spec-broken.fits").write_bytes(b"SIMPLE  = not a FITS file")
    # 3 usable pixels: the reader takes it, the model refuses it
    write_lamost_file(str(folder / "spec-masked.fits"), 899)
    from astropy.io import fits

    with fits.open(folder / "spec-masked.fits", mode="update") as hdul:
        hdul[0].data[1, 3:] = 0.0      # ivar 0 but for the first 3 pixels
    out = tmp_path / "t.parquet"
    report = PR.predict_files([str(folder)], str(out), ProjectionEmbedder())
    reasons = {Path(r["path"]).name: r["reason"] for r in report["refused"]}
    assert set(reasons) == {"spec-broken.fits", "spec-masked.fits"}, reasons
    assert "too few usable pixels" in reasons["spec-masked.fits"]
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column_names == list(PR.COLUMNS)
    assert sorted(table.column(P.OBJECT_ID).to_pylist()) == ["800", "801", "802"]


def test_an_interrupted_run_leaves_no_table_and_no_temporary_file(tmp_path, monkeypatch):
    folder = write_lamost_folder(tmp_path / "spectra", 4, 900, 5000, 300)
    out = tmp_path / "t.csv"
    out.write_text("the previous table\n")
    real, calls = PR.prediction_rows, []

    def dies_on_the_second_batch(records, embedder):
        calls.append(len(records))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(records, embedder)

    monkeypatch.setattr(PR, "prediction_rows", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        PR.predict_files([str(folder)], str(out), ProjectionEmbedder(), batch_size=2)
    assert out.read_text() == "the previous table\n"       # untouched, not half rewritten
    assert sorted(os.listdir(tmp_path)) == ["spectra", "t.csv"]
    monkeypatch.setattr(PR, "prediction_rows", real)
    PR.predict_files([str(folder)], str(out), ProjectionEmbedder(), batch_size=2)
    assert [r[P.OBJECT_ID] for r in read_csv(out)] == ["900", "901", "902", "903"]


@pytest.mark.parametrize("name, message", [("t.txt", "CSV or Parquet"),
                                           ("folder.csv", "is a folder")])
def test_the_table_must_be_a_csv_or_parquet_file(tmp_path, name, message):
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(SpecClipError, match=message):
        PR.TableWriter(str(tmp_path / name))


@needs_data
def test_real_files_agree_with_the_model_one_spectrum_at_a_time(tmp_path, capsys):
    """The shipped bundle through the CLI on the real pairs (LAMOST and XP), the archive's XP
    files and the MRS file that must be refused: each row's parameters and flags are what
    the Embedder and Engine.assess give for that spectrum alone."""
    from engine import readers
    from engine.inference import Embedder
    from engine.query import Engine

    out, rep = tmp_path / "t.csv", tmp_path / "r.json"
    rc = cli.main(["predict", str(DATA / "pairs_lamost_xp"), str(DATA / "lamost_misc"),
                   "--labels", str(DATA / "pairs_lamost_xp" / "pairs.csv"),
                   "--out", str(out), "--report", str(rep), "--no-progress",
                   "--batch-size", "3"])
    assert rc == 0
    assert "predicted" in capsys.readouterr().out
    report = json.loads(rep.read_text())
    assert any("medium-resolution" in r["reason"] for r in report["refused"])
    rows = read_csv(out)
    assert report["spectra"] == len(rows) and report["by_survey"]["lamost"] >= 7
    assert report["by_survey"]["gaia_xp"] == 5
    records, _ = readers.read_many([DATA / "pairs_lamost_xp", DATA / "lamost_misc"])
    by_key = {(r.survey, str(r.object_id)): r for r in records}
    embedder = Embedder()
    engine = Engine(store=None)
    engine._embedder = embedder
    for row in rows:
        record = by_key[(row[P.SURVEY], row[P.OBJECT_ID])]
        alone = embedder.embed([record])
        for name, values in alone.params.items():
            assert math.isclose(float(row[P.pred_key(name)]), float(values[0]),
                                rel_tol=1e-4, abs_tol=1e-4), (row[P.OBJECT_ID], name)
            assert math.isclose(float(row[P.sigma_key(name)]), float(alone.sigmas[name][0]),
                                rel_tol=1e-4, abs_tol=1e-4)
        flags = engine.assess(record)
        assert row[P.OOD] == str(flags[P.OOD]) and row[P.LOW_QUALITY] == str(
            flags[P.LOW_QUALITY])
        assert np.isclose(float(row[P.OOD_SCORE]), flags[P.OOD_SCORE], rtol=1e-4)
    lamost = [r for r in rows if r[P.SURVEY] == "lamost" and r[P.LABEL_SOURCE]]
    assert lamost and all(r[P.label_key("teff")] and r[P.pred_key("rv")] for r in lamost)
    assert {r[P.CONTINUUM] for r in lamost} == {"own"}


def test_a_many_spectrum_file_is_cut_into_batches(tmp_path, monkeypatch):
    from tests.app.conftest import write_xp_sampled_csv

    ids = write_xp_sampled_csv(tmp_path / "XP_SAMPLED-12.csv", 12)
    real, sizes = PR.prediction_rows, []
    monkeypatch.setattr(PR, "prediction_rows",
                        lambda recs, emb: (sizes.append(len(recs)), real(recs, emb))[1])
    out = tmp_path / "t.csv"
    report = PR.predict_files([str(tmp_path / "XP_SAMPLED-12.csv")], str(out),
                              ProjectionEmbedder(), batch_size=5)
    assert sizes == [5, 5, 2] and report["spectra"] == 12
    assert [r[P.OBJECT_ID] for r in read_csv(out)] == [str(i) for i in ids]


def test_catalogues_are_read_as_the_indexer_reads_them(tmp_path):
    """A `.parquet` catalogue of `specclip ingest` is a source like a folder; the generic
    reader options, which a catalogue cannot use, are refused with it."""
    from engine import readers
    from engine.catalogue import write_catalogue

    folder = write_lamost_folder(tmp_path / "spectra", 3, 950, 5000, 300)
    records, _ = readers.read_many([folder])
    write_catalogue(records, tmp_path / "cat.parquet")
    out = tmp_path / "t.csv"
    report = PR.predict_files([str(tmp_path / "cat.parquet"), str(folder)], str(out),
                              ProjectionEmbedder())
    ids = [r[P.OBJECT_ID] for r in read_csv(out)]
    assert ids == ["950", "951", "952"] * 2 and report["files"] == 4
    with pytest.raises(SpecClipError, match="apply to spectrum files"):
        PR.predict_files([str(tmp_path / "cat.parquet")], str(out), ProjectionEmbedder(),
                         options={"unit": "nm", "medium": None, "uncertainty": None})


def test_the_command_names_each_refusal_on_stderr(tmp_path, capsys, monkeypatch):
    import engine.inference as inference

    monkeypatch.setattr(inference, "Embedder", lambda *a, **k: ProjectionEmbedder())
    folder = write_lamost_folder(tmp_path / "spectra", 2, 960, 5000, 300)
    (folder / "spec-broken.fits").write_bytes(b"not FITS")
    rc = cli.main(["predict", str(folder), str(tmp_path / "missing"), "--out",
                   str(tmp_path / "t.csv"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "refused " + str(folder / "spec-broken.fits") in err
    assert "refused " + str(tmp_path / "missing") in err
