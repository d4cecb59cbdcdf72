"""Batched inference with a trained bundle: embeddings, parameters, reconstructions and
cross-instrument translations for lists of SpectrumRecords (all of one survey). The networks
run on the CPU by default or on a CUDA GPU (`device`), and so do the LAMOST RV template fit's
chi-square curves; preprocessing and the spectrum-space projection stay on the CPU (numpy).

Never imports training code. Everything runs under torch.inference_mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from engine.bundle import Bundle, load_bundle
from engine.grids import lamost_model_wavelength, xp_wavelength_angstrom
from engine.models.decoders import to_target_space
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)


@dataclass
class EmbeddingBatch:
    """Model outputs for N records of one survey (row i = record i)."""

    survey: str
    shared: np.ndarray            # [N, Ds] float32, L2-normalised CLIP space
    own: np.ndarray               # [N, Do] float32, the instrument encoder's embedding
    params: dict[str, np.ndarray]  # name -> [N] (K, dex); NaN where invalid
    sigmas: dict[str, np.ndarray]  # name -> [N] predicted 1-sigma uncertainty
    recon_error: np.ndarray       # [N] RMS of own reconstruction over good pixels (decoder space)
    translated: np.ndarray        # [N, L_other] counterpart on the other model grid
    valid: np.ndarray             # [N] bool; False rows hold zeros / NaN
    spectral: np.ndarray | None = None  # [N, Dp] PCA spectrum vector (engine/spectral.py)
    continuum: np.ndarray | None = None  # [N] str, LAMOST: "pipeline" or "own" normalisation

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def subset(self, rows: np.ndarray) -> "EmbeddingBatch":
        """These rows only, in this order."""
        def take(v):
            if v is None or isinstance(v, str):
                return v
            return {k: a[rows] for k, a in v.items()} if isinstance(v, dict) else v[rows]
        return dataclasses.replace(self, **{f.name: take(getattr(self, f.name))
                                            for f in dataclasses.fields(self)})

    @staticmethod
    def concat(batches: Sequence["EmbeddingBatch"]) -> "EmbeddingBatch":
        """Row-wise concatenation of batches of one survey (None fields stay None)."""
        def cat(values):
            if values[0] is None or isinstance(values[0], str):
                return values[0]
            if isinstance(values[0], dict):
                return {k: np.concatenate([v[k] for v in values]) for k in values[0]}
            return np.concatenate(values)
        return dataclasses.replace(batches[0], **{
            f.name: cat([getattr(b, f.name) for b in batches])
            for f in dataclasses.fields(batches[0])})


DEVICES = ("cpu", "cuda", "cuda:N", "auto")


def resolve_device(name: str | None = None) -> torch.device:
    """The torch device for `name`: "cpu" (the default), "cuda", "cuda:N", or "auto" (the first
    CUDA GPU when torch sees one, else the CPU). A GPU asked for by name and not there is an
    error, never a silent fall-back to the CPU."""
    name = (name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "torch sees no CUDA GPU on this machine")
            raise ValueError(f"device {name!r} asked for, but {why} (torch {torch.__version__});"
                             " use --device cpu or auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but torch sees "
                             f"{torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", index)
    raise ValueError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")


def _survey_of(records: Sequence[SpectrumRecord]) -> str:
    surveys = {r.survey for r in records}
    if len(surveys) != 1:
        raise ValueError(f"Embedder.embed needs records of one survey, got {sorted(surveys)}")
    return surveys.pop()


class Embedder:
    """Run a bundle's model on records: `Embedder(load_bundle()).embed(records)`."""

    def __init__(self, bundle: Bundle | str | Path | None = None, batch_size: int = 256,
                 device: str | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.device = resolve_device(device)
        # moves the bundle's own model: an Embedder owns the bundle it is given
        self.model = self.bundle.model.to(self.device).eval()
        self.batch_size = int(batch_size)

    @contextlib.contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """Run torch on `n` intra-op threads inside the block (restored after). The indexer
        gives the embedder the cores its reader processes leave free: torch's idle threads
        spin for a while before sleeping, so more threads than free cores slow the readers."""
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, int(n)))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def reference(self):
        """The bundle's scoring reference (engine/reference.py), None if it has none."""
        if not hasattr(self, "_reference"):
            from engine.reference import load_reference

            self._reference = load_reference(self.bundle.path, self.version)
        return self._reference

    @property
    def shared_dim(self) -> int:
        return self.bundle.config.align.shared_dim

    def own_dim(self, survey: str) -> int:
        return self.model.encoders[survey].out_dim

    @staticmethod
    def model_grid(survey: str) -> np.ndarray:
        """Wavelengths (Angstrom) of the model input grid of `survey`."""
        if survey == SURVEY_LAMOST:
            return lamost_model_wavelength()
        if survey == SURVEY_XP:
            return xp_wavelength_angstrom()
        raise ValueError(f"unknown survey {survey!r}")

    def inputs(self, records: Sequence[SpectrumRecord]):
        """Preprocessed model inputs (flux, weight, scale, valid) for one survey's records,
        with the continuum the bundle was trained with (config preprocess.lamost_continuum)."""
        from engine.preprocess import lamost_inputs, xp_inputs

        survey = _survey_of(records)
        if survey == SURVEY_LAMOST:
            pipeline = self.bundle.config.preprocess.lamost_continuum == "pipeline"
            return lamost_inputs(list(records), use_pipeline=pipeline)
        return xp_inputs(list(records))

    def model_input(self, records: Sequence[SpectrumRecord]) -> tuple[np.ndarray, np.ndarray]:
        """(flux, weight) exactly as the model sees them, for plots."""
        x = self.inputs(records)
        return np.asarray(x.flux, np.float32), np.asarray(x.weight, np.float32)

    def embed(self, records: Sequence[SpectrumRecord]) -> EmbeddingBatch:
        if not records:
            raise ValueError("Embedder.embed needs at least one record")
        survey = _survey_of(records)
        x = self.inputs(records)
        batch = self.embed_arrays(survey, x.flux, x.weight, x.scale, x.valid)
        if survey == SURVEY_LAMOST:
            batch.continuum = np.where(np.asarray(x.pipeline_norm, bool), "pipeline", "own")
        basis = self.bundle.spectral.get(survey)
        if basis is not None:
            spectral = basis.project(x.flux, x.weight)
            spectral[~np.asarray(x.valid, bool)] = 0.0
            batch.spectral = spectral
        return batch

    def spectral_dim(self, survey: str) -> int | None:
        """Dimension of the spectrum-space vector, None when the bundle has no basis."""
        basis = self.bundle.spectral.get(survey)
        return basis.dim if basis is not None else None

    def reconstruct(self, records: Sequence[SpectrumRecord]) -> np.ndarray:
        """Own-spectrum reconstruction [N, L] from shared + private, model-input units."""
        survey = _survey_of(records)
        x = self.inputs(records)
        out = []
        with torch.inference_mode():
            for f, w, s in self._batches(x.flux, x.weight, x.scale):
                sh, pr = self.model.split(survey, self.model.align_features(survey, f, w, s))
                out.append(self.model.reconstruct(survey, sh, pr).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _batches(self, flux, weight, scale):
        flux = np.nan_to_num(np.asarray(flux, np.float32))
        weight = np.nan_to_num(np.asarray(weight, np.float32))
        scale = np.nan_to_num(np.asarray(scale, np.float32))
        for i in range(0, len(flux), self.batch_size):
            sl = slice(i, i + self.batch_size)
            yield tuple(torch.from_numpy(a[sl]).to(self.device) for a in (flux, weight, scale))

    def embed_arrays(self, survey: str, flux: np.ndarray, weight: np.ndarray,
                     scale: np.ndarray, valid: np.ndarray | None = None) -> EmbeddingBatch:
        """Same as `embed` on already preprocessed arrays (used by evaluation and benchmarks)."""
        m = self.model
        parts: dict[str, list] = {k: [] for k in ("shared", "own", "val", "sig", "err", "tr")}
        with torch.inference_mode():
            for f, w, s in self._batches(flux, weight, scale):
                h = m.encode(survey, f, w, s)
                feats = m.head_features(survey, f, w, s, h)   # the heads' (fine-tuned) view
                aligned = feats if m.cfg.align.features == "finetuned" else h
                sh, pr = m.split(survey, aligned)
                val, sig = m.params_from(survey, f, w, s, feats)
                rec = m.recon[survey](torch.cat([sh, pr], 1))
                good = (w > 0).to(f.dtype)
                err2 = ((rec - to_target_space(survey, f)) ** 2 * good).sum(1)
                parts["err"].append((err2 / good.sum(1).clamp_min(1)).sqrt())
                for k, v in (("shared", sh), ("own", h), ("val", val), ("sig", sig),
                             ("tr", m.translated(survey, sh))):
                    parts[k].append(v)
        cat = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
        n = len(cat["shared"])
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
        names = m.heads[survey].labels
        params = {nm: np.where(valid, cat["val"][:, i], np.nan) for i, nm in enumerate(names)}
        sigmas = {nm: np.where(valid, cat["sig"][:, i], np.nan) for i, nm in enumerate(names)}
        if survey == SURVEY_LAMOST and self.bundle.rv is not None and valid.any():
            # radial velocity by a template fit (engine/rv.py), not the head's rv output
            at = np.flatnonzero(valid)
            labels = np.stack([params[nm][at] for nm in ("teff", "logg", "feh")], 1)
            rv, rv_sig = self.bundle.rv.measure(np.asarray(flux)[at], np.asarray(weight)[at],
                                                labels, device=self.device)
            params["rv"], sigmas["rv"] = np.full(n, np.nan), np.full(n, np.nan)
            params["rv"][at], sigmas["rv"][at] = rv, rv_sig
        zero = ~valid
        for k in ("shared", "own", "tr"):
            cat[k][zero] = 0.0
        return EmbeddingBatch(survey, cat["shared"].astype(np.float32),
                              cat["own"].astype(np.float32), params, sigmas,
                              np.where(valid, cat["err"], np.nan), cat["tr"].astype(np.float32),
                              valid)
