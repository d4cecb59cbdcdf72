"""Generic readers (text table, FITS table, 1-D WCS image, 2/3 x N image): each read four
ways (direct, auto-detected, file object, HDUList where it applies), options, refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from engine import readers
from engine.errors import SpectrumReadError
from engine.grids import lamost_native_wavelength
from tests.engine.readers.ways import WAYS, read_way

# fixture -> (reader, object id, has ivar); all hold the make_generic_fixtures spectrum
ON_GRID = {
    "table-vacuum.csv": ("text-table", "table-vacuum", True),
    "table-air-nm.txt": ("text-table", "table-air-nm", True),
    "table-bare.dat": ("text-table", "table-bare", False),
    "spectrum-table.fits": ("fits-table", "tab-star", True),
    "spectrum-loglam-cells.fits": ("fits-table", "spectrum-loglam-cells", True),
    "spectrum-wcs-log.fits": ("fits-wcs-1d", "wcs-star", True),
    "spectrum-rows3.fits": ("fits-rows", "spectrum-rows3", True),
    "spectrum-rows2-transposed.fits": ("fits-rows", "spectrum-rows2-transposed", False),
}


@pytest.mark.parametrize("name,way", [(n, w) for n in sorted(ON_GRID) for w in WAYS
                                      if n.endswith(".fits") or w != "hdulist"])  # text: 3 ways
def test_on_grid_fixtures_four_ways(generic, name, way):
    reader, object_id, has_ivar = ON_GRID[name]
    (record,) = read_way(generic / name, way, reader)
    assert record.survey == "lamost" and record.meta["layout"] == reader
    assert record.object_id == object_id
    # 300 pixels at native pixels 320..619, one line at pixel 150: back exactly on the grid
    assert record.pixel_offset == 320 and record.n_pixels == 300
    np.testing.assert_allclose(record.wavelength, lamost_native_wavelength(300, 320))
    i = np.arange(300)
    expected = 1000 + 0.1 * i - 300 * np.exp(-0.5 * ((i - 150) / 4.0) ** 2)
    good = ~record.mask
    np.testing.assert_allclose(record.flux[good], expected[good], rtol=1e-6)
    if has_ivar:
        assert set(np.flatnonzero(record.mask)) == {10, 11}
        np.testing.assert_allclose(record.ivar[good], 0.01, rtol=1e-5)
    else:
        assert not record.mask.any() and not record.ivar.any()


def test_linear_air_wcs_is_resampled_and_shifted_to_vacuum(generic):
    (record,) = readers.read(str(generic / "spectrum-wcs-linear-air.fits"))
    assert record.meta["wavelength_medium"] == "air"
    # the line sits at 4400 A in air: in vacuum 4401.23 A
    line = record.wavelength[np.argmin(np.where(record.mask, np.inf, record.flux))]
    assert abs(line - 4401.23) < 1.2        # within a LAMOST pixel (~1.0 A here)
    assert np.all(record.flux[~record.mask] <= 1000 + 1e-9)


def test_caller_options_override_the_file(generic):
    path = str(generic / "table-no-medium.csv")
    with pytest.raises(SpectrumReadError, match="air or vacuum"):
        readers.read(path)
    (vac,) = readers.read(path, options={"medium": "vacuum"})
    (air,) = readers.read(path, options={"medium": "air"})
    assert vac.pixel_offset == 320
    # read as air, the same numbers are ~1.3 A redder in vacuum (~1.2 px at 4300 A): the
    # line at native pixel 470 moves one pixel on
    def line(r):
        return r.pixel_offset + int(np.argmin(np.where(r.mask, np.inf, r.flux)))
    assert line(vac) == 470 and line(air) == 471
    (third,) = readers.read(str(generic / "table-third-unnamed.csv"),
                            options={"uncertainty": "ivar"})
    assert set(np.flatnonzero(third.mask)) == {10, 11}


@pytest.mark.parametrize("name,format,reason", [
    ("table-no-medium.csv", None, "air or vacuum wavelengths not stated"),
    ("table-third-unnamed.csv", None, "third column is not named"),
    ("spectrum-wcs-none.fits", None, "no CRVAL1"),
    ("spectrum-wcs-none.fits", "fits-table", "no binary table"),
    ("spectrum-table-no-wave.fits", None, "none has a wavelength column"),
    ("spectrum-rows-unsorted.fits", None, "not a monotonic wavelength"),
    ("spectrum-table.fits", "fits-rows", "not 2 x N or 3 x N"),
])
def test_refusals_name_the_file_and_the_reason(generic, name, format, reason):
    with pytest.raises(SpectrumReadError) as info:
        readers.read(str(generic / name), format=format)
    assert info.value.path.endswith(name) and reason in info.value.reason
    assert name in str(info.value)


def test_bad_options_are_refused(generic, fixtures):
    with pytest.raises(SpectrumReadError, match="takes no option medium"):
        readers.read(str(fixtures / "spec-dr7-image.fits"), options={"medium": "air"})
    with pytest.raises(SpectrumReadError, match="air or vacuum expected"):
        readers.read(str(generic / "table-vacuum.csv"), options={"medium": "water"})
    with pytest.raises(SpectrumReadError, match="unknown wavelength unit"):
        readers.read(str(generic / "table-vacuum.csv"), options={"unit": "furlong"})
    with pytest.raises(SpectrumReadError, match="unknown format"):
        readers.read(str(generic / "table-vacuum.csv"), format="no-such-reader")


def test_unit_option_and_implausible_unstated_unit(tmp_path):
    wave = lamost_native_wavelength(100, 400) / 10          # nm, unit not stated
    text = "wavelength,flux\n" + "\n".join(f"{float(w)!r},1.0" for w in wave)
    path = tmp_path / "nm.csv"
    path.write_text("# vacuum\n" + text)
    with pytest.raises(SpectrumReadError, match="are not Angstrom"):
        readers.read(str(path))
    (record,) = readers.read(str(path), options={"unit": "nm"})
    assert record.pixel_offset == 400 and record.n_pixels == 100


def test_survey_files_are_not_claimed_by_generic_readers(fixtures, generic):
    assert readers.identify_format(str(fixtures / "spec-dr10-coadd.fits.gz")).name == \
        "lamost-lrs"
    assert readers.identify_format(str(fixtures / "spec-dr7-image.fits")).name == "lamost-lrs"
    assert readers.identify_format(str(fixtures / "xp-sampled.csv")).name == "gaia-xp-sampled"
    assert readers.identify_format(str(generic / "spec-1234-56789-0042.fits")).name == \
        "sdss-spec"


def test_folder_scan_reads_generic_spectra_and_skips_other_tables(generic, tmp_path):
    (tmp_path / "labels.csv").write_text("obsid,teff\n1,5000\n")
    (tmp_path / "notes.txt").write_text("observing notes, not a spectrum\n")
    (tmp_path / "star.csv").write_bytes((generic / "table-vacuum.csv").read_bytes())
    names = {p.rsplit("/", 1)[-1] for p in readers.iter_spectrum_files([tmp_path])}
    assert names == {"star.csv"}
    records, refused = readers.read_many([generic])
    assert {r["path"].rsplit("/", 1)[-1] for r in refused} == {
        "table-no-medium.csv", "table-third-unnamed.csv", "spectrum-wcs-none.fits",
        "spectrum-rows-unsorted.fits", "spectrum-table-no-wave.fits"}
    assert len(records) == 10     # 15 files, 5 refused


REAL_WCS = "UM669_nF-cut.fits.gz"   # real MagE 1-D spectrum, log-linear WCS (DC-FLAG = 1)


@pytest.mark.parametrize("way", WAYS)
def test_real_log_linear_wcs_file_four_ways(way):
    """A real 1-D image (tests/fixtures/specutils/README.md) that does not state air or
    vacuum: refused with that reason, read once the caller states it."""
    import gzip
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "fixtures" / "specutils" / REAL_WCS
    with pytest.raises(SpectrumReadError, match="air or vacuum wavelengths not stated"):
        readers.read(str(path))
    records = read_way(path, way, "fits-wcs-1d", {"medium": "vacuum"})
    (record,) = records
    assert record.object_id == "UM669" and record.meta["layout"] == "fits-wcs-1d"
    # 3041-5759 A: from the first LAMOST pixel (3700 A) to ~5750 A, no gaps
    assert record.pixel_offset == 0 and 1900 < record.n_pixels < 1925
    assert not record.mask.any() and np.isfinite(record.flux).all()
    # the resampled flux keeps the file's mean over the same wavelengths (flux conserving)
    with fits.open(io.BytesIO(gzip.decompress(path.read_bytes()))) as hdul:
        raw = hdul[0].data.astype(float)
    wave = 10 ** (3.48308100271 + 3.18703100992e-05 * np.arange(raw.size))
    inside = (wave > record.wavelength[100]) & (wave < record.wavelength[1800])
    assert np.mean(record.flux[100:1800]) == pytest.approx(np.mean(raw[inside]), rel=0.01)


def test_comments_state_the_medium_only_when_they_mean_it(tmp_path):
    wave = lamost_native_wavelength(50, 400)
    body = "wavelength,flux\n" + "\n".join(f"{float(w)!r},1.0" for w in wave)
    noisy = tmp_path / "noisy.csv"
    noisy.write_text("# air-glow lines removed by hand\n" + body)
    with pytest.raises(SpectrumReadError, match="air or vacuum wavelengths not stated"):
        readers.read(str(noisy))
    stated = tmp_path / "stated.csv"
    stated.write_text("# wavelengths in air, Angstrom\n" + body)
    (record,) = readers.read(str(stated))
    assert record.meta["wavelength_medium"] == "air"
