"""Every registered reader, read four ways (specutils' rule): by name (`format=`), auto-detected
from a path, auto-detected from a binary file object, and auto-detected from an open HDUList
(FITS files only), on a generated file and on a real one; all four give the same records.

What each reader's records hold is checked in its own test module; here the point is that
the way a file arrives never changes what is read, and that no reader lacks a case (a new
reader added to the registry without one fails `test_every_reader_has_both_cases`).

Real files: the shared data (skipped without ../shared/data), the real SDSS cuts, and the
specutils MagE spectrum in tests/fixtures/specutils. No real file in the text-table, FITS-table
or 2/3 x N-image layouts is at hand, so for those a real LAMOST DR7 spectrum is written in the
layout by the test and must come back as the LAMOST reader reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine import readers
from tests.engine.readers.ways import WAYS, read_way
from tests.fixtures.make_xp_fixtures import main as make_xp_fixtures

ROOT = Path(__file__).resolve().parents[3]
XP = make_xp_fixtures(ROOT / "tests" / "fixtures" / "xp")
TEXT_WAYS = WAYS[:3]      # an HDUList does not apply to a text file

# reader -> (fixture folder, file): generated files (tests/fixtures/make_*fixtures.py)
GENERATED = {
    "lamost-lrs": ("spectra", "spec-dr10-coadd.fits.gz"),
    "gaia-xp-library": ("xp", "xp-library.fits"),
    "gaia-xp-sampled": ("xp", "xp-sampled.fits"),
    "gaia-xp-continuous": ("xp", "xp-continuous.fits"),
    "sdss-spec": ("generic", "spec-1234-56789-0042.fits"),
    "fits-table": ("generic", "spectrum-table.fits"),
    "fits-wcs-1d": ("generic", "spectrum-wcs-log.fits"),
    "fits-rows": ("generic", "spectrum-rows3.fits"),
    "text-table": ("generic", "table-vacuum.csv"),
}
# reader -> where its real file is (see `_real_file`)
REAL = {
    "lamost-lrs": "shared:lamost_dr10/spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz",
    "gaia-xp-library": "shared:pairs_lamost_xp/xp_spectra_of_pairs.fits",
    "gaia-xp-sampled": "shared:gaia_xp_archive/XP_SAMPLED_RAW_dr3int6.fits",
    "gaia-xp-continuous": "shared:gaia_xp_archive/XP_CONTINUOUS_RAW.fits",
    "sdss-spec": "sdss:spec-4961-55719-0378-cut.fits.gz",
    "fits-wcs-1d": "repo:tests/fixtures/specutils/UM669_nF-cut.fits.gz",
    "fits-table": "written:spectrum.fits",
    "fits-rows": "written:rows.fits",
    "text-table": "written:spectrum.csv",
}
# The MagE file does not say air or vacuum: the caller does (test_generic.py checks the refusal).
OPTIONS = {"fits-wcs-1d": {"medium": "vacuum"}}
DR7_IMAGE = "lamost_dr7/spectra/101008.fits"


def _ways(name: str) -> tuple[str, ...]:
    return TEXT_WAYS if name.endswith(".csv") else WAYS


def assert_same_records(got: list, expected: list) -> None:
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        assert (a.survey, a.object_id, a.pixel_offset, a.source_index) == \
            (b.survey, b.object_id, b.pixel_offset, b.source_index)
        np.testing.assert_array_equal(a.wavelength, b.wavelength)
        np.testing.assert_array_equal(a.flux, b.flux)
        np.testing.assert_array_equal(a.ivar, b.ivar)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_every_reader_has_both_cases():
    names = {entry.name for entry in readers.readers()}
    assert set(GENERATED) == names and set(REAL) == names


@pytest.mark.parametrize("reader,way", [(r, w) for r in sorted(GENERATED)
                                        for w in _ways(GENERATED[r][1])])
def test_generated_file_four_ways(fixtures, generic, reader, way):
    folder, name = GENERATED[reader]
    path = {"spectra": fixtures, "generic": generic, "xp": XP}[folder] / name
    expected = readers.read(str(path), format=reader)
    assert_same_records(read_way(path, way, reader), expected)


def _native_dr7(shared_data: Path):
    (record,) = readers.read(str(shared_data / DR7_IMAGE))
    return record


def _write_layout(record, name: str, folder: Path) -> Path:
    """A real LAMOST spectrum in a generic layout: vacuum wavelengths, flux, ivar (0 where
    the LAMOST reader masks a pixel)."""
    ivar = np.where(record.mask, 0.0, record.ivar)
    path = folder / name
    if name.endswith(".csv"):
        rows = zip(record.wavelength, record.flux, ivar, strict=True)
        path.write_text("# vacuum wavelengths\nwavelength,flux,ivar\n" + "\n".join(
            f"{float(w)!r},{float(f)!r},{float(v)!r}" for w, f, v in rows))
    elif name == "rows.fits":
        fits.PrimaryHDU(np.stack([record.wavelength, record.flux, ivar]),
                        header=fits.Header({"VACUUM": True, "BANDID3": "ivar"})).writeto(path)
    else:
        cols = [fits.Column(name="WAVELENGTH", format="D", array=record.wavelength),
                fits.Column(name="FLUX", format="D", array=record.flux),
                fits.Column(name="IVAR", format="D", array=ivar)]
        fits.HDUList([fits.PrimaryHDU(header=fits.Header({"VACUUM": True})),
                      fits.BinTableHDU.from_columns(cols)]).writeto(path)
    return path


def _real_file(request: pytest.FixtureRequest, where: str, tmp_path: Path) -> Path:
    kind, rel = where.split(":", 1)
    if kind == "shared":
        return request.getfixturevalue("shared_data") / rel
    if kind == "sdss":
        return request.getfixturevalue("sdss_real") / rel
    if kind == "repo":
        return ROOT / rel
    return _write_layout(_native_dr7(request.getfixturevalue("shared_data")), rel, tmp_path)


@pytest.mark.real_data
@pytest.mark.parametrize("reader,way", [(r, w) for r in sorted(REAL)
                                        for w in _ways(REAL[r])])
def test_real_file_four_ways(request, tmp_path, reader, way):
    path = _real_file(request, REAL[reader], tmp_path)
    options = OPTIONS.get(reader)
    expected = readers.read(str(path), format=reader, options=options)
    assert_same_records(read_way(path, way, reader, options), expected)


@pytest.mark.real_data
@pytest.mark.parametrize("reader", ["text-table", "fits-table", "fits-rows"])
def test_real_spectrum_written_in_a_generic_layout_reads_back(shared_data, tmp_path, reader):
    """The written real spectrum is on LAMOST's grid already: the generic reader gives back
    the LAMOST reader's pixels (resampling onto the same grid is a copy)."""
    native = _native_dr7(shared_data)
    (record,) = readers.read(str(_write_layout(native, REAL[reader].split(":")[1], tmp_path)))
    assert record.meta["layout"] == reader and record.pixel_offset == native.pixel_offset
    np.testing.assert_array_equal(record.mask, native.mask)
    good = ~native.mask
    np.testing.assert_allclose(record.flux[good], native.flux[good], rtol=1e-9)
    np.testing.assert_allclose(record.ivar[good], native.ivar[good], rtol=1e-9)
