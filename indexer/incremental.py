"""The incremental scoring pass a sync runs after its upserts (indexer/scoring.py says what
each score is and how the full pass computes them).

Only the points flagged `scores_pending` are scored, through batched store searches, plus
the existing points among their `REVERSE_CANDIDATES` nearest that they come closer to than
those points' 10th neighbour (their `knn_distance`, `anomaly_knn` and `anomaly` are redone).
The new points' scores are written with them. The existing points' new values are not
written into the store on an embedded store: they go to the deferred-refresh sidecar
(engine/stale_scores.py), readers flag those hits `scores_stale`, and they are written in one
batch once the sidecar holds more than `DEFER_FRACTION` of the collection (or by the next full
pass): an add then never changes the sealed, optimised segments, so publishing it seals only
the small segment the new points went to. On a Qdrant server (no publication step) they are
written at once.

Staleness is bounded: the points *around* the redone ones keep an `anomaly_knn` computed
with an older neighbour distance, and a point further than the `REVERSE_CANDIDATES`-th that
the new one entered is not found; once the count of the former since the last full pass
exceeds `STALE_FRACTION` of the collection, or after deletions, the next sync rescores
everything (as `specclip rescore` does).

Order (kill -9 anywhere loses nothing): the sidecar is saved (new values in, the pending
points' entries out) before the pending points are written; a kill in between leaves them
flagged and the next run redoes exactly this. Entries written into the store by a batch are
removed from the sidecar only after the sync has published (`Syncer`); a kill in between
leaves them flagged with values equal to the stored ones.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from engine import payload as P
from engine.reference import lof_from_distances
from engine.records import SURVEYS
from engine.stale_scores import DEFER_FRACTION, DeferredScores
from engine.store.types import Filter, Hit, Match, VectorStore
from indexer import scoring as S

log = logging.getLogger(__name__)

SEARCH_BATCH = 256      # store searches sent as one batch (one pass over the segments)


def _neighbour_lists(store: VectorStore, collection: str, hits: Sequence[Hit], survey: str,
                     k: int) -> dict[str, list[Hit]]:
    """Each hit's k nearest other points of the survey, by id; hits carry only their
    `knn_distance` (what the scoring reads of a neighbour)."""
    out: dict[str, list[Hit]] = {}
    flt = S._survey_filter(survey)
    for lo in range(0, len(hits), SEARCH_BATCH):
        chunk = hits[lo:lo + SEARCH_BATCH]
        found = store.search_batch(collection, P.VECTOR_SHARED,
                                   [h.vectors[P.VECTOR_SHARED] for h in chunk], k + 1,
                                   filter=flt, payload_keys=[P.KNN_DISTANCE])
        for h, near in zip(chunk, found, strict=True):
            out[h.id] = [x for x in near if x.id != h.id][:k]
    return out


def score_pending(store: VectorStore, collection: str, embedder: Any,
                  quantiles: dict[str, dict], deferred: DeferredScores | None = None,
                  k: int = S.KNN_K) -> S.ScoringReport:
    """Score the points flagged `scores_pending` and redo the existing points whose
    k-neighbourhood they enter (into ``deferred`` when given, else written at once).
    Percentiles come from `quantiles` (each survey's distribution at the last full pass)."""
    report = S.ScoringReport(mode="incremental", quantiles=quantiles)
    pending_by_survey = {s: list(store.scroll(collection, filter=S._survey_filter(
        s, Match(P.SCORES_PENDING, True)), with_vectors=True)) for s in SURVEYS}
    later = dict(deferred.entries) if deferred is not None else {}

    def current(pid: str, payload: dict) -> Any:
        """A point's knn_distance as the last refresh computed it (deferred or stored)."""
        return later.get(pid, {}).get(P.KNN_DISTANCE, payload.get(P.KNN_DISTANCE))

    all_updates: dict[str, dict] = {}
    pending_all: list[Hit] = []
    for survey, pending in pending_by_survey.items():
        if not pending:
            continue
        pending_ids = {h.id for h in pending}
        wide = _neighbour_lists(store, collection, pending, survey,
                                max(k, S.REVERSE_CANDIDATES))
        nbrs = {i: found[:k] for i, found in wide.items()}
        # existing points a new point came closer to than their own k-th neighbour
        entered_ids = list(dict.fromkeys(
            y.id for h in pending for y in wide[h.id]
            if y.id not in pending_ids and current(y.id, y.payload) is not None
            and 1.0 - y.score < current(y.id, y.payload)))
        entered = store.retrieve(collection, entered_ids, with_vectors=True)
        nbrs.update(_neighbour_lists(store, collection, entered, survey, k))
        kth = {i: 1.0 - found[-1].score if len(found) >= k else np.nan
               for i, found in nbrs.items()}

        todo = pending + entered
        own = np.array([kth[h.id] for h in todo])
        around = np.array([[kth.get(x.id, _or_nan(current(x.id, x.payload)))
                            for x in nbrs[h.id]] if len(nbrs[h.id]) >= k
                           else [np.nan] * k for h in todo], dtype=float).reshape(len(todo), k)
        # a survey with fewer than k+1 spectra has no k-th neighbours at all: nothing to fill
        fill = np.nanmedian(own) if np.isfinite(own).any() else np.nan
        lof = lof_from_distances(own, np.where(np.isfinite(around), around, fill))
        combined = S.combine(S.own_survey_scores(todo, lof, survey), quantiles[survey])
        for i, h in enumerate(todo):
            all_updates[h.id] = {P.KNN_DISTANCE: float(kth[h.id]),
                                 P.ANOMALY_KNN: float(lof[i]), P.ANOMALY: float(combined[i])}
        for pid, d in S.translation_scores(store, collection, pending, embedder).items():
            all_updates.setdefault(pid, {})[P.ANOMALY_TRANSLATION] = d
        pending_all.extend(pending)
        report.scored += len(pending)
        report.neighbours_updated += len(entered)
        # the neighbours of re-done points used their old k-th distance: possibly stale
        report.stale += sum(len(nbrs[y.id]) for y in entered)
        log.info("scored %d new %s points incrementally; %d neighbours updated", len(pending),
                 survey, len(entered))
    pending_ids = {h.id for h in pending_all}
    others = {i: u for i, u in all_updates.items() if i not in pending_ids}
    # existing points first, the flagged new ones last: a kill in between leaves the new
    # points flagged, and the next run redoes exactly this
    if deferred is not None:
        deferred.drop(list(pending_ids))
        deferred.add(others)
        deferred.save()
    else:
        S._write(store, collection, store.retrieve(collection, list(others), True), others)
    S._write(store, collection, pending_all, all_updates)
    return report


def _or_nan(x: Any) -> float:
    return np.nan if x is None else float(x)


def write_deferred(store: VectorStore, collection: str, deferred: DeferredScores) -> int:
    """Write every deferred refresh into the store (one batch; the segments they live in are
    sealed again at the next publication). The ids written are kept in `deferred.written`:
    the caller removes them from the sidecar once that publication is done."""
    ids = list(deferred.entries)
    for lo in range(0, len(ids), S.WRITE_BATCH):
        chunk = ids[lo:lo + S.WRITE_BATCH]
        S._write(store, collection, store.retrieve(collection, chunk, True),
                 {i: deferred.entries[i] for i in chunk})
    log.info("wrote %d deferred neighbour-score refreshes", len(ids))
    deferred.written = ids
    return len(ids)


def settle_deferred(deferred: DeferredScores | None, full: bool) -> None:
    """Once the sync has published: after a full pass (every point written) no refresh
    waits any more; refreshes written in a batch leave the sidecar."""
    if deferred is not None and (full or deferred.written):
        deferred.drop(list(deferred.entries) if full else deferred.written)
        deferred.written = []
        deferred.save()


def count_pending(store: VectorStore, collection: str) -> int:
    return store.count(collection, Filter(must=(Match(P.SCORES_PENDING, True),)))


def refresh_scores(store: VectorStore, collection: str, embedder: Any, stale_before: int,
                   wrote: bool, deleted: int, quantiles: dict[str, dict],
                   force_full: bool = False, deferred: DeferredScores | None = None
                   ) -> S.ScoringReport:
    """What a sync calls after its upserts: nothing, the incremental pass, or the full pass.

    Full when asked, after deletions, when a survey with pending points has no stored
    distribution yet (a first build), or when the stale count would pass the bound. After
    the incremental pass, the deferred refreshes are written when more than
    `DEFER_FRACTION` of the collection has one (`report.deferred_written` of them)."""
    pending = count_pending(store, collection)
    if not (force_full or wrote or pending or deleted):
        return S.ScoringReport(stale=stale_before, quantiles=quantiles,
                               deferred=_held(deferred))
    total = max(1, store.count(collection))
    unseen = [s for s in SURVEYS if s not in quantiles and store.count(
        collection, S._survey_filter(s, Match(P.SCORES_PENDING, True)))]
    if force_full or deleted or unseen or stale_before > S.STALE_FRACTION * total:
        return S.score_collection(store, collection, embedder)
    report = score_pending(store, collection, embedder, quantiles, deferred)
    report.stale += stale_before
    if report.stale > S.STALE_FRACTION * total:
        log.info("%d points may carry stale neighbour scores (> %.0f%% of %d): full pass",
                 report.stale, 100 * S.STALE_FRACTION, total)
        return S.score_collection(store, collection, embedder)
    if deferred is not None and len(deferred.entries) > DEFER_FRACTION * total:
        report.deferred_written = write_deferred(store, collection, deferred)
    report.deferred = _held(deferred) - report.deferred_written
    return report


def _held(deferred: DeferredScores | None) -> int:
    return 0 if deferred is None else len(deferred.entries)
