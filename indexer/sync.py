"""Sync sources into the store: the indexer's one job.

Order of work per batch (so kill -9 anywhere loses nothing and duplicates nothing):
1. read the batch, give each spectrum its stable id and content hash;
2. ask the store which of those ids already hold that hash -> skip them;
3. embed only what is new or changed, upsert (idempotent by id);
then, after every source: delete points whose source no longer yields them, recompute the
collection-wide anomaly scores if anything changed, optimise, switch the alias, and only
then write the bookkeeping file and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine import payload as P
from engine.collection import DEFAULT_ALIAS, DEFAULT_OPTIONS, ensure_collection, versioned_name
from engine.records import SURVEYS, SpectrumRecord
from engine.store.types import CollectionOptions, Filter, MatchAny, VectorStore
from indexer.ids import content_hash, point_id
from indexer.points import build_points
from indexer.reading import (MIN_FILES_FOR_PROCESS, FileReader, default_read_workers,
                             usable_cores)
from indexer.scoring import score_collection
from indexer.sources import Batch, Source, prefetch
from indexer.state import SyncState, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    collection: str = ""
    alias: str = DEFAULT_ALIAS
    model_version: str = ""
    added: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    duplicates: int = 0
    refused: list[dict] = field(default_factory=list)
    scored: bool = False
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


@dataclass
class Syncer:
    """Holds what one sync needs; `run()` does it. `progress(n)` is called per spectrum
    handled (the CLI passes a tqdm update)."""

    store: VectorStore
    embedder: Any                                  # engine.inference.Embedder
    state_path: str
    alias: str = DEFAULT_ALIAS
    batch_size: int = 256
    options: CollectionOptions = DEFAULT_OPTIONS
    crossmatch: dict[str, int] = field(default_factory=dict)   # LAMOST obsid -> Gaia source_id
    progress: Callable[[int], None] = lambda n: None
    clock: Callable[[], float] = time.time
    # processes reading files (0: a thread of this process); default: one per core, at most 4
    read_workers: int = field(default_factory=default_read_workers)
    min_files_for_process: int = MIN_FILES_FOR_PROCESS   # fewer files: read in a thread

    def run(self, sources: Sequence[Source]) -> SyncReport:
        t0 = self.clock()
        state = SyncState.load(self.state_path)
        if not sources:  # no sources named: re-sync everything registered before
            sources = [Source(s["spec"], tuple(s.get("labels", ()))) for s in state.sources]
        listings = {s.spec: s.files() for s in sources if s.exists()}   # listed once
        n_files = sum(len(f) for f in listings.values())
        workers = self.read_workers if n_files >= self.min_files_for_process else 0
        # Started first, so the reader processes boot while the collection is prepared.
        with FileReader(workers) as reader, self._embedder_threads(workers):
            return self._run(sources, state, reader.start(), listings, t0)

    def _embedder_threads(self, read_workers: int):
        """The embedder gets the cores the reader processes leave (see Embedder.threads)."""
        limit = getattr(self.embedder, "threads", None)
        if not read_workers or limit is None:
            return contextlib.nullcontext()
        return limit(max(1, usable_cores() - read_workers))

    def _run(self, sources: Sequence[Source], state: SyncState, reader: FileReader,
             listings: dict[str, list[str]], t0: float) -> SyncReport:
        target = versioned_name(self.alias, self.embedder.version)
        report = SyncReport(collection=target, alias=self.alias,
                            model_version=self.embedder.version,
                            sources=[s.spec for s in sources],
                            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)))
        own_dims = {s: self.embedder.own_dim(s) for s in SURVEYS}
        spectral = getattr(self.embedder, "spectral_dim", lambda s: None)
        ensure_collection(self.store, target, self.embedder.shared_dim, own_dims, self.options,
                          {s: spectral(s) for s in SURVEYS})
        for source in sources:
            state.register(source.spec, source.labels)
        seen: set[str] = set()
        for source in sources:
            if not source.exists():
                log.warning("source %s is gone: its points will be deleted", source.spec)
                continue
            for batch in prefetch(source.iter_batches(self.batch_size, reader,
                                                        listings.get(source.spec))):
                self._sync_batch(batch, target, seen, report, state)
        self._delete_missing(sources, target, seen, report, state)
        if report.wrote or not state.scores_fresh.get(target, False):
            score_collection(self.store, target, self.embedder)
            state.scores_fresh[target] = True
            report.scored = True
        if report.wrote or report.scored:
            self.store.optimize(target)
        switched = self._switch_alias(target)
        if report.wrote or report.scored or switched:
            # flush publishes a new read-only generation for readers (the app); an
            # unchanged run writes nothing at all
            self.store.flush()
        report.seconds = round(self.clock() - t0, 3)
        summary = {k: v for k, v in report.to_dict().items() if k != "refused"}
        state.runs = (state.runs + [summary])[-20:]
        state.save(self.state_path)
        return report

    # -- one batch -------------------------------------------------------------------------
    def _sync_batch(self, batch: Batch, target: str, seen: set[str], report: SyncReport,
                    state: SyncState) -> None:
        report.refused.extend(batch.refused)
        records = [self._crossmatched(r) for r in batch.records]
        ids, hashes, keep = [], [], []
        for r in records:
            pid = point_id(r)
            if pid in seen:          # one point per spectrum: a repeated row is not a new one
                report.duplicates += 1
                continue
            seen.add(pid)
            ids.append(pid)
            hashes.append(content_hash(r))
            keep.append(r)
        existing = {h.id: h.payload.get(P.CONTENT_HASH) for h in self.store.retrieve(target, ids)}
        todo = [i for i, pid in enumerate(ids) if existing.get(pid) != hashes[i]]
        report.skipped += len(ids) - len(todo)
        for survey in SURVEYS:
            idx = [i for i in todo if keep[i].survey == survey]
            if idx:
                self._embed_and_upsert([keep[i] for i in idx], [ids[i] for i in idx],
                                       [hashes[i] for i in idx], existing, batch.source,
                                       target, report, state, seen)
        self.progress(len(batch.records) + len(batch.refused))

    def _embed_and_upsert(self, records: list[SpectrumRecord], ids: list[str], hashes: list[str],
                          existing: dict, source_root: str, target: str,
                          report: SyncReport, state: SyncState, seen: set[str]) -> None:
        emb = self.embedder.embed(records)
        points = build_points(records, emb, ids, hashes, source_root, self.embedder.version)
        for i, r in enumerate(records):
            if not bool(emb.valid[i]):
                report.refused.append({"path": r.source_path,
                                       "reason": f"{r.survey} {r.object_id}: too few usable "
                                                 "pixels for the model"})
                # Not "seen": a point this spectrum had before (old vectors, hash and
                # predictions) must go with the rest of the vanished ones.
                seen.discard(ids[i])
        if not points:   # all refused by the model: nothing changes in the store
            return
        self._mark_scores_stale(state, target)
        self.store.upsert(target, points)
        for p in points:
            if p.id in existing:
                report.updated += 1
            else:
                report.added += 1

    def _crossmatched(self, record: SpectrumRecord) -> SpectrumRecord:
        if record.gaia_source_id is None and record.object_id in self.crossmatch:
            gaia = int(self.crossmatch[record.object_id])
            return dataclasses.replace(record, gaia_source_id=gaia)
        return record

    def _mark_scores_stale(self, state: SyncState, target: str) -> None:
        if state.scores_fresh.get(target, True):
            state.scores_fresh[target] = False
            state.save(self.state_path)      # before the first write, so a kill leaves it stale

    # -- after all batches -----------------------------------------------------------------
    def _delete_missing(self, sources: Sequence[Source], target: str, seen: set[str],
                        report: SyncReport, state: SyncState) -> None:
        roots = tuple(s.key for s in sources)
        if not roots:
            return
        flt = Filter(must=(MatchAny("source_root", roots),))
        gone = [h.id for h in self.store.scroll(target, filter=flt) if h.id not in seen]
        if gone:
            self._mark_scores_stale(state, target)
            for i in range(0, len(gone), 1000):
                self.store.delete(target, gone[i:i + 1000])
            report.deleted += len(gone)
        state.sources = [s for s in state.sources if Source(s["spec"]).exists()]

    def _switch_alias(self, target: str) -> bool:
        previous = self.store.resolve(self.alias)
        if previous == target:
            return False
        self.store.set_alias(self.alias, target)
        log.info("alias %s -> %s (was %s)", self.alias, target, previous)
        if previous and previous != target:
            self.store.delete_collection(previous)
        return True


def write_report(report: SyncReport, path: str) -> None:
    write_json_atomic(path, report.to_dict())
