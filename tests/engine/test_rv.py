"""Radial velocity by template fit (engine/rv.py): synthetic shifts are recovered, masked
pixels take no part, templates round-trip through the bundle file; on real LAMOST
validation spectra the shipped bundle's templates agree with LASP."""

from __future__ import annotations

import numpy as np
import pytest

from engine.grids import LAMOST_MODEL_N_PIXELS
from engine.rv import (RvTemplates, fit_velocity, label_key, load_templates,
                       pixels_to_velocity, save_templates, shift_spectrum, velocity_to_pixels)

L = LAMOST_MODEL_N_PIXELS


def line_spectrum(seed: int = 0, n_lines: int = 60) -> np.ndarray:
    """A continuum-normalised spectrum of Gaussian absorption lines (~2 px wide, like LRS)."""
    rng = np.random.default_rng(seed)
    k = np.arange(L, dtype=np.float64)
    flux = np.ones(L)
    for c, depth, width in zip(rng.uniform(20, L - 20, n_lines), rng.uniform(0.1, 0.6, n_lines),
                               rng.uniform(1.5, 3.0, n_lines), strict=True):
        flux -= depth * np.exp(-0.5 * ((k - c) / width) ** 2)
    return flux


def observe(rest: np.ndarray, rv: float) -> np.ndarray:
    """The rest-frame line list seen at velocity rv, computed exactly (no interpolation)."""
    rng = np.random.default_rng(0)
    k = np.arange(L, dtype=np.float64)
    shift = float(velocity_to_pixels(rv))
    flux = np.ones(L)
    for c, depth, width in zip(rng.uniform(20, L - 20, 60), rng.uniform(0.1, 0.6, 60),
                               rng.uniform(1.5, 3.0, 60), strict=True):
        flux -= depth * np.exp(-0.5 * ((k - c - shift) / width) ** 2)
    return flux


def test_velocity_pixel_conversion_round_trips():
    v = np.array([-500.0, -69.0, 0.0, 12.3, 800.0])
    assert np.allclose(pixels_to_velocity(velocity_to_pixels(v)), v)
    # one model-grid pixel (1e-4 in log10 lambda) is ~69 km/s
    assert pixels_to_velocity(1.0) == pytest.approx(69.05, abs=0.05)


def test_shift_spectrum_moves_a_line_by_a_fraction_of_a_pixel():
    k = np.arange(200, dtype=np.float64)
    line = np.exp(-0.5 * ((k - 100.0) / 2.0) ** 2)
    out, ok = shift_spectrum(line, np.ones(200), 0.3)
    centre = (out * k).sum() / out.sum()
    assert centre == pytest.approx(100.3, abs=0.01)
    assert not ok[0] and ok[100]        # the first pixel would read outside the array


@pytest.mark.parametrize("rv", [-412.0, -37.5, 0.0, 8.2, 151.0])
def test_a_shifted_template_recovers_its_shift(rv):
    template = line_spectrum()
    rng = np.random.default_rng(1)
    observed = observe(template, rv) + 0.01 * rng.standard_normal(L)
    got, sigma = fit_velocity(observed[None], np.ones((1, L)), template, np.ones(L))
    assert got[0] == pytest.approx(rv, abs=1.0)
    assert 0 < sigma[0] < 5


def test_masked_pixels_are_ignored():
    template = line_spectrum()
    observed = observe(template, 63.0)
    weight = np.ones(L)
    weight[300:420] = 0.0                           # a masked run...
    garbage = observed.copy()
    garbage[300:420] = np.random.default_rng(2).uniform(-5, 50, 120)   # ...holding garbage
    clean, _ = fit_velocity(observed[None], weight[None], template, np.ones(L))
    dirty, _ = fit_velocity(garbage[None], weight[None], template, np.ones(L))
    assert dirty[0] == clean[0]
    assert clean[0] == pytest.approx(63.0, abs=1.0)
    nan_flux = observed.copy()
    nan_flux[300:420] = np.nan
    assert fit_velocity(nan_flux[None], weight[None], template, np.ones(L))[0][0] == clean[0]


def test_too_few_pixels_give_no_velocity():
    template = line_spectrum()
    weight = np.zeros((1, L))
    weight[0, 500:550] = 1.0
    rv, sigma = fit_velocity(template[None], weight, template, np.ones(L))
    assert np.isnan(rv[0]) and np.isnan(sigma[0])


def test_templates_are_chosen_by_labels_and_round_trip(tmp_path):
    flux = np.stack([line_spectrum(0), line_spectrum(5)])
    keys = label_key(np.array([[4500.0, 2.5, -0.5], [6500.0, 4.2, 0.0]]))
    t = RvTemplates(flux, np.ones_like(flux, dtype=np.float32), keys, 1.5, 2.0)
    assert list(t.choose(np.array([[4600.0, 2.4, -0.4], [6300.0, 4.3, np.nan]]))) == [0, 1]
    save_templates(tmp_path, t)
    back = load_templates(tmp_path)
    assert np.allclose(back.flux, flux) and np.array_equal(back.keys, keys)
    assert (back.sigma_scale, back.sigma_floor) == (1.5, 2.0)
    observed = np.stack([observe(flux[0], -20.0)])
    rv, sig = back.measure(observed, np.ones_like(observed),
                           np.array([[4500.0, 2.5, -0.5]]))
    assert rv[0] == pytest.approx(-20.0, abs=1.0)
    raw = fit_velocity(observed, np.ones_like(observed), flux[0], np.ones(L))[1]
    assert sig[0] == pytest.approx(np.hypot(1.5 * raw[0], 2.0))
    assert load_templates(tmp_path / "nowhere") is None


@pytest.mark.real_data
def test_shipped_templates_agree_with_lasp_on_validation_spectra(shared_data):
    """LAMOST DR10 validation-split stars (never used to build the templates): robust sigma
    of (template-fit rv - LASP c z) well under the 7-9 km/s of the PCA baseline."""
    from engine.bundle import load_bundle
    from engine.inference import Embedder
    from engine.models.specclip import LAMOST_LABELS
    from training import data as D
    from training.evaluate import load_lamost_files
    from training.metrics import robust_sigma

    bundle = load_bundle()
    if bundle.rv is None:
        pytest.skip("the shipped bundle has no RV templates")
    files = sorted((shared_data / "lamost_dr10").rglob("*.fits*"))
    exclude = D.pair_filenames(shared_data)
    labelled = load_lamost_files([p for p in files if p.name not in exclude],
                                 shared_data / "lamost_dr10" / "labels.csv")
    val = labelled.subset(np.array([i for i, o in enumerate(labelled.ids)
                                    if D.lamost_split(o) == "val"], np.int64))
    assert len(val) > 100
    assert LAMOST_LABELS[3] == "rv"
    out = Embedder(bundle).embed_arrays("lamost", val.flux, val.weight, val.scale)
    d = out.params["rv"] - val.labels[:, 3]
    assert robust_sigma(d) < 5.0
    z = np.abs(d) / out.sigmas["rv"]
    assert 0.55 < np.nanmean(z < 1) < 0.8


def test_the_torch_chi2_curves_equal_numpys_and_measure_keeps_numpy_on_the_cpu():
    import torch

    from engine.rv import _least_squares_chi2, chi2_curve, shifted_template, velocity_grid

    rng = np.random.default_rng(3)
    rest = line_spectrum(0)          # the lines observe() draws
    flux = np.stack([observe(rest, v) for v in (-240.0, 15.0, 470.0)])
    flux = flux + 0.01 * rng.standard_normal(flux.shape)
    weight = np.ones_like(flux, np.float32)
    weight[1, 300:420] = 0.0                       # a masked run
    flux[2, 50] = np.nan                           # a non-finite pixel takes no part
    shifted, usable = shifted_template(rest, np.ones(L, np.float32), velocity_grid())
    a = chi2_curve(flux, weight, shifted, usable)
    # the GPU path's torch calls, run on the CPU (chi2_curve itself takes numpy there)
    f = np.where(np.isfinite(flux) & (weight > 0) & usable[None], flux, 0.0)
    w = (np.isfinite(flux) & (weight > 0) & usable[None]).astype(np.float64)
    b = [t.numpy() for t in _least_squares_chi2(torch, *(torch.as_tensor(a, dtype=torch.float64)
         for a in (f, w, np.linspace(-1.0, 1.0, L), shifted)))]
    assert np.array_equal(a[1], b[1])
    assert np.allclose(a[0], b[0], rtol=1e-9, atol=1e-9)
    t = RvTemplates(rest[None], np.ones((1, L), np.float32), np.zeros((1, 3)))
    labels = np.tile([5500.0, 4.0, 0.0], (3, 1))
    rv_np, sig_np = t.measure(flux, weight, labels)
    rv_cpu, sig_cpu = t.measure(flux, weight, labels, device=torch.device("cpu"))
    assert np.array_equal(rv_np, rv_cpu) and np.array_equal(sig_np, sig_cpu)
    assert np.allclose(rv_np, [-240.0, 15.0, 470.0], atol=3.0)
