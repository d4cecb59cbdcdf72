"""SDSS/BOSS spec files: a synthetic file in the layout and tiny cuts of two real files
(tests/fixtures/sdss/README.md), each read four ways; resolution matching; a shifted
synthetic spectrum's velocity through the reader; and the real SDSS star's parameters, velocity
(against its own Balmer lines) and LAMOST / Gaia XP neighbours compared with what SDSS says."""

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


def _line_flux(loglam: np.ndarray, step: float, centres: np.ndarray, depths: np.ndarray,
               sigma_px: float) -> np.ndarray:
    """Continuum 1 minus Gaussian lines (sigma in 1e-4 log10 pixels), each pixel the mean over
    its bin of width `step` centred on loglam (SDSS's and LAMOST's convention alike)."""
    from scipy.special import erf
    flux = np.ones(loglam.size)
    for c, d in zip(np.log10(centres), depths, strict=True):
        z = np.stack([loglam - step / 2, loglam + step / 2]) - c
        cdf = 0.5 * (1 + erf(z / (sigma_px * 1e-4 * np.sqrt(2))))
        flux -= d * (cdf[1] - cdf[0]) * (sigma_px * 1e-4 * np.sqrt(2 * np.pi)) / step
    return flux


@pytest.mark.parametrize("start", [3.58, 3.58005])      # SDSS pixels on / half off LAMOST's
@pytest.mark.parametrize("rv", [-147.0, 60.0])
def test_velocity_of_a_shifted_spectrum_survives_the_sdss_path(start, rv):
    # Lines at known vacuum wavelengths, shifted by rv, on an SDSS loglam grid (pixel
    # centres) with wdisp 0.9 px (so the reader convolves), read, preprocessed and fitted
    # against the same lines at rest computed directly on the model grid at LAMOST's width:
    # a pixel-convention or kernel-centring slip of 0.5 px would show as ~35 km/s.
    from engine.grids import LAMOST_MODEL_N_PIXELS
    from engine.preprocess import lamost_inputs
    from engine.rv import C_KMS, fit_velocity
    rng = np.random.default_rng(3)
    rest = rng.uniform(3950, 5650, 80)
    depths, width = rng.uniform(0.1, 0.5, 80), 1.5
    n = 4600
    loglam = start + 1e-4 * np.arange(n)
    flux = _line_flux(loglam, 1e-4, rest * (1 + rv / C_KMS), depths, width)
    flux *= 40.0 * (1 + (loglam - 3.6) / 0.3)              # a sloping continuum to remove
    coadd = fits.BinTableHDU.from_columns([
        fits.Column(name="flux", format="E", array=flux.astype(np.float32)),
        fits.Column(name="loglam", format="E", array=loglam.astype(np.float32)),
        fits.Column(name="ivar", format="E", array=np.full(n, 100.0, np.float32)),
        fits.Column(name="and_mask", format="J", array=np.zeros(n, np.int32)),
        fits.Column(name="wdisp", format="E", array=np.full(n, 0.9, np.float32)),
    ], name="COADD")
    (record,) = sdss_spec.read(fits.HDUList([fits.PrimaryHDU(), coadd]), path="shifted.fits")
    inputs = lamost_inputs([record])
    model_loglam = 3.602 + 1e-4 * np.arange(LAMOST_MODEL_N_PIXELS)
    lamost_width = np.sqrt(width ** 2 + float(sigma_pixels(1800)) ** 2 - 0.9 ** 2)
    template = _line_flux(model_loglam, 1e-4, rest, depths, lamost_width)
    got, sigma = fit_velocity(inputs.flux, inputs.weight, template, np.ones_like(template))
    assert got[0] == pytest.approx(rv, abs=3.0)
    assert sigma[0] < 3.0


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


def test_real_sdss_star_velocity_matches_its_balmer_lines(sdss_real):
    """The template-fit RV of spec-4961-55719-0378 (about -192 km/s) against the centres of
    H-beta and H-delta fitted on SDSS's own pixels (no resampling, no convolution, no engine
    code): they agree (about -190), so the difference from SDSS's Z (c z = -148 km/s) is not
    made by the reader's resampling. (Ca II H and K are left out: H blends with H-epsilon and
    K may carry interstellar absorption near 0 km/s.)"""
    from scipy.optimize import curve_fit

    from engine.inference import Embedder
    from engine.rv import C_KMS

    with fits.open(sdss_real / STAR) as hdul:
        lam = 10.0 ** hdul["COADD"].data["loglam"].astype(np.float64)
        flux = hdul["COADD"].data["flux"].astype(np.float64)

    def line(x, depth, mu, sigma, c0, c1):
        return c0 + c1 * (x - mu) - depth * np.exp(-0.5 * ((x - mu) / sigma) ** 2)

    velocities = []
    for rest in (4102.892, 4862.683):                     # H-delta, H-beta (vacuum)
        guess = rest * (1 - 170 / C_KMS)
        near = np.abs(lam - guess) < 8.0
        x, y = lam[near], flux[near]
        p, _ = curve_fit(line, x, y, p0=[np.ptp(y), guess, 3.0, y.max(), 0.0])
        velocities.append((p[1] / rest - 1) * C_KMS)
    (record,) = readers.read(str(sdss_real / STAR))
    rv = float(Embedder().embed([record]).params["rv"][0])
    assert abs(rv - np.mean(velocities)) < 15.0, (rv, velocities)


@pytest.mark.slow
@pytest.mark.real_data
def test_real_sdss_star_neighbours_in_lamost_and_xp(sdss_real, shared_data):
    """The star's neighbours among the real LAMOST DR10 spectra (LASP labels; a LAMOST-like
    input, so the same instrument: nearest in the shared space) and the XP library's test
    split (APOGEE labels; the other instrument: ordered as a search orders them,
    engine/cross_rank.py): metal-poor F/G dwarfs, like the star. In the shared space alone
    its 10 nearest XP stars have median APOGEE logg 2.4 (giants)."""
    from engine.cross_rank import load_cross_rank
    from engine.inference import Embedder
    from engine.readers.lamost_labels import attach_labels, load_lamost_labels
    from training.cross_rank_fit import cross_neighbours

    embedder = Embedder()
    (star,) = readers.read(str(sdss_real / STAR))
    q = embedder.embed([star])
    lamost, _ = readers.read_many([shared_data / "lamost_dr10" / "spectra"])
    lamost = attach_labels(lamost, load_lamost_labels(str(shared_data / "lamost_dr10" /
                                                          "labels.csv")))
    xp = readers.read_xp_library(split="test")
    for records, survey in ((lamost, "lamost"), (xp, "gaia_xp")):
        batch = embedder.embed(records)
        if survey == "lamost":
            scores = np.where(batch.valid, batch.shared @ q.shared[0], -np.inf)
            nearest = np.argsort(-scores)[:10]
        else:
            nearest = cross_neighbours(q, batch, load_cross_rank(None), 10)[0]
        top = [records[i] for i in nearest]
        teff = np.median([r.labels["teff"] for r in top if "teff" in r.labels])
        feh = np.median([r.labels["feh"] for r in top if "feh" in r.labels])
        logg = np.median([r.labels["logg"] for r in top if "logg" in r.labels])
        print(f"{survey}: median Teff {teff:.0f} K, logg {logg:.2f}, [Fe/H] {feh:.2f}")
        assert 5300 < teff < 6900, survey
        assert logg > 3.5 and feh < -0.7, survey
