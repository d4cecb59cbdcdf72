"""Redshift evidence (engine/redshift.py) on synthetic spectra: a star's lines at a galaxy's
redshift are found there, in noise units; a star at a stellar velocity, pure noise and a
broad continuum misfit are not evidence."""

from __future__ import annotations

import numpy as np
import pytest

from engine.redshift import redshift_evidence, stellar_templates

L = 1462


def _lines(shift_px: float = 0.0, depth: float = 0.4) -> np.ndarray:
    x = np.arange(L, dtype=float)
    centres = np.linspace(60, L - 60, 25) + np.sin(np.arange(25)) * 13   # irregular spacing
    return 1 - sum(depth * np.exp(-0.5 * ((x - c - shift_px) / 3.0) ** 2) for c in centres)


@pytest.fixture(scope="module")
def templates() -> np.ndarray:
    recon = np.stack([_lines(depth=d) for d in np.linspace(0.2, 0.6, 5)])
    return stellar_templates(recon, np.linspace(4000, 7000, 5), n=5)


def _evidence(flux: np.ndarray, noise: float, templates: np.ndarray):
    sigma = np.full(flux.shape, noise)
    return redshift_evidence(flux, sigma, np.ones(flux.shape), templates)


def test_lines_at_a_galaxy_redshift_are_found_there(templates):
    rng = np.random.default_rng(0)
    shift = 400                                   # 1e-4 dex pixels: z = 0.096
    flux = _lines(shift)[None, :] + rng.normal(0, 0.1, (1, L))
    ev, z = _evidence(flux, 0.1, templates)
    assert ev[0] > 10
    assert z[0] == pytest.approx(10 ** (shift * 1e-4) - 1, abs=0.002)


@pytest.mark.parametrize("shift", [0, 5, -10])   # up to ~700 km/s: a star's velocity
def test_a_star_at_a_stellar_velocity_is_not_evidence(templates, shift):
    rng = np.random.default_rng(1)
    flux = _lines(shift)[None, :] + rng.normal(0, 0.05, (1, L))
    ev, _ = _evidence(flux, 0.05, templates)
    assert ev[0] < 0


def test_noise_and_a_continuum_misfit_are_not_evidence(templates):
    rng = np.random.default_rng(2)
    n = 200
    noise = 1 + rng.normal(0, 0.2, (n, L))
    tilted = _lines()[None, :] * (1 + 0.3 * np.sin(np.linspace(0, 3, L)))[None, :]
    ev, _ = _evidence(noise, 0.2, templates)
    # under noise the peaks are in noise units: far and near maxima differ by a few units
    assert np.quantile(ev, 0.99) < 5
    ev_tilted, _ = _evidence(tilted + rng.normal(0, 0.02, (1, L)), 0.02, templates)
    assert ev_tilted[0] < 0


def test_too_few_pixels_give_nan(templates):
    flux = _lines()[None, :]
    weight = np.zeros(flux.shape)
    weight[0, :50] = 1
    ev, z = redshift_evidence(flux, np.full(flux.shape, 0.1), weight, templates)
    assert np.isnan(ev[0]) and np.isnan(z[0])
