"""Anomaly scores: per spectrum at embedding time, neighbour scores through the store after.

At embedding time (`embed_time_payload`, no other point needed; engine/spectrum_scores.py):
- `anomaly_recon`: reconstruction chi^2 against the spectrum's own noise plus the model error
  of its look-alikes (the 20 nearest reference stars), so noise and coolness are not oddity;
- `anomaly_peak`: the largest single-bin term of that chi^2 (a spike or a dead segment is a
  few bins out of hundreds: diluted in the mean, not in the maximum). Part of `anomaly` for
  Gaia XP only (`ANOMALY_PARTS`): an XP spectrum is a smooth expansion in 55 BP + 55 RP
  basis functions, so one sample off its look-alikes is corrupt data; in LAMOST the worst
  pixel of a real star is often the model's miss at the strongest line cores or at the
  window's edges (measured on the DR7 plate + DR8 repeats, 316 stars: 74 worst pixels at
  Mg b 5160-5190 A, 57 in the window's first or last 50 A) and, added to `anomaly`, it
  took the DR7 galaxies + unknowns in the LAMOST top 20 from 9 to 5 of 12 (the LAMOST
  injections rank in the top 1 % without it);
- `anomaly_redshift` (+ `anomaly_redshift_z`), LAMOST: a star template fits better at a
  galaxy's redshift than at any stellar velocity (engine/redshift.py), in noise units;
- `ood`, `ood_distance`, `ood_score`, `ood_reason`: outside the training data, or a
  non-stellar class;
- `low_quality`, `quality_reason`: low SNR or a mostly masked window (a flag, not a score);
- `scores_pending`: True until the neighbour scores below are written (fresh-or-flagged).

After the upserts (`refresh_scores`):
- `knn_distance`: cosine distance to the 10th same-survey neighbour in the shared space;
- `anomaly_knn`: that distance over the median of its neighbours' (local isolation: ~1 in
  any cluster, dense or sparse);
- `anomaly_features`: the expected spectral features missing, in noise units (per spectrum);
- `anomaly`: Fisher's combination -sum(log(1 - p)) of the own-survey scores' (recon,
  features, knn; LAMOST: redshift; XP: peak) percentiles p within the survey, taken
  from the distribution stored at the last full pass, so an incremental sync needs no pass
  over the store;
- `anomaly_translation`: for stars with both spectra only, the translated-vs-real
  disagreement after removing a reddening-like smooth tilt; never part of `anomaly`, so a
  cross-matched star cannot outrank the survey for being cross-matched.

Incremental (once a full pass has stored each survey's score distribution): only points
flagged `scores_pending` are scored, through store searches, plus the existing points whose
neighbourhood they enter, whose refresh an embedded store defers (indexer/incremental.py,
where the staleness bound `STALE_FRACTION` is explained).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from engine import payload as P
from engine.errors import NotFoundError, SpectrumReadError
from engine.records import SURVEY_LAMOST, SURVEY_XP, SURVEYS, SpectrumRecord
from engine.reference import Reference, lof_from_distances, percentile_from_quantiles
from engine.spectrum_scores import score_spectra
from engine.store.types import Filter, Hit, Match, Point, VectorStore

log = logging.getLogger(__name__)

KNN_K = 10
# existing points a new one may have entered the k-neighbourhood of are looked for among the
# new point's REVERSE_CANDIDATES nearest (k-NN is not symmetric: a point in a sparse region
# can have the new one inside its 10th-neighbour radius without being among its 10 nearest)
REVERSE_CANDIDATES = 5 * KNN_K
N_QUANTILES = 1001
# the own-survey scores Fisher-combined into `anomaly`, per survey (see the docstring)
ANOMALY_PARTS = {SURVEY_LAMOST: (P.ANOMALY_RECON, P.ANOMALY_FEATURES, P.ANOMALY_KNN,
                                 P.ANOMALY_REDSHIFT),
                 SURVEY_XP: (P.ANOMALY_RECON, P.ANOMALY_PEAK, P.ANOMALY_FEATURES,
                             P.ANOMALY_KNN)}
STALE_FRACTION = 0.05
WRITE_BATCH = 1000
# What `anomaly` and the neighbour scores mean. Bump it when a score's definition, the parts
# above or their combination change: a store whose scores another version wrote gets a full
# pass at its next sync (indexer/sync.py), so old and new scores are never ranked together.
SCORING_VERSION = 1


@dataclass
class ScoringReport:
    mode: str = "none"            # "none" | "incremental" | "full"
    scored: int = 0               # points whose scores were (re)written
    neighbours_updated: int = 0   # existing points whose neighbourhood a new point entered
    stale: int = 0                # points whose anomaly_knn may lag (since the last full pass)
    deferred: int = 0             # existing points whose refresh waits in the sidecar
    # of those, flagged only because a neighbour was redone (recomputed at the batch write)
    second_order_flagged: int = 0
    # on a server: points around redone ones, recomputed and written at once
    second_order_redone: int = 0
    deferred_written: int = 0     # deferred refreshes written into the store by this pass
    # survey -> score -> quantiles of the survey's scores at the last full pass
    quantiles: dict = field(default_factory=dict)


def reference_of(embedder: Any) -> Reference | None:
    return getattr(embedder, "reference", None)


# ---- at embedding time ------------------------------------------------------------------
def embed_time_payload(points: list[Point], records: Sequence[SpectrumRecord], batch: Any,
                       embedder: Any) -> None:
    """Add the per-spectrum scores to `points` (built from the valid rows of `records`)."""
    valid = [r for r, ok in zip(records, np.asarray(batch.valid, bool), strict=True) if ok]
    if not points:
        return
    shared = np.stack([p.vectors[P.VECTOR_SHARED] for p in points])
    ok = np.asarray(batch.valid, bool)
    sigmas = {k: np.asarray(v)[ok] for k, v in (getattr(batch, "sigmas", None) or {}).items()}
    params = {k: np.asarray(v)[ok] for k, v in (getattr(batch, "params", None) or {}).items()}
    scores = score_spectra(valid, shared, embedder, reference_of(embedder), sigmas, params)
    recon_rms = np.asarray(batch.recon_error)[ok]
    for i, p in enumerate(points):
        pay = p.payload
        chi2 = scores.recon_chi2[i]
        # without a reference (an old bundle, a test double) the plain RMS is all there is
        pay[P.ANOMALY_RECON] = float(chi2) if np.isfinite(chi2) else _finite(recon_rms[i])
        if np.isfinite(scores.recon_peak[i]):
            pay[P.ANOMALY_PEAK] = float(scores.recon_peak[i])
        if np.isfinite(scores.features_z[i]):
            pay[P.ANOMALY_FEATURES] = float(scores.features_z[i])
        if np.isfinite(scores.redshift_evidence[i]):
            pay[P.ANOMALY_REDSHIFT] = float(scores.redshift_evidence[i])
            pay[P.ANOMALY_REDSHIFT_Z] = float(scores.redshift_z[i])
        if np.isfinite(scores.ood_score[i]):
            pay[P.OOD_SCORE] = float(scores.ood_score[i])
        pay[P.OOD] = bool(scores.ood[i])
        if np.isfinite(scores.ood_distance[i]):
            pay[P.OOD_DISTANCE] = float(scores.ood_distance[i])
        if scores.ood_reason[i]:
            pay[P.OOD_REASON] = scores.ood_reason[i]
        pay[P.LOW_QUALITY] = bool(scores.low_quality[i])
        if scores.quality_reason[i]:
            pay[P.QUALITY_REASON] = scores.quality_reason[i]
        pay[P.SCORES_PENDING] = True


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


# ---- translation (stars with both spectra) ----------------------------------------------
def frac_rms(pred: np.ndarray, real: np.ndarray, weight: np.ndarray) -> float:
    w = (weight > 0) & np.isfinite(real) & np.isfinite(pred)
    if w.sum() < 10:
        return float("nan")
    return float(np.sqrt(np.mean((pred[w] - real[w]) ** 2)) / np.sqrt(np.mean(real[w] ** 2)))


def deredden(pred: np.ndarray, real: np.ndarray, weight: np.ndarray,
             wave_angstrom: np.ndarray) -> np.ndarray:
    """`pred` times exp(a + b / lambda) fitted to real / pred: dust makes a real XP spectrum
    redder than one translated from a continuum-normalised LAMOST spectrum can be, and that
    tilt is not a disagreement about the star."""
    ok = (weight > 0) & (pred > 0.05) & (real > 0.05)
    if ok.sum() < 10:
        return pred
    x = 1e4 / wave_angstrom[ok]
    a = np.vstack([np.ones_like(x), x]).T
    coef, *_ = np.linalg.lstsq(a, np.log(real[ok] / pred[ok]), rcond=None)
    return pred * np.exp(coef[0] + coef[1] * 1e4 / wave_angstrom)


def translation_score(lam: SpectrumRecord, xp: SpectrumRecord, embedder: Any) -> float:
    emb_l, emb_x = embedder.embed([lam]), embedder.embed([xp])
    flux_x, w_x = embedder.model_input([xp])
    flux_l, w_l = embedder.model_input([lam])
    to_xp = deredden(np.asarray(emb_l.translated[0], float), flux_x[0], w_x[0],
                     np.asarray(embedder.model_grid(SURVEY_XP), float))
    return float(np.nanmean([frac_rms(to_xp, flux_x[0], w_x[0]),
                             frac_rms(emb_x.translated[0], flux_l[0], w_l[0])]))


def translation_scores(store: VectorStore, collection: str, hits: Sequence[Hit],
                       embedder: Any) -> dict[str, float]:
    """Per point id (both points of a pair), for the given hits that have a counterpart."""
    from engine.source_reread import load_record

    out: dict[str, float] = {}
    for h in hits:
        gaia = h.payload.get(P.GAIA_SOURCE_ID)
        if gaia is None or h.id in out:
            continue
        pair = {x.payload.get(P.SURVEY): x for x in store.scroll(
            collection, filter=Filter(must=(Match(P.GAIA_SOURCE_ID, int(gaia)),)))}
        if SURVEY_LAMOST not in pair or SURVEY_XP not in pair:
            continue
        lam, xp = pair[SURVEY_LAMOST], pair[SURVEY_XP]
        try:
            d = translation_score(load_record(lam.payload), load_record(xp.payload), embedder)
        except (NotFoundError, SpectrumReadError, OSError) as exc:
            # a moved or unreadable source file: this pair stays unscored, the sync goes on
            log.warning("no translation score for Gaia %s: %s", gaia, exc)
            continue
        if np.isfinite(d):
            out[lam.id] = out[xp.id] = d
    return out


# ---- neighbour scores -------------------------------------------------------------------
def knn_distance(vectors: np.ndarray, k: int = KNN_K, chunk: int = 2048
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(indices [N, k] of the k nearest other vectors, distance to the k-th) exactly."""
    from engine.reference import cosine_knn

    if len(vectors) <= 1:
        return np.zeros((len(vectors), 0), np.int64), np.zeros(len(vectors))
    idx, dist = cosine_knn(vectors, vectors, k, exclude_self=True, chunk=chunk)
    return idx, dist[:, -1]


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1] within the given values; NaN stays NaN."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.any():
        out[ok] = (values[ok].argsort().argsort() + 1) / ok.sum()
    return out


def own_survey_scores(hits: Sequence[Hit], lof: np.ndarray, survey: str
                      ) -> dict[str, np.ndarray]:
    """The scores `anomaly` combines for this survey (`ANOMALY_PARTS`), per hit."""
    out = {k: np.array([h.payload.get(k, np.nan) for h in hits], dtype=float)
           for k in ANOMALY_PARTS[survey] if k != P.ANOMALY_KNN}
    out[P.ANOMALY_KNN] = np.asarray(lof, float)
    return out


def score_quantiles(scores: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """The survey's distribution of each score, kept for incremental percentiles."""
    out = {}
    for name, values in scores.items():
        ok = values[np.isfinite(values)]
        if len(ok):
            levels = np.linspace(0, 1, min(N_QUANTILES, len(ok)))
            out[name] = [float(x) for x in np.quantile(ok, levels)]
    return out


def combine(scores: dict[str, np.ndarray], quantiles: dict[str, list[float]] | None
            ) -> np.ndarray:
    """`anomaly`: Fisher's combination -sum(log(1 - p)) of the own-survey scores'
    percentiles p within the survey (from the stored distribution `quantiles`, or in the full
    pass from the values themselves). One extreme score ranks a spectrum high, and so do two
    high ones together. A score no point of the survey has (XP: redshift) adds nothing."""
    total = np.zeros(len(next(iter(scores.values()))))
    for name, values in scores.items():
        if quantiles is not None:
            if name not in quantiles:
                continue
            q = np.asarray(quantiles[name])
            p, floor = percentile_from_quantiles(values, q), 0.5 / len(q)
        else:
            p, floor = percentile_rank(values), 0.5 / max(1, np.isfinite(values).sum())
        # a score a point lacks counts as typical (p = 0 adds nothing)
        total += -np.log(np.clip(1.0 - np.nan_to_num(p, nan=0.0), floor, 1.0))
    return total


def _write(store: VectorStore, collection: str, hits: Sequence[Hit],
           updates: dict[str, dict]) -> None:
    points = []
    for h in hits:
        if h.id in updates:
            payload = {**h.payload, **updates[h.id]}
            payload.pop(P.SCORES_PENDING, None)
            # a score that could not be computed (too few neighbours) is left out, not NaN
            payload = {k: v for k, v in payload.items()
                       if not (isinstance(v, float) and not np.isfinite(v))}
            points.append(Point(id=h.id, vectors=h.vectors or {}, payload=payload))
    for i in range(0, len(points), WRITE_BATCH):
        store.upsert(collection, points[i:i + WRITE_BATCH])


def _survey_filter(survey: str, *extra) -> Filter:
    return Filter(must=(Match(P.SURVEY, survey), *extra))


def score_collection(store: VectorStore, collection: str, embedder: Any,
                     k: int = KNN_K) -> ScoringReport:
    """The full pass (`specclip rescore`): every point's neighbour scores from scratch,
    exact k-NN in numpy (40k x 40k in seconds; at survey scale use the incremental path)."""
    report = ScoringReport(mode="full")
    for survey in SURVEYS:
        hits = list(store.scroll(collection, filter=_survey_filter(survey), with_vectors=True))
        if not hits:
            continue
        shared = np.stack([h.vectors[P.VECTOR_SHARED] for h in hits]).astype(np.float32)
        idx, kth = knn_distance(shared, k)
        lof = lof_from_distances(kth, kth[idx]) if idx.shape[1] else np.ones(len(hits))
        scores = own_survey_scores(hits, lof, survey)
        combined = combine(scores, None)
        report.quantiles[survey] = score_quantiles(scores)
        trans = translation_scores(store, collection, hits, embedder) \
            if survey == SURVEY_LAMOST else {}
        updates = {}
        for i, h in enumerate(hits):
            upd = {P.KNN_DISTANCE: float(kth[i]), P.ANOMALY_KNN: float(lof[i]),
                   P.ANOMALY: float(combined[i])}
            if h.id in trans:
                upd[P.ANOMALY_TRANSLATION] = trans[h.id]
            updates[h.id] = upd
        _write(store, collection, hits, updates)
        if trans:   # the XP halves of the pairs
            xp = store.retrieve(collection, [i for i in trans if i not in updates], True)
            _write(store, collection, xp, {h.id: {P.ANOMALY_TRANSLATION: trans[h.id]}
                                           for h in xp})
        report.scored += len(hits)
        log.info("scored %d %s points (full pass)", len(hits), survey)
    return report
