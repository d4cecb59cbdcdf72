"""Distributed embedding on Dask: partitions of the sources are read and embedded on workers,
with the same stable ids and content-hash skipping as the single-process indexer.

    specclip index --dask N --store DIR SOURCES...      # N local worker processes
    specclip index --dask tcp://scheduler:8786 --url http://qdrant:6333 SOURCES...

Partitions: one Parquet row group of a catalogue (or a whole file of a catalogue folder), or a
chunk of files of a LAMOST/XP folder. Each worker reads its partition, gives every spectrum
its `indexer.ids.point_id` and `content_hash`, drops those the store already holds with that
hash, embeds the rest and builds points with `indexer.points.build_points`. Then:

- embedded store (Qdrant Edge, one writer process): workers *return* their points with their
  spectra encoded for the store's archive (engine/spectrum_archive.py), and the driver writes
  the spectra and then upserts the points; the driver sends workers the {id: content_hash}
  map it read from the store, so unchanged spectra are skipped before embedding;
- server or cluster (`url`): each worker opens its own client, writes its spectra into the
  archive folder (which every worker must see) and upserts directly (Qdrant routes each
  point to its shard), asking the store for the hashes of its own partition's ids.

Either way the run ends with the single-process `indexer.sync.Syncer` on the driver, which now
finds every spectrum up to date (nothing re-embedded) and does the collection-wide steps the
same way as always: deleting points whose source is gone, anomaly scores, optimize, the alias
switch and the bookkeeping. Re-running is idempotent, and a killed run resumes: what was
upserted is skipped next time by its hash.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.collection import DEFAULT_ALIAS, ensure_collection, versioned_name
from engine.records import SURVEYS, SpectrumRecord
from engine.store.types import CollectionOptions, VectorStore
from indexer.ids import content_hash, point_id
from engine.spectrum_archive import SpectrumArchiveWriter, encode_rows
from indexer.points import build_points, stored_hash, with_spectrum_refs
from indexer.sources import Source
from indexer.sync import Syncer, SyncReport, default_archive, with_tables

log = logging.getLogger(__name__)

FILES_PER_PARTITION = 256


@dataclass(frozen=True)
class Partition:
    """A unit of work a worker reads by itself (no records travel from the driver)."""

    source: str                      # Source.key: the payload's source_root
    kind: str                        # "files" | "catalogue"
    files: tuple[str, ...] = ()
    row_groups: tuple[int, ...] | None = None     # catalogue: None = the whole file
    labels: tuple[str, ...] = ()


@dataclass
class PartitionResult:
    # filled only when the driver upserts: (points, their spectra as archive rows), per batch
    batches: list = field(default_factory=list)
    added: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    refused: list[dict] = field(default_factory=list)


# ---- planning (driver) ---------------------------------------------------------------------

def plan_partitions(sources: Sequence[Source], files_per_partition: int = FILES_PER_PARTITION
                    ) -> list[Partition]:
    """Split sources into partitions, in a stable order (the same plan on every run)."""
    from engine import readers

    parts: list[Partition] = []
    for src in sources:
        if src.kind == "catalogue":
            parts.extend(_catalogue_partitions(src))
        elif src.kind == "files":
            files = sorted(readers.iter_spectrum_files([src.spec]))
            for i in range(0, len(files), files_per_partition):
                parts.append(Partition(src.key, "files", tuple(files[i:i + files_per_partition]),
                                       labels=src.labels))
        else:
            raise ValueError(f"{src.spec}: distribute a Parquet catalogue or a folder of files "
                             "(the XP library fits one machine: use plain `specclip index`)")
    return parts


def _catalogue_partitions(src: Source) -> list[Partition]:
    import pyarrow.parquet as pq

    path = Path(src.spec)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    parts = []
    for f in files:
        n_groups = pq.ParquetFile(f).metadata.num_row_groups
        if _catalogue_reads_row_groups() and n_groups > 1:
            parts.extend(Partition(src.key, "catalogue", (str(f),), (g,)) for g in range(n_groups))
        else:
            parts.append(Partition(src.key, "catalogue", (str(f),)))
    return parts


def _catalogue_reads_row_groups() -> bool:
    import inspect

    from engine.catalogue import read_catalogue
    return "row_groups" in inspect.signature(read_catalogue).parameters


# ---- one partition (worker) -------------------------------------------------------------

def read_partition(part: Partition) -> tuple[list[SpectrumRecord], list[dict]]:
    """The records of one partition, read the way `indexer.sources.Source` reads them."""
    from engine import readers

    if part.kind == "catalogue":
        from engine.catalogue import read_catalogue
        if part.row_groups is not None:
            return read_catalogue(part.files[0], row_groups=list(part.row_groups)), []
        return read_catalogue(part.files[0]), []
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
    res = PartitionResult(refused=list(refused))
    seen: set[str] = set()
    keep, ids, hashes = [], [], []
    for r in (with_tables(r, crossmatch or {}, positions or {}) for r in records):
        pid = point_id(r)
        if pid in seen:
            res.duplicates += 1
            continue
        seen.add(pid)
        keep.append(r)
        ids.append(pid)
        hashes.append(content_hash(r))
    store = _server_store(store_url) if store_url else None
    if store is not None:
        known = {h.id: stored_hash(h) for h in store.retrieve(collection, ids)}
    known = known or {}
    todo = [i for i, pid in enumerate(ids) if known.get(pid) != hashes[i]]
    res.skipped = len(ids) - len(todo)
    embedder = embedder_factory()
    for survey in SURVEYS:
        idx = [i for i in todo if keep[i].survey == survey]
        if not idx:
            continue
        recs = [keep[i] for i in idx]
        emb = embedder.embed(recs)
        points = build_points(recs, emb, [ids[i] for i in idx], [hashes[i] for i in idx],
                              part.source, embedder.version)
        res.refused += [{"path": r.source_path, "reason": f"{r.survey} {r.object_id}: too few "
                         "usable pixels for the model"} for j, r in enumerate(recs)
                        if not bool(emb.valid[j])]
        for p in points:
            if p.id in known:
                res.updated += 1
            else:
                res.added += 1
        if not points:
            continue
        at = {ids[i]: i for i in idx}
        rows = encode_rows([p.id for p in points], [hashes[at[p.id]] for p in points],
                           [keep[at[p.id]] for p in points])
        if store is not None:      # spectra first, then the points naming them
            ref = archive.write_rows(collection, rows)
            store.upsert(collection, with_spectrum_refs(
                points, ref, {p.id: i for i, p in enumerate(points)}))
        else:
            res.batches.append((points, rows))
    return res


@lru_cache(maxsize=4)
def _server_store(url: str) -> VectorStore:
    """One client per worker process (API key from QDRANT_API_KEY in the worker's env)."""
    from engine.store import open_store
    return open_store(url=url)


@lru_cache(maxsize=2)
def _cached_embedder(bundle_path: str | None) -> Any:
    from engine.inference import Embedder
    return Embedder(bundle_path)


def bundle_embedder_factory(bundle_path: str | None = None) -> Callable[[], Any]:
    """A picklable factory: each worker process loads the bundle once and keeps it."""
    return _BundleFactory(bundle_path)


@dataclass(frozen=True)
class _BundleFactory:
    bundle_path: str | None

    def __call__(self) -> Any:
        return _cached_embedder(self.bundle_path)


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
                     threads_per_worker: int = 1,
                     progress: Callable[[int], None] = lambda n: None) -> SyncReport:
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
    Returns the SyncReport, with the workers' added/updated/skipped/refused counts merged in.
    """
    srcs = [s if isinstance(s, Source) else Source(s) for s in sources]
    options = options or CollectionOptions()
    archive = archive or default_archive(store, state_path)
    target = versioned_name(alias, embedder.version)
    ensure_collection(store, target, embedder.shared_dim,
                      {s: embedder.own_dim(s) for s in SURVEYS}, options)
    if embedder_factory is None:
        bundle = getattr(getattr(embedder, "bundle", None), "path", None)
        embedder_factory = bundle_embedder_factory(str(bundle) if bundle else None)
    parts = plan_partitions([s for s in srcs if s.exists()], files_per_partition)
    merged = PartitionResult()
    client, cluster = _client(workers, threads_per_worker)
    try:
        known = None
        if store_url is None:
            # A list, not the dict itself: scatter would take a dict as {key: data}.
            (known,) = client.scatter([_known_hashes(store, target)], broadcast=True)
        futures = [client.submit(embed_partition, p, embedder_factory, target, known, store_url,
                                 crossmatch, positions, archive,
                                 key=f"embed-{i}-{os.getpid()}", pure=False)
                   for i, p in enumerate(parts)]
        _collect(futures, store, target, merged, progress, archive)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    report = Syncer(store=store, embedder=embedder, state_path=state_path, alias=alias,
                    options=options, crossmatch=dict(crossmatch or {}),
                    positions=dict(positions or {}), archive=archive).run(srcs)
    report.added, report.updated = merged.added, merged.updated
    report.skipped = merged.skipped
    report.duplicates = merged.duplicates
    report.refused = merged.refused
    return report


def _collect(futures: list, store: VectorStore, target: str, merged: PartitionResult,
             progress: Callable[[int], None], archive: SpectrumArchiveWriter) -> None:
    """Write the spectra and upsert the points workers return, as they finish; a failed
    partition fails the run (the points already upserted are idempotent and a re-run skips
    them by hash)."""
    from dask.distributed import as_completed

    for fut in as_completed(futures):
        res: PartitionResult = fut.result()
        for points, rows in res.batches:
            ref = archive.write_rows(target, rows)
            store.upsert(target, with_spectrum_refs(points, ref,
                                                    {p.id: i for i, p in enumerate(points)}))
        merged.added += res.added
        merged.updated += res.updated
        merged.skipped += res.skipped
        merged.duplicates += res.duplicates
        merged.refused += res.refused
        progress(res.added + res.updated + res.skipped + len(res.refused))
        fut.release()
