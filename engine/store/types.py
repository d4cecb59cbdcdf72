"""Backend-neutral types of the vector store: what the engine speaks, whatever Qdrant runs
it (Edge in-process, or a server/cluster through qdrant-client). Both backends translate
these into their own types; congruence tests hold them to the same answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of a collection."""

    name: str
    dim: int
    distance: str = "cosine"            # "cosine" | "dot" | "euclid"


@dataclass(frozen=True)
class CollectionOptions:
    """Scale options; every one is passed to the backend (Edge ignores what it cannot do and
    says so in its docstring)."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    search_ef: int = 128
    quantization: str | None = None     # None | "int8" (scalar, with rescoring)
    on_disk: bool = False               # original vectors on disk
    payload_on_disk: bool = False       # payloads read from disk per hit instead of held in
                                        # RAM. In RAM (Edge: Memory.Cached, Qdrant:
                                        # on_disk_payload=false) a 100k-point query with full
                                        # payloads took 0.29 ms; on disk ("cold"), 0.9-1.1 ms
                                        # until every payload had been read once. On disk
                                        # saves ~0.75 KB of RAM per point: for 100M+ points
    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    indexing_threshold: int = 10_000    # Edge/Qdrant build HNSW above this many points
    max_segment_points: int | None = None   # the optimizer makes no segment larger than
                                        # this many points (Qdrant's max_segment_size, in KB
                                        # of the largest vector); None: the backend's own
    payload_hnsw: bool = False          # Qdrant's extra HNSW links per payload index
                                        # (filterable HNSW): 2-2.6x optimize() time; with
                                        # ACORN on, filtered recall@10 was 1.0 without them
    acorn: bool = True                  # ACORN for filtered HNSW searches: keeps recall under
                                        # selective filters (measured 0.92 -> 1.0) at ~2-4x cost
    search_threads: int | None = None   # Edge: threads searching a shard's segments in
                                        # parallel (None: Edge's default, one per CPU). 1
                                        # saves a thread hand-off per query (100k points,
                                        # k=10, 2 busy cores: 0.28 vs 0.35 ms); servers
                                        # set their own search threads, so they ignore it


@dataclass(frozen=True)
class Point:
    id: str                             # uuid string
    vectors: dict[str, np.ndarray]      # a point may carry only some of the named vectors
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float                        # similarity as Qdrant reports it (cosine);
                                        # for order_by queries: the ordering value
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] | None = None


# ---- filters: a small algebra both backends translate -------------------------------------

@dataclass(frozen=True)
class Match:
    key: str
    value: Any                          # str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class GeoRadius:
    """Points whose geo payload ``key`` ({"lon", "lat"} in degrees) lies within ``radius_m``
    metres of (lon, lat) on Qdrant's Earth sphere (engine/positions.py maps the sky onto it)."""

    key: str
    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class HasId:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Filter:
    must: tuple = ()
    must_not: tuple = ()
    should: tuple = ()                  # at least one must hold when non-empty


class VectorStore(Protocol):
    """What every backend provides. Collection names are resolved through aliases first."""

    mode: str                           # "edge" | "server" | "memory"

    def create_collection(self, name: str, vectors: Sequence[VectorSpec],
                          payload_indexes: dict[str, str],
                          options: CollectionOptions = CollectionOptions()) -> None: ...
    def delete_collection(self, name: str) -> None: ...
    def list_collections(self) -> list[str]: ...
    def set_alias(self, alias: str, collection: str) -> None: ...
    def resolve(self, name_or_alias: str) -> str | None: ...
    def upsert(self, collection: str, points: Sequence[Point]) -> None: ...
    def delete(self, collection: str, ids: Sequence[str]) -> None: ...
    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vectors: bool = False) -> list[Hit]: ...
    def search(self, collection: str, vector_name: str, vector: np.ndarray, k: int,
               filter: Filter | None = None, with_vectors: bool = False,
               exact: bool = False, payload_keys: Sequence[str] | None = None) -> list[Hit]:
        """Top-k on one named vector. ``payload_keys``: only these payload keys in each
        hit (those a point has); None: the whole payload; empty: none."""
        ...
    def search_batch(self, collection: str, vector_name: str, vectors: Sequence[np.ndarray],
                     k: int, filter: Filter | None = None, with_vectors: bool = False,
                     exact: bool = False, payload_keys: Sequence[str] | None = None
                     ) -> list[list[Hit]]:
        """search() for each vector, in one batch; one hit list per vector, in order."""
        ...
    def order_by(self, collection: str, key: str, k: int, descending: bool = True,
                 filter: Filter | None = None) -> list[Hit]: ...
    def scroll(self, collection: str, filter: Filter | None = None,
               with_vectors: bool = False, batch_size: int = 1000) -> Iterator[Hit]: ...
    def count(self, collection: str, filter: Filter | None = None, exact: bool = True) -> int:
        """Points matching ``filter``. ``exact=False``: the backend's estimate, for bounds
        (without a filter, the segments' own point counts: an exact count walks every point,
        70-90 ms at 1M points on Edge)."""
        ...
    def facet(self, collection: str, key: str, filter: Filter | None = None,
              limit: int = 100) -> dict[str, int]:
        """value -> number of points, for an indexed keyword field."""
        ...
    def info(self, collection: str) -> dict[str, Any]: ...
    def optimize(self, collection: str) -> None: ...
    def flush(self, publish: bool = True) -> None: ...
    def close(self) -> None: ...
