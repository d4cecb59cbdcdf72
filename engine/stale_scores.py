"""Deferred neighbour-score refreshes of an embedded store, and the flag readers show for them.

When a sync adds a spectrum, the existing points whose 10-NN neighbourhood it enters get
new `knn_distance` / `anomaly_knn` / `anomaly` values (and the XP half of a newly
cross-matched pair, an `anomaly_translation`). Writing those into the store would change
the sealed, optimised segments they live in, and publishing a generation would then seal
those segments again: 19.8 s for 10 such points at 1M points (benchmarks/SIZING.md). So on
an embedded store the indexer defers them (indexer/incremental.py): their new values are
kept in a sidecar in the store folder, beside the published generations,

    <root>/deferred_scores/<collection>.json   {point id: {payload key: new value}}

replaced atomically, and written into the store in one batch when their number passes
`DEFER_FRACTION` of the collection, or superseded by a full scoring pass (a sync's or
`specclip rescore`'s), which rewrites every point. Until then a reader adds
``scores_stale: True`` to each such hit's payload (fresh or flagged: the neighbour scores a
hit shows are either current or flagged as due for a refresh).

A Qdrant server has no publication step (its own optimizer absorbs updates of indexed
points), so the indexer writes refreshes there at once and this file never exists.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from engine import payload as P
from engine.jsonfile import atomic_write_json, read_json
from engine.store.types import Hit

log = logging.getLogger(__name__)

DEFERRED_DIR = "deferred_scores"
# deferred refreshes are written into the store once there are more than this fraction of
# the collection's points (one re-seal of the segments they live in, per that many)
DEFER_FRACTION = 0.01


def sidecar_path(store: Any, collection: str) -> Path | None:
    """Where an embedded store keeps the collection's deferred refreshes; None for a
    server (refreshes are written at once there)."""
    root = getattr(store, "root", None) if getattr(store, "mode", "") == "edge" else None
    return None if root is None else Path(root) / DEFERRED_DIR / f"{collection}.json"


class DeferredScores:
    """The writer's view of one collection's sidecar: point id -> payload updates."""

    def __init__(self, path: Path):
        self.path = path
        data = read_json(path)
        self.entries: dict[str, dict] = data if isinstance(data, dict) else {}
        self.written: list[str] = []     # written into the store, to drop once published

    def add(self, updates: dict[str, dict]) -> None:
        for pid, upd in updates.items():
            self.entries[pid] = {**self.entries.get(pid, {}), **upd}

    def drop(self, ids: Sequence[str]) -> None:
        for pid in ids:
            self.entries.pop(pid, None)

    def save(self) -> None:
        if self.entries:
            atomic_write_json(self.path, self.entries)
        else:
            self.path.unlink(missing_ok=True)

    def clear(self) -> None:
        self.entries = {}
        self.save()


class StaleFlags:
    """The reader's view: which ids carry deferred refreshes, re-read when the file changes
    (one stat per call, like a published generation's CURRENT)."""

    def __init__(self, root: str | os.PathLike):
        self.folder = Path(root) / DEFERRED_DIR
        self._cache: dict[str, tuple[Any, frozenset[str]]] = {}

    def ids(self, collection: str) -> frozenset[str]:
        path = self.folder / f"{collection}.json"
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return frozenset()
        cached = self._cache.get(collection)
        if cached is None or cached[0] != stamp:
            data = read_json(path)
            cached = (stamp, frozenset(data) if isinstance(data, dict) else frozenset())
            self._cache[collection] = cached
        return cached[1]


class FlaggedStore:
    """A store whose hits carry ``scores_stale: True`` where a refresh is deferred; every
    other attribute is the store's own."""

    FLAGGED = ("search", "retrieve", "order_by", "scroll")

    def __init__(self, store: Any, flags: StaleFlags):
        self._store, self._flags = store, flags

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name == "search_batch":
            def batched(collection: str, *a: Any, **k: Any) -> list[list[Hit]]:
                stale = self._stale(collection)
                return [list(self._flag(hits, stale)) for hits in attr(collection, *a, **k)]
            return batched
        if name not in self.FLAGGED:
            return attr

        def flagged(collection: str, *a: Any, **k: Any) -> Any:
            out = self._flag(attr(collection, *a, **k), self._stale(collection))
            return out if name == "scroll" else list(out)
        return flagged

    def _stale(self, collection: str) -> frozenset[str]:
        return self._flags.ids(self._store.resolve(collection) or collection)

    @staticmethod
    def _flag(hits: Any, stale: frozenset[str]) -> Iterator[Hit]:
        for h in hits:
            if h.id in stale:
                h = Hit(h.id, h.score, {**h.payload, P.SCORES_STALE: True}, h.vectors)
            yield h


def flagged(store: Any) -> Any:
    """The store as readers should use it: flagged where it is embedded, as is otherwise."""
    root = getattr(store, "root", None) if getattr(store, "mode", "") == "edge" else None
    return store if root is None else FlaggedStore(store, StaleFlags(root))
