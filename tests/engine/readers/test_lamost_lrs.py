"""LAMOST LRS reader: three layouts, read four ways, and every refusal with its reason."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from engine import readers
from engine.errors import SpectrumReadError
from engine.grids import lamost_native_wavelength
from engine.readers import lamost_lrs
from tests.engine.readers import ways
from tests.engine.readers.ways import WAYS

LAYOUTS = {  # fixture file -> (layout, data release, object id, has pipeline norm)
    "spec-dr10-coadd.fits.gz": ("coadd", "DR10", "123456789", True),
    "spec-dr7-image.fits": ("image", "DR7", "123456789", False),
    "spec-pilot-dr1.fits": ("pilot", "DR1", "spec-55555-TEST_sp01-001", True),
}


def read_way(path, way):
    return ways.read_way(path, way, lamost_lrs.NAME)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fixture_layouts_four_ways(fixtures, name, way):
    layout, release, object_id, has_norm = LAYOUTS[name]
    (record,) = read_way(fixtures / name, way)
    assert record.survey == "lamost"
    assert record.meta["layout"] == layout
    assert record.data_release == release
    assert record.object_id == object_id
    # make_fixtures.py writes 300 px starting at native pixel 320 with a line at pixel 150.
    assert record.pixel_offset == 320 and record.n_pixels == 300
    np.testing.assert_allclose(record.wavelength, lamost_native_wavelength(300, 320))
    i = np.arange(300)
    expected = 1000 + 0.1 * i - 300 * np.exp(-0.5 * ((i - 150) / 4.0) ** 2)
    np.testing.assert_allclose(record.flux, expected, rtol=1e-6)
    assert set(np.flatnonzero(record.mask)) == {10, 11, 20}   # ivar = 0 twice, andmask once
    assert record.ivar[10] == 0 and record.ivar[0] == pytest.approx(0.01)
    assert (record.norm_flux is not None) == has_norm
    assert record.snr == {"u": 10.0, "g": 11.0, "r": 12.0, "i": 13.0, "z": 14.0}
    assert (record.obj_class, record.subclass, record.ra) == ("STAR", "G2", 10.5)


REFUSALS = {
    "med-mrs.fits": "medium-resolution",
    "bad-truncated.fits.gz": "truncated or corrupt gzip",
    "bad-truncated.fits": "truncated FITS",
    "bad-not-fits.fits": "not FITS",
    "bad-empty.fits": "empty",
    "bad-all-nan.fits": "NaN",
    "bad-zero-ivar.fits": "inverse variance is zero",
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusals_name_file_and_reason(fixtures, name):
    with pytest.raises(SpectrumReadError) as info:
        readers.read(str(fixtures / name))
    assert info.value.path.endswith(name)
    assert REFUSALS[name] in info.value.reason
    assert name in str(info.value)


def test_truncated_at_block_boundary_is_refused(fixtures, tmp_path):
    # A cut on a 2880-byte boundary passes the size check; astropy's warning must not leak.
    raw = (fixtures / "spec-dr7-image.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(raw[:2 * 2880])
    with pytest.raises(SpectrumReadError, match="cut.fits: .*(truncated|corrupt)"):
        readers.read(str(cut))


def test_identify_is_specific(fixtures):
    assert lamost_lrs.identify(str(fixtures / "spec-dr7-image.fits"))
    assert not lamost_lrs.identify(str(fixtures / "xp-sampled.csv"))
    assert not lamost_lrs.identify(str(fixtures / "bad-empty.fits"))


# ---- real files -------------------------------------------------------------------------------
REAL = {
    "lamost_dr10/spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz": ("coadd", "DR10"),
    "lamost_dr7/spectra/101008.fits": ("image", "DR7"),          # gzip data named .fits
    "lamost_dr8_repeats/spectra/spec-55859-F5902_sp03-232.fits.gz": ("image", "DR8"),
    "lamost_dr1/spectra/spec-55862-B6212_sp06-003.fits": ("pilot", "DR1"),
    "lamost_misc/spec-57287-KP193637N444141V03_sp10-161.fits.gz": ("image", "DR6"),
}


@pytest.mark.real_data
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_layouts_four_ways(shared_data, rel, way):
    layout, release = REAL[rel]
    (record,) = read_way(shared_data / rel, way)
    assert (record.meta["layout"], record.data_release) == (layout, release)
    assert record.pixel_offset == 0
    assert 3800 < record.n_pixels <= 3909
    assert record.wavelength[0] == pytest.approx(10 ** 3.5682)
    assert record.mask.mean() < 0.5 and np.isfinite(record.flux).all()
    assert set(record.snr) == set("ugriz")
    if layout == "pilot":
        # Row 3 is normalised flux (~1), not wavelength; no OBSID, so the file name is the id.
        assert record.object_id == "spec-55862-B6212_sp06-003"
        assert 0.5 < np.median(record.norm_flux) < 1.5
    else:
        assert record.object_id.isdigit()


@pytest.mark.real_data
def test_real_quirks_drop_bad_normalisation(shared_data):
    folder = shared_data / "lamost_dr10" / "spectra"
    norm_zero = readers.read(str(folder / "spec-59614-EG033855N024548V02_sp12-179.fits.gz"))[0]
    short = readers.read(str(folder / "spec-59674-HD141736N112006M01_sp06-144.fits.gz"))[0]
    good = readers.read(str(folder / "spec-59522-EG224840N075042B03_sp03-013.fits.gz"))[0]
    assert norm_zero.norm_flux is None      # NORM=0, NORMALIZATION is -9999 everywhere
    assert short.norm_flux is None          # NORMALIZATION shorter than FLUX
    assert good.norm_flux is not None and good.norm_flux.shape == good.flux.shape


@pytest.mark.real_data
def test_real_mrs_refused(shared_data):
    path = shared_data / "lamost_misc" / "med-58408-TD230151N343645T01_sp01-015.fits"
    with pytest.raises(SpectrumReadError, match="med-58408.*medium-resolution"):
        readers.read(str(path))


@pytest.mark.real_data
@pytest.mark.slow
def test_real_folders_counts(shared_data):
    folders = {"lamost_dr10": 1982, "lamost_dr8_repeats": 220, "lamost_dr7": 109,
               "lamost_dr1": 179, "lamost_misc": 2, "pairs_lamost_xp": 5}
    for folder, expected in folders.items():
        records, refused = readers.read_many([str(shared_data / folder)])
        lamost = [r for r in records if r.survey == "lamost"]
        assert len(lamost) == expected, folder
        if folder == "lamost_dr7":
            classes = collections.Counter(r.obj_class for r in lamost)
            assert classes == {"STAR": 96, "GALAXY": 9, "Unknown": 4}
        if folder == "lamost_misc":
            assert [r["path"].rsplit("/", 1)[-1] for r in refused] == [
                "med-58408-TD230151N343645T01_sp01-015.fits"]
        else:
            assert refused == []
