"""Shared helpers of the benchmarks: synthetic vectors and payloads shaped like the engine's,
timing percentiles, process memory, folder sizes and the hardware description."""

from __future__ import annotations

import hashlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

# The collection's shape as the indexer makes it with the shipped bundle
# (engine.collection.collection_spec): the shared space at the benchmark's dim, each
# survey's own encoder vector (64-d) and spectrum-space vector (16-d), and every payload
# index of engine/payload.py. All vectors are synthetic (see clustered_vectors).
OWN_DIM, SPECTRUM_DIM = 64, 16


def real_shaped_vector_specs(shared_dim: int) -> list:
    from engine.collection import vector_specs
    return vector_specs(shared_dim, {"lamost": OWN_DIM, "gaia_xp": OWN_DIM},
                        {"lamost": SPECTRUM_DIM, "gaia_xp": SPECTRUM_DIM})


def real_payload_indexes() -> dict[str, str]:
    from engine import payload as P
    return dict(P.PAYLOAD_INDEXES)


def side_vectors(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    """Synthetic own and spectrum-space vectors: each point carries its survey's pair."""
    return {"own": clustered_vectors(n, OWN_DIM, seed, n_clusters=256),
            "spectrum": clustered_vectors(n, SPECTRUM_DIM, seed + 1, n_clusters=128)}


def point_vectors(base: np.ndarray, side: dict[str, np.ndarray], survey: str,
                  i: int) -> dict[str, np.ndarray]:
    return {"shared": base[i], survey: side["own"][i], f"{survey}_spectrum": side["spectrum"][i]}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(n: int, dim: int, seed: int = 0, n_clusters: int = 512,
                      spread: float = 0.6) -> np.ndarray:
    """Unit vectors drawn around random centres: embeddings of spectra cluster by stellar
    type, which is what makes approximate search harder than on uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):          # chunks keep the temporaries small at 1M
        m = min(100_000, n - i)
        which = rng.integers(0, n_clusters, m)
        noise = rng.standard_normal((m, dim)).astype(np.float32) * spread
        out[i:i + m] = unit_rows(centres[which] + noise)
    return out


def payload_columns(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    teff = rng.normal(5500, 900, n).clip(3000, 9000)
    return {"survey": np.where(rng.random(n) < 0.3, "lamost", "gaia_xp"),
            "obj_class": np.where(rng.random(n) < 0.02, "GALAXY", "STAR"),
            "snr": rng.gamma(2.0, 30.0, n), "label_teff": teff,
            "pred_teff": teff + rng.normal(0, 120, n), "pred_logg": rng.normal(3.8, 0.8, n),
            "pred_feh": rng.normal(-0.3, 0.4, n), "anomaly": rng.random(n),
            "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-30, 90, n)}


def payload_row(cols: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """One point's payload: ~25 fields, about the size `indexer.points.record_payload` writes."""
    p = {k: (str(v[i]) if v.dtype.kind in "US" else float(v[i])) for k, v in cols.items()}
    p.update({"object_id": str(700_000_000 + i), "data_release": "DR10",
              "gaia_source_id": 4_000_000_000_000_000 + i,
              "pred_teff_sigma": 80.0, "pred_logg_sigma": 0.1, "pred_feh_sigma": 0.08,
              "anomaly_knn": p["anomaly"] * 0.5, "anomaly_recon": p["anomaly"] * 0.3,
              "source_path": f"/data/lamost_dr10/spectra/spec-{57000 + i % 3000}-"
                             f"HD{i:09d}_sp{i % 16:02d}-{i % 250:03d}.fits.gz",
              "source_index": 0, "source_root": "/data/lamost_dr10/spectra",
              "content_hash": hashlib.md5(str(i).encode()).hexdigest(),
              "model_version": "0123456789abcdef"})
    return p


def archive_keys(i: int, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """What a point with its spectrum stored carries besides payload_row: its archive file
    (one per upserted batch, here of 256), its row there, and its sky position."""
    from engine import payload as P
    from engine.positions import sky_point

    return {P.SPECTRUM_FILE: f"spectra/spectra__0123456789abcdef/{1764700000000000000 + i // 256}"
                             f"-{i // 256:012x}.arrow",
            P.SPECTRUM_ROW: i % 256, P.SKY: sky_point(cols["ra"][i], cols["dec"][i])}


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4),
            "p95_ms": round(float(np.percentile(a, 95)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4), "n": int(a.size)}


def time_each(fn: Callable[[int], Any], n: int, warmup: int = 5) -> tuple[list[float], list[Any]]:
    """Call fn(i) for i < n, one at a time (latency, not throughput); return times, results."""
    for i in range(min(warmup, n)):
        fn(i)
    times, results = [], []
    for i in range(n):
        t = time.perf_counter()
        results.append(fn(i))
        times.append(time.perf_counter() - t)
    return times, results


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k]) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / float(truth.size)


def rss_bytes() -> int:
    import psutil
    return int(psutil.Process().memory_info().rss)


def folder_bytes(path: str | os.PathLike) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    from indexer.reading import usable_cores
    info = {"cpu_model": cpu, "logical_cores": os.cpu_count(),
            "usable_cores": usable_cores(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("numpy", "faiss-cpu", "qdrant-edge-py", "qdrant-client", "torch", "astropy",
                 "dask"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    return info
