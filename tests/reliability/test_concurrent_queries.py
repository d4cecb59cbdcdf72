"""Queries keep working while the indexer writes: a reader (read_only embedded store, the way
the app opens it) queries from 2 threads while an indexer subprocess adds spectra; no errors,
p99 latency reported, and the reader sees the new points once the indexer publishes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from engine.store import open_store
from tests.indexer.conftest import write_lamost_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THREADS = 2


def _index(store, state, folder, delay):
    return subprocess.Popen([sys.executable, "-m", "tests.indexer.kill_target", str(store),
                             str(state), str(folder), str(delay)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _query_loop(store, stop, latencies, errors, seed):
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        v = rng.normal(size=16).astype(np.float32)
        t = time.perf_counter()
        try:
            coll = store.resolve("spectra")
            hits = store.search(coll, "shared", v / np.linalg.norm(v), 5)
            store.order_by(coll, "anomaly", 5)
            assert hits, "a published collection answered nothing"
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            errors.append(f"{type(e).__name__}: {e}")
        latencies.append(time.perf_counter() - t)


@pytest.mark.slow
def test_queries_while_indexing(tmp_path, record_property):
    folder = tmp_path / "spectra"
    folder.mkdir()
    for i in range(8):
        write_lamost_file(str(folder / f"spec-{7000 + i}.fits"), 7000 + i, seed=i)
    store, state = tmp_path / "store", tmp_path / "state.json"
    first = _index(store, state, folder, 0.0)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    for i in range(8, 32):
        write_lamost_file(str(folder / f"spec-{7000 + i}.fits"), 7000 + i, seed=i)

    reader = open_store(path=store, read_only=True)
    assert reader.count(reader.resolve("spectra")) == 8
    stop, latencies, errors = threading.Event(), [], []
    threads = [threading.Thread(target=_query_loop, args=(reader, stop, latencies, errors, s))
               for s in range(THREADS)]
    for t in threads:
        t.start()
    proc = _index(store, state, folder, 0.05)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            reader.flush()                   # a reader picks up newly published generations
        assert proc.poll() == 0, proc.stderr.read()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
    reader.flush()
    total = reader.count(reader.resolve("spectra"))
    reader.close()
    p = np.percentile(np.asarray(latencies) * 1e3, [50, 99])
    record_property("concurrent_queries", len(latencies))
    record_property("p50_ms", round(float(p[0]), 3))
    record_property("p99_ms", round(float(p[1]), 3))
    print(f"\nconcurrent queries: {len(latencies)} in {THREADS} threads while indexing, "
          f"p50 {p[0]:.2f} ms, p99 {p[1]:.2f} ms, errors {len(errors)}")
    assert not errors, errors[:5]
    assert len(latencies) > 20
    assert total == 32
