"""The state of one open collection of the embedded store: its Edge shard, its spec, the
search parameters built from it, the reader's generation lease or the writer's
"unpublished" marker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.jsonfile import read_json
from engine.store import generations as gens
from engine.store.edge_types import edge_errors, search_params
from engine.store.readonly import LocalCopy
from engine.store.spec import meta_from_dict

log = logging.getLogger("engine.store.edge")   # the store's warnings, under the store's name


def warn_if_payload_on_disk(name: str, shard_dir: Path, meta: dict) -> None:
    """Collections built before payloads were held in RAM by default keep them on disk (a
    segment's payload storage is fixed when it is written): say so, and how to fix it."""
    cfg = read_json(shard_dir / "edge_config.json") or {}
    wanted_on_disk = bool(meta.get("options", {}).get("payload_on_disk", False))
    if not wanted_on_disk and str(cfg.get("payload_memory", "cold")).lower() == "cold":
        log.warning("collection %s keeps its payloads on disk (built before they were held "
                    "in RAM by default): queries take ~1 ms more until each payload has been "
                    "read once. Re-index into a new store folder to fix it.", name)


class EdgeCollection:
    """One open collection: its shard, spec and (for readers) the generation lease."""

    def __init__(self, shard: Any, meta: dict, lease: gens.GenerationLease | None = None,
                 stamp: Any = None, marker: Path | None = None,
                 local_copy: LocalCopy | None = None):
        self.shard = shard
        self.local_copy = local_copy     # readers of read-only media open a private copy
        self.vectors, self.payload_indexes, self.options = meta_from_dict(meta)
        self.dims = {v.name: v.dim for v in self.vectors}
        self.lease = lease
        self.stamp = stamp
        self._params: dict[tuple[bool, bool], Any] = {}
        # points upserted by this process since its last optimize(): at most what the
        # appendable segment holds beyond what an earlier process left there
        self.since_optimize = 0
        # Writers keep an "unpublished" marker file while they hold writes readers have not
        # seen, so that a writer restarted after a crash publishes what the WAL recovered.
        self._marker = marker
        self._dirty = marker is not None and marker.exists()

    @property
    def dirty(self) -> bool:
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value != self._dirty and self._marker is not None:
            if value:
                self._marker.touch()
            else:
                self._marker.unlink(missing_ok=True)
        self._dirty = value

    def search_params(self, exact: bool, filtered: bool) -> Any:
        """SearchParams of this collection, built once per (exact, filtered)."""
        key = (exact, filtered)
        params = self._params.get(key)
        if params is None:
            params = self._params[key] = search_params(self.options, exact, filtered)
        return params

    def close(self) -> None:
        with edge_errors("close"):
            self.shard.close()
        if self.lease is not None:
            self.lease.close()
        if self.local_copy is not None:
            self.local_copy.close()
