"""Throughput on CPU: the encoder per model size (spectra/s), and indexing from LAMOST FITS
files into the store beside the astropy-only read floor of the same files."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from unittest import mock
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"


def encoder_throughput(sizes: tuple[str, ...] = ("small", "paper"), n: int = 512,
                       batch_size: int = 256, repeats: int = 3) -> dict[str, Any]:
    """Spectra/s of Embedder.embed_arrays (what indexing runs: encoders, heads, decoders and,
    for LAMOST with a bundle that has RV templates, the RV template fit) for each model size.
    A size whose shipped bundle (engine/bundles/SIZE) was trained from its config is timed
    with that bundle; the others with freshly initialised weights and no RV templates (no
    bundle to take them from). Weights do move the rate a little: interleaved on this
    machine, the small config did 283 LAMOST spectra/s fresh, 352 with the shipped weights
    and 322 with its RV template fit as well. The median of `repeats` timed passes (one pass
    on a shared 2-core machine varied by 1.7x)."""
    import torch

    from engine.bundle import Bundle, load_bundle
    from engine.inference import Embedder
    from engine.models.config import config_from_dict
    from engine.models.specclip import SpecClipModel

    out: dict[str, Any] = {"device": "cpu", "torch_threads": torch.get_num_threads()}
    rng = np.random.default_rng(0)
    for size in sizes:
        path = CONFIGS / f"{size}.json"
        if not path.exists():
            out[size] = {"skipped": f"{path} missing"}
            continue
        cfg = config_from_dict(json.loads(path.read_text()))
        shipped = ROOT / "engine" / "bundles" / size
        if (shipped / "config.json").exists():
            bundle = load_bundle(shipped)
            weights = f"shipped bundle {bundle.version}"
            if bundle.config.name != cfg.name:
                raise ValueError(f"{shipped}: a bundle of config {bundle.config.name!r}, "
                                 f"not {size!r}")
        else:
            torch.manual_seed(0)
            bundle = Bundle(path=path, config=cfg, model=SpecClipModel(cfg).eval(),
                            version=f"bench-{size}")
            weights = "fresh, no RV templates"
        model = bundle.model
        params = sum(p.numel() for p in model.parameters())
        emb = Embedder(bundle, batch_size=batch_size)
        row: dict[str, Any] = {"parameters": int(params), "weights": weights,
                               "rv_template_fit": bundle.rv is not None,
                               "shared_dim": cfg.align.shared_dim,
                               "own_dim": {s: int(model.encoders[s].out_dim)
                                           for s in ("lamost", "gaia_xp")}}
        for survey, length in (("lamost", cfg.lamost.n_pixels), ("gaia_xp", 343)):
            # The paper size is ~30x the parameters: a few batches are enough for a rate.
            m = n if size == "small" else (32 if survey == "lamost" else 128)
            flux = rng.normal(1.0, 0.05, (m, length)).astype(np.float32)
            weight = np.ones_like(flux)
            scale = rng.normal(2.0, 0.3, m).astype(np.float32)
            emb.embed_arrays(survey, flux[:8], weight[:8], scale[:8])       # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                emb.embed_arrays(survey, flux, weight, scale)
                times.append(time.perf_counter() - t)
            dt = float(np.median(times))
            row[survey] = {"spectra": m, "seconds": round(dt, 3),
                           "seconds_per_pass": [round(x, 3) for x in times],
                           "spectra_per_s": round(m / dt, 1)}
        out[size] = row
        log.info("encoder %s: %s", size, row)
    return out


def astropy_floor(files: list[str]) -> dict[str, Any]:
    """The reader floor: astropy opens each file and touches every HDU's data, nothing else."""
    from astropy.io import fits

    t = time.perf_counter()
    for f in files:
        with fits.open(f, memmap=False) as hdul:
            for hdu in hdul:
                _ = hdu.data
    dt = time.perf_counter() - t
    return {"files": len(files), "seconds": round(dt, 3), "files_per_s": round(len(files) / dt, 1)}


class _Timed:
    """Proxy that adds up the seconds spent in some methods of the wrapped object, to split
    the indexer's time into reading, embedding, store writes and the rest."""

    def __init__(self, inner: Any, methods: tuple[str, ...]):
        self._inner, self._methods, self.seconds = inner, methods, 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._methods:
            return attr

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


def _untrained_small(embedder_cls: Any) -> Any:
    import torch

    from engine.bundle import Bundle
    from engine.models.config import config_from_dict
    from engine.models.specclip import SpecClipModel

    path = CONFIGS / "small.json"
    cfg = config_from_dict(json.loads(path.read_text()))
    torch.manual_seed(0)
    return embedder_cls(Bundle(path=path, config=cfg, model=SpecClipModel(cfg).eval(),
                               version="bench-untrained-small"))


def _embedder(embedder_cls: Any) -> tuple[Any, str]:
    """The shipped bundle; without one, the same small architecture with untrained weights
    (speed depends on the architecture, not on the weights' values)."""
    try:
        return embedder_cls(), "shipped bundle"
    except Exception as e:            # noqa: BLE001 - no shipped bundle yet: say so in the JSON
        log.warning("no shipped bundle (%s): timing the untrained small architecture", e)
        return _untrained_small(embedder_cls), f"untrained small architecture ({type(e).__name__})"


def encode_one(embedder: Any, records: list) -> dict[str, Any]:
    """Latency of embedding one spectrum (preprocessing + model), as a query by file does."""
    from benchmarks.common import percentiles_ms, time_each

    times, _ = time_each(lambda i: embedder.embed([records[i % len(records)]]), len(records))
    return percentiles_ms(times)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the reader processes)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _index_once(files: list[str], embedder: Any, read_workers: int) -> dict[str, Any]:
    """One `files -> store` run through the real indexer into a fresh store, with the
    indexer process's own time split into its parts (reading happens in the reader
    process when `read_workers` > 0, so it shows up here only as waiting)."""
    import indexer.sync as sync_module
    from engine.store import open_store
    from indexer.sources import Source
    from indexer.sync import Syncer

    with tempfile.TemporaryDirectory(prefix="specclip-index-bench-") as tmp:
        src = Path(tmp) / "files"
        src.mkdir()
        for f in files:               # a folder holding exactly these files
            os.symlink(os.path.abspath(f), src / Path(f).name)
        store = _Timed(open_store(path=Path(tmp) / "store"), ("upsert", "retrieve"))
        finish = _Timed(store._inner, ("optimize", "flush", "publish", "scroll"))
        admin = _Timed(finish, ("create_collection", "set_alias", "resolve", "list_collections"))
        store._inner = admin
        timed_embedder = _Timed(embedder, ("embed",))
        timed_sync = _Timed(sync_module, ("score_collection",))
        cpu0 = _cpu_seconds()
        t = time.perf_counter()
        with mock.patch("indexer.sync.score_collection", timed_sync.score_collection):
            report = Syncer(store=store, embedder=timed_embedder, read_workers=read_workers,
                            state_path=str(Path(tmp) / "state.json")).run([Source(str(src))])
        dt = time.perf_counter() - t
        cpu = _cpu_seconds() - cpu0
        finish._inner.close()      # the real store under the timing proxies
    return {"read_workers": read_workers, "added": report.added,
            "cpu_seconds_indexer_and_readers": round(cpu, 3),
            "refused": len(report.refused), "seconds": round(dt, 3),
            "files_per_s": round(len(files) / dt, 1),
            "seconds_embedding": round(timed_embedder.seconds, 3),
            "seconds_anomaly_scoring": round(timed_sync.seconds, 3),
            "seconds_upsert_retrieve": round(store.seconds, 3),
            "seconds_scroll_optimize_publish": round(finish.seconds, 3),
            "seconds_create_alias": round(admin.seconds, 3)}


def _beside_the_floor(files: list[str], embedder: Any, read_workers: int) -> dict[str, Any]:
    """An astropy floor run, then an indexer run right after it, and their ratio."""
    floor = astropy_floor(files)["files_per_s"]
    run = _index_once(files, embedder, read_workers)
    run["floor_files_per_s"] = floor
    run["over_floor"] = round(run["files_per_s"] / floor, 3)
    return run


def indexing_throughput(folder: str, limit: int | None = None, repeats: int = 5
                        ) -> dict[str, Any]:
    """`files -> store` through the real indexer (reader process, preprocessing, the shipped
    bundle's embedder, stable ids, upsert, scoring, optimize, publish) on the files of
    `folder`, beside the astropy-only read floor of the same files.

    This machine's speed drifts by tens of percent from minute to minute (a shared VM), so
    floor and indexer run alternately `repeats` times and the ratio is the median of the
    per-pair ratios. Once each, the same indexer reading in a thread of its own process (the
    previous design, `read_workers=0`) and with one reader process run beside them as
    baselines (each after its own floor run)."""
    files = sorted(str(p) for p in Path(folder).iterdir() if ".fits" in p.name)[:limit]
    if not files:
        return {"skipped": f"no FITS files in {folder}"}
    from engine import readers
    from engine.inference import Embedder
    from indexer.reading import default_read_workers

    out: dict[str, Any] = {"folder": folder, "files": len(files), "repeats": repeats}
    t = time.perf_counter()
    records, refused = readers.read_many(files)
    dt = time.perf_counter() - t
    out["readers"] = {"records": len(records), "refused": len(refused),
                      "seconds": round(dt, 3), "files_per_s": round(len(files) / dt, 1)}
    embedder, out["embedder"] = _embedder(Embedder)
    out["encode_one"] = encode_one(embedder, records[:40])
    del records
    workers = default_read_workers()
    runs = []
    for i in range(repeats):
        runs.append(_beside_the_floor(files, embedder, workers))
        log.info("indexing run %d/%d: %s", i + 1, repeats, runs[-1])
    baselines = {name: _beside_the_floor(files, embedder, w)
                 for name, w in (("thread_reader", 0), ("one_reader_process", 1))
                 if w != workers}
    for name, run in baselines.items():
        log.info("indexing baseline (%s): %s", name, run)
    out["runs"] = runs
    out["baselines"] = baselines
    out["astropy_floor"] = {"files_per_s": float(np.median([r["floor_files_per_s"]
                                                            for r in runs]))}
    out["indexer"] = {"read_workers": workers,
                      "files_per_s": float(np.median([r["files_per_s"] for r in runs]))}
    out["indexer_over_floor"] = float(np.median([r["over_floor"] for r in runs]))
    out["baseline_over_floor"] = baselines["thread_reader"]["over_floor"]
    out["readers_over_floor"] = round(out["readers"]["files_per_s"]
                                      / out["astropy_floor"]["files_per_s"], 3)
    return out
