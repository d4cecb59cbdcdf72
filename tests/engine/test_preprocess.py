"""Preprocessing: LAMOST continuum normalisation onto the model grid, XP 550 nm scaling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import readers
from engine.grids import lamost_native_wavelength
from engine.preprocess import fit_continuum, lamost_inputs, xp_inputs
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord
from tests.conftest import SHARED


def lamost_record(n=3909, offset=0, seed=0, mask_frac=0.0, norm=False):
    """A synthetic LAMOST spectrum: smooth sloped continuum times Gaussian absorption lines."""
    rng = np.random.default_rng(seed)
    wave = lamost_native_wavelength(n, offset)
    x = (wave - 6000) / 3000
    continuum = 500 * (1 + 0.4 * x - 0.3 * x ** 2)
    lines = np.ones(n)
    for centre in rng.uniform(3900, 8800, 60):
        lines -= 0.5 * np.exp(-0.5 * ((wave - centre) / 2.0) ** 2)
    flux = continuum * lines + rng.normal(0, 0.5, n)
    mask = rng.random(n) < mask_frac
    return SpectrumRecord(SURVEY_LAMOST, f"s{seed}", wave, flux, np.full(n, 4.0), mask,
                          pixel_offset=offset,
                          norm_flux=(flux / continuum) if norm else None,
                          meta={"continuum": continuum, "lines": lines})


def test_own_continuum_recovers_synthetic():
    records = [lamost_record(seed=s) for s in range(4)]
    out = lamost_inputs(records)
    assert out.flux.shape == (4, 1462) and out.flux.dtype == np.float32
    assert out.valid.all() and not out.pipeline_norm.any()
    truth = np.stack([r.meta["lines"][338:1800] for r in records])
    assert np.median(np.abs(out.flux - truth)) < 0.02
    expected_scale = [np.log10(np.median(r.meta["continuum"][338:1800])) for r in records]
    np.testing.assert_allclose(out.scale, expected_scale, atol=0.02)


def test_weight_zero_at_masked_and_uncovered_pixels():
    rec = lamost_record(mask_frac=0.1)
    short = lamost_record(n=1000, offset=338, seed=1)        # ends inside the window
    out = lamost_inputs([rec, short])
    np.testing.assert_array_equal(out.weight[0] == 0, rec.mask[338:1800])
    assert (out.weight[1, 1000:] == 0).all() and (out.flux[1, 1000:] == 1.0).all()
    assert set(np.unique(out.weight)) <= {0.0, 1.0}


def test_pipeline_norm_option_changes_inputs():
    rec = lamost_record(norm=True)
    pipe = lamost_inputs([rec], use_pipeline=True)
    own = lamost_inputs([rec])                       # default: our continuum, every layout
    assert pipe.pipeline_norm[0] and not own.pipeline_norm[0]
    np.testing.assert_allclose(pipe.flux[0], np.clip(rec.norm_flux[338:1800], -1, 5), rtol=1e-6)
    assert not np.array_equal(pipe.flux, own.flux)
    assert abs(float(pipe.scale[0] - own.scale[0])) < 0.02


def test_too_few_good_pixels_is_invalid():
    out = lamost_inputs([lamost_record(mask_frac=0.7), lamost_record(seed=3)])
    assert out.valid.tolist() == [False, True]
    assert (out.weight[0] == 0).all()


def test_fit_continuum_handles_empty_rows():
    flux = np.ones((2, 500))
    good = np.ones((2, 500), bool)
    good[1] = False
    cont = fit_continuum(flux, good)
    assert np.allclose(cont[0], 1.0) and np.isnan(cont[1]).all()


def test_wrong_survey_rejected():
    xp = SpectrumRecord(SURVEY_XP, "1", np.arange(343.0), np.ones(343), np.ones(343),
                        np.zeros(343, bool))
    with pytest.raises(ValueError, match="lamost"):
        lamost_inputs([xp])
    with pytest.raises(ValueError, match="gaia_xp"):
        xp_inputs([lamost_record()])


def xp_record(flux, medflux=1.0):
    return SpectrumRecord(SURVEY_XP, "7", np.arange(336.0, 1021.0, 2.0) * 10, flux,
                          np.ones(343), np.zeros(343, bool), meta={"medflux": medflux})


def test_xp_normalised_at_550nm_with_floor_and_negative_flux_kept():
    wl = np.arange(336.0, 1021.0, 2.0)
    flat = xp_record(np.full(343, 3.0), medflux=1e-15)
    red = np.where(wl < 600, 1e-4, 2.0)           # almost no flux at 550 nm: the floor acts
    negative = np.where(wl < 400, -0.1, 1.0)      # flux <= 0 at the blue end: still valid
    out = xp_inputs([flat, xp_record(red), xp_record(negative)])
    assert out.valid.all() and out.flux.shape == (3, 343)
    np.testing.assert_allclose(out.flux[0], 1.0)
    assert out.scale[0] == pytest.approx(np.log10(3e-15))
    assert out.flux[1].max() == pytest.approx(2.0 / (0.05 * 2.0))
    assert (out.weight[2] == 1).all() and out.flux[2, 0] < 0


def test_xp_masked_samples_weight_zero():
    rec = xp_record(np.ones(343))
    mask = np.zeros(343, bool)
    mask[:20] = True
    out = xp_inputs([replace(rec, mask=mask)])
    assert (out.weight[0, :20] == 0).all() and (out.weight[0, 20:] == 1).all()


@pytest.mark.real_data
def test_real_layouts_all_valid():
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    paths = [SHARED / p for p in (
        "lamost_dr10/spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz",
        "lamost_dr7/spectra/101008.fits",
        "lamost_dr1/spectra/spec-55862-B6212_sp06-003.fits",
        "lamost_dr8_repeats/spectra/spec-55859-F5902_sp03-232.fits.gz")]
    records, refused = readers.read_many(paths)
    out = lamost_inputs(records)                     # default: own continuum, every layout
    assert not refused and out.valid.all()
    assert out.pipeline_norm.tolist() == [False] * 4
    good = out.weight > 0
    assert 0.8 < np.median(out.flux[good]) < 1.1
    pipe = lamost_inputs(records, use_pipeline=True)  # DR10 and pilot/DR1 carry their own
    assert pipe.pipeline_norm.tolist() == [True, False, True, False]


def test_row_medians_equal_numpy_nanmedian():
    from engine.preprocess import _nanmedian_rows

    rng = np.random.default_rng(3)
    for n_cols in (1, 2, 7, 600, 1462):
        a = rng.normal(size=(9, n_cols))
        a[rng.random(a.shape) < 0.3] = np.nan
        a[0] = np.nan                      # no finite value: NaN, not a warning
        a[1, 0] = np.inf                   # an infinity counts as a value, as in numpy
        expected = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in a])
        got = _nanmedian_rows(a)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        assert np.array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
