"""The read side of the embedded store's API: retrieve, search, search_batch, order_by,
scroll, count, facet and info on one open collection. These are the calls reader processes
serve (the writer serves them too). Each takes the store's lock, gets the collection through
``_coll`` (edge_folder.py: where a reader switches to a newer generation) and translates the
request and the answer with edge_types. Separate from edge.py, which holds what changes a
store (collections, aliases, points, optimize, flush and publish), because none of these
writes anything.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import qdrant_edge as qe

from engine.store import checks
from engine.store.edge_folder import EdgeFolder
from engine.store.edge_types import edge_errors, hit, scored_hits, to_edge_filter
from engine.store.spec import with_payload_arg
from engine.store.types import Filter, Hit


class EdgeQueries(EdgeFolder):
    """The read-only calls of EdgeStore, on the collections EdgeFolder opens."""

    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vectors: bool = False) -> list[Hit]:
        """Points by id, in the order asked; ids not stored are left out."""
        with self._lock:
            c = self._coll(collection)
            with edge_errors(f"retrieve from {collection}"):
                recs = c.shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
            by_id = {str(r.id): hit(r, 0.0) for r in recs}
            return [by_id[i] for i in ids if i in by_id]

    def search(self, collection: str, vector_name: str, vector: np.ndarray, k: int,
               filter: Filter | None = None, with_vectors: bool = False,
               exact: bool = False, payload_keys: Sequence[str] | None = None) -> list[Hit]:
        """Top-k by similarity on one named vector (points lacking it never match).
        ``exact=True`` bypasses HNSW (ground truth for recall checks). ``payload_keys``
        limits each hit's payload to those keys (the ones a point has); None: all of it.

        Payloads are most of a query's cost: at 100k points, k=10 and ~25 payload keys
        held in RAM (the default), Edge's query takes ~0.17 ms without payloads and ~0.29 ms
        with them; asking for two keys, ~0.24 ms. With CollectionOptions(payload_on_disk=
        True) each point's payload costs ~0.07 ms the first time it is read."""
        return self.search_batch(collection, vector_name, [vector], k, filter, with_vectors,
                                 exact, payload_keys)[0]

    def search_batch(self, collection: str, vector_name: str, vectors: Sequence[np.ndarray],
                     k: int, filter: Filter | None = None, with_vectors: bool = False,
                     exact: bool = False, payload_keys: Sequence[str] | None = None
                     ) -> list[list[Hit]]:
        """search() for each of ``vectors``, in one planned batch (Edge's query_batch: the
        batch shares one pass over the segments); one hit list per vector, in order."""
        checks.check_k(k)
        checks.check_payload_keys(payload_keys)
        vectors = [checks.check_vector(v) for v in vectors]
        if not vectors:
            return []
        with self._lock:
            c = self._coll(collection)
            flt, params = to_edge_filter(filter), c.search_params(exact, filter is not None)
            reqs = [qe.QueryRequest(limit=k, query=qe.Query.Nearest(v, using=vector_name),
                                    filter=flt, params=params,
                                    with_payload=with_payload_arg(payload_keys),
                                    with_vector=with_vectors) for v in vectors]
            with edge_errors(f"search {collection}"):
                found = (c.shard.query_batch(qe.QueryBatchRequest(reqs)) if len(reqs) > 1
                         else [c.shard.query(reqs[0])])
            return [scored_hits(points, with_vectors) for points in found]

    def order_by(self, collection: str, key: str, k: int, descending: bool = True,
                 filter: Filter | None = None) -> list[Hit]:
        """Top-k by a payload value (needs an integer/float payload index on ``key``);
        Hit.score is that value."""
        checks.check_k(k)
        with self._lock:
            c = self._coll(collection)
            direction = qe.Direction.Desc if descending else qe.Direction.Asc
            req = qe.QueryRequest(limit=k, query=qe.OrderBy(key, direction),
                                  filter=to_edge_filter(filter), with_payload=True)
            with edge_errors(f"order {collection} by {key}"):
                return [hit(p, p.order_value) for p in c.shard.query(req)]

    def scroll(self, collection: str, filter: Filter | None = None,
               with_vectors: bool = False, batch_size: int = 1000) -> Iterator[Hit]:
        """All matching points, in id order, fetched ``batch_size`` at a time."""
        checks.check_k(batch_size, "batch_size")
        offset = None
        while True:
            with self._lock:
                c = self._coll(collection)
                req = qe.ScrollRequest(offset=offset, limit=batch_size,
                                       filter=to_edge_filter(filter), with_payload=True,
                                       with_vector=with_vectors)
                with edge_errors(f"scroll {collection}"):
                    recs, offset = c.shard.scroll(req)
            yield from (hit(r, 0.0) for r in recs)
            if offset is None:
                return

    def count(self, collection: str, filter: Filter | None = None, exact: bool = True) -> int:
        with self._lock:
            c = self._coll(collection)
            with edge_errors(f"count {collection}"):
                return int(c.shard.count(qe.CountRequest(exact=exact,
                                                         filter=to_edge_filter(filter))))

    def facet(self, collection: str, key: str, filter: Filter | None = None,
              limit: int = 100) -> dict[str, int]:
        """Exact counts of the values of an indexed keyword payload field."""
        with self._lock:
            c = self._coll(collection)
            req = qe.FacetRequest(key, limit=limit, exact=True, filter=to_edge_filter(filter))
            with edge_errors(f"facet {collection} by {key}"):
                return {str(h.value): int(h.count) for h in c.shard.facet(req).hits}

    def info(self, collection: str) -> dict[str, Any]:
        """Points, segments and HNSW-indexed vectors of a collection (and its generation)."""
        with self._lock:
            c = self._coll(collection)
            with edge_errors(f"info {collection}"):
                i = c.shard.info()
            return {"points": i.points_count, "segments": i.segments_count,
                    "indexed_vectors": i.indexed_vectors_count,
                    "generation": c.lease.gen if c.lease else None}
