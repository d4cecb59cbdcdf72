"""What capping segment size (CollectionOptions.max_segment_points) costs and saves. Two
embedded stores of the same N points in the indexer's collection shape (5 named vectors,
every payload index), one with segments of at most CAP points, one left as Edge makes it
(one segment holding every point), measured in the same run:

- build: upsert of the N points in batches + optimize (the capped store optimizes as it
  fills, engine/store/edge.py);
- query: full-payload top-10 on the shared vector, recall against exact search; both stores
  from one fresh read-only process, query by query in turns, so machine drift hits both;
- writes into optimized segments, each published, with the writer already open (loading the
  shard, once per process, is not counted). Publishing seals again every segment a write
  touched (engine/store/edge_publish.py):
  - "one_file": 10 points written together rewritten (a changed or deleted file);
  - "spread": 10 points spread over the store rewritten (a batch of score refreshes);
  - "grow": twice the indexing threshold in new points, optimize, publish: the new segment
    gets indexed, and Edge's optimizer may merge it into an existing one (the cap bounds
    that). Twice, because Edge's thresholds are in KB of one named vector's storage and a
    point carries only its own survey's vectors (engine/store/spec.py: threshold_kb counts
    the largest vector on every point), so the threshold in points is ~1.4x the option.

    python -m benchmarks.segments [N] [CAP] [QUERIES]       # prints JSON
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (clustered_vectors, hardware, payload_columns, payload_row,
                               percentiles_ms, point_vectors, real_payload_indexes,
                               real_shaped_vector_specs, recall_at_k, side_vectors, unit_rows)
from benchmarks.search import exact_topk

log = logging.getLogger(__name__)
COLLECTION = "bench"
K = 10
DIM = 32


def _pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def _points(base: np.ndarray, side: dict, cols: dict, ids: Any, **changed: Any) -> list:
    from engine.store import Point

    return [Point(_pid(i), point_vectors(base, side, str(cols["survey"][i]), i),
                  {**payload_row(cols, i), **changed}) for i in ids]


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 3)


def _build(path: Path, base: np.ndarray, side: dict, cols: dict, n: int,
           cap: int | None) -> dict[str, Any]:
    """The first n points, upserted and optimized; then published. Returns timings."""
    from engine.collection import DEFAULT_OPTIONS
    from engine.store import open_store

    options = replace(DEFAULT_OPTIONS, max_segment_points=cap)
    store = open_store(path=path)
    store.create_collection(COLLECTION, real_shaped_vector_specs(DIM), real_payload_indexes(),
                            options)

    def fill() -> None:
        for lo in range(0, n, 2000):
            store.upsert(COLLECTION, _points(base, side, cols, range(lo, min(lo + 2000, n))))
        store.optimize(COLLECTION)

    build_s = _timed(fill)
    publish_s = _timed(store.flush)
    info = store.info(COLLECTION)
    store.close()
    return {"max_segment_points": cap, "build_s": build_s, "first_publish_s": publish_s,
            "segments": info["segments"], "indexed_vectors": info["indexed_vectors"]}


def _writes(path: Path, base: np.ndarray, side: dict, cols: dict, n: int,
            grow: int) -> dict[str, Any]:
    """The three writes into the built store, each published."""
    from engine.store import open_store

    store = open_store(path=path)
    store.count(COLLECTION)                            # loads the shard: not counted
    out: dict[str, Any] = {}
    # a new file arrives later than the build (generations.RACY_NS: files changed within 2 s
    # before a publication are copied, not linked, at the next one)
    time.sleep(2.5)
    out["one_file_s"] = _timed(lambda: (store.upsert(COLLECTION, _points(
        base, side, cols, range(n // 2, n // 2 + 10), anomaly=0.5)), store.flush()))
    time.sleep(2.5)
    out["spread_s"] = _timed(lambda: (store.upsert(COLLECTION, _points(
        base, side, cols, range(n // 20, n, n // 10), anomaly=0.25)), store.flush()))
    time.sleep(2.5)

    def add() -> None:
        for lo in range(n, n + grow, 2000):
            store.upsert(COLLECTION, _points(base, side, cols, range(lo, min(lo + 2000,
                                                                             n + grow))))
        store.optimize(COLLECTION)
        store.flush()

    out["grow_s"] = _timed(add)
    out["grow_points"] = grow
    out["segments_after"] = store.info(COLLECTION)["segments"]
    store.close()
    return out


def _measure(paths: list[str], queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """In a fresh process: full-payload top-10 queries, the stores in turns."""
    from engine.store import open_store

    stores = [open_store(path=p, read_only=True) for p in paths]
    times: list[list[float]] = [[] for _ in stores]
    found: list[list[list[int]]] = [[] for _ in stores]
    for i in range(len(queries)):
        for j in np.roll(np.arange(len(stores)), i):   # rotate which store goes first
            t = time.perf_counter()
            hits = stores[j].search(COLLECTION, "shared", queries[i], K)
            times[j].append(time.perf_counter() - t)
            found[j].append([uuid.UUID(h.id).int - 1 for h in hits])
    for s in stores:
        s.close()
    warm = 20
    return [{**percentiles_ms(t[warm:]), "recall_at_10": round(recall_at_k(f, truth), 4)}
            for t, f in zip(times, found, strict=True)]


def bench_segments(n: int = 200_000, cap: int = 40_000, n_q: int = 1000) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from engine.collection import DEFAULT_OPTIONS

    load = [round(x, 2) for x in os.getloadavg()]
    grow = 2 * DEFAULT_OPTIONS.indexing_threshold
    total = n + grow
    base = clustered_vectors(total, DIM, seed=0)
    side = side_vectors(total)
    cols = payload_columns(total)
    queries = unit_rows(clustered_vectors(n_q, DIM, seed=5) + np.random.default_rng(7)
                        .standard_normal((n_q, DIM)).astype(np.float32) * 0.05)
    truth = exact_topk(base[:n], queries, K)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="specclip-segments-") as tmp:
        names = {"one_segment": None, f"capped_{cap}": cap}
        for name, c in names.items():
            log.info("segments: building %s (%d points)", name, n)
            rows[name] = _build(Path(tmp) / name, base, side, cols, n, c)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            queried = pool.submit(_measure, [str(Path(tmp) / k) for k in names], queries,
                                  truth).result()
        for name, q in zip(names, queried, strict=True):
            rows[name]["query"] = q
            log.info("segments: writes into %s", name)
            rows[name].update(_writes(Path(tmp) / name, base, side, cols, n, grow))
    one, capped = rows["one_segment"], rows[f"capped_{cap}"]
    ratios = {f"{k}_capped_over_one": round(capped[k] / one[k], 3)
              for k in ("build_s", "one_file_s", "spread_s", "grow_s")}
    ratios["query_p50_capped_over_one"] = round(capped["query"]["p50_ms"]
                                                / one["query"]["p50_ms"], 3)
    return {"n": n, "cap": cap, "dim": DIM, "queries": n_q, "hardware": hardware(),
            "load_avg_at_start": load,
            "stores": rows, "ratios": ratios}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(bench_segments(*args), indent=1))
