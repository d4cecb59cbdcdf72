"""read_many / iter_spectrum_files (folder scans, refusals) and LAMOST label joins."""

from __future__ import annotations

import csv

import pytest

from engine import readers
from engine.readers.lamost_labels import attach_labels, load_lamost_labels

BAD = {"bad-all-nan.fits", "bad-empty.fits", "bad-not-fits.fits", "bad-truncated.fits",
       "bad-truncated.fits.gz", "bad-zero-ivar.fits", "med-mrs.fits"}


def test_folder_scan_skips_label_tables(fixtures):
    names = {p.rsplit("/", 1)[-1] for p in readers.iter_spectrum_files([fixtures])}
    assert "labels-not-spectra.csv" not in names
    assert {"xp-sampled.csv", "xp-sampled.ecsv", "spec-dr10-coadd.fits.gz"} <= names


def test_read_many_never_stops(fixtures):
    records, refused = readers.read_many([fixtures])
    assert {r["path"].rsplit("/", 1)[-1] for r in refused} == BAD
    assert all(r["reason"] for r in refused)
    assert len(records) == 5    # three LAMOST layouts + two XP sampled tables


def test_named_labels_csv_is_refused(fixtures):
    path = str(fixtures / "labels-not-spectra.csv")
    records, refused = readers.read_many([path])
    assert records == [] and refused[0]["path"] == path
    assert "not a recognised" in refused[0]["reason"]


def test_attach_labels_from_fixture_table(fixtures):
    table = load_lamost_labels(str(fixtures / "labels-not-spectra.csv"))
    records = readers.read(str(fixtures / "spec-dr7-image.fits"))   # OBSID 123456789
    (labelled,) = attach_labels(records, table)
    assert labelled.labels == {"teff": 5800.0, "logg": 4.4, "feh": 0.0}
    assert labelled.label_source == "LAMOST LASP" and labelled.label_errors == {}
    assert records[0].labels == {}      # frozen originals untouched
    xp = readers.read(str(fixtures / "xp-sampled.csv"))
    assert attach_labels(xp, table)[0].labels == {}   # only LAMOST records get LAMOST labels


def test_not_a_label_table(fixtures):
    with pytest.raises(readers.SpectrumReadError, match="not a LAMOST label table"):
        load_lamost_labels(str(fixtures / "xp-sampled.csv"))


@pytest.mark.real_data
def test_real_lasp_labels_by_obsid(shared_data):
    path = shared_data / "lamost_dr10" / "labels.csv"
    table = load_lamost_labels(str(path))
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh))
    (record,) = attach_labels(readers.read(str(shared_data / "lamost_dr10" / "spectra" /
                                               row["filename"])), table)
    assert record.object_id == row["obsid"]
    assert record.labels["teff"] == pytest.approx(float(row["teff"]))
    assert record.labels["feh"] == pytest.approx(float(row["feh"]))


@pytest.mark.real_data
def test_real_dr1_catalogue_by_filename(shared_data):
    table = load_lamost_labels(str(shared_data / "lamost_dr1" / "catalogue.csv"))
    records, _ = readers.read_many([shared_data / "lamost_dr1" / "spectra"])
    labelled = [r for r in attach_labels(records, table) if r.labels]
    assert len(labelled) == 131          # README: 131 files match by filename
    r = labelled[0]
    # error columns do not make a table anything but LASP labels (issue 14)
    assert r.label_source == "LAMOST LASP" and set(r.label_errors) == {"teff", "logg", "feh"}
    assert not r.object_id.isdigit()     # pilot files have no OBSID: matched by file name


def test_label_source_is_lasp_with_error_columns_unless_named(tmp_path, fixtures):
    """A LASP catalogue with teff_err/logg_err/feh_err columns is still LASP; the caller
    may name another source."""
    path = tmp_path / "lasp_with_errors.csv"
    path.write_text("obsid,teff,teff_err,logg,logg_err,feh,feh_err\n"
                    "123456789,5800,50,4.4,0.1,0.0,0.05\n")
    records = readers.read(str(fixtures / "spec-dr7-image.fits"))   # OBSID 123456789
    (lasp,) = attach_labels(records, load_lamost_labels(str(path)))
    assert lasp.label_source == "LAMOST LASP" and lasp.label_errors["teff"] == 50.0
    (named,) = attach_labels(records, load_lamost_labels(str(path), source="my catalogue"))
    assert named.label_source == "my catalogue"
