"""Embedded store on Qdrant Edge (qdrant-edge-py, beta): the only module that imports it.

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

Edge ignores shard_number, replication_factor and write_consistency_factor (a single local
shard). Scalar int8 quantization, on-disk vectors, HNSW m / ef_construct and the indexing
threshold are honoured; HNSW is built only by ``optimize()``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import qdrant_edge as qe

from engine.errors import StoreError
from engine.store import generations as gens
from engine.store.spec import (check_collection_spec, check_points, meta_dict, meta_from_dict,
                               threshold_kb)
from engine.store.types import (CollectionOptions, Filter, HasId, Hit, Match, MatchAny, Point,
                                Range, VectorSpec)

log = logging.getLogger(__name__)

FORMAT = {"format": "specclip-edge-store", "version": 1}
_DISTANCE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
           "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool,
           "uuid": qe.PayloadSchemaType.Uuid, "datetime": qe.PayloadSchemaType.Datetime}


@contextmanager
def _edge_errors(what: str) -> Iterator[None]:
    """Edge raises bare Exception; callers get StoreError with what we were doing."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - the binding has no exception hierarchy
        raise StoreError(f"qdrant-edge {what}: {e}") from e


# ---- translation of the backend-neutral types -------------------------------------------

def _condition(c: Any) -> Any:
    if isinstance(c, Filter):
        return to_edge_filter(c)
    if isinstance(c, Match):
        return qe.FieldCondition(c.key, match=qe.MatchValue(c.value))
    if isinstance(c, MatchAny):
        values = list(c.values)
        if any(isinstance(v, bool) for v in values):   # Edge's MatchAny takes str/int only
            return qe.Filter(should=[qe.FieldCondition(c.key, match=qe.MatchValue(v))
                                     for v in values])
        return qe.FieldCondition(c.key, match=qe.MatchAny(values))
    if isinstance(c, Range):
        return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=c.gte, lte=c.lte))
    if isinstance(c, HasId):
        return qe.HasIdCondition(set(c.ids))
    raise StoreError(f"unknown filter condition {c!r}")


def to_edge_filter(f: Filter | None) -> qe.Filter | None:
    if f is None:
        return None
    return qe.Filter(must=[_condition(c) for c in f.must] or None,
                     must_not=[_condition(c) for c in f.must_not] or None,
                     should=[_condition(c) for c in f.should] or None)


def _edge_config(vectors: Sequence[VectorSpec], options: CollectionOptions) -> qe.EdgeConfig:
    quant = None
    if options.quantization == "int8":
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    elif options.quantization is not None:
        raise StoreError(f"quantization {options.quantization!r} not supported (None | 'int8')")
    kb = threshold_kb(options.indexing_threshold, vectors)
    return qe.EdgeConfig(
        vectors={v.name: qe.EdgeVectorParams(size=v.dim, distance=_DISTANCE[v.distance],
                                             on_disk=options.on_disk) for v in vectors},
        hnsw_config=qe.HnswIndexConfig(m=options.hnsw_m, ef_construct=options.hnsw_ef_construct,
                                       full_scan_threshold=kb),
        quantization_config=quant,
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=kb),
    )


def _search_params(options: CollectionOptions, exact: bool = False) -> qe.SearchParams:
    quant = None
    if options.quantization:
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=2.0)
    return qe.SearchParams(hnsw_ef=options.search_ef, exact=exact, quantization=quant)


def _vectors(v: Any) -> dict[str, np.ndarray] | None:
    if not v:
        return None
    return {k: np.asarray(x, dtype=np.float32) for k, x in v.items()}


def _hit(p: Any, score: float | None = None) -> Hit:
    if score is None:
        score = p.score if hasattr(p, "score") else 0.0
    return Hit(id=str(p.id), score=float(score), payload=dict(p.payload or {}),
               vectors=_vectors(p.vector))


def _seal(path: Path) -> None:
    """Make a raw shard copy shareable by many reader processes: switch its WAL off (Edge
    refuses to change that through EdgeConfig on load, so the persisted config is edited),
    then load it once so Edge replays its journals now rather than in a reader, and check a
    second concurrent load works."""
    cfg_path = path / "edge_config.json"
    cfg = gens.read_json(cfg_path)
    cfg["wal_enabled"] = False
    gens.atomic_write_json(cfg_path, cfg)
    with _edge_errors(f"sealing {path}"):
        a = qe.EdgeShard.load(str(path))
        b = qe.EdgeShard.load(str(path))
        b.close()
        a.close()


class _Collection:
    """One open collection: its shard, spec and (for readers) the generation lease."""

    def __init__(self, shard: Any, meta: dict, lease: gens.GenerationLease | None = None,
                 stamp: Any = None):
        self.shard = shard
        self.vectors, self.payload_indexes, self.options = meta_from_dict(meta)
        self.dims = {v.name: v.dim for v in self.vectors}
        self.lease = lease
        self.stamp = stamp
        self.dirty = False

    def close(self) -> None:
        with _edge_errors("close"):
            self.shard.close()
        if self.lease is not None:
            self.lease.close()
