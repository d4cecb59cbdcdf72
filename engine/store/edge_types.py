"""Translation between the backend-neutral store types and qdrant-edge-py's own: filters,
collection config, search parameters, hits and errors. Knows nothing of folders or
generations."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import qdrant_edge as qe

from engine.errors import StoreError
from engine.store import checks, filters
from engine.store.spec import max_segment_kb, threshold_kb, vectors_as_arrays
from engine.store.types import CollectionOptions, Filter, Hit, VectorSpec

DISTANCE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
           "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool,
           "uuid": qe.PayloadSchemaType.Uuid, "datetime": qe.PayloadSchemaType.Datetime,
           "geo": qe.PayloadSchemaType.Geo}
_NO_HNSW_LINKS = {  # the same indexes without Qdrant's extra payload-aware HNSW links
    "keyword": lambda: qe.KeywordIndexParams(enable_hnsw=False),
    "integer": lambda: qe.IntegerIndexParams(lookup=True, range=True, enable_hnsw=False),
    "float": lambda: qe.FloatIndexParams(enable_hnsw=False),
    "bool": lambda: qe.BoolIndexParams(enable_hnsw=False),
    "uuid": lambda: qe.UuidIndexParams(enable_hnsw=False),
    "datetime": lambda: qe.DatetimeIndexParams(enable_hnsw=False),
    "geo": lambda: qe.GeoIndexParams(enable_hnsw=False)}


@contextmanager
def edge_errors(what: str) -> Iterator[None]:
    """Edge raises bare Exception; callers get StoreError with what we were doing."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - the binding has no exception hierarchy
        raise StoreError(f"qdrant-edge {what}: {e}") from e
    except BaseException as e:  # a Rust panic: pyo3's PanicException is a BaseException
        if not checks.is_panic(e):
            raise
        raise StoreError(f"qdrant-edge {what}: internal error (Rust panic: {e})") from e


class _EdgeFilters:
    """Edge's constructors for engine.store.filters.translate."""

    @staticmethod
    def match(key: str, value: Any) -> Any:
        # qdrant-edge 0.9 turns a Python bool into the integer 1/0 (bool subclasses int),
        # which then matches no boolean payload; numpy's bool_ reaches Rust as a real bool.
        return qe.FieldCondition(key, match=qe.MatchValue(
            np.bool_(value) if isinstance(value, bool) else value))

    @staticmethod
    def match_any(key: str, values: list) -> Any:
        return qe.FieldCondition(key, match=qe.MatchAny(values))

    @staticmethod
    def range(key: str, gte: float | None, lte: float | None) -> Any:
        return qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lte=lte))

    @staticmethod
    def geo_radius(key: str, lon: float, lat: float, radius_m: float) -> Any:
        return qe.FieldCondition(key, geo_radius=qe.GeoRadius(qe.GeoPoint(lon, lat), radius_m))

    @staticmethod
    def has_id(ids: Sequence[str]) -> Any:
        return qe.HasIdCondition(set(ids))

    @staticmethod
    def filter(must: list | None, must_not: list | None, should: list | None) -> Any:
        return qe.Filter(must=must, must_not=must_not, should=should)


def to_edge_filter(f: Filter | None) -> qe.Filter | None:
    return filters.translate(f, _EdgeFilters)


def field_index_schema(kind: str, options: CollectionOptions) -> Any:
    return _SCHEMA[kind] if options.payload_hnsw else _NO_HNSW_LINKS[kind]()


def edge_config(vectors: Sequence[VectorSpec], options: CollectionOptions) -> qe.EdgeConfig:
    quant = None
    if options.quantization == "int8":
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    elif options.quantization is not None:
        raise StoreError(f"quantization {options.quantization!r} not supported (None | 'int8')")
    cluster = {"shard_number": options.shard_number,
               "replication_factor": options.replication_factor,
               "write_consistency_factor": options.write_consistency_factor}
    if any(v != 1 for v in cluster.values()):
        raise StoreError(f"the embedded store is one local shard: {cluster} apply to a Qdrant "
                         "server or cluster (open the store with url=...)")
    if options.search_threads is not None and options.search_threads < 1:
        raise StoreError(f"search_threads must be >= 1 or None, not {options.search_threads}")
    kb = threshold_kb(options.indexing_threshold, vectors)
    return qe.EdgeConfig(
        vectors={v.name: qe.EdgeVectorParams(size=v.dim, distance=DISTANCE[v.distance],
                                             on_disk=options.on_disk) for v in vectors},
        hnsw_config=qe.HnswIndexConfig(m=options.hnsw_m, ef_construct=options.hnsw_ef_construct,
                                       full_scan_threshold=kb),
        quantization_config=quant,
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=kb,
                                           max_segment_size=max_segment_kb(options, vectors)),
        max_search_threads=options.search_threads,   # persisted: published copies keep it
        payload_memory=qe.Memory.Cold if options.payload_on_disk else qe.Memory.Cached,
    )


def search_params(options: CollectionOptions, exact: bool = False,
                  filtered: bool = False) -> qe.SearchParams:
    # built once per collection and (exact, filtered) pair: see EdgeCollection.search_params
    quant = None
    if options.quantization:   # exact means exact: skip the int8 copies as well as HNSW
        quant = qe.QuantizationSearchParams(ignore=exact, rescore=True, oversampling=2.0)
    acorn = qe.AcornSearchParams(enable=True) if options.acorn and filtered else None
    return qe.SearchParams(hnsw_ef=options.search_ef, exact=exact, quantization=quant,
                           acorn=acorn)


# The binding converts a point's payload (nested dicts included) into a new dict on every
# `.payload` access, so hits take it as it comes: no copy. `.vector` is read only when asked
# for. Profiled at 100k points, k=10: these conversions are ~4 us per hit, while fetching
# payloads inside Edge's own query costs ~0.13-0.17 ms per query (see EdgeStore.search).

def hit(p: Any, score: float | None = None) -> Hit:
    if score is None:
        score = p.score if hasattr(p, "score") else 0.0
    return Hit(str(p.id), float(score), p.payload or {}, vectors_as_arrays(p.vector))


def scored_hits(points: Sequence[Any], with_vectors: bool) -> list[Hit]:
    if with_vectors:
        return [hit(p) for p in points]
    return [Hit(str(p.id), float(p.score), p.payload or {}) for p in points]
