"""Query latency and recall vs N: the engine's embedded store (Qdrant Edge after optimize),
numpy exact search and FAISS HNSW on the same vectors and queries, in one run; plus filtered
and ordered (outlier-ranking) queries, and memory/disk per point."""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (clustered_vectors, folder_bytes, payload_columns, payload_row,
                               percentiles_ms, point_vectors, real_payload_indexes,
                               real_shaped_vector_specs, recall_at_k, rss_bytes, side_vectors,
                               time_each, unit_rows)

log = logging.getLogger(__name__)
K = 10
COLLECTION = "bench"
# The filtered query: a class of stars (keyword) within a Teff window (range): both indexed.
TEFF_RANGE = (4000.0, 6000.0)


def _pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def _index(pid: str) -> int:
    return uuid.UUID(pid).int - 1


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Ground truth by brute force (cosine = dot on unit vectors), chunked over the base."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for lo in range(0, len(base), 200_000):
        s = queries @ base[lo:lo + 200_000].T
        if mask is not None:
            s[:, ~mask[lo:lo + 200_000]] = -np.inf
        cand_s = np.concatenate([best_s, s], 1)
        cand_i = np.concatenate([best_i, np.arange(lo, lo + s.shape[1])[None].repeat(len(s), 0)], 1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def bench_numpy(base: np.ndarray, queries: np.ndarray, cols: dict, n_q: int,
                truth: np.ndarray) -> dict:
    """Exact search, one query at a time on one BLAS thread (like the others: a latency; on
    a busy machine multi-threaded BLAS waits for its second thread)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _bench_numpy(base, queries, cols, n_q, truth)


def _bench_numpy(base: np.ndarray, queries: np.ndarray, cols: dict, n_q: int,
                 truth: np.ndarray) -> dict:
    def one(i):
        s = base @ queries[i]
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top])].tolist()

    times, found = time_each(one, n_q)
    mask = (cols["survey"] == "lamost") & (cols["label_teff"] >= TEFF_RANGE[0]) & \
        (cols["label_teff"] <= TEFF_RANGE[1])

    def filtered(i):
        idx = np.flatnonzero(mask)
        s = base[idx] @ queries[i]
        top = np.argpartition(-s, K)[:K]
        return idx[top[np.argsort(-s[top])]].tolist()

    ftimes, _ = time_each(filtered, n_q)

    def ordered(i):
        a = np.where(cols["survey"] == "lamost", cols["anomaly"], -np.inf)
        top = np.argpartition(-a, 50)[:50]
        return top[np.argsort(-a[top])].tolist()

    otimes, _ = time_each(ordered, max(20, n_q // 4))
    # measured against exact_topk's ground truth (the same search, another code path)
    return {"plain": {**percentiles_ms(times), "recall_at_10": recall_at_k(found, truth[:n_q])},
            "filtered": percentiles_ms(ftimes), "ordered": percentiles_ms(otimes)}


def bench_faiss(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, n_q: int,
                m: int = 16, ef_construct: int = 100, ef_search: int = 128) -> dict:
    """FAISS HNSW with Qdrant's default graph parameters (m=16, ef_construct=100) and the
    engine's search ef, queried one at a time on one thread (a latency, like the store's)."""
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construct
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t
    index.hnsw.efSearch = ef_search
    faiss.omp_set_num_threads(1)
    times, found = time_each(lambda i: index.search(queries[i:i + 1], K)[1][0].tolist(), n_q)
    faiss.omp_set_num_threads(0)
    return {"plain": {**percentiles_ms(times), "recall_at_10": recall_at_k(found, truth)},
            "build_s": round(build, 2), "index": faiss.serialize_index(index)}


def _edge_fill(store: Any, base: np.ndarray, cols: dict, batch: int = 2000) -> float:
    from engine.store import Point

    side = side_vectors(len(base))
    t = time.perf_counter()
    for lo in range(0, len(base), batch):
        pts = [Point(_pid(i), point_vectors(base, side, str(cols["survey"][i]), i),
                     payload_row(cols, i)) for i in range(lo, min(lo + batch, len(base)))]
        store.upsert(COLLECTION, pts)
    return time.perf_counter() - t


def _edge_ids_only(store: Any, queries: np.ndarray, n_q: int) -> dict:
    """Diagnostic: the same HNSW query straight on the Edge shard without payloads, to split
    Qdrant's search time from the engine's payload conversion. Reaches into EdgeStore's
    private shard on purpose; nothing else in the project does."""
    try:
        import qdrant_edge as qe

        shard = store._coll(COLLECTION).shard
        params = qe.SearchParams(hnsw_ef=128)

        def one(i):
            req = qe.QueryRequest(limit=K, query=qe.Query.Nearest(queries[i], using="shared"),
                                  params=params, with_payload=False)
            return shard.query(req)

        return percentiles_ms(time_each(one, n_q)[0])
    except Exception as e:  # noqa: BLE001 - a diagnostic never fails the benchmark
        return {"skipped": f"{type(e).__name__}: {e}"}


# Payloads are held in RAM (CollectionOptions.payload_on_disk=False, the default): full
# ~25-field payloads then cost ~0.1 ms per 10 hits at 100k. (On disk, "cold", they cost
# ~1 ms until each point's payload had been read once.) Both payload sizes are reported.
LIGHT_PAYLOAD = ("survey", "object_id")


def bench_edge(base: np.ndarray, queries: np.ndarray, truth: np.ndarray,
               ftruth: np.ndarray, cols: dict, n_q: int, workdir: Path,
               spectrum_files: list[str] | None = None,
               faiss_bytes: np.ndarray | None = None) -> dict:
    """The engine's embedded store, through engine.store's public API only.

    Built here; queried in a *fresh process* that opens the store read-only, as the app and
    `specclip query` do. (Queried in the process that had just built and optimised it, the
    same store answered payload queries ~4x slower: 1.3 vs ~0.3 ms at 100k.)
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from engine.collection import DEFAULT_OPTIONS  # the options the indexer uses
    from engine.store import open_store

    gc.collect()
    rss0 = rss_bytes()
    store = open_store(path=workdir / "edge")
    # shaped like the indexer's collection: 5 named vectors, every payload index
    store.create_collection(COLLECTION, real_shaped_vector_specs(base.shape[1]),
                            real_payload_indexes(), DEFAULT_OPTIONS)
    upsert_s = _edge_fill(store, base, cols)
    t = time.perf_counter()
    store.optimize(COLLECTION)
    optimize_s = time.perf_counter() - t
    store.flush()                                   # publish the read-only generation
    gc.collect()
    rss1 = rss_bytes()
    disk = folder_bytes(workdir / "edge" / "collections" / COLLECTION)
    info = store.info(COLLECTION) if hasattr(store, "info") else {}
    store.close()
    order_truth = np.argsort(-np.where(cols["survey"] == "lamost", cols["anomaly"], -np.inf))[:50]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        measured = pool.submit(measure_edge_queries, str(workdir / "edge"), queries, truth,
                               ftruth, order_truth.tolist(), n_q, spectrum_files,
                               faiss_bytes).result()
    n = len(base)
    return {**measured, "upsert_s": round(upsert_s, 2), "optimize_s": round(optimize_s, 2),
            "upsert_points_per_s": round(n / upsert_s, 1),
            "rss_delta_bytes": rss1 - rss0, "rss_per_point_bytes": round((rss1 - rss0) / n, 1),
            "disk_bytes": disk, "disk_per_point_bytes": round(disk / n, 1), "info": info,
            "store_shape": {"vectors": {v.name: v.dim for v in
                                        real_shaped_vector_specs(base.shape[1])},
                            "payload_indexes": len(real_payload_indexes())}}


def measure_edge_queries(path: str, queries: np.ndarray, truth: np.ndarray, ftruth: np.ndarray,
                         order_truth: list[int], n_q: int,
                         spectrum_files: list[str] | None = None,
                         faiss_bytes: np.ndarray | None = None) -> dict:
    """Runs in a fresh process: plain, filtered and ordered latency on the read-only store;
    with `spectrum_files`, also end to end: Engine.search(a LAMOST spectrum) = preprocess +
    the shipped small model + search of the Gaia XP points + full payloads, one call."""
    from engine.query import Engine
    from engine.store import Filter, Match, Range, open_store

    store = open_store(path=path, read_only=True)
    # Warm-up with other vectors: the first queries of a fresh process fault in the pages of
    # the HNSW graph and vectors, which would be charged to whichever row is timed first.
    rng = np.random.default_rng(12345)
    for v in rng.standard_normal((200, queries.shape[1])).astype(np.float32):
        store.search(COLLECTION, "shared", v, K)

    flt = Filter(must=(Match("survey", "lamost"), Range("label_teff", *TEFF_RANGE)))
    # Through the query API users call (engine.query.Engine), full payloads: what the app,
    # the CLI and notebooks get for a vector in hand (the encoder is timed separately).
    engine = Engine(store, collection=COLLECTION)
    rows = {
        "plain": lambda i: store.search(COLLECTION, "shared", queries[i], K),
        # what a notebook asking for neighbours needs: ids, survey, object id
        "plain_light_payload": lambda i: store.search(COLLECTION, "shared", queries[i], K,
                                                      payload_keys=LIGHT_PAYLOAD),
        "engine_search_vector": lambda i: engine.search_vector(queries[i], "shared", K),
        "filtered": lambda i: store.search(COLLECTION, "shared", queries[i], K, filter=flt),
    }
    times, results = _rotated_rounds(rows, n_q)
    found = {name: [[_index(h.id) for h in hits] for hits in res]
             for name, res in results.items()}
    paired = engine_beside_faiss(engine, faiss_bytes, queries, n_q) \
        if faiss_bytes is not None else None
    e2e = end_to_end_search(engine, spectrum_files) if spectrum_files else None
    raw = _edge_ids_only(store, queries, n_q)
    ofl = Filter(must=(Match("survey", "lamost"),))
    otimes, ofound = time_each(lambda i: [_index(h.id) for h in store.order_by(
        COLLECTION, "anomaly", 50, descending=True, filter=ofl)], max(20, n_q // 4))
    store.close()
    out = {name: {**percentiles_ms(times[name]),
                  "recall_at_10": recall_at_k(found[name],
                                              ftruth if name == "filtered" else truth)}
           for name in rows}
    out["plain_light_payload"]["payload_keys"] = list(LIGHT_PAYLOAD)
    out["engine_search_vector"]["payload"] = "full"
    return {**out,
            "timing": f"{ROUNDS} rounds over the queries, the rows in a rotated order each "
                      "round (the machine's speed drifts); p50 over all rounds",
            "ordered": {**percentiles_ms(otimes), "top50_exact": ofound[0] == order_truth},
            "engine_beside_faiss": paired,
            "ids_only_diagnostic": raw, "end_to_end_search_spectrum": e2e,
            "queried_in": "fresh process, read-only store"}


ROUNDS = 3


def _rotated_rounds(rows: dict[str, Any], n_q: int) -> tuple[dict, dict]:
    """Time every row over the queries in `ROUNDS` rounds, starting each round with another
    row, so no row is always the one measured first (or during a slow spell). Returns the
    pooled times per row and the first round's results per row."""
    names = list(rows)
    times: dict[str, list[float]] = {n: [] for n in names}
    found: dict[str, list] = {}
    for r in range(ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t, res = time_each(rows[name], n_q)
            times[name] += t
            found.setdefault(name, res)
    return times, found


def engine_beside_faiss(engine: Any, faiss_bytes: np.ndarray, queries: np.ndarray,
                        n_q: int, rounds: int = 3) -> dict:
    """The same FAISS index (built by the parent) and Engine.search_vector, timed query by
    query in turns, in this one process: both see the same moment of a machine whose speed
    drifts, so their ratio is steadier than one of two separate runs."""
    import faiss

    index = faiss.deserialize_index(faiss_bytes)
    faiss.omp_set_num_threads(1)
    f_times, e_times, overlap = [], [], []
    for r in range(rounds):
        for i in range(n_q):
            q = queries[i:i + 1]
            t = time.perf_counter()
            f_ids = index.search(q, K)[1][0]
            t1 = time.perf_counter()
            hits = engine.search_vector(queries[i], "shared", K)
            t2 = time.perf_counter()
            if r:                                      # the first round warms both up
                f_times.append(t1 - t)
                e_times.append(t2 - t1)
                overlap.append(len({_index(h.id) for h in hits} & set(f_ids.tolist())) / K)
    f, e = percentiles_ms(f_times), percentiles_ms(e_times)
    return {"faiss_hnsw": f, "engine_search_vector_full_payload": e,
            "p50_ratio": round(e["p50_ms"] / f["p50_ms"], 2),
            "top10_overlap_with_faiss": round(float(np.mean(overlap)), 4)}


def end_to_end_search(engine: Any, files: list[str], rounds: int = 3) -> dict:
    """p50 of `engine.search(record, target="gaia_xp", k=10)` for real LAMOST spectra read
    beforehand: everything a query by file does after reading it."""
    try:
        from engine import readers

        records = [readers.read(f)[0] for f in files]
        engine.search(records[0], target="gaia_xp", k=K)      # loads the model
    except Exception as e:  # noqa: BLE001 - no bundle or no data: say so in the JSON
        return {"skipped": f"{type(e).__name__}: {e}"}
    times, found = time_each(lambda i: engine.search(records[i % len(records)],
                                                     target="gaia_xp", k=K),
                             rounds * len(records))
    return {**percentiles_ms(times), "spectra": len(records),
            "hits_per_query": int(np.median([len(f) for f in found])),
            "model": engine.embedder.version}


def bench_n(n: int, dim: int, n_q: int, seed: int = 0, with_edge: bool = True,
            spectrum_files: list[str] | None = None) -> dict:
    """All three backends at one N on identical vectors and queries (the store only when
    `with_edge`: its HNSW build is the slow part, minutes per million points on 2 cores)."""
    t0 = time.perf_counter()
    base = clustered_vectors(n, dim, seed)
    queries = unit_rows(clustered_vectors(n_q, dim, seed)[:n_q] +
                        np.random.default_rng(seed + 7).standard_normal((n_q, dim)).astype(
                            np.float32) * 0.05)
    cols = payload_columns(n, seed + 1)
    truth = exact_topk(base, queries, K)
    mask = (cols["survey"] == "lamost") & (cols["label_teff"] >= TEFF_RANGE[0]) & \
        (cols["label_teff"] <= TEFF_RANGE[1])
    ftruth = exact_topk(base, queries, K, mask)
    out: dict[str, Any] = {"n": n, "dim": dim, "queries": n_q,
                           "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
                           "filter_selectivity": round(float(mask.mean()), 4)}
    log.info("N=%d: numpy", n)
    out["numpy"] = bench_numpy(base, queries, cols, n_q, truth)
    log.info("N=%d: faiss", n)
    out["faiss_hnsw"] = bench_faiss(base, queries, truth, n_q)
    faiss_bytes = out["faiss_hnsw"].pop("index")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if not with_edge:
        out["edge_skipped"] = "N above --edge-max-n"
        return out
    log.info("N=%d: edge", n)
    with tempfile.TemporaryDirectory(prefix="specclip-bench-") as tmp:
        out["edge"] = bench_edge(base, queries, truth, ftruth, cols, n_q, Path(tmp),
                                 spectrum_files, faiss_bytes)
    e, f, x = out["edge"]["plain"], out["faiss_hnsw"]["plain"], out["numpy"]["plain"]
    light = out["edge"]["plain_light_payload"]
    out["ratios"] = {"edge_p50_over_faiss_p50": round(e["p50_ms"] / f["p50_ms"], 2),
                     "engine_p50_over_faiss_p50": round(
                         out["edge"]["engine_search_vector"]["p50_ms"] / f["p50_ms"], 2),
                     "engine_p50_over_faiss_p50_in_turns": (
                         out["edge"].get("engine_beside_faiss") or {}).get("p50_ratio"),
                     "edge_light_payload_p50_over_faiss_p50": round(
                         light["p50_ms"] / f["p50_ms"], 2),
                     "edge_p50_over_numpy_p50": round(e["p50_ms"] / x["p50_ms"], 3),
                     "edge_filtered_p50_over_numpy_filtered_p50": round(
                         out["edge"]["filtered"]["p50_ms"] / out["numpy"]["filtered"]["p50_ms"], 3)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
