"""Sync sources into the store: the indexer's one job.

Order of work (so kill -9 anywhere loses nothing and duplicates nothing):
1. list each source's files (of a catalogue: its Parquet files; of the XP library: its
   file) and stat each once; a file whose (inode, size, mtime) and context are those
   recorded in the file index when its points were written is skipped unread
   (``verify=True`` reads every file);
2. read the other files in batches, give each spectrum its stable id and content hash, ask
   the store which of those ids already hold that hash (and a stored spectrum) -> skip them;
3. embed only what is new or changed; write their spectra to the store's archive
   (engine/spectrum_archive.py), then upsert the points naming them (idempotent by id);
   delete the points a re-read file no longer yields, and only then record the files in the
   file index (a catalogue file once every batch of it is written);
then, after every source: delete the points of files that are gone, recompute the anomaly
scores of what changed (indexer/scoring.py: incremental, or a full pass when due), delete the
archive files no point names any more, optimise, switch the alias, publish a generation for
readers, and only then write the bookkeeping file and the report.

About 480 lines: that order is the module's one job and reads best in one place; what a
batch changes is in indexer/changes.py, the file index in indexer/file_index.py, scoring in
indexer/scoring.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Sequence

from engine import payload as P
from engine.collection import (DEFAULT_ALIAS, DEFAULT_OPTIONS, collection_spec, ensure_collection,
                               versioned_name)
from engine.jsonfile import atomic_write_json
from engine.records import SURVEY_XP, SpectrumRecord
from engine.spectrum_archive import ARCHIVE_DIR, SpectrumArchiveWriter
from engine.stale_scores import DeferredScores, sidecar_path
from engine.store.types import CollectionOptions, Filter, MatchAny, VectorStore
from indexer.changes import Changes, PartIds, embed_changes, file_key, upsert_with_spectra
from indexer.file_index import FileIndex, FileStat, context_of, file_stat
from indexer.ids import point_id
from indexer.points import stored_hash
from indexer.progress import LogProgress, Progress
from indexer.reading import (MIN_FILES_FOR_PROCESS, FileReader, default_read_workers,
                             usable_cores)
from indexer.incremental import refresh_scores, settle_deferred
from indexer.scoring import SCORING_VERSION
from indexer.sources import Batch, Source, prefetch
from indexer.state import SyncState

log = logging.getLogger(__name__)

NEVER_MATCHES: FileStat = (-1, -1, -1)


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
    scoring: dict = field(default_factory=dict)   # indexer.scoring.ScoringReport
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started_at: str = ""
    files_unchanged: int = 0          # skipped by (inode, size, mtime), never opened
    files_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


@dataclass
class SourcePlan:
    """What one run does with one source's files."""

    source: Source
    context: str
    to_read: list[str]                       # as listed (read in this order)
    stats: dict[str, FileStat | None]        # file_key -> stat taken before reading
    unchanged: list[str]                     # file_keys skipped unread
    gone: list[str]                          # file_keys recorded before, no longer listed


def index_path_for(state_path: str) -> str:
    """The file index belongs to its bookkeeping file (one per store): state.json ->
    state.files.sqlite."""
    return os.path.splitext(os.path.abspath(state_path))[0] + ".files.sqlite"


def _scores_outdated(state: SyncState, target: str) -> bool:
    """The collection's scores were written by another SCORING_VERSION (a state without the
    record is taken as current)."""
    return state.scoring_version.get(target, SCORING_VERSION) != SCORING_VERSION


@dataclass
class Syncer:
    """Holds what one sync needs; `run()` does it. `progress` hears of each phase (listing,
    reading, embedding, scoring) with its totals; the CLI passes a TqdmProgress."""

    store: VectorStore
    embedder: Any                                  # engine.inference.Embedder
    state_path: str
    alias: str = DEFAULT_ALIAS
    batch_size: int = 256
    options: CollectionOptions = DEFAULT_OPTIONS
    crossmatch: dict[str, int] = field(default_factory=dict)   # LAMOST obsid -> Gaia source_id
    # Gaia source_id -> (ra, dec) for XP spectra whose files carry no position
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    # where the spectra of upserted points are written (default: `default_archive`)
    archive: SpectrumArchiveWriter | None = None
    progress: Progress = field(default_factory=LogProgress)
    clock: Callable[[], float] = time.time
    # processes reading files (0: a thread of this process); default: one per core, at most 4
    read_workers: int = field(default_factory=default_read_workers)
    min_files_for_process: int = MIN_FILES_FOR_PROCESS   # fewer files: read in a thread
    verify: bool = False                           # re-read and re-hash unchanged files too
    # payload references of archive files that points updated or deleted in this run named
    # (the only files that can have lost their last point): what the archive GC looks at
    _old_refs: set[str] = field(default_factory=set, init=False, repr=False)
    _deferred: DeferredScores | None = field(default=None, init=False, repr=False)

    def run(self, sources: Sequence[Source], handled: Collection[str] = ()) -> SyncReport:
        """Sync `sources`. What another part of this same run (the Dask workers) already
        read and wrote is not read again: `handled`, keys of the files and catalogue parts
        it recorded (counted as unchanged, even when their mtime is still inside the racy
        window)."""
        t0 = self.clock()
        self._old_refs = set()
        if self.archive is None:
            self.archive = default_archive(self.store, self.state_path)
        state = SyncState.load(self.state_path)
        if not sources:  # no sources named: re-sync everything registered before
            sources = [Source(s["spec"], tuple(s.get("labels", ()))) for s in state.sources]
        target = versioned_name(self.alias, self.embedder.version)
        with FileIndex(index_path_for(self.state_path)) as index:
            plans = self.plan(sources, index, target, handled)
            n_files = sum(len(p.to_read) for p in plans.values() if p.source.kind == "files")
            workers = self.read_workers if n_files >= self.min_files_for_process else 0
            # Started first, so the reader processes boot while the collection is prepared.
            with FileReader(workers) as reader, self._embedder_threads(workers):
                return self._run(sources, state, reader.start(), plans, index, target, t0)

    def plan(self, sources: Sequence[Source], index: FileIndex, target: str,
             handled: Collection[str] = ()) -> dict[str, SourcePlan]:
        """List every source once and stat each of its files (a catalogue's Parquet files,
        the library's file) once: what to read. A file in `handled` that the index records is
        unchanged whatever its stat says."""
        handled = set(handled)
        self.progress.start("listing", len(sources))
        plans = {}
        for s in sources:
            parts = s.parts() if s.exists() else {}
            ctx = context_of(s.labels, self.crossmatch, self.positions)
            recorded = index.recorded(target, s.key)
            now = time.time_ns()
            stats = {k: file_stat(path, now) for k, path in parts.items()}
            unchanged = {k for k, st in stats.items() if st is not None and (
                k in handled and k in recorded
                or not self.verify and st[2] >= 0 and recorded.get(k) == (st, ctx))}
            plans[s.spec] = SourcePlan(
                s, ctx, [path for k, path in parts.items() if k not in unchanged], stats,
                sorted(unchanged), sorted(set(recorded) - set(stats)))
            self.progress.advance("listing")
        self.progress.finish("listing")
        return plans

    def _embedder_threads(self, read_workers: int):
        """The embedder gets the cores the reader processes leave (see Embedder.threads)."""
        limit = getattr(self.embedder, "threads", None)
        if not read_workers or limit is None:
            return contextlib.nullcontext()
        return limit(max(1, usable_cores() - read_workers))

    def _run(self, sources: Sequence[Source], state: SyncState, reader: FileReader,
             plans: dict[str, SourcePlan], index: FileIndex, target: str,
             t0: float) -> SyncReport:
        report = SyncReport(collection=target, alias=self.alias,
                            model_version=self.embedder.version,
                            sources=[s.spec for s in sources],
                            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)))
        ensure_collection(self.store, target, collection_spec(self.embedder, self.options))
        for source in sources:
            state.register(source.spec, source.labels)
        seen: set[str] = set()
        self.progress.start("reading", sum(len(p.to_read) for p in plans.values()))
        self.progress.start("embedding", 0)
        for source in sources:
            plan = plans[source.spec]
            report.files_unchanged += len(plan.unchanged)
            report.skipped += index.point_count(target, plan.unchanged)
            if not source.exists():
                log.warning("source %s is gone: its points will be deleted", source.spec)
                continue
            if not plan.to_read:            # nothing of it changed (or it lists no file)
                continue
            part = PartIds()
            for batch in prefetch(source.iter_batches(self.batch_size, reader, plan.to_read)):
                self._sync_batch(batch, plan, index, target, seen, report, state, part)
        self.progress.finish("reading")
        self.progress.finish("embedding")
        self._delete_missing(sources, plans, index, target, seen, report, state)
        # an unchanged run with fresh, current scores has no scoring phase; otherwise the total is
        # known once the scorer has chosen incremental or full
        shows = bool(report.wrote or report.deleted or not state.scores_fresh.get(target, False)
                     or _scores_outdated(state, target))
        if shows:
            self.progress.start("scoring", 0)
        scored = self._refresh_scores(target, report, state)
        if shows:
            self.progress.grow("scoring", scored)
            self.progress.advance("scoring", scored)
            self.progress.finish("scoring")
        # some archive files may be named no more, or were found unreferenced before
        if report.updated or report.deleted or self.archive.listed_orphans(target):
            self._collect_archive_garbage(target, t0, report.scoring.get("mode") == "full")
        if report.wrote or report.scored:
            self.store.optimize(target)
        switched = self._switch_alias(target, index)
        if report.wrote or report.scored or switched:
            # flush publishes a new read-only generation for readers (the app); an
            # unchanged run writes nothing at all
            self.store.flush()
        settle_deferred(self._deferred, report.scoring.get("mode") == "full")
        report.seconds = round(self.clock() - t0, 3)
        summary = {k: v for k, v in report.to_dict().items() if k != "refused"}
        state.runs = (state.runs + [summary])[-20:]
        state.save(self.state_path)
        return report

    def _refresh_scores(self, target: str, report: SyncReport, state: SyncState,
                        force_full: bool = False) -> int:
        """Score what changed (see indexer/scoring.py). A run that died after writing
        leaves `scores_fresh` False: with nothing flagged left, the full pass is the safe
        way to finish its work. Returns how many points were (re)scored."""
        unfinished = not state.scores_fresh.get(target, False) and not report.wrote
        outdated = _scores_outdated(state, target)
        if outdated:
            log.info("%s: scores written by scoring version %s, this is %d: full pass",
                     target, state.scoring_version[target], SCORING_VERSION)
        path = sidecar_path(self.store, target)
        self._deferred = None if path is None else DeferredScores(path)
        scoring = refresh_scores(self.store, target, self.embedder,
                                 state.scores_stale.get(target, 0), report.wrote,
                                 report.deleted, state.score_quantiles.get(target, {}),
                                 force_full=force_full or unfinished or outdated,
                                 deferred=self._deferred)
        state.scores_stale[target] = scoring.stale if scoring.mode != "full" else 0
        if scoring.mode == "full" or target not in state.scoring_version:
            state.scoring_version[target] = SCORING_VERSION
        state.score_quantiles[target] = scoring.quantiles
        state.scores_fresh[target] = True
        report.scored = scoring.mode != "none"
        report.scoring = {k: v for k, v in dataclasses.asdict(scoring).items()
                          if k != "quantiles"}
        return scoring.scored

    # -- one batch -------------------------------------------------------------------------
    def _sync_batch(self, batch: Batch, plan: SourcePlan, index: FileIndex,
                    target: str, seen: set[str], report: SyncReport, state: SyncState,
                    part: PartIds) -> None:
        report.refused.extend(batch.refused)
        records = [self._crossmatched(r) for r in batch.records]
        if plan.source.kind == "files":           # files are read batch by batch
            self.progress.grow("embedding", len(records))
        elif batch.part_records is not None:      # a part is read whole: its total at once
            self.progress.grow("embedding", batch.part_records)
        if plan.unchanged:
            # a spectrum that an unread (unchanged) file yields stays that file's
            ids = [point_id(r) for r in records]
            unread = set(plan.unchanged)
            seen.update(i for i, path in index.owners(target, ids).items() if path in unread)
        changes = embed_changes(records, batch.source, self.embedder,
                                self._stored_hashes(target), seen)
        self.apply_changes(batch, plan, changes, index, target, report, state)
        part.add(changes, refused=bool(batch.refused))
        if batch.part is not None:        # every point of that part is written now
            self.record_part(plan, batch.part, part, index, target, report, state)
            part.clear()
        self.progress.advance("embedding", len(records))
        self.progress.advance("reading", len(batch.files) + (batch.part is not None))

    def apply_changes(self, batch: Batch, plan: SourcePlan | None, changes: Changes,
                      index: FileIndex, target: str, report: SyncReport,
                      state: SyncState) -> None:
        """Write one batch's changes (embedded here or on a Dask worker), then record its
        files. ``batch.refused`` are the reader's refusals, ``batch.files`` the files read."""
        report.refused.extend(changes.refused)
        report.skipped += changes.skipped
        report.duplicates += changes.duplicates
        if changes.points:
            self._mark_scores_stale(state, target)
            if changes.updated:
                self._remember_refs(target, [p.id for p in changes.points])
            upsert_with_spectra(self.store, target, self.archive, changes.groups)
        report.added += changes.added
        report.updated += changes.updated
        if plan is not None:
            self._record_files(batch, plan, changes, index, target, report, state)

    def _stored_hashes(self, target: str) -> Callable[[list[str]], dict[str, Any]]:
        def stored(ids: list[str]) -> dict[str, Any]:
            return {h.id: stored_hash(h) for h in self.store.retrieve(target, ids)}
        return stored

    def _record_files(self, batch: Batch, plan: SourcePlan, changes: Changes,
                      index: FileIndex, target: str, report: SyncReport,
                      state: SyncState) -> None:
        """After the batch's points are in the store: drop what a re-read file no longer
        yields, then remember each file's stat and ids (a file the reader refused is
        forgotten, so its old points go and it is tried again next run)."""
        keys = [file_key(f) for f in batch.files]
        refused = {file_key(r["path"]) for r in batch.refused}
        # a file with a spectrum the model refused is read again every run, so that the
        # refusal is reported every run: recorded with its ids, under a stat nothing matches
        retry = {file_key(r["path"]) for r in changes.refused}
        self._record(plan, {k: list(changes.present.get(k, ())) for k in keys}, retry,
                     refused, index, target, report, state)

    def record_part(self, plan: SourcePlan, key: str, part: PartIds, index: FileIndex,
                    target: str, report: SyncReport, state: SyncState) -> None:
        """After every point of a catalogue's Parquet file (or of the library) is written:
        as for a file. A part with a refused row is read again next run (the refusal is
        reported every run); one that could not be read at all yields nothing, so its old
        points go."""
        self._record(plan, {key: sorted(part.ids)}, {key} if part.refused else set(), set(),
                     index, target, report, state)

    def _record(self, plan: SourcePlan, present: dict[str, list[str]], retry: set[str],
                refused: set[str], index: FileIndex, target: str, report: SyncReport,
                state: SyncState) -> None:
        """Drop the points the files in ``present`` (read this run) no longer yield, then
        record each with its stat and ids; ``retry``: under a stat nothing matches;
        ``refused``: not recorded (forgotten)."""
        keys = list(present)
        report.files_read += len(keys)
        before = index.ids_of(target, keys)
        now = {i for ids in present.values() for i in ids}
        vanished = [i for i in before if i not in now]
        if vanished:
            self._mark_scores_stale(state, target)
            self._remember_refs(target, vanished)
            self.store.delete(target, vanished)
            report.deleted += len(vanished)
        index.record(target, plan.source.key, plan.context,
                     {k: (NEVER_MATCHES if k in retry else plan.stats[k], ids)
                      for k, ids in present.items()
                      if k not in refused and plan.stats.get(k) is not None})
        index.forget(target, [k for k in keys if k in refused])

    def _crossmatched(self, record: SpectrumRecord) -> SpectrumRecord:
        return with_tables(record, self.crossmatch, self.positions)

    def _mark_scores_stale(self, state: SyncState, target: str) -> None:
        if state.scores_fresh.get(target, True):
            state.scores_fresh[target] = False
            state.save(self.state_path)      # before the first write, so a kill leaves it stale

    # -- after all batches -----------------------------------------------------------------
    def _delete_missing(self, sources: Sequence[Source], plans: dict[str, SourcePlan],
                        index: FileIndex, target: str, seen: set[str], report: SyncReport,
                        state: SyncState) -> None:
        """Delete the points whose source no longer yields them. Files recorded in the index
        and no longer listed name their points; a source whose every point is not yet known
        to the index (its first run, --verify, a catalogue, the XP library) is scrolled."""
        gone: list[str] = []
        for plan in plans.values():
            if plan.gone:
                gone.extend(index.ids_of(target, plan.gone))
        scroll_roots = []
        for s in sources:
            plan = plans.get(s.spec)
            if plan is None or self.verify or not index.is_complete(target, s.key,
                                                                    plan.context):
                scroll_roots.append(s.key)
                if plan is not None:      # what unread files hold is still there
                    seen.update(index.ids_of(target, plan.unchanged))
        if scroll_roots:
            flt = Filter(must=(MatchAny(P.SOURCE_ROOT, tuple(scroll_roots)),))
            gone.extend(h.id for h in self.store.scroll(target, filter=flt)
                        if h.id not in seen)
        gone = sorted(set(gone))
        if gone:
            self._mark_scores_stale(state, target)
            for i in range(0, len(gone), 1000):
                self._remember_refs(target, gone[i:i + 1000])
                self.store.delete(target, gone[i:i + 1000])
            report.deleted += len(gone)
        for plan in plans.values():
            index.forget(target, plan.gone)
            if plan.source.key in scroll_roots:   # every point of it is now in the index
                index.set_complete(target, plan.source.key, plan.context)
        state.sources = [s for s in state.sources if Source(s["spec"]).exists()]

    def _switch_alias(self, target: str, index: FileIndex) -> bool:
        previous = self.store.resolve(self.alias)
        if previous == target:
            return False
        self.store.set_alias(self.alias, target)
        log.info("alias %s -> %s (was %s)", self.alias, target, previous)
        if previous and previous != target:
            self.store.delete_collection(previous)
            index.drop_collection(previous)
            self.archive.drop_collection(previous)
        return True

    def _remember_refs(self, target: str, ids: list[str]) -> None:
        """Before these points are overwritten or deleted: the archive files they name."""
        self._old_refs.update(str(h.payload[P.SPECTRUM_FILE])
                              for h in self.store.retrieve(target, ids)
                              if P.SPECTRUM_FILE in h.payload)

    def _collect_archive_garbage(self, target: str, started: float, full: bool) -> None:
        """Delete archive files no point names. After a full scoring pass (already a pass
        over every point) every file is looked at; otherwise only the files that this
        run's updated or deleted points named and those listed as orphans before, through
        one filtered scroll that returns only the points still naming them. (Files that a
        killed run wrote but never named are found by the next full pass.)"""
        assert self.archive is not None
        if full:
            candidates = None
            hits = self.store.scroll(target)
        else:
            listed = self.archive.listed_orphans(target)
            refs = set(self._old_refs)
            refs.update(self.archive.ref_of(p) for p in listed)
            if not refs:
                return
            candidates = {self.archive.resolve(r) for r in refs} | listed
            hits = self.store.scroll(target, filter=Filter(
                must=(MatchAny(P.SPECTRUM_FILE, tuple(sorted(refs))),)))
        referenced = {self.archive.resolve(h.payload[P.SPECTRUM_FILE])
                      for h in hits if P.SPECTRUM_FILE in h.payload}
        deleted = self.archive.collect_garbage(target, referenced, started, candidates)
        if deleted:
            log.info("deleted %d spectrum archive files no point names", deleted)


def with_tables(record: SpectrumRecord, crossmatch: dict[str, int],
                positions: dict[str, tuple[float, float]]) -> SpectrumRecord:
    """The record with what the user's tables add: the Gaia source_id of a cross-matched
    LAMOST spectrum, the position of an XP spectrum whose file has none. (The Dask indexer
    calls this too, so ids and hashes agree with the single-process run.)"""
    if record.gaia_source_id is None and record.object_id in crossmatch:
        record = dataclasses.replace(record, gaia_source_id=int(crossmatch[record.object_id]))
    if record.survey == SURVEY_XP and record.ra is None and record.object_id in positions:
        ra, dec = positions[record.object_id]
        record = dataclasses.replace(record, ra=ra, dec=dec)
    return record


def default_archive(store: VectorStore, state_path: str) -> SpectrumArchiveWriter:
    """An embedded store keeps its spectra in its own folder (references relative to it, so
    the folder can be moved); any other store, beside the state file (absolute references:
    every client must see that folder at the same path)."""
    root = getattr(store, "root", None) if getattr(store, "mode", "") == "edge" else None
    if root is not None:
        return SpectrumArchiveWriter(os.path.join(root, ARCHIVE_DIR), relative_to=root)
    folder = os.path.join(os.path.dirname(os.path.abspath(state_path)), ARCHIVE_DIR)
    return SpectrumArchiveWriter(folder)


def write_report(report: SyncReport, path: str) -> None:
    atomic_write_json(path, report.to_dict())
