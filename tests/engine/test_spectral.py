"""Spectrum-space PCA bases: fit, project, save/load exactly, and the bundle version."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.bundle import DEFAULT_BUNDLE, load_bundle, restamp_version
from engine.spectral import SpectralBasis, fit_basis, load_bases, save_bases


def synthetic(n=200, length=120, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    a, b = rng.normal(size=(2, n, 1))
    flux = (1 + 0.1 * a * np.sin(6 * t) + 0.05 * b * np.cos(11 * t)
            + 0.01 * rng.normal(size=(n, length)))
    weight = np.ones_like(flux)
    weight[:, :5] = 0
    return flux, weight


def test_fit_recovers_the_signal_subspace_and_projection_is_unit_norm():
    flux, weight = synthetic()
    basis = fit_basis("lamost", flux, weight, n_components=2)
    assert basis.components.shape == (2, 120)
    z = basis.project(flux, weight)
    assert np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    # two components hold nearly all the variance of a two-parameter family
    x = flux - 1 - basis.mean
    resid = x - (x @ basis.components.T) @ basis.components
    assert (resid[:, 5:] ** 2).sum() / (x[:, 5:] ** 2).sum() < 0.05


def test_masked_pixels_do_not_move_the_projection():
    flux, weight = synthetic()
    basis = fit_basis("lamost", flux, weight, n_components=2)
    spoiled = flux.copy()
    spoiled[:, :5] = 1e6                    # garbage where weight == 0
    assert np.allclose(basis.project(spoiled, weight), basis.project(flux, weight))


def test_save_load_round_trip_is_exact_even_for_fortran_ordered_arrays(tmp_path):
    comps = np.asfortranarray(np.random.default_rng(1).normal(size=(4, 30)))
    bases = {"gaia_xp": SpectralBasis("gaia_xp", np.arange(30.0), comps)}
    save_bases(tmp_path, bases)
    back = load_bases(tmp_path)["gaia_xp"]
    assert np.array_equal(back.components, comps) and np.array_equal(back.mean, np.arange(30.0))


def test_adding_bases_changes_the_bundle_version(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    before = load_bundle(bundle).version
    bases = load_bases(bundle)
    if not bases:
        pytest.skip("shipped bundle has no spectral bases")
    (bundle / "spectral.safetensors").unlink()
    without = restamp_version(bundle)
    assert without != before and load_bundle(bundle).spectral == {}
    save_bases(bundle, bases)
    assert restamp_version(bundle) == before
    assert set(load_bundle(bundle).spectral) == {"lamost", "gaia_xp"}
