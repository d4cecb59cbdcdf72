"""Scores one spectrum gets on its own, at embedding time (no other point needed):
reconstruction chi^2 against its look-alikes and its worst single bin (recon_peak),
redshift evidence (LAMOST, engine/redshift.py), how far it lies outside the training data
(OOD, engine/reference.py), and a data-quality flag. The indexer stores them in the
payload; the query API computes them for an uploaded spectrum the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.noise import model_sigma
from engine.records import SURVEY_LAMOST, SpectrumRecord
from engine.redshift import NOT_A_STAR
from engine.reference import NON_STELLAR, Reference, ood_signals

log = logging.getLogger(__name__)

# Data quality (not model quality: these are about the spectrum, so constants are right here).
# Below these SNRs the noisy hubs lived (XP SNR 5-9 cool giants going negative);
# a spectrum with more than a fifth of its model window masked is half-seen.
MIN_SNR = {SURVEY_LAMOST: 10.0, "gaia_xp": 30.0}
MAX_MASKED_FRACTION = 0.2


@dataclass(frozen=True)
class SpectrumScores:
    recon_chi2: np.ndarray        # [N] NaN when not computable
    recon_peak: np.ndarray        # [N] the largest single-bin term of recon_chi2
    features_z: np.ndarray        # [N] expected features missing (engine/reference.py)
    ood_distance: np.ndarray      # [N] NaN without a reference
    redshift_evidence: np.ndarray  # [N] LAMOST: star-template match at a galaxy's z (noise units)
    redshift_z: np.ndarray        # [N] the redshift of that best match
    ood_score: np.ndarray         # [N] Fisher combination of the OOD signals' p-values
    ood: np.ndarray               # [N] bool
    ood_reason: list[str]
    low_quality: np.ndarray       # [N] bool
    quality_reason: list[str]


def quality_flags(records: Sequence[SpectrumRecord], weight: np.ndarray
                  ) -> tuple[np.ndarray, list[str]]:
    """(low_quality, reason) per record: low SNR or a mostly masked model window."""
    masked = 1.0 - (np.asarray(weight) > 0).mean(axis=1)
    low, reasons = np.zeros(len(records), bool), []
    for i, r in enumerate(records):
        why = []
        snr, floor = r.headline_snr, MIN_SNR.get(r.survey, 0.0)
        if snr is not None and np.isfinite(snr) and snr < floor:
            why.append(f"SNR {snr:.1f} < {floor:g}")
        if masked[i] > MAX_MASKED_FRACTION:
            why.append(f"{masked[i]:.0%} of the model window masked")
        low[i] = bool(why)
        reasons.append("; ".join(why))
    return low, reasons


def score_spectra(records: Sequence[SpectrumRecord], shared: np.ndarray, embedder: Any,
                  reference: Reference | None,
                  sigmas: dict[str, np.ndarray] | None = None,
                  params: dict[str, np.ndarray] | None = None) -> SpectrumScores:
    """Per-spectrum scores for records of one survey (rows as in `shared`; `sigmas` and
    `params`: the predicted parameters' uncertainties and values, same rows)."""
    flux, weight = embedder.model_input(records)
    low, qreason = quality_flags(records, weight)
    n = len(records)
    chi2, peak = np.full(n, np.nan), np.full(n, np.nan)
    feat = np.full(n, np.nan)
    dist = np.full(n, np.nan)
    rz, zz, score = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    ood = np.zeros(n, bool)
    survey = records[0].survey
    ref = reference.get(survey) if reference is not None else None
    if ref is not None and hasattr(embedder, "reconstruct"):
        sigma = model_sigma(records, flux, weight)
        chi2, feat, peak = ref.recon_scores(shared, embedder.reconstruct(records), flux,
                                            sigma, weight)
        dist = ref.ood_distance(shared)
        found = ref.redshift_evidence(flux, sigma, weight)
        if found is not None:
            rz, zz = found
        score = ref.ood_score(ood_signals(dist, chi2, feat, params or {},
                                          rz if found is not None else None), sigmas or {})
        ood = score > ref.ood_threshold
    oreason = []
    for i, r in enumerate(records):
        why = []
        if ood[i]:
            why.append(f"unlike the training stars (OOD score {score[i]:.3g} > "
                       f"{ref.ood_threshold:.3g}, the validation 99th percentile)")
        if rz[i] > NOT_A_STAR:
            why.append(f"a star's lines fit best at redshift z = {zz[i]:.3f}, which no star "
                       f"has ({rz[i]:.1f} noise units better than at a star's velocity)")
            ood[i] = True
        if r.obj_class in NON_STELLAR:
            why.append(f"pipeline class {r.obj_class}: not a star")
            ood[i] = True
        oreason.append("; ".join(why))
    return SpectrumScores(chi2, peak, feat, dist, rz, zz, score, ood, oreason, low, qreason)
