"""Parquet catalogue round trip and the `specclip ingest` command."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine import readers
from engine.catalogue import SCHEMA, read_catalogue, write_catalogue
from engine.ingest_cli import register_ingest
from engine.readers.lamost_labels import attach_labels, load_lamost_labels
from tests.conftest import SHARED
from tests.engine.readers.conftest import FIXTURES

FIELDS = ("survey", "object_id", "gaia_source_id", "ra", "dec", "data_release", "obj_class",
          "subclass", "z", "snr", "labels", "label_errors", "label_source", "pixel_offset",
          "source_path", "source_index", "meta")
ARRAYS = ("wavelength", "flux", "ivar", "mask")


def fixture_records():
    records, _ = readers.read_many([FIXTURES])
    table = load_lamost_labels(str(FIXTURES / "labels-not-spectra.csv"))
    return attach_labels(records, table) + readers.read_xp_library(limit=3)


def test_round_trip(tmp_path):
    records = fixture_records()
    path = tmp_path / "cat.parquet"
    write_catalogue(records, path)
    back = read_catalogue(path)
    assert len(back) == len(records) == 8
    for a, b in zip(records, back, strict=True):
        for name in FIELDS:
            assert getattr(a, name) == getattr(b, name), name
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        if a.norm_flux is None:
            assert b.norm_flux is None
        else:
            np.testing.assert_array_equal(a.norm_flux, b.norm_flux)
    assert pq.read_schema(path).equals(SCHEMA, check_metadata=False)
    assert any(r.labels for r in back if r.survey == "lamost")


def run_ingest(argv):
    parser = argparse.ArgumentParser()
    register_ingest(parser.add_subparsers())
    args = parser.parse_args(["ingest", *argv, "--no-progress"])
    return args.func(args)


def test_ingest_command_report(tmp_path):
    out, report = tmp_path / "c.parquet", tmp_path / "r.json"
    code = run_ingest([str(FIXTURES), "--out", str(out), "--report", str(report),
                       "--labels", str(FIXTURES / "labels-not-spectra.csv")])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["read"] == 5 and len(data["refused"]) == 7
    assert data["by_survey"] == {"gaia_xp": 2, "lamost": 3}
    assert data["by_release"] == {"gaia_xp:DR3": 2, "lamost:DR1": 1, "lamost:DR10": 1,
                                  "lamost:DR7": 1}
    assert {"path", "reason"} == set(data["refused"][0])
    assert len(read_catalogue(out)) == 5


@pytest.mark.real_data
@pytest.mark.slow
def test_ingest_real_lamost_folders(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    folders = ["lamost_dr10", "lamost_dr8_repeats", "lamost_dr7", "lamost_dr1", "lamost_misc"]
    out, report = tmp_path / "c.parquet", tmp_path / "r.json"
    labels = [str(SHARED / "lamost_dr10/labels.csv"), str(SHARED / "lamost_dr1/catalogue.csv")]
    argv = [str(SHARED / f) for f in folders] + ["--out", str(out), "--report", str(report)]
    for csv_path in labels:
        argv += ["--labels", csv_path]
    assert run_ingest(argv) == 0
    data = json.loads(report.read_text())
    assert data["read"] == 1982 + 220 + 109 + 179 + 2
    assert [r["path"].rsplit("/", 1)[-1] for r in data["refused"]] == [
        "med-58408-TD230151N343645T01_sp01-015.fits"]
    assert data["by_release"] == {"lamost:DR1": 179, "lamost:DR10": 1982, "lamost:DR6": 1,
                                  "lamost:DR7": 110, "lamost:DR8": 220}
    assert data["by_class"] == {"GALAXY": 9, "STAR": 2479, "Unknown": 4}
    assert data["labelled"] == 1982 + 131      # every LASP row + 131 DR1 catalogue matches


def test_ingest_generic_and_sdss_with_format_and_options(tmp_path, sdss_real):
    """SDSS and generic files ingest as LAMOST-like records; --format and --medium reach the
    readers; the catalogue keeps them exactly (meta included)."""
    from tests.engine.readers.conftest import GENERIC

    out, report = tmp_path / "c.parquet", tmp_path / "r.json"
    code = run_ingest([str(sdss_real), str(GENERIC / "table-vacuum.csv"), "--out", str(out),
                       "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == 0 and data["read"] == 3 and data["refused"] == []
    assert data["by_release"] == {"lamost:unknown": 1, "lamost:SDSS 26": 1,
                                  "lamost:SDSS v5_7_0": 1}
    back = {r.object_id: r for r in read_catalogue(out)}
    assert back["sdss-4961-55719-0378"].meta["instrument"] == "SDSS/BOSS"
    assert back["table-vacuum"].pixel_offset == 320
    # a table that does not state its medium: refused, unless the command line states it
    bare = GENERIC / "table-no-medium.csv"
    assert run_ingest([str(bare), "--out", str(out), "--report", str(report)]) == 1
    assert "air or vacuum" in json.loads(report.read_text())["refused"][0]["reason"]
    assert run_ingest([str(bare), "--out", str(out), "--report", str(report), "--format",
                       "text-table", "--medium", "vacuum"]) == 0
