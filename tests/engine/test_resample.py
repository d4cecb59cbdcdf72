"""engine/resample.py and engine/wavelength.py: the one resampling function and the one
wavelength conversion that every non-LAMOST input goes through."""

from __future__ import annotations

import numpy as np
import pytest

from engine.grids import lamost_native_wavelength
from engine.resample import (
    degrade_to_lamost, log10_edges, resample_to_lamost_grid, sigma_pixels,
)
from engine.wavelength import air_to_vacuum, to_vacuum_angstrom, unit_scale, vacuum_to_air


def test_on_grid_input_is_copied_exactly():
    rng = np.random.default_rng(0)
    wave = lamost_native_wavelength(500, 300)
    flux, ivar = rng.uniform(1, 2, 500), np.full(500, 4.0)
    ivar[10] = 0
    out = resample_to_lamost_grid(wave, flux, ivar)
    assert out.pixel_offset == 300 and out.flux.size == 500
    np.testing.assert_allclose(out.flux[~out.mask], flux[~out.mask], rtol=1e-10)
    np.testing.assert_allclose(out.ivar[~out.mask], 4.0, rtol=1e-8)
    assert list(np.flatnonzero(out.mask)) == [10]


def test_decreasing_input_gives_the_same_result():
    wave = lamost_native_wavelength(200, 400)
    flux = np.linspace(1, 2, 200)
    a = resample_to_lamost_grid(wave, flux)
    b = resample_to_lamost_grid(wave[::-1], flux[::-1])
    np.testing.assert_allclose(a.flux, b.flux)
    assert a.pixel_offset == b.pixel_offset


def test_flux_is_conserved_on_a_linear_grid():
    """An absorption line's equivalent width (integral of 1 - flux) survives resampling
    from a 0.5 A linear grid to the ~1.1 A log grid, to 1e-6."""
    wave = np.arange(4000.0, 6000.0, 0.5)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 5000.0) / 3.0) ** 2)
    out = resample_to_lamost_grid(wave, flux)
    edges = 10 ** (3.5682 + 1e-4 * (np.arange(out.pixel_offset,
                                              out.pixel_offset + out.flux.size + 1) - 0.5))
    ew_out = np.sum((1 - out.flux) * np.diff(edges))
    ew_in = np.sum((1 - flux) * 0.5)
    assert ew_out == pytest.approx(ew_in, rel=1e-6)
    assert not out.mask.any()


def test_variance_of_averaged_pixels():
    """Four input pixels of variance 1 per output pixel: the mean has variance ~1/4."""
    edges = 10 ** (3.5682 + 1e-4 * (np.arange(1000, 1101) - 0.5))
    fine = np.sort(np.concatenate([np.linspace(a, b, 5)[:-1] for a, b in
                                   zip(edges[:-1], edges[1:], strict=True)]))
    fine = fine[:-1] + np.diff(fine) / 2
    out = resample_to_lamost_grid(fine, np.ones(fine.size), np.ones(fine.size))
    inner = out.ivar[2:-2]
    assert np.all(np.abs(inner - 4.0) < 0.5)


def test_gaps_and_masked_pixels_are_masked():
    wave = lamost_native_wavelength(400, 500)
    keep = np.ones(400, bool)
    keep[100:150] = False                        # a gap in the sampling
    mask = np.zeros(400, bool)
    mask[300:310] = True                         # flagged pixels
    out = resample_to_lamost_grid(wave[keep], np.ones(keep.sum()), mask=mask[keep])
    assert out.mask[100:150].all() and not out.mask[90:99].any()
    assert out.pixel_offset == 500 and out.flux.size == 400
    assert out.mask[300:310].all() and not out.mask[290:299].any()
    # no NaN anywhere: masked pixels carry 0
    assert np.isfinite(out.flux).all() and np.all(out.flux[out.mask] == 0)


@pytest.mark.parametrize("wave,reason", [
    (np.array([1000.0, 1001.0, 1002.0]), "does not cover"),
    (np.array([5000.0, 5001.0, 5000.5]), "not strictly"),
    (np.array([5000.0, np.nan, 5002.0]), "finite"),
])
def test_unplaceable_axes_are_refused(wave, reason):
    with pytest.raises(ValueError, match=reason):
        resample_to_lamost_grid(wave, np.ones(wave.size))


def test_log10_edges_are_geometric_midpoints():
    wave = lamost_native_wavelength(3, 10)
    edges = log10_edges(wave)
    np.testing.assert_allclose(np.diff(edges), 1e-4, rtol=1e-9)


def test_degrade_broadens_a_narrow_line_to_lamost_resolution():
    n = 81
    flux = np.zeros(n)
    flux[40] = 1.0
    out, ivar, mask = degrade_to_lamost(flux, np.ones(n), np.zeros(n, bool), 0.0)
    x = np.arange(n) - 40
    sigma = np.sqrt(np.sum(out * x ** 2) / np.sum(out))
    assert sigma == pytest.approx(float(sigma_pixels(1800)), rel=0.02)
    assert out.sum() == pytest.approx(1.0)
    # already as broad as LAMOST: unchanged
    same, _, _ = degrade_to_lamost(flux, np.ones(n), np.zeros(n, bool), 1.5)
    np.testing.assert_allclose(same, flux)


def test_air_vacuum_known_lines():
    # H-beta and H-alpha: air 4861.33 / 6562.80 A, vacuum 4862.68 / 6564.61 A
    np.testing.assert_allclose(air_to_vacuum([4861.33, 6562.80]), [4862.68, 6564.61], atol=0.01)
    wave = np.linspace(3500, 9500, 50)
    np.testing.assert_allclose(vacuum_to_air(air_to_vacuum(wave)), wave, atol=1e-7)


def test_units_and_unstated_units():
    assert unit_scale("nm") == 10 and unit_scale("[Angstrom]") == 1
    np.testing.assert_allclose(to_vacuum_angstrom([500.0, 501.0], "nm", "vacuum"), [5000, 5010])
    with pytest.raises(ValueError, match="not Angstrom"):
        to_vacuum_angstrom([500.0, 501.0], None, "vacuum")
    with pytest.raises(ValueError, match="unknown wavelength unit"):
        unit_scale("erg")
    with pytest.raises(ValueError, match="not stated"):
        to_vacuum_angstrom([5000.0, 5001.0], None, None)


def _sdss_like_lines(start: float, centres: np.ndarray, n: int = 3000, sigma_px: float = 1.2
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Continuum 1 with Gaussian lines (sigma in 1e-4 log10 pixels), each pixel the line's
    mean over its bin, on loglam = start + 1e-4 i (SDSS: loglam is the pixel centre)."""
    from scipy.special import erf
    loglam = start + 1e-4 * np.arange(n)
    edges = np.r_[loglam - 5e-5, loglam[-1] + 5e-5]
    flux = np.ones(n)
    for c in np.log10(centres):
        cdf = 0.5 * (1 + erf((edges - c) / (sigma_px * 1e-4 * np.sqrt(2))))
        flux -= 0.5 * np.diff(cdf)
    return 10.0 ** loglam, flux


@pytest.mark.parametrize("start", [3.58, 3.58005, 3.58003])   # on, half and 0.3 px off grid
@pytest.mark.parametrize("sigma_in", [0.9, 2.0])               # convolved / left as it is
def test_line_centres_are_kept_through_degrade_and_resample(start, sigma_in):
    # The SDSS path: convolve on the input's own 1e-4 log grid, then resample onto LAMOST's.
    # A pixel-centre/edge slip or an off-centre kernel would move every line by a fraction
    # of a pixel (0.5 px ~ 35 km/s); the centroids must stay within 0.05 px.
    centres = np.array([4102.89, 4341.69, 4862.68, 5174.13, 5500.0]) * (1 - 147.0 / 299792.458)
    wave, flux = _sdss_like_lines(start, centres)
    ivar, mask = np.full(flux.size, 1e4), np.zeros(flux.size, bool)
    deg, div, dmask = degrade_to_lamost(flux, ivar, mask, sigma_in)
    out = resample_to_lamost_grid(wave, deg, div, dmask)
    for c in centres:
        expected = (np.log10(c) - 3.5682) / 1e-4 - out.pixel_offset
        k = np.arange(int(round(expected)) - 5, int(round(expected)) + 6)
        depth = 1.0 - out.flux[k]
        assert np.sum(depth * k) / np.sum(depth) == pytest.approx(expected, abs=0.05), c
