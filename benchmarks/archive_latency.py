"""Does keeping spectra in the store slow queries down? Two embedded stores with the same
N vectors: payloads as before, and payloads with what the spectrum archive adds (the archive
file and row, the geo point of the sky position). Both are queried from one fresh read-only
process, alternating query by query, so machine drift hits both alike. Also times reading
one stored spectrum back (what showing a hit costs), from a real archive file.

    python -m benchmarks.archive_latency [N] [QUERIES]        # prints JSON
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (PAYLOAD_INDEXES, archive_keys, clustered_vectors,
                               payload_columns, payload_row, percentiles_ms)

COLLECTION = "bench"
K = 10


def _build(path: Path, base: np.ndarray, cols: dict, with_archive: bool) -> None:
    from engine.collection import DEFAULT_OPTIONS
    from engine.store import Point, VectorSpec, open_store

    indexes = dict(PAYLOAD_INDEXES, **({"sky": "geo"} if with_archive else {}))
    store = open_store(path=path)
    store.create_collection(COLLECTION, [VectorSpec("shared", base.shape[1])], indexes,
                            DEFAULT_OPTIONS)
    for lo in range(0, len(base), 2000):
        store.upsert(COLLECTION, [
            Point(f"00000000-0000-0000-0000-{i:012d}", {"shared": base[i]},
                  {**payload_row(cols, i), **(archive_keys(i, cols) if with_archive else {})})
            for i in range(lo, min(lo + 2000, len(base)))])
    store.optimize(COLLECTION)
    store.close()


def _measure(paths: list[str], queries: np.ndarray) -> dict[str, Any]:
    """In a fresh process: full-payload top-10 queries, the two stores in turns."""
    from engine.store import open_store

    stores = [open_store(path=p, read_only=True) for p in paths]
    times: list[list[float]] = [[], []]
    for i in range(len(queries)):
        for j in (i % 2, 1 - i % 2):              # alternate which store goes first
            t = time.perf_counter()
            stores[j].search(COLLECTION, "shared", queries[i], K)
            times[j].append(time.perf_counter() - t)
    for s in stores:
        s.close()
    warm = 20
    return {"before": percentiles_ms(times[0][warm:]), "with_archive_keys":
            percentiles_ms(times[1][warm:])}


def _read_back(n_spectra: int = 256) -> dict[str, Any]:
    """ms to read one stored spectrum back (a fresh SpectrumArchive: first read opens the
    file) from an archive file of XP library spectra."""
    from engine import payload as P
    from engine import readers
    from engine.spectrum_archive import SpectrumArchive, SpectrumArchiveWriter

    records = readers.read_xp_library(limit=n_spectra)
    with tempfile.TemporaryDirectory() as tmp:
        ref = SpectrumArchiveWriter(Path(tmp) / "spectra", relative_to=tmp).write(
            "c", [f"{i:036d}" for i in range(len(records))], ["h" * 32] * len(records), records)
        cold, warm = [], []
        for i in range(len(records)):
            archive = SpectrumArchive(tmp)
            payload = {P.SPECTRUM_FILE: ref, P.SPECTRUM_ROW: i}
            t = time.perf_counter()
            archive.load(payload)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            archive.load(payload)
            warm.append(time.perf_counter() - t)
    return {"first_read_of_a_file": percentiles_ms(cold), "file_already_open": percentiles_ms(warm)}


def archive_latency(n: int = 100_000, n_q: int = 1000, dim: int = 32) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    base = clustered_vectors(n, dim, seed=0)
    queries = clustered_vectors(n_q, dim, seed=1)
    cols = payload_columns(n)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / "before"), str(Path(tmp) / "with_archive")]
        _build(Path(paths[0]), base, cols, with_archive=False)
        _build(Path(paths[1]), base, cols, with_archive=True)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            out = pool.submit(_measure, paths, queries).result()
    before, after = out["before"]["p50_ms"], out["with_archive_keys"]["p50_ms"]
    return {"n": n, "dim": dim, "queries": n_q, **out,
            "p50_ratio": round(after / before, 3), "read_back": _read_back()}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    n_q = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    print(json.dumps(archive_latency(n, n_q), indent=1))
