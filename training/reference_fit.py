"""Fit a bundle's scoring reference (engine/reference.py) from the bundle and its training
data: `specclip fit-reference --bundle engine/bundles/small [--data ../shared/data]`.

Run it after every new bundle (the reference records the bundle version it was fitted for
and is refused with any other). The network is not touched, so the bundle's version id
stays the same.

Data (never the test splits), split by the model's own rules (training/data.py):
- *reference*: the stars the network trained on (LAMOST: labelled stars of the train split,
  each also with its own continuum; XP: the library's train split, at most 5,000 drawn);
- *validation*: the model's validation split (crc32(obsid or apogee_id) % 10 == 1), stars the
  network never trained on, as a user's spectra are. They are scored against the reference
  exactly as indexed spectra will be; their score quantiles and the 99th percentile of their
  OOD score (engine/reference.py: the threshold, target false-positive rate 1 %) are stored.
  The false-positive rate on stars not used to set the threshold is measured by 2-fold
  cross-fitting (quantiles and threshold from one half, the rate on the other) and recorded
  as `ood_fpr_crossfit` in reference.json.
LAMOST also gets stellar templates for the redshift evidence (engine/redshift.py): the
reconstructions of reference stars with the pipeline's normalisation and SNR > 50.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from engine.inference import Embedder
from engine.noise import model_sigma
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord
from engine.redshift import stellar_templates
from engine.reference import (BINS, OOD_K, OOD_QUANTILE, Reference, SurveyReference,
                              bin_residual, cosine_knn, lof_from_distances, ood_score,
                              ood_signals, save_reference)
from training.data import lamost_split, xp_split

log = logging.getLogger(__name__)

MAX_REFERENCE = 5_000
N_QUANTILES = 1001
KNN_K = 10
TEMPLATE_MIN_SNR = 50.0


def split_of(survey: str, key: str) -> str:
    """"train", "val" or "test": the model's own split of this star (training/data.py)."""
    return lamost_split(key) if survey == SURVEY_LAMOST else xp_split(key)


def is_validation(survey: str, key: str) -> bool:
    """The model's validation split: never trained on, never the test split."""
    return split_of(survey, key) == "val"


def _fold(key: str) -> int:
    """Halves of the validation stars for cross-fitting the OOD false-positive rate. Not a
    crc32: the validation rule fixes crc32 bits, and a prefixed crc32 is affine in them (every
    validation star fell in one half)."""
    return hashlib.sha256(key.strip().encode()).digest()[0] % 2


def _key(r: SpectrumRecord) -> str:
    return str(r.meta.get("apogee_id") or r.object_id)


def _model_outputs(embedder: Embedder, records: list[SpectrumRecord]) -> dict:
    """Valid records with shared vectors, reconstructions, inputs and their errors."""
    parts: dict[str, list] = {k: [] for k in ("shared", "recon", "flux", "sigma", "weight")}
    sigmas: dict[str, list] = {}
    params: dict[str, list] = {}
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
        for name, values in emb.params.items():
            params.setdefault(name, []).append(np.asarray(values)[ok])
        parts["recon"].append(embedder.reconstruct(chunk))
        parts["flux"].append(flux)
        parts["sigma"].append(model_sigma(chunk, flux, weight))
        parts["weight"].append(weight)
        kept.extend(chunk)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["param_sigmas"] = {k: np.concatenate(v) for k, v in sigmas.items()}
    out["params"] = {k: np.concatenate(v) for k, v in params.items()}
    out["records"] = kept
    return out


def _ood_quantiles(signals: dict[str, np.ndarray], sigmas: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    levels = np.linspace(0, 1, N_QUANTILES)
    return {**{k: np.nanquantile(v, levels) for k, v in signals.items()},
            **{f"sigma_{k}": np.nanquantile(v, levels) for k, v in sigmas.items()}}


def crossfit_fpr(signals: dict[str, np.ndarray], sigmas: dict[str, np.ndarray],
                 fold: np.ndarray) -> float:
    """Share of validation stars flagged when quantiles and threshold come from the other
    half: the false-positive rate on stars the calibration did not see."""
    flagged = []
    for f in (0, 1):
        fit, held = fold == f, fold != f
        q = _ood_quantiles({k: v[fit] for k, v in signals.items()},
                           {k: v[fit] for k, v in sigmas.items()})
        n = int(fit.sum())
        thr = np.nanquantile(ood_score(q, {k: v[fit] for k, v in signals.items()},
                                       {k: v[fit] for k, v in sigmas.items()}, n), OOD_QUANTILE)
        flagged.append(ood_score(q, {k: v[held] for k, v in signals.items()},
                                 {k: v[held] for k, v in sigmas.items()}, n) > thr)
    return float(np.mean(np.concatenate(flagged)))


def fit_survey(embedder: Embedder, records: list[SpectrumRecord], seed: int = 0
               ) -> tuple[SurveyReference, dict]:
    survey = records[0].survey
    val = [r for r in records if split_of(survey, _key(r)) == "val"]
    ref = [r for r in records if split_of(survey, _key(r)) == "train"]
    if len(ref) > MAX_REFERENCE:
        pick = np.sort(np.random.default_rng(seed).choice(len(ref), MAX_REFERENCE, False))
        ref = [ref[i] for i in pick]
    r = _model_outputs(embedder, ref)
    mean, var = bin_residual(r["recon"] - r["flux"], r["sigma"], r["weight"], BINS[survey])
    # the model's own error per pixel: what is left of the squared residual after the noise
    tau2 = np.maximum(mean ** 2 - var, 0.0)
    tau2 = np.where(np.isfinite(tau2), tau2, np.nanmedian(tau2, axis=0))
    tau2 = np.nan_to_num(tau2, nan=0.0)
    templates = None
    if survey == SURVEY_LAMOST:
        use = np.array([x.norm_flux is not None and (x.headline_snr or 0) > TEMPLATE_MIN_SNR
                        for x in r["records"]])
        teff = np.array([x.labels.get("teff", np.nan) for x in r["records"]], float)
        templates = stellar_templates(r["recon"][use], teff[use])
    provisional = SurveyReference(survey, r["shared"], tau2, {}, 0.0, templates)
    v = _model_outputs(embedder, val)
    chi2, feat, _ = provisional.recon_scores(v["shared"], v["recon"], v["flux"], v["sigma"],
                                          v["weight"])
    nn, dist = cosine_knn(v["shared"], r["shared"], max(OOD_K, KNN_K))
    ood_dist = dist[:, OOD_K - 1]
    _, ref_d = cosine_knn(r["shared"], r["shared"], KNN_K, exclude_self=True)
    lof = lof_from_distances(dist[:, KNN_K - 1], ref_d[:, -1][nn[:, :KNN_K]])
    found = provisional.redshift_evidence(v["flux"], v["sigma"], v["weight"])
    signals = ood_signals(ood_dist, chi2, feat, v["params"],
                          found[0] if found is not None else None)
    levels = np.linspace(0, 1, N_QUANTILES)
    quantiles = {"knn_lof": np.nanquantile(lof, levels),
                 **_ood_quantiles(signals, v["param_sigmas"])}
    score = ood_score(quantiles, signals, v["param_sigmas"], len(v["records"]))
    quantiles["ood_score"] = np.nanquantile(score, levels)
    threshold = float(np.nanquantile(score, OOD_QUANTILE))
    fold = np.array([_fold(_key(x)) for x in v["records"]])
    info = {"n_validation": len(v["records"]), "n_reference": len(r["records"]),
            "validation_median_recon_chi2": float(np.nanmedian(chi2)),
            "validation_median_features_z": float(np.nanmedian(feat)),
            "ood_target_fpr": round(1 - OOD_QUANTILE, 6),
            "ood_fpr_crossfit": crossfit_fpr(signals, v["param_sigmas"], fold)}
    log.info("%s reference: %s, OOD threshold %.4g", survey, info, threshold)
    return SurveyReference(survey, r["shared"], tau2, quantiles, threshold, templates,
                           len(v["records"])), info


def lamost_training_stars(data_root: Path) -> list[SpectrumRecord]:
    from training import data as D

    records = D.read_lamost(D.lamost_training_files(data_root), D.label_tables(data_root))
    return [r for r in records if D.lamost_split(r.object_id) != "test"
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
            "rules": {"lamost": "reference: labelled, the model's train split (crc32(obsid) "
                                "% 5 != 0 and % 10 != 1); validation: crc32(obsid) % 10 == 1",
                      "gaia_xp": "reference: library train split less validation, 5,000 "
                                 "drawn (seed 0); validation: crc32(apogee_id.strip()) % 10 "
                                 "== 1"}}
    ref = Reference(embedder.version, surveys, meta)
    save_reference(out or bundle_dir, ref)
    return ref
