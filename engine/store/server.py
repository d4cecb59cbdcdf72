"""Store on a Qdrant server or cluster through qdrant-client (and its ``:memory:`` mode, which
is brute force and ignores HNSW, quantization and payload indexes: fine for tests only).
CollectionOptions.search_threads is Edge's: a server's search threads are its own config.

Collections map 1:1 to Qdrant collections and aliases to real Qdrant aliases. Every call is
retried with exponential backoff on transient failures (connection refused/reset, timeouts,
HTTP 502/503/504, gRPC UNAVAILABLE) and then raised as StoreError. Writes wait for the
server's acknowledgement; a batch upsert that fails part-way raises StoreError saying how many
points were acknowledged (upserts are idempotent, so re-running the call is safe).

About 450 lines: one job, the VectorStore API on qdrant-client, each method a retried
call plus its translation (the shared rules are in filters.py and spec.py already).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from engine.errors import StoreError
from engine.store import checks, filters
from engine.store.spec import (
    check_collection_spec,
    check_points,
    max_segment_kb,
    threshold_kb,
    vectors_as_arrays,
    with_payload_arg,
)
from engine.store.types import CollectionOptions, Filter, Hit, Point, VectorSpec

log = logging.getLogger(__name__)

_DISTANCE = {"cosine": qm.Distance.COSINE, "dot": qm.Distance.DOT, "euclid": qm.Distance.EUCLID}
_SCHEMA = {"keyword": qm.PayloadSchemaType.KEYWORD, "integer": qm.PayloadSchemaType.INTEGER,
           "float": qm.PayloadSchemaType.FLOAT, "bool": qm.PayloadSchemaType.BOOL,
           "uuid": qm.PayloadSchemaType.UUID, "datetime": qm.PayloadSchemaType.DATETIME,
           "geo": qm.PayloadSchemaType.GEO}
_NO_HNSW_LINKS = {  # the same indexes without Qdrant's extra payload-aware HNSW links
    "keyword": lambda: qm.KeywordIndexParams(type="keyword", enable_hnsw=False),
    "integer": lambda: qm.IntegerIndexParams(type="integer", lookup=True, range=True,
                                             enable_hnsw=False),
    "float": lambda: qm.FloatIndexParams(type="float", enable_hnsw=False),
    "bool": lambda: qm.BoolIndexParams(type="bool", enable_hnsw=False),
    "uuid": lambda: qm.UuidIndexParams(type="uuid", enable_hnsw=False),
    "datetime": lambda: qm.DatetimeIndexParams(type="datetime", enable_hnsw=False),
    "geo": lambda: qm.GeoIndexParams(type="geo", enable_hnsw=False)}
_DISTANCE_NAME = {v: k for k, v in _DISTANCE.items()}
_TRANSIENT_HTTP = {502, 503, 504}
UPSERT_BATCH = 256
ALIAS_TTL = 2.0


def _is_transient(e: Exception) -> bool:
    """Worth retrying: the server may answer the same request later."""
    name = type(e).__name__
    if name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout",
                "RemoteProtocolError", "ReadError", "WriteError", "ResponseHandlingException",
                "ConnectionError", "TimeoutError", "ConnectionRefusedError"}:
        return True
    status = getattr(e, "status_code", None)
    if status in _TRANSIENT_HTTP:
        return True
    code = getattr(e, "code", None)          # grpc.RpcError
    return callable(code) and getattr(code(), "name", "") in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


# ---- translation of the backend-neutral types -------------------------------------------

class _QdrantFilters:
    """qdrant-client's constructors for engine.store.filters.translate."""

    @staticmethod
    def match(key: str, value: Any) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))

    @staticmethod
    def match_any(key: str, values: list) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchAny(any=values))

    @staticmethod
    def range(key: str, gte: float | None, lte: float | None) -> Any:
        return qm.FieldCondition(key=key, range=qm.Range(gte=gte, lte=lte))

    @staticmethod
    def geo_radius(key: str, lon: float, lat: float, radius_m: float) -> Any:
        return qm.FieldCondition(key=key, geo_radius=qm.GeoRadius(
            center=qm.GeoPoint(lon=lon, lat=lat), radius=radius_m))

    @staticmethod
    def has_id(ids: Sequence[str]) -> Any:
        return qm.HasIdCondition(has_id=list(ids))

    @staticmethod
    def filter(must: list | None, must_not: list | None, should: list | None) -> Any:
        return qm.Filter(must=must, must_not=must_not, should=should)


def to_qdrant_filter(f: Filter | None) -> qm.Filter | None:
    return filters.translate(f, _QdrantFilters)


def _hit(p: Any, score: float) -> Hit:
    return Hit(id=str(p.id), score=float(score), payload=dict(p.payload or {}),
               vectors=vectors_as_arrays(p.vector))


class ServerStore:
    """VectorStore on qdrant-client: a server/cluster ``url`` or ``location=":memory:"``.

    Parameters
    ----------
    url : http(s)://host:port of a Qdrant node (https gives TLS).
    location : ":memory:" for qdrant-client's in-process mode.
    api_key : defaults to the QDRANT_API_KEY environment variable (never stored in code).
    timeout : seconds per request.
    retries, backoff : attempts after the first on transient errors, and the first wait (s),
        doubled each time.
    """

    def __init__(self, url: str | None = None, location: str | None = None,
                 api_key: str | None = None, timeout: int = 10, retries: int = 4,
                 backoff: float = 0.5, prefer_grpc: bool = False, read_only: bool = False):
        if (url is None) == (location is None):
            raise StoreError("ServerStore needs exactly one of url= or location=':memory:'")
        self.mode = "memory" if location == ":memory:" else "server"
        self.read_only = read_only
        self.retries, self.backoff = retries, backoff
        self.default_options = CollectionOptions()
        self._options: dict[str, CollectionOptions] = {}
        self._alias_map: dict[str, str] = {}
        self._alias_time = -1e9
        if self.mode == "memory":
            self.client = QdrantClient(location=":memory:")
        else:
            api_key = api_key if api_key is not None else os.environ.get("QDRANT_API_KEY")
            self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout,
                                       prefer_grpc=prefer_grpc, check_compatibility=False)
        self.url = url

    def _require_writer(self, what: str) -> None:
        if self.read_only:
            raise StoreError(f"{what}: store opened read-only")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        wait = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except StoreError:
                raise
            except Exception as e:  # noqa: BLE001 - qdrant-client raises many types
                if not _is_transient(e) or attempt == self.retries:
                    raise StoreError(f"qdrant {what} ({self.url or 'memory'}): "
                                     f"{type(e).__name__}: {e}") from e
                log.warning("qdrant %s: %s; retry %d/%d in %.1fs", what, e, attempt + 1,
                            self.retries, wait)
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")

    # ---- collections and aliases ----------------------------------------------------------

    def create_collection(self, name: str, vectors: Sequence[VectorSpec],
                          payload_indexes: dict[str, str],
                          options: CollectionOptions = CollectionOptions()) -> None:
        """Create the collection with HNSW, quantization, sharding and payload indexes.
        An existing collection must have the same named vectors (names, dims, distances) and,
        on a server, no payload index of another type: otherwise StoreError, as on Edge;
        missing payload indexes are added, as on Edge.
        Its other settings are the server's (an operator may have tuned them)."""
        self._require_writer("create_collection")
        check_collection_spec(vectors, payload_indexes)
        if options.quantization not in (None, "int8"):
            raise StoreError(f"quantization {options.quantization!r} not supported")
        if self._call("collection_exists", self.client.collection_exists, name):
            self._check_existing(name, vectors, payload_indexes, options)
        else:
            try:
                self._create(name, vectors, options)
            except StoreError:
                # a retried create whose first attempt landed answers "already exists"
                if not self._call("collection_exists", self.client.collection_exists, name):
                    raise
            if self.mode == "server":      # local mode ignores payload indexes (and warns)
                for key, kind in payload_indexes.items():
                    schema = _SCHEMA[kind] if options.payload_hnsw else _NO_HNSW_LINKS[kind]()
                    self._call(f"index {name}.{key}", self.client.create_payload_index, name,
                               key, field_schema=schema, wait=True)
        self._options.pop(name, None)

    def _check_existing(self, name: str, vectors: Sequence[VectorSpec],
                        payload_indexes: dict[str, str], options: CollectionOptions) -> None:
        info = self._call(f"get {name}", self.client.get_collection, name)
        have = info.config.params.vectors
        have = have if isinstance(have, dict) else {"": have}
        have_v = {k: (v.size, _DISTANCE_NAME.get(v.distance, str(v.distance)))
                  for k, v in have.items()}
        want_v = {v.name: (v.dim, v.distance) for v in vectors}
        if have_v != want_v:
            raise StoreError(f"collection {name!r} exists with another spec: vectors "
                             f"{have_v}, wanted {want_v}")
        if self.mode == "server":
            have_i = {k: str(getattr(v.data_type, "value", v.data_type)).lower()
                      for k, v in (info.payload_schema or {}).items()}
            other = sorted(k for k, t in payload_indexes.items() if have_i.get(k, t) != t)
            if other:
                raise StoreError(f"collection {name!r} exists with another spec: payload "
                                 f"indexes {other} are of another type")
            # as on Edge: a store built before an index existed (e.g. the geo index of sky
            # positions) gets the missing ones
            for key, kind in payload_indexes.items():
                if key not in have_i:
                    schema = _SCHEMA[kind] if options.payload_hnsw else _NO_HNSW_LINKS[kind]()
                    self._call(f"index {name}.{key}", self.client.create_payload_index, name,
                               key, field_schema=schema, wait=True)
                    log.info("collection %s: added payload index %s", name, key)

    def _create(self, name: str, vectors: Sequence[VectorSpec],
                options: CollectionOptions) -> None:
        kb = threshold_kb(options.indexing_threshold, vectors)
        quant = None
        if options.quantization == "int8":
            quant = qm.ScalarQuantization(scalar=qm.ScalarQuantizationConfig(
                type=qm.ScalarType.INT8, quantile=0.99, always_ram=True))
        self._call(
            f"create {name}", self.client.create_collection, name,
            vectors_config={v.name: qm.VectorParams(size=v.dim, distance=_DISTANCE[v.distance],
                                                    on_disk=options.on_disk) for v in vectors},
            shard_number=options.shard_number, replication_factor=options.replication_factor,
            write_consistency_factor=options.write_consistency_factor,
            hnsw_config=qm.HnswConfigDiff(m=options.hnsw_m, ef_construct=options.hnsw_ef_construct,
                                          full_scan_threshold=kb),
            optimizers_config=qm.OptimizersConfigDiff(
                indexing_threshold=kb, max_segment_size=max_segment_kb(options, vectors)),
            quantization_config=quant, on_disk_payload=options.payload_on_disk,
            metadata={"specclip_options": asdict(options)})

    def delete_collection(self, name: str) -> None:
        self._require_writer("delete_collection")
        if not self._call("collection_exists", self.client.collection_exists, name):
            raise StoreError(f"no collection {name!r}")
        stale = [qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=a.alias_name))
                 for a in self._aliases() if a.collection_name == name]
        if stale:
            self._call("delete aliases", self.client.update_collection_aliases, stale)
        self._call(f"delete {name}", self.client.delete_collection, name)
        self._options.pop(name, None)

    def list_collections(self) -> list[str]:
        cols = self._call("list collections", self.client.get_collections).collections
        return sorted(c.name for c in cols)

    def _aliases(self) -> list[Any]:
        return self._call("get aliases", self.client.get_aliases).aliases

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection``; delete + create run as one atomic request."""
        self._require_writer("set_alias")
        cols = self.list_collections()
        if collection not in cols:
            raise StoreError(f"alias {alias!r}: no collection {collection!r}")
        if alias in cols:
            raise StoreError(f"alias {alias!r} is a collection name")
        ops: list[Any] = []
        if any(a.alias_name == alias for a in self._aliases()):
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(qm.CreateAliasOperation(create_alias=qm.CreateAlias(
            collection_name=collection, alias_name=alias)))
        self._call(f"alias {alias}", self.client.update_collection_aliases, ops)
        self._alias_time = -1e9

    def resolve(self, name_or_alias: str) -> str | None:
        for a in self._aliases():
            if a.alias_name == name_or_alias:
                return a.collection_name
        return name_or_alias if name_or_alias in self.list_collections() else None

    def _opts(self, collection: str) -> CollectionOptions:
        """Search-time options (ef, quantization) from the collection's metadata. Alias
        resolution for this is cached for ALIAS_TTL s; Qdrant itself resolves aliases in
        every point operation, so data never comes from a stale target."""
        now = time.monotonic()
        if now - self._alias_time > ALIAS_TTL:
            self._alias_map = {a.alias_name: a.collection_name for a in self._aliases()}
            self._alias_time = now
        name = self._alias_map.get(collection, collection)
        if name not in self._options:
            info = self._call(f"get {name}", self.client.get_collection, name)
            meta = (getattr(info.config, "metadata", None) or {}).get("specclip_options")
            self._options[name] = CollectionOptions(**meta) if meta else CollectionOptions()
        return self._options[name]

    def _dims(self, name: str) -> dict[str, int]:
        info = self._call(f"get {name}", self.client.get_collection, name)
        return {k: v.size for k, v in info.config.params.vectors.items()}

    # ---- points ---------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points in acknowledged batches (wait=True)."""
        self._require_writer("upsert")
        check_points(points, self._dims(collection))
        done = 0
        for i in range(0, len(points), UPSERT_BATCH):
            batch = [qm.PointStruct(id=p.id, payload=p.payload,
                                    vector={k: np.asarray(v, dtype=np.float32).tolist()
                                            for k, v in p.vectors.items()})
                     for p in points[i:i + UPSERT_BATCH]]
            try:
                self._call(f"upsert into {collection}", self.client.upsert, collection, batch,
                           wait=True)
            except StoreError as e:
                raise StoreError(f"{e} -- {done} of {len(points)} points were written before "
                                 "the failure; upsert is idempotent, retry the call") from e
            done += len(batch)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._require_writer("delete")
        self._call(f"delete from {collection}", self.client.delete, collection,
                   points_selector=qm.PointIdsList(points=list(ids)), wait=True)

    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vectors: bool = False) -> list[Hit]:
        """Points by id, in the order asked; ids not stored are left out."""
        recs = self._call(f"retrieve from {collection}", self.client.retrieve, collection,
                          list(ids), with_payload=True, with_vectors=with_vectors)
        by_id = {str(r.id): _hit(r, 0.0) for r in recs}
        return [by_id[i] for i in ids if i in by_id]

    def search(self, collection: str, vector_name: str, vector: np.ndarray, k: int,
               filter: Filter | None = None, with_vectors: bool = False,
               exact: bool = False, payload_keys: Sequence[str] | None = None) -> list[Hit]:
        """Top-k by similarity on one named vector; ``payload_keys`` limits each hit's
        payload to those keys (None: all of it), which the server then neither reads nor
        sends for the rest."""
        return self.search_batch(collection, vector_name, [vector], k, filter, with_vectors,
                                 exact, payload_keys)[0]

    def search_batch(self, collection: str, vector_name: str, vectors: Sequence[np.ndarray],
                     k: int, filter: Filter | None = None, with_vectors: bool = False,
                     exact: bool = False, payload_keys: Sequence[str] | None = None
                     ) -> list[list[Hit]]:
        """search() for each of ``vectors`` in one request (query_batch_points); one hit
        list per vector, in order."""
        checks.check_k(k)
        checks.check_payload_keys(payload_keys)
        vectors = [checks.check_vector(v) for v in vectors]
        if not vectors:
            return []
        opts = self._opts(collection)
        quant = None
        if opts.quantization:
            quant = qm.QuantizationSearchParams(ignore=exact, rescore=True, oversampling=2.0)
        acorn = qm.AcornSearchParams(enable=True) if opts.acorn and filter is not None else None
        params = qm.SearchParams(hnsw_ef=opts.search_ef, exact=exact, quantization=quant,
                                 acorn=acorn)
        if self.mode == "memory":
            params = None                 # local mode is exact anyway (and warns)
        flt = to_qdrant_filter(filter)
        reqs = [qm.QueryRequest(query=np.asarray(v, dtype=np.float32).tolist(),
                                using=vector_name, filter=flt, limit=k,
                                with_payload=with_payload_arg(payload_keys),
                                with_vector=with_vectors, params=params) for v in vectors]
        res = self._call(f"search {collection}", self.client.query_batch_points, collection,
                         requests=reqs)
        return [[_hit(p, p.score) for p in r.points] for r in res]

    def order_by(self, collection: str, key: str, k: int, descending: bool = True,
                 filter: Filter | None = None) -> list[Hit]:
        """Top-k by a payload value; Hit.score is that value."""
        checks.check_k(k)
        direction = qm.Direction.DESC if descending else qm.Direction.ASC
        recs, _ = self._call(f"order {collection} by {key}", self.client.scroll, collection,
                             scroll_filter=to_qdrant_filter(filter), limit=k,
                             order_by=qm.OrderBy(key=key, direction=direction),
                             with_payload=True)
        return [_hit(r, r.order_value if getattr(r, "order_value", None) is not None
                     else r.payload[key]) for r in recs]

    def scroll(self, collection: str, filter: Filter | None = None,
               with_vectors: bool = False, batch_size: int = 1000) -> Iterator[Hit]:
        offset = None
        while True:
            recs, offset = self._call(f"scroll {collection}", self.client.scroll, collection,
                                      scroll_filter=to_qdrant_filter(filter), limit=batch_size,
                                      offset=offset, with_payload=True,
                                      with_vectors=with_vectors)
            yield from (_hit(r, 0.0) for r in recs)
            if offset is None:
                return

    def count(self, collection: str, filter: Filter | None = None, exact: bool = True) -> int:
        return int(self._call(f"count {collection}", self.client.count, collection,
                              count_filter=to_qdrant_filter(filter), exact=exact).count)

    def facet(self, collection: str, key: str, filter: Filter | None = None,
              limit: int = 100) -> dict[str, int]:
        """Exact counts of the values of an indexed keyword payload field."""
        res = self._call(f"facet {collection} by {key}", self.client.facet, collection, key,
                         facet_filter=to_qdrant_filter(filter), limit=limit, exact=True)
        return {str(h.value): int(h.count) for h in res.hits}

    def info(self, collection: str) -> dict[str, Any]:
        i = self._call(f"get {collection}", self.client.get_collection, collection)
        return {"points": i.points_count, "segments": i.segments_count,
                "indexed_vectors": i.indexed_vectors_count, "status": str(i.status)}

    # ---- maintenance ----------------------------------------------------------------------

    def optimize(self, collection: str, timeout: float = 3600.0) -> None:
        """The server optimizes in the background: wait until the collection is green."""
        if self.mode == "memory":
            return
        t0 = time.monotonic()
        while True:
            status = self._call(f"get {collection}", self.client.get_collection,
                                collection).status
            if status == qm.CollectionStatus.GREEN:
                return
            if time.monotonic() - t0 > timeout:
                raise StoreError(f"optimize {collection}: still {status} after {timeout}s")
            time.sleep(1.0)

    def flush(self, publish: bool = True) -> None:
        """Writes are acknowledged by the server (wait=True): nothing is pending here."""

    def publish(self) -> None:
        """Server writes are visible to every client once acknowledged."""

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "ServerStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
