"""Anomaly scores that need the whole collection, computed after the upserts of a sync.

- `anomaly_knn`: cosine distance to the k-th nearest neighbour of the same survey in the
  shared space (sparse regions of the space hold unusual spectra).
- `anomaly_recon`: the own decoder's reconstruction error (stored at embedding time).
- `anomaly_translation`: for stars seen by both instruments, how far one instrument's spectrum
  translated into the other's differs from the real one (mean of both directions).
- `anomaly`: the highest of the available scores' percentile ranks within the survey, so
  scores of different units combine and a spectrum flagged strongly by any one signal ranks
  high (a galaxy may sit in a dense corner of the shared space yet be badly reconstructed;
  averaging the ranks would hide it: with the shipped bundle, in a store of the real DR7
  plate plus the DR10 sample, the mean put 5 of the plate's 12 indexed galaxies/unknowns in
  its top 20, the maximum 9).

The k-NN pass is an exact chunked matrix product in numpy: exact, and fast for the sizes
one machine indexes (40k x 40k in seconds); at survey scale it would use the store's search.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine import payload as P
from engine.records import SURVEY_LAMOST, SURVEY_XP, SURVEYS
from engine.store.types import Filter, Match, Point, VectorStore

log = logging.getLogger(__name__)

KNN_K = 10


def knn_distance(vectors: np.ndarray, k: int = KNN_K, chunk: int = 2048) -> np.ndarray:
    """Cosine distance to the k-th nearest other vector (vectors are L2-normalised)."""
    n = vectors.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=np.float64)
    kk = min(k, n - 1)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        sims = vectors[start:start + chunk] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf          # not one's own neighbour
        kth = -np.partition(-sims, kk - 1, axis=1)[:, kk - 1]
        out[start:start + chunk] = 1.0 - kth
    return out


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1]; NaN stays NaN."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.any():
        order = values[ok].argsort().argsort()
        out[ok] = (order + 1) / ok.sum()
    return out


def frac_rms(pred: np.ndarray, real: np.ndarray, weight: np.ndarray) -> float:
    w = (weight > 0) & np.isfinite(real) & np.isfinite(pred)
    if w.sum() < 10:
        return float("nan")
    return float(np.sqrt(np.mean((pred[w] - real[w]) ** 2)) / np.sqrt(np.mean(real[w] ** 2)))


def translation_scores(hits_by_survey: dict[str, list], embedder: Any) -> dict[str, float]:
    """Per point id, the translated-vs-real disagreement for stars with both spectra."""
    from engine.spectra import load_record

    xp_by_gaia = {h.payload.get(P.GAIA_SOURCE_ID): h for h in hits_by_survey.get(SURVEY_XP, [])}
    scores: dict[str, float] = {}
    for lam in hits_by_survey.get(SURVEY_LAMOST, []):
        xp = xp_by_gaia.get(lam.payload.get(P.GAIA_SOURCE_ID))
        if xp is None or lam.payload.get(P.GAIA_SOURCE_ID) is None:
            continue
        try:
            rec_l, rec_x = load_record(lam.payload), load_record(xp.payload)
        except Exception as exc:  # a moved file must not stop scoring; the score stays unset
            log.warning("no translation score for %s: %s", lam.payload.get(P.OBJECT_ID), exc)
            continue
        emb_l, emb_x = embedder.embed([rec_l]), embedder.embed([rec_x])
        flux_x, w_x = embedder.model_input([rec_x])
        flux_l, w_l = embedder.model_input([rec_l])
        d = np.nanmean([frac_rms(emb_l.translated[0], flux_x[0], w_x[0]),
                        frac_rms(emb_x.translated[0], flux_l[0], w_l[0])])
        scores[lam.id] = scores[xp.id] = float(d)
    return scores


def score_collection(store: VectorStore, collection: str, embedder: Any, k: int = KNN_K) -> None:
    """Recompute every point's anomaly scores and write them back."""
    hits_by_survey = {s: list(store.scroll(collection, filter=Filter(must=(Match(P.SURVEY, s),)),
                                           with_vectors=True)) for s in SURVEYS}
    trans = translation_scores(hits_by_survey, embedder)
    for survey, hits in hits_by_survey.items():
        if not hits:
            continue
        shared = np.stack([h.vectors[P.VECTOR_SHARED] for h in hits]).astype(np.float32)
        knn = knn_distance(shared, k)
        recon = np.array([h.payload.get(P.ANOMALY_RECON, np.nan) for h in hits], dtype=float)
        tr = np.array([trans.get(h.id, np.nan) for h in hits], dtype=float)
        ranks = np.vstack([percentile_rank(knn), percentile_rank(recon), percentile_rank(tr)])
        combined = np.nanmax(np.where(np.isfinite(ranks), ranks, -np.inf), axis=0)
        points = []
        for i, h in enumerate(hits):
            payload = dict(h.payload)
            payload[P.ANOMALY_KNN] = float(knn[i])
            payload[P.ANOMALY] = float(combined[i])
            if np.isfinite(tr[i]):
                payload[P.ANOMALY_TRANSLATION] = float(tr[i])
            points.append(Point(id=h.id, vectors=h.vectors, payload=payload))
        for i in range(0, len(points), 1000):
            store.upsert(collection, points[i:i + 1000])
        log.info("scored %d %s points", len(points), survey)
