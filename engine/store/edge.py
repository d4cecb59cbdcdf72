"""Embedded store on Qdrant Edge (qdrant-edge-py, beta): EdgeStore, the VectorStore API. Only
this module and its edge_* siblings import qdrant_edge: edge_folder (the store folder, its
layout and the collections opened from it, reader switching included), edge_queries (the
read-only calls), edge_types (translation of types), edge_collection (one open collection's
state), edge_publish (publishing generations). Here are the constructor and the calls that
change a store: collections, aliases (with resolve), points, optimize, flush and publish, close.

Edge has one local shard: shard_number, replication_factor and write_consistency_factor other
than 1 are refused (they would do nothing). Scalar int8 quantization, on-disk vectors, HNSW
m / ef_construct, the indexing threshold and search_threads are honoured; HNSW is built only
by ``optimize()``. What files and callers hand the store is checked in checks.py; a store on
read-only media is read through a private copy (readonly.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import qdrant_edge as qe

from engine.errors import StoreError
from engine.jsonfile import atomic_write_json
from engine.store import checks
from engine.store import generations as gens
from engine.store.edge_collection import EdgeCollection
from engine.store.edge_publish import publish_shard
from engine.store.edge_queries import EdgeQueries
from engine.store.edge_types import edge_config, edge_errors, field_index_schema
from engine.store.readonly import on_read_only_media
from engine.store.spec import (
    check_collection_spec,
    check_points,
    meta_dict,
    meta_from_dict,
    options_kept,
)
from engine.store.types import CollectionOptions, Point, VectorSpec

log = logging.getLogger(__name__)


class EdgeStore(EdgeQueries):
    """VectorStore on Qdrant Edge in a folder (see edge_folder.py for the layout).

    Parameters
    ----------
    path : str or Path
        The store folder; created for a writer when missing.
    read_only : bool
        Open the latest published generations; reload when the writer publishes more.
    """

    mode = "edge"

    def __init__(self, path: str | os.PathLike, read_only: bool = False):
        self.root = Path(path)
        self.read_only = read_only
        # Plain strings for the files stat'ed on every call (pathlib joins cost more than
        # the stat itself): aliases.json, and per collection CURRENT (readers) or meta.json.
        self._root_s = str(self.root)
        self._aliases_path = os.path.join(self._root_s, "aliases.json")
        self._lock = threading.RLock()          # Streamlit calls from several threads
        self._open: dict[str, EdgeCollection] = {}
        self._aliases: dict[str, str] = {}
        self._aliases_stamp: Any = ()
        self._writer_fd: int | None = None
        self.default_options = CollectionOptions()
        self._ro_media = False
        if read_only:
            if not (self.root / "store.json").is_file():
                raise StoreError(f"{self.root}: no embedded store here (store.json missing)")
            self._ro_media = on_read_only_media(self.root)
        else:
            self._claim_writer()
            for name in self.list_collections():    # a writer died before publishing:
                if (self._cdir(name) / "unpublished").exists():
                    self._writer_coll(name)         # loaded dirty, published on next flush
                elif self._published_damaged(name):
                    self._writer_coll(name).dirty = True     # republished on next flush
            self._prune_orphans()

    # ---- collections and aliases ----------------------------------------------------------

    def create_collection(self, name: str, vectors: Sequence[VectorSpec],
                          payload_indexes: dict[str, str],
                          options: CollectionOptions = CollectionOptions()) -> None:
        """Create a collection (an Edge shard) with its payload indexes and publish it empty.
        Re-creating an identical collection is a no-op; one that lacks only some of the payload
        indexes gets them (a store built before an index existed, e.g. the geo index of sky
        positions); any other difference is refused."""
        with self._lock:
            self._require_writer("create_collection")
            check_collection_spec(vectors, payload_indexes)
            meta = meta_dict(vectors, payload_indexes, options)
            existing = self._read_meta(self._cdir(name) / "meta.json")
            if existing is not None:      # compared normalised: older files lack new options
                old_vectors, old_indexes, old_options = meta_from_dict(existing)
                kept = options_kept(existing, options)
                if kept != options:
                    log.info("collection %s was made before some options existed: it keeps "
                             "%s", name, kept)
                    options, meta = kept, meta_dict(vectors, payload_indexes, kept)
                added = {k: v for k, v in payload_indexes.items() if k not in old_indexes}
                if meta_dict(old_vectors, {**old_indexes, **added}, old_options) != meta:
                    raise StoreError(f"collection {name!r} exists with another spec")
                if added:
                    self._add_payload_indexes(name, added, options, meta)
                return
            if name in self._load_aliases():
                raise StoreError(f"{name!r} is an alias")
            cdir = self._cdir(name)
            checks.check_free_space(self.root, checks.create_bytes(len(payload_indexes)),
                                    f"create collection {name!r} in {self.root}")
            shutil.rmtree(cdir, ignore_errors=True)      # debris of an interrupted create
            cdir.mkdir(parents=True)
            with edge_errors(f"create {name}"):
                shard = qe.EdgeShard.create(str(cdir / "shard"), edge_config(vectors, options))
                for key, kind in payload_indexes.items():
                    shard.update(qe.UpdateOperation.create_field_index(
                        key, field_index_schema(kind, options)))
            # meta.json last: a collection without it is debris, never half a collection
            atomic_write_json(cdir / "meta.json", meta)
            c = self._open[name] = EdgeCollection(shard, meta, marker=cdir / "unpublished")
            c.dirty = True                        # readers see it from the next flush

    def _add_payload_indexes(self, name: str, added: dict[str, str],
                             options: CollectionOptions, meta: dict) -> None:
        c = self._writer_coll(name)
        with edge_errors(f"index {name}"):
            for key, kind in added.items():
                c.shard.update(qe.UpdateOperation.create_field_index(
                    key, field_index_schema(kind, options)))
        atomic_write_json(self._cdir(name) / "meta.json", meta)
        c.dirty = True
        log.info("collection %s: added payload indexes %s", name, sorted(added))

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self._require_writer("delete_collection")
            c = self._open.pop(name, None)
            if c is not None:
                c.close()
            if not self._cdir(name).is_dir():
                raise StoreError(f"no collection {name!r} in {self.root}")
            pub = self._pdir(name)
            if (pub / gens.CURRENT).exists():
                os.unlink(pub / gens.CURRENT)     # readers fail cleanly from their next call
            gens.prune(pub, keep=None)
            shutil.rmtree(self._cdir(name))
            aliases = {a: t for a, t in self._load_aliases().items() if t != name}
            atomic_write_json(self.root / "aliases.json", aliases)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` (an atomic switch for readers)."""
        with self._lock:
            self._require_writer("set_alias")
            checks.check_name(alias, "alias")
            if collection not in self.list_collections():
                raise StoreError(f"alias {alias!r}: no collection {collection!r}")
            if alias in self.list_collections():
                raise StoreError(f"alias {alias!r} is a collection name")
            aliases = dict(self._load_aliases())
            aliases[alias] = collection
            atomic_write_json(self.root / "aliases.json", aliases)

    def resolve(self, name_or_alias: str) -> str | None:
        """Alias first, then collection name; None when neither exists. Runs on every call,
        so it costs one stat of aliases.json and one of the collection's marker file."""
        with self._lock:
            name = self._load_aliases().get(name_or_alias, name_or_alias)
            return name if os.path.isfile(self._marker(name)) else None

    # ---- points ---------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points. The batch is validated before anything is written."""
        with self._lock:
            self._require_writer("upsert")
            c = self._coll(collection)
            check_points(points, c.dims)
            if not points:
                return
            checks.check_free_space(self.root, checks.batch_bytes(points),
                                    f"upsert into {collection}")
            ops = [qe.Point(p.id, {k: np.asarray(v, dtype=np.float32) for k, v in
                                   p.vectors.items()}, p.payload) for p in points]
            with edge_errors(f"upsert into {collection}"):
                c.shard.update(qe.UpdateOperation.upsert_points(ops))
            c.dirty = True
            c.since_optimize += len(points)
            cap = c.options.max_segment_points
            if cap is not None and c.since_optimize >= cap:
                # Edge never splits a segment: everything upserted between two optimize()
                # calls lands in one appendable segment, which optimize() indexes whole. So a
                # bulk load is optimized every `cap` points to keep segments near the cap.
                log.info("collection %s: %d points written since the last optimize "
                         "(segment cap %d): optimizing", collection, c.since_optimize, cap)
                # Edge deletes the segments it rewrote only at a flush: without one, a bulk
                # load kept every appendable segment it had indexed on disk until its end
                # (30,000 points capped at 5,000: 13 segment folders and 39 MiB before the
                # final flush, 7 and 25 MiB after). An explicit optimize() leaves that to the
                # caller's flush, which follows it in a sync (50 ms at 100k points).
                self._optimize(collection, c, flush=True)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._lock:
            self._require_writer("delete")
            c = self._coll(collection)
            if not ids:
                return
            with edge_errors(f"delete from {collection}"):
                c.shard.update(qe.UpdateOperation.delete_points(list(ids)))
            c.dirty = True

    # ---- maintenance ----------------------------------------------------------------------

    def optimize(self, collection: str) -> None:
        """Build HNSW (blocking) on segments above the indexing threshold. With
        ``max_segment_points`` set, upsert() also calls it once that many points were
        written since the last call (see there)."""
        with self._lock:
            self._require_writer("optimize")
            self._optimize(collection, self._coll(collection))

    def _optimize(self, collection: str, c: EdgeCollection, flush: bool = False) -> None:
        # optimize() rewrites segments: as much again as the shard holds, at worst. Edge
        # runs its optimizations one after another but keeps the old segments until the
        # next flush (qdrant-edge-py 0.9.0: vacuuming all 3 segments of a 60k-point store
        # took 115 MiB more at peak, its shard being 168 MiB), so one segment's worth is not
        # enough even with segments capped.
        checks.check_free_space(self.root, checks.allocated_bytes(self._cdir(
            self._load_aliases().get(collection, collection)) / "shard"),
            f"optimize {collection}")
        with edge_errors(f"optimize {collection}"):
            c.shard.optimize()
            if flush:
                c.shard.flush()
        c.dirty = True
        c.since_optimize = 0

    def flush(self, publish: bool = True) -> None:
        """Make writes durable and (by default) publish them to reader processes. Publishing
        links the segment files that did not change and seals only the segments that did
        (edge_publish.py), but still costs a second or so, so writers should flush per sync
        run or every few minutes, not per batch. On a read-only store this only checks for
        newer generations."""
        with self._lock:
            if self.read_only:
                for name in list(self._open):
                    self._reader_coll(name)
                return
            if publish:                           # heal what a reader would see as empty
                for name in self.list_collections():
                    c = self._open.get(name)
                    if (c is None or not c.dirty) and self._published_damaged(name):
                        self._writer_coll(name).dirty = True
            for name, c in self._open.items():
                if publish and c.dirty:
                    self._publish(name)           # flushes first
                else:
                    with edge_errors(f"flush {name}"):
                        c.shard.flush()
            if publish:
                self._prune_orphans()

    def publish(self) -> None:
        """Publish every collection written since its last publication (see flush)."""
        self.flush(publish=True)

    def _publish(self, name: str) -> int:
        c = self._open[name]
        gen = publish_shard(c.shard, self._cdir(name), self._pdir(name),
                            len(c.payload_indexes))
        c.dirty = False
        return gen

    def close(self) -> None:
        """Flush and publish pending writes, close shards, release locks. Idempotent."""
        with self._lock:
            if not self.read_only and self._writer_fd is not None:
                self.flush()
            for c in self._open.values():
                c.close()
            self._open.clear()
            if self._writer_fd is not None:
                os.close(self._writer_fd)
                self._writer_fd = None

    def __enter__(self) -> "EdgeStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
