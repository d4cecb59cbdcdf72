"""Distributed embedding on Dask: the files a sync has to read are split into partitions
that workers read and embed; everything else is the single-process `indexer.sync.Syncer`.

    specclip index --dask N --store DIR SOURCES...      # N local worker processes
    specclip index --dask tcp://scheduler:8786 --url http://qdrant:6333 SOURCES...

The driver plans the sync exactly as `Syncer` does (`Syncer.plan`: one listing, one stat
per file; files and catalogue files unchanged since they were indexed are not read at all),
cuts the files to read into partitions (chunks of files of a folder source, or one Parquet
catalogue file),
and each worker runs `indexer.changes.embed_changes` on its partition: the same ids,
content hashes, skipping and points as the single-process sync. Then:

- embedded store (Qdrant Edge, one writer process): workers *return* their points with their
  spectra encoded for the store's archive (engine/spectrum_archive.py), and the driver writes
  the spectra and then upserts the points; the driver sends workers the {id: content_hash}
  map it read from the store, so unchanged spectra are skipped before embedding;
- server or cluster (`url`): each worker opens its own client, writes its spectra into the
  archive folder (which every worker must see) and upserts directly (Qdrant routes each
  point to its shard), asking the store for the hashes of its own partition's ids.

As each partition lands, the driver records its files, or its catalogue file with every
id it yielded, in the file index (`Syncer.apply_changes`, `Syncer.record_part`), so the
closing `Syncer.run` reads none of them again and does only the collection-wide steps:
deleting points whose files are gone, anomaly scores, optimize, the alias switch and the
bookkeeping. Re-running is idempotent, and a killed run resumes: what was upserted but not
recorded is read again and skipped by hash.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

from engine.collection import (DEFAULT_ALIAS, DEFAULT_OPTIONS, collection_spec,
                               ensure_collection, versioned_name)
from engine.records import SpectrumRecord
from engine.spectrum_archive import SpectrumArchiveWriter
from engine.store.types import CollectionOptions, VectorStore
from indexer.changes import Changes, PartIds, embed_changes, file_key, upsert_with_spectra
from indexer.file_index import FileIndex
from indexer.points import stored_hash
from indexer.progress import LogProgress, Progress
from indexer.sources import Batch, Source
from indexer.state import SyncState
from indexer.sync import Syncer, SyncReport, default_archive, index_path_for, with_tables

log = logging.getLogger(__name__)

FILES_PER_PARTITION = 256


@dataclass(frozen=True)
class Partition:
    """A unit of work a worker reads by itself (no records travel from the driver)."""

    source: str                      # Source.key: the payload's source_root
    kind: str                        # "files" | "catalogue"
    files: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass
class PartitionResult(Changes):
    """A partition's Changes (``points`` empty when the worker upserted them itself), and
    the files the reader refused."""

    read_refused: list[dict] = field(default_factory=list)


# ---- planning (driver) ---------------------------------------------------------------------

def plan_partitions(sources: Sequence[Source], files_per_partition: int = FILES_PER_PARTITION,
                    to_read: dict[str, list[str]] | None = None) -> list[Partition]:
    """Split sources into partitions, in a stable order (the same plan on every run).
    ``to_read``: per source spec, the files to read (default: all it lists; a catalogue's
    are its Parquet files)."""
    parts: list[Partition] = []
    for src in sources:
        if src.kind == "catalogue":
            files = list(src.parts().values()) if to_read is None else to_read.get(src.spec, [])
            parts.extend(Partition(src.key, "catalogue", (str(f),)) for f in files)
        elif src.kind == "files":
            files = src.files() if to_read is None else to_read.get(src.spec, [])
            for i in range(0, len(files), files_per_partition):
                parts.append(Partition(src.key, "files", tuple(files[i:i + files_per_partition]),
                                       labels=src.labels))
        else:
            raise ValueError(f"{src.spec}: distribute a Parquet catalogue or a folder of files "
                             "(the XP library fits one machine: use plain `specclip index`)")
    return parts


# ---- one partition (worker) -------------------------------------------------------------

def read_partition(part: Partition) -> tuple[list[SpectrumRecord], list[dict]]:
    """The records of one partition, read the way `indexer.sources.Source` reads them."""
    from engine import readers

    if part.kind == "catalogue":
        from engine.catalogue import read_catalogue
        from engine.readers.guards import collect_row_refusals

        with collect_row_refusals() as refused:      # bad rows, each with its reason
            records = read_catalogue(part.files[0])
        return records, refused
    records, refused = readers.read_many(list(part.files))
    for table in (readers.lamost_labels.load_lamost_labels(p) for p in part.labels):
        records = readers.lamost_labels.attach_labels(records, table)
    return records, refused


def embed_partition(part: Partition, embedder_factory: Callable[[], Any], collection: str,
                    known: dict[str, str] | None = None, store_url: str | None = None,
                    crossmatch: dict[str, int] | None = None,
                    positions: dict[str, tuple[float, float]] | None = None,
                    archive: SpectrumArchiveWriter | None = None) -> PartitionResult:
    """Read, hash, skip, embed and build (and, against a server, upsert) one partition.

    `known` is the store's {id: content_hash} (embedded store; points and their encoded
    spectra are returned); with `store_url` the worker asks the server for its ids' hashes,
    writes the spectra into `archive` (a folder every worker sees) and upserts itself.
    """
    if store_url is not None and archive is None:
        raise ValueError("a worker that upserts into a server needs the spectrum archive "
                         "folder (archive=) to write the spectra into")
    records, refused = read_partition(part)
    store = _server_store(store_url) if store_url else None
    if store is not None:
        def stored(ids: list[str]) -> dict[str, Any]:
            return {h.id: stored_hash(h) for h in store.retrieve(collection, ids)}
    else:
        def stored(ids: list[str]) -> dict[str, Any]:
            return {i: known[i] for i in ids if i in (known or {})}
    changes = embed_changes([with_tables(r, crossmatch or {}, positions or {}) for r in records],
                            part.source, embedder_factory(), stored, set())
    res = PartitionResult(read_refused=list(refused))
    res.merge(changes)
    if store is not None and res.groups:
        upsert_with_spectra(store, collection, archive, res.groups)
        res.groups = []
    return res


@lru_cache(maxsize=4)
def _server_store(url: str) -> VectorStore:
    """One client per worker process (API key from QDRANT_API_KEY in the worker's env)."""
    from engine.store import open_store
    return open_store(url=url)


@lru_cache(maxsize=2)
def _cached_embedder(bundle_path: str | None, device: str = "cpu") -> Any:
    from engine.inference import Embedder
    return Embedder(bundle_path, device=device)


def bundle_embedder_factory(bundle_path: str | None = None, device: str = "cpu"
                            ) -> Callable[[], Any]:
    """A picklable factory: each worker process loads the bundle once (onto `device`) and
    keeps it."""
    return _BundleFactory(bundle_path, device)


@dataclass(frozen=True)
class _BundleFactory:
    bundle_path: str | None
    device: str = "cpu"

    def __call__(self) -> Any:
        return _cached_embedder(self.bundle_path, self.device)


# ---- the driver --------------------------------------------------------------------------

def _known_hashes(store: VectorStore, collection: str) -> dict[str, str | None]:
    return {h.id: stored_hash(h) for h in store.scroll(collection)}


def _client(workers: int | str, threads_per_worker: int):
    from dask.distributed import Client, LocalCluster

    if isinstance(workers, str):
        return Client(workers), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def distributed_sync(sources: Sequence[str | Source], store: VectorStore, embedder: Any,
                     state_path: str, workers: int | str = 2, *, store_url: str | None = None,
                     embedder_factory: Callable[[], Any] | None = None,
                     alias: str = DEFAULT_ALIAS,
                     options: CollectionOptions | None = None,
                     crossmatch: dict[str, int] | None = None,
                     positions: dict[str, tuple[float, float]] | None = None,
                     archive: SpectrumArchiveWriter | None = None,
                     files_per_partition: int = FILES_PER_PARTITION,
                     threads_per_worker: int = 1, verify: bool = False,
                     progress: Progress | None = None) -> SyncReport:
    """Sync `sources` into `store` with the embedding spread over Dask workers.

    Parameters
    ----------
    sources : source specs (paths of folders/files, `.parquet` catalogues) or Source objects.
    store : the open store (embedded writer, or a server store when `store_url` is given).
    embedder : the driver's Embedder (version and dims; used by the finishing Syncer).
    state_path : the indexer's bookkeeping file (as for `Syncer`).
    workers : number of local worker processes, or a scheduler address "tcp://host:8786".
    store_url : a Qdrant server/cluster URL: workers then upsert directly.
    embedder_factory : picklable callable returning the workers' embedder (default: load the
        bundle `embedder.bundle.path` once per worker process).
    positions : Gaia source_id -> (ra, dec) for XP spectra whose files carry none.
    archive : where the spectra go (default: `indexer.sync.default_archive`); with a server
        every worker writes into it, so it must be a folder they all see.
    verify : read every file, also those unchanged since they were indexed.
    Returns the SyncReport of the whole run.
    """
    t0 = time.time()
    srcs = [s if isinstance(s, Source) else Source(s) for s in sources]
    archive = archive or default_archive(store, state_path)
    syncer = Syncer(store=store, embedder=embedder, state_path=state_path, alias=alias,
                    options=options or DEFAULT_OPTIONS, crossmatch=dict(crossmatch or {}),
                    positions=dict(positions or {}), archive=archive,
                    progress=progress or LogProgress(), verify=verify)
    target = versioned_name(alias, embedder.version)
    ensure_collection(store, target, collection_spec(embedder, syncer.options))
    if embedder_factory is None:
        bundle = getattr(getattr(embedder, "bundle", None), "path", None)
        embedder_factory = bundle_embedder_factory(str(bundle) if bundle else None,
                                                   str(getattr(embedder, "device", "cpu")))
    merged = SyncReport()
    state = SyncState.load(state_path)
    with FileIndex(index_path_for(state_path)) as index:
        plans = syncer.plan(srcs, index, target)
        parts = plan_partitions([s for s in srcs if s.exists()], files_per_partition,
                                {spec: p.to_read for spec, p in plans.items()})
        by_key = {p.source.key: p for p in plans.values()}
        if parts:
            client, cluster = _client(workers, threads_per_worker)
            try:
                known = None
                if store_url is None:
                    # A list, not the dict itself: scatter would take a dict as {key: data}.
                    (known,) = client.scatter([_known_hashes(store, target)], broadcast=True)
                futures = {client.submit(embed_partition, p, embedder_factory, target, known,
                                         store_url, crossmatch, positions, archive,
                                         key=f"embed-{i}-{os.getpid()}",
                                         pure=False): p for i, p in enumerate(parts)}
                _collect(futures, syncer, by_key, index, target, merged, state)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        state.save(state_path)            # scores marked stale before the first upsert
    # The workers' files and catalogue files are recorded now; the closing run counts them
    # unchanged, unread (also those still inside the racy window, which a plain run would
    # read again).
    refused = {file_key(r["path"]) for r in merged.refused}
    handled = {file_key(f) for p in parts for f in p.files} - refused
    report = syncer.run(srcs, handled=handled)
    report.skipped -= merged.added + merged.updated     # counted there as unchanged
    report.added, report.updated = merged.added, merged.updated
    report.duplicates += merged.duplicates
    # a file a worker refused is not recorded, so the closing run tried it again
    again = {(r["path"], r["reason"]) for r in merged.refused}
    report.refused = merged.refused + [r for r in report.refused
                                       if (r["path"], r["reason"]) not in again]
    report.deleted += merged.deleted
    report.files_unchanged -= merged.files_read            # recorded by this run
    report.files_read += merged.files_read
    report.seconds = round(time.time() - t0, 3)
    return report


def _collect(futures: dict, syncer: Syncer, plans: dict, index: FileIndex, target: str,
             merged: SyncReport, state: SyncState) -> None:
    """Upsert what workers return, as they finish, and record their files (a catalogue
    file with every id it yielded); a failed partition fails the run (the points already
    upserted are idempotent and a re-run skips them by hash)."""
    from dask.distributed import as_completed

    syncer.progress.start("reading", sum(len(p.files) for p in futures.values()))
    syncer.progress.start("embedding", None)
    for fut in as_completed(list(futures)):
        part: Partition = futures[fut]
        res: PartitionResult = fut.result()
        batch = Batch([], res.read_refused, part.source,
                      part.files if part.kind == "files" else ())
        merged.refused.extend(res.read_refused)
        syncer.apply_changes(batch, plans.get(part.source), res, index, target, merged, state)
        if part.kind == "catalogue":
            ids = PartIds()
            ids.add(res, refused=bool(res.read_refused))
            syncer.record_part(plans[part.source], file_key(part.files[0]), ids, index,
                               target, merged, state)
        syncer.progress.advance("reading", len(part.files))
        syncer.progress.advance("embedding", res.added + res.updated + res.skipped)
        fut.release()
    syncer.progress.finish("reading")
    syncer.progress.finish("embedding")
