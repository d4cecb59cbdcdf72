"""The folder of an embedded store and the collections opened from it: the layout, the
writer's claim, collection metadata, damaged and orphaned generations, aliases, and the open
collection behind a name, loaded for the writer or switched to the latest generation for a
reader. EdgeStore (edge.py) is built on EdgeFolder, through EdgeQueries (edge_queries.py).
They are separate because this is another job than the store API: keeping one writer process
and any number of reader processes consistent over the same files, from what a writer checks
on opening the store to the stats every call makes; edge.py turns API calls into operations
on an open collection (and writes the files those change at the paths given here).

Layout of a store folder (one Edge shard per collection)::

    <root>/store.json                         format marker
    <root>/aliases.json                       {alias: collection}, replaced atomically
    <root>/writer.lock                        flock held by the one writer process
    <root>/collections/<name>/meta.json       vectors, payload indexes, options
    <root>/collections/<name>/shard/          the writer's working Edge shard (WAL on)
    <root>/published/<name>/...               immutable generations for readers (generations.py)

One process writes (``read_only=False``); it sees its own writes at once and makes them visible
to readers with ``flush()`` (durable + publish a generation). Readers (``read_only=True``) open
the latest generation and switch to a newer one when the writer publishes; they never touch the
working shard, whose WAL lock would refuse them anyway.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from engine.errors import StoreError
from engine.jsonfile import atomic_write_json, read_json
from engine.store import checks
from engine.store import generations as gens
from engine.store.edge_collection import EdgeCollection, warn_if_payload_on_disk
from engine.store.edge_types import edge_errors
from engine.store.readonly import LocalCopy
from engine.store.spec import meta_from_dict

log = logging.getLogger("engine.store.edge")   # the store's messages, under the store's name

FORMAT = {"format": "specclip-edge-store", "version": 1}


class EdgeFolder:
    """A store folder and its open collections (see the module docstring for the layout).
    The state below is set up by EdgeStore.__init__, which also runs a writer's start-up
    steps with the methods here (_claim_writer, _published_damaged, _prune_orphans)."""

    root: Path
    read_only: bool
    _root_s: str                        # root and aliases.json as plain strings (cheaper
    _aliases_path: str                  # to stat than pathlib joins)
    _lock: threading.RLock              # one call at a time (Streamlit calls from threads)
    _open: dict[str, EdgeCollection]    # collection name -> open collection
    _aliases: dict[str, str]            # aliases.json as last read, and its stamp
    _aliases_stamp: Any
    _writer_fd: int | None              # writer.lock, held while the writer is open
    _ro_media: bool                     # readers of read-only media load private copies

    def _claim_writer(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.root}: another process is writing this store; "
                             "open it with read_only=True to query it meanwhile") from None
        self._writer_fd = fd
        marker = read_json(self.root / "store.json")
        if marker is None:
            atomic_write_json(self.root / "store.json", FORMAT)
        elif not isinstance(marker, dict) or marker.get("format") != FORMAT["format"]:
            raise StoreError(f"{self.root / 'store.json'}: not an embedded specclip store "
                             f"({marker!r}); use another folder or restore the file")

    # ---- paths and metadata ---------------------------------------------------------------

    def _cdir(self, name: str) -> Path:
        return self.root / "collections" / checks.check_name(name)

    def _pdir(self, name: str) -> Path:
        return self.root / "published" / checks.check_name(name)

    def _read_meta(self, path: Path) -> dict | None:
        """A collection's meta.json (None when missing), checked for shape."""
        meta = read_json(path)
        if meta is None:
            return None
        fix = ("restore it, or delete the collection's folder and run `specclip index` "
               "again to rebuild it")
        try:
            meta_from_dict(checks.check_object(meta, path, fix))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StoreError(f"{path}: not a collection spec ({type(e).__name__}: {e}); "
                             f"{fix}") from None
        return meta

    def _published_damaged(self, name: str) -> bool:
        """Whether the generation readers are sent to has lost files (then the writer
        republishes it: a reader would otherwise answer from an empty shard)."""
        pub = self._pdir(name)
        try:
            gen = gens.current_generation(pub)
        except StoreError as e:
            log.warning("%s; republishing", e)
            return True
        if gen is None:
            return False
        problem = checks.generation_problem(gens.gen_dir(pub, gen) / "shard")
        if problem:
            log.warning("collection %s: published generation %d is damaged (%s); "
                        "republishing", name, gen, problem)
        return problem is not None

    def _prune_orphans(self) -> None:
        """Published generations of collections that no longer exist (deleted while a
        reader held them, e.g. at a model switch) are removed once no reader holds them."""
        base = self.root / "published"
        if not base.is_dir():
            return
        live = set(self.list_collections())
        for pub in base.iterdir():
            if pub.is_dir() and pub.name not in live and checks.NAME_RE.fullmatch(pub.name):
                gens.prune(pub, keep=None)
                if not any(p.is_dir() and p.name.isdigit() for p in pub.iterdir()):
                    shutil.rmtree(pub, ignore_errors=True)

    def _require_writer(self, what: str) -> None:
        if self.read_only:
            raise StoreError(f"{what}: store {self.root} is open read-only")

    def _load_aliases(self) -> dict[str, str]:
        st = gens.stamp(self._aliases_path)
        if st != self._aliases_stamp:
            path = self.root / "aliases.json"
            self._aliases = checks.check_aliases(read_json(path, {}), path)
            self._aliases_stamp = st
        return self._aliases

    def _marker(self, name: str) -> str:
        """The file whose presence makes ``name`` a collection of this store: CURRENT of its
        published generations for readers, its meta.json for the writer."""
        checks.check_name(name)
        if self.read_only:
            return os.path.join(self._root_s, "published", name, gens.CURRENT)
        return os.path.join(self._root_s, "collections", name, "meta.json")

    def _coll(self, name: str) -> EdgeCollection:
        """The open collection behind a name or alias, (re)loading it as needed.

        Every call checks the files afresh, so a reader sees a generation as soon as it is
        published and a deleted collection fails at once: two stats (aliases.json, then
        CURRENT or meta.json), ~2 us each. A time-based cache would save little more and
        would let a reader answer from a generation the writer has already replaced."""
        real = self._load_aliases().get(name, name)
        if self.read_only:
            st = gens.stamp(self._marker(real))         # CURRENT's stamp doubles as "exists"
            if st is None:
                raise StoreError(f"no collection or alias {name!r} in {self.root}")
            c = self._open.get(real)
            return c if c is not None and c.stamp == st else self._reader_coll(real)
        if not os.path.isfile(self._marker(real)):
            raise StoreError(f"no collection or alias {name!r} in {self.root}")
        return self._writer_coll(real)

    def _writer_coll(self, name: str) -> EdgeCollection:
        c = self._open.get(name)
        if c is None:
            meta = self._read_meta(self._cdir(name) / "meta.json")
            with edge_errors(f"load {name}"):
                shard = qe.EdgeShard.load(str(self._cdir(name) / "shard"))
            warn_if_payload_on_disk(name, self._cdir(name) / "shard", meta)
            c = EdgeCollection(shard, meta, marker=self._cdir(name) / "unpublished")
            self._open[name] = c
        return c

    def _reader_coll(self, name: str) -> EdgeCollection:
        pub = self._pdir(name)
        st = gens.stamp(pub / gens.CURRENT)
        c = self._open.get(name)
        if c is not None and c.stamp == st:
            return c
        if st is None:
            raise StoreError(f"collection {name!r} has no published generation in {self.root}")
        for _ in range(5):                      # the writer may prune between read and lock
            gen = gens.current_generation(pub)
            if gen is None:
                raise StoreError(f"collection {name!r} was deleted from {self.root}")
            try:
                lease = gens.GenerationLease(pub, gen)
                break
            except FileNotFoundError:
                st = gens.stamp(pub / gens.CURRENT)
        else:
            raise StoreError(f"collection {name!r}: could not lease a published generation")
        copy = None
        try:
            meta = self._read_meta(lease.path / "meta.json")
            problem = checks.generation_problem(lease.path / "shard")
            if problem:
                raise StoreError(f"collection {name!r}: published generation {gen} is damaged "
                                 f"({problem}); run `specclip index` on this store (or open it "
                                 "for writing) to republish it")
            shard_path = lease.path / "shard"
            if self._ro_media:
                copy = LocalCopy(shard_path)
                shard_path = copy.path
            with edge_errors(f"load {name} generation {gen}"):
                shard = qe.EdgeShard.load(str(shard_path))
        except BaseException:
            lease.close()
            if copy is not None:
                copy.close()
            raise
        if c is not None:
            c.close()
        else:
            warn_if_payload_on_disk(name, lease.path / "shard", meta)
        log.info("reader switched %s to generation %d", name, gen)
        c = self._open[name] = EdgeCollection(shard, meta, lease=lease, stamp=st,
                                              local_copy=copy)
        return c

    # ---- the collections in the folder ----------------------------------------------------

    def list_collections(self) -> list[str]:
        with self._lock:
            if self.read_only:
                base = self.root / "published"
                found = [p.name for p in base.iterdir()
                         if (p / gens.CURRENT).is_file()] if base.is_dir() else []
            else:
                base = self.root / "collections"
                found = [p.name for p in base.iterdir()
                         if (p / "meta.json").is_file()] if base.is_dir() else []
            # a stray folder whose name is no collection name is not a collection
            return sorted(n for n in found if checks.NAME_RE.fullmatch(n))
