"""A deterministic stand-in for engine.inference.Embedder, for testing the indexer's sync
logic without a trained model. It has the Embedder's interface (version, dims, embed,
model_input, model_grid) and embeds by a fixed random projection of the spectrum resampled
onto a coarse grid, so similar spectra get similar vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.records import SURVEY_LAMOST, SURVEY_XP

GRIDS = {SURVEY_LAMOST: np.linspace(4000.0, 5600.0, 64),
         SURVEY_XP: np.linspace(3400.0, 10000.0, 48)}


@dataclass
class Batch:
    survey: str
    shared: np.ndarray
    own: np.ndarray
    params: dict
    sigmas: dict
    recon_error: np.ndarray
    translated: np.ndarray
    valid: np.ndarray


class ProjectionEmbedder:
    version = "test-projection-1"
    shared_dim = 16

    def __init__(self, version: str | None = None):
        if version:
            self.version = version
        rng = np.random.default_rng(7)
        self._proj = {s: rng.normal(size=(len(g), self.shared_dim)) for s, g in GRIDS.items()}
        self._own = {s: rng.normal(size=(len(g), 8)) for s, g in GRIDS.items()}

    def own_dim(self, survey: str) -> int:
        return 8

    def model_grid(self, survey: str) -> np.ndarray:
        return GRIDS[survey]

    def model_input(self, records):
        flux, weight = [], []
        for r in records:
            good = ~r.mask & np.isfinite(r.flux)
            f = np.interp(GRIDS[r.survey], r.wavelength[good], r.flux[good]) if good.sum() > 5 \
                else np.zeros(len(GRIDS[r.survey]))
            med = np.median(np.abs(f)) or 1.0
            flux.append(f / med)
            weight.append(np.ones_like(f) * (good.sum() > 5))
        return np.array(flux), np.array(weight)

    def embed(self, records) -> Batch:
        survey = records[0].survey
        x, w = self.model_input(records)
        valid = w[:, 0] > 0
        shared = (x - 1.0) @ self._proj[survey]
        shared /= np.linalg.norm(shared, axis=1, keepdims=True) + 1e-12
        own = x @ self._own[survey]
        other = SURVEY_XP if survey == SURVEY_LAMOST else SURVEY_LAMOST
        return Batch(survey, shared.astype(np.float32), own.astype(np.float32),
                     {"teff": x.mean(1) * 5000}, {"teff": np.full(len(x), 100.0)},
                     np.abs(x - 1).mean(1), np.ones((len(x), len(GRIDS[other]))), valid)
