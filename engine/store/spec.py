"""Backend-neutral helpers both backends share: validation of what callers hand the store,
and the conversion of CollectionOptions into the units Qdrant counts in."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, replace
from typing import Any, Sequence

import numpy as np

from engine.errors import StoreError
from engine.store.types import CollectionOptions, Point, VectorSpec

PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool", "uuid", "datetime", "geo")
DISTANCES = ("cosine", "dot", "euclid")


def check_id(pid: str) -> str:
    """Point ids are canonical uuid strings: both backends then return exactly what they got."""
    try:
        canon = str(uuid.UUID(str(pid)))
    except ValueError:
        raise StoreError(f"point id {pid!r} is not a uuid string") from None
    if canon != pid:
        raise StoreError(f"point id {pid!r} is not canonical; use {canon!r}")
    return pid


def check_collection_spec(vectors: Sequence[VectorSpec], payload_indexes: dict[str, str]) -> None:
    if not vectors:
        raise StoreError("a collection needs at least one named vector")
    names = [v.name for v in vectors]
    if len(set(names)) != len(names) or any(not n for n in names):
        raise StoreError(f"vector names must be unique and non-empty: {names}")
    for v in vectors:
        if v.distance not in DISTANCES or v.dim <= 0:
            raise StoreError(f"bad vector spec {v}")
    for key, kind in payload_indexes.items():
        if kind not in PAYLOAD_INDEX_TYPES:
            raise StoreError(f"payload index {key!r}: type {kind!r} not in {PAYLOAD_INDEX_TYPES}")


def check_points(points: Sequence[Point], dims: dict[str, int]) -> None:
    """Refuse a batch before any of it is written: no silent partial writes."""
    for p in points:
        check_id(p.id)
        if not p.vectors:
            raise StoreError(f"point {p.id} carries no vector")
        for name, vec in p.vectors.items():
            if name not in dims:
                raise StoreError(f"point {p.id}: unknown vector {name!r} (have {sorted(dims)})")
            if getattr(vec, "shape", (len(vec),)) != (dims[name],):
                raise StoreError(f"point {p.id}: vector {name!r} has shape "
                                 f"{getattr(vec, 'shape', len(vec))}, expected ({dims[name]},)")


def threshold_kb(points: int, vectors: Sequence[VectorSpec]) -> int:
    """Qdrant's indexing/full-scan thresholds are in KB of float32 vector data per vector
    storage; CollectionOptions counts points. Use the largest vector so HNSW starts at (or
    before) ``points`` points for every named vector."""
    return max(1, math.ceil(points * max(v.dim for v in vectors) * 4 / 1024))


def max_segment_kb(options: CollectionOptions, vectors: Sequence[VectorSpec]) -> int | None:
    """``options.max_segment_points`` in Qdrant's unit (KB of the largest vector), or None."""
    n = options.max_segment_points
    if n is None:
        return None
    if n < options.indexing_threshold:
        raise StoreError(f"max_segment_points ({n}) must be at least indexing_threshold "
                         f"({options.indexing_threshold}): a smaller cap would keep every "
                         "segment below the size at which HNSW is built")
    return threshold_kb(n, vectors)


def meta_dict(vectors: Sequence[VectorSpec], payload_indexes: dict[str, str],
              options: CollectionOptions) -> dict[str, Any]:
    return {"vectors": [asdict(v) for v in vectors], "payload_indexes": dict(payload_indexes),
            "options": asdict(options)}


# Options that collections made by earlier versions lack in their meta: such a collection
# keeps what Edge had then (the dataclass default) instead of being refused as "another spec"
# when a caller now asks for another value. (max_segment_points: the cap is in the Edge config
# written at creation, which is not changed afterwards.)
LATER_OPTIONS = ("max_segment_points",)


def options_kept(existing: dict[str, Any], options: CollectionOptions) -> CollectionOptions:
    """``options``, with those an existing collection's meta predates set to its defaults."""
    unset = [k for k in LATER_OPTIONS if k not in existing.get("options", {})]
    return replace(options, **{k: getattr(CollectionOptions(), k) for k in unset})


def meta_from_dict(d: dict[str, Any]) -> tuple[list[VectorSpec], dict[str, str], CollectionOptions]:
    return ([VectorSpec(**v) for v in d["vectors"]], dict(d["payload_indexes"]),
            CollectionOptions(**d["options"]))


def vectors_as_arrays(v: Any) -> dict[str, np.ndarray] | None:
    """A backend's named vectors as float32 arrays (None when the point has none)."""
    if not v:
        return None
    return {k: np.asarray(x, dtype=np.float32) for k, x in v.items()}


def with_payload_arg(keys: Sequence[str] | None) -> bool | list[str]:
    """Qdrant's with_payload for search's ``payload_keys`` (None: all; empty: none); both
    backends take the same value."""
    if keys is None:
        return True
    if isinstance(keys, str):       # a str is a Sequence[str] too: "ra" would mean r and a
        raise TypeError("payload_keys takes a sequence of keys, not one string")
    return list(keys) or False
