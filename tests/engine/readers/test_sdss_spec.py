"""SDSS/BOSS spec files: a synthetic file in the layout and tiny cuts of two real files
(tests/fixtures/sdss/README.md), each read four ways; resolution matching; and the real SDSS
star's parameters and LAMOST / Gaia XP neighbours compared with what SDSS says it is."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from engine import readers
from engine.errors import SpectrumReadError
from engine.readers import sdss_spec
from engine.resample import sigma_pixels
from tests.engine.readers import ways
from tests.engine.readers.ways import WAYS

STAR = "spec-4961-55719-0378-cut.fits.gz"     # BOSS, CLASS STAR, SUBCLASS F3/F5V
QSO = "spec-2127-53859-0085-cut.fits.gz"      # SDSS-II, CLASS QSO (a non-star)


def read_way(path, way):
    return ways.read_way(path, way, sdss_spec.NAME)


@pytest.mark.parametrize("way", WAYS)
def test_synthetic_layout_four_ways(generic, way):
    (record,) = read_way(generic / "spec-1234-56789-0042.fits", way)
    assert record.object_id == "sdss-1234-56789-0042" and record.survey == "lamost"
    assert (record.obj_class, record.subclass, record.data_release) == ("STAR", "G2",
                                                                       "SDSS v5_7_0")
    assert (record.ra, record.dec) == (150.5, 2.25)        # the fibre's, not the plate's
    assert record.snr == {"u": 5.0, "g": 30.0, "r": 40.0, "i": 35.0, "z": 20.0}
    assert record.pixel_offset == 320 and record.n_pixels == 300
    assert set(np.flatnonzero(record.mask)) == {10, 11, 20}   # ivar 0 twice, and_mask once
    # wdisp = 1.2 px is already broader than LAMOST (1.02 px): no convolution, same flux
    i = np.arange(300)
    expected = 1000 + 0.1 * i - 300 * np.exp(-0.5 * ((i - 150) / 4.0) ** 2)
    good = ~record.mask
    # float32 loglam puts SDSS pixels up to ~0.003 px off the grid: a 3e-5 mixing
    np.testing.assert_allclose(record.flux[good], expected[good], rtol=1e-4)


def _with_wdisp(path, wdisp: float) -> fits.HDUList:
    hdul = fits.open(io.BytesIO(path.read_bytes()))
    hdul["COADD"].data["wdisp"][:] = wdisp
    flux = np.ones(len(hdul["COADD"].data))
    flux[150] = 0.0                                   # an unresolved line
    hdul["COADD"].data["flux"][:] = flux
    return hdul


def test_sharper_spectra_are_convolved_to_lamost_resolution(generic):
    path = generic / "spec-1234-56789-0042.fits"
    with _with_wdisp(path, 0.6) as hdul:
        (record,) = readers.read(hdul, path=path.name)
    depth = 1 - record.flux
    x = np.arange(depth.size) - 150
    near = np.abs(x) <= 4
    width = np.sqrt(np.sum(depth[near] * x[near] ** 2) / np.sum(depth[near]))
    # the kernel adds sqrt(1.025^2 - 0.6^2) = 0.83 px to an unresolved line
    assert width == pytest.approx(np.sqrt(sigma_pixels(1800) ** 2 - 0.6 ** 2), rel=0.05)
    assert np.sum(depth[near]) == pytest.approx(1.0, rel=1e-3)   # equivalent width kept
    assert "wdisp" in record.meta["resolution"]


def test_not_sdss_is_refused(fixtures, generic):
    with pytest.raises(SpectrumReadError, match="not an SDSS spec file"):
        readers.read(str(generic / "spectrum-table.fits"), format="sdss-spec")
    assert not sdss_spec.identify(str(fixtures / "spec-dr10-coadd.fits.gz"))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name,cls", [(STAR, "STAR"), (QSO, "QSO")])
def test_real_sdss_files_four_ways(sdss_real, name, cls, way):
    (record,) = read_way(sdss_real / name, way)
    assert record.obj_class == cls and record.meta["instrument"] == "SDSS/BOSS"
    plate, mjd, fiber = name.split("-")[1:4]
    assert record.object_id == f"sdss-{plate}-{mjd}-{fiber}"
    # the cut keeps loglam 3.58-3.78: the whole model window (native pixels 338..1799)
    assert record.pixel_offset <= 338 and record.pixel_offset + record.n_pixels >= 1800
    assert record.mask[338 - record.pixel_offset:1800 - record.pixel_offset].mean() < 0.05


def test_real_sdss_star_parameters_are_plausible(sdss_real):
    """SDSS calls spec-4961-55719-0378 a STAR, SUBCLASS F3/F5V, OBJTYPE SPECTROPHOTO_STD
    (BOSS spectrophotometric standards are F subdwarfs: metal-poor, ~6000-6500 K)."""
    from engine.inference import Embedder

    (record,) = readers.read(str(sdss_real / STAR))
    assert record.subclass.startswith("F3/F5V") and record.meta["objtype"] == \
        "SPECTROPHOTO_STD"
    batch = Embedder().embed([record])
    assert batch.valid[0]
    teff, logg, feh = (float(batch.params[k][0]) for k in ("teff", "logg", "feh"))
    assert 5800 < teff < 6900 and 3.6 < logg < 4.7 and feh < -0.7


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.xfail(strict=True, reason="bundles 5cfd28776e28346b and ecbb89c7471bf007 (the same "
                   "shared space, bit-identical encoders): the star's 10 nearest XP "
                   "library stars in the shared space have median APOGEE logg 2.4 (giants); "
                   "its LAMOST neighbours and its own predicted parameters are right. The old "
                   "bundle passed. Cross-instrument retrieval is a known weakness (issue 10).")
def test_real_sdss_star_neighbours_in_lamost_and_xp(sdss_real, shared_data):
    """Nearest neighbours in the shared space among the real LAMOST DR10 spectra (LASP labels)
    and the XP library's test split (APOGEE labels): metal-poor F/G dwarfs, like the star."""
    from engine.inference import Embedder
    from engine.readers.lamost_labels import attach_labels, load_lamost_labels

    embedder = Embedder()
    (star,) = readers.read(str(sdss_real / STAR))
    query = embedder.embed([star]).shared[0]
    lamost, _ = readers.read_many([shared_data / "lamost_dr10" / "spectra"])
    lamost = attach_labels(lamost, load_lamost_labels(str(shared_data / "lamost_dr10" /
                                                          "labels.csv")))
    xp = readers.read_xp_library(split="test")
    for records, survey in ((lamost, "lamost"), (xp, "gaia_xp")):
        batch = embedder.embed(records)
        scores = np.where(batch.valid, batch.shared @ query, -np.inf)
        top = [records[i] for i in np.argsort(-scores)[:10]]
        teff = np.median([r.labels["teff"] for r in top if "teff" in r.labels])
        feh = np.median([r.labels["feh"] for r in top if "feh" in r.labels])
        logg = np.median([r.labels["logg"] for r in top if "logg" in r.labels])
        assert 5300 < teff < 6900, survey
        assert logg > 3.5 and feh < -0.7, survey
