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

The points *around* the redone ones (those that have one among their k nearest) keep an
`anomaly_knn` computed with the redone points' older k-th distances. On an embedded store
they join the sidecar too, flagged, with no new value yet: the batch write recomputes
`anomaly_knn` and `anomaly` of every point in the sidecar from its neighbours' current
distances (`write_deferred`). On a server they are recomputed the same way as soon as the
redone points are written. So they are never counted as stale and never force a full pass;
only deletions (and `specclip rescore`) do, or a stale count left by an earlier version of
this code past `STALE_FRACTION` of the collection. Left unbounded on both: an existing point
further than the `REVERSE_CANDIDATES`-th nearest of a new one, whose neighbourhood the new
one entered (k-NN is not symmetric), is not found.

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
# a redone point at exactly another's k-th distance is among its k nearest; the stored
# distance and the search's float32 score differ in the last digits
TIE = 1e-6


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
    second_order: set[str] = set()
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
        wide_entered = _neighbour_lists(store, collection, entered, survey,
                                        max(k, S.REVERSE_CANDIDATES))
        nbrs.update({i: found[:k] for i, found in wide_entered.items()})
        kth = {i: 1.0 - found[-1].score if len(found) >= k else np.nan
               for i, found in nbrs.items()}

        todo = pending + entered
        lof, combined = _lof_and_anomaly(
            todo, nbrs, lambda x, kth=kth: kth.get(x.id, _or_nan(current(x.id, x.payload))),
            np.array([kth[h.id] for h in todo]), survey, quantiles, k)
        for i, h in enumerate(todo):
            all_updates[h.id] = {P.KNN_DISTANCE: float(kth[h.id]),
                                 P.ANOMALY_KNN: float(lof[i]), P.ANOMALY: float(combined[i])}
        for pid, d in S.translation_scores(store, collection, pending, embedder).items():
            all_updates.setdefault(pid, {})[P.ANOMALY_TRANSLATION] = d
        pending_all.extend(pending)
        report.scored += len(pending)
        report.neighbours_updated += len(entered)
        # the points that have a redone point among their k nearest (its reverse neighbours,
        # found among its REVERSE_CANDIDATES nearest) used its old k-th distance in their
        # anomaly_knn: flagged and redone at the batch write on an embedded store, redone
        # once the redone points are written on a server
        around_ids = {x.id for y in entered for x in wide_entered[y.id]
                      if current(x.id, x.payload) is not None
                      and 1.0 - x.score <= current(x.id, x.payload) + TIE} - {h.id for h in todo}
        second_order.update(around_ids)
        log.info("scored %d new %s points incrementally; %d neighbours updated", len(pending),
                 survey, len(entered))
    pending_ids = {h.id for h in pending_all}
    others = {i: u for i, u in all_updates.items() if i not in pending_ids}
    # existing points first, the flagged new ones last: a kill in between leaves the new
    # points flagged, and the next run redoes exactly this
    if deferred is not None:
        deferred.drop(list(pending_ids))
        deferred.add(others)
        # flagged, no new value yet: `write_deferred` recomputes them from their neighbours
        deferred.add({i: {} for i in second_order - pending_ids})
        report.second_order_flagged = len(second_order - pending_ids - set(others))
        deferred.save()
    else:
        S._write(store, collection, store.retrieve(collection, list(others), True), others)
        # now that the store holds the redone points' distances, recompute the points
        # around them at once (a server has no publication to spare)
        around = {i: {} for i in second_order - pending_ids - set(others)}
        report.second_order_redone = _rewrite_knn_scores(store, collection, around,
                                                         quantiles, k)
    S._write(store, collection, pending_all, all_updates)
    return report


def _or_nan(x: Any) -> float:
    return np.nan if x is None else float(x)


def _lof_and_anomaly(hits: Sequence[Hit], nbrs: dict[str, list[Hit]], kth_of: Any,
                     own: np.ndarray, survey: str, quantiles: dict[str, dict], k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(`anomaly_knn`, `anomaly`) of `hits` from their own k-th distance `own` and their k
    neighbours' (`kth_of(neighbour hit)`), percentiles from the stored distribution."""
    around = np.array([[kth_of(x) for x in nbrs[h.id]] if len(nbrs[h.id]) >= k
                       else [np.nan] * k for h in hits], dtype=float).reshape(len(hits), k)
    # a survey with fewer than k+1 spectra has no k-th neighbours at all: nothing to fill
    fill = np.nanmedian(own) if np.isfinite(own).any() else np.nan
    lof = lof_from_distances(own, np.where(np.isfinite(around), around, fill))
    return lof, S.combine(S.own_survey_scores(hits, lof, survey), quantiles[survey])


def write_deferred(store: VectorStore, collection: str, deferred: DeferredScores,
                   quantiles: dict[str, dict], k: int = S.KNN_K) -> int:
    """Write every deferred refresh into the store (one batch; the segments they live in are
    sealed again at the next publication). Each point's `anomaly_knn` and `anomaly` are
    recomputed first from its neighbours' current k-th distances (the sidecar's where it
    has one): that settles the points flagged for having a redone neighbour. The ids
    written are kept in `deferred.written`: the caller removes them from the sidecar once
    that publication is done."""
    ids = list(deferred.entries)
    _rewrite_knn_scores(store, collection, deferred.entries, quantiles, k)
    log.info("wrote %d deferred neighbour-score refreshes", len(ids))
    deferred.written = ids
    return len(ids)


def _rewrite_knn_scores(store: VectorStore, collection: str, entries: dict[str, dict],
                        quantiles: dict[str, dict], k: int) -> int:
    """Write `entries` (point id -> new values, maybe none) with each point's `anomaly_knn`
    and `anomaly` recomputed from its neighbours' current k-th distances (`entries`' own
    where it has one, else the stored ones); returns how many points were written."""
    def current(x: Hit) -> float:
        return _or_nan(entries.get(x.id, {}).get(P.KNN_DISTANCE, x.payload.get(P.KNN_DISTANCE)))

    ids = list(entries)
    for lo in range(0, len(ids), S.WRITE_BATCH):
        hits = [Hit(h.id, h.score, {**h.payload, **entries[h.id]}, h.vectors)
                for h in store.retrieve(collection, ids[lo:lo + S.WRITE_BATCH], True)]
        updates: dict[str, dict] = {}
        for survey in SURVEYS:
            mine = [h for h in hits if h.payload.get(P.SURVEY) == survey]
            if not mine or survey not in quantiles:
                updates.update({h.id: entries[h.id] for h in mine})
                continue
            nbrs = _neighbour_lists(store, collection, mine, survey, k)
            lof, combined = _lof_and_anomaly(
                mine, nbrs, current, np.array([current(h) for h in mine]), survey,
                quantiles, k)
            for i, h in enumerate(mine):
                updates[h.id] = {**entries[h.id], P.ANOMALY_KNN: float(lof[i]),
                                 P.ANOMALY: float(combined[i])}
        S._write(store, collection, hits, updates)
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
    total = max(1, store.count(collection, exact=False))      # a bound's denominator
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
        report.deferred_written = write_deferred(store, collection, deferred, quantiles)
    report.deferred = _held(deferred) - report.deferred_written
    return report


def _held(deferred: DeferredScores | None) -> int:
    return 0 if deferred is None else len(deferred.entries)
