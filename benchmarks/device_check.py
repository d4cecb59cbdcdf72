"""Embedding on a CUDA GPU against the CPU, in one run: agreement on real spectra and
throughput, with the CPU as the baseline beside it.

    python -m benchmarks.device_check prepare var/device_inputs.npz   # here: real inputs
    python -m benchmarks.device_check run var/device_inputs.npz --out DIR   # on the GPU

`prepare` writes preprocessed model inputs of real spectra (LAMOST validation + train and XP
validation rows of the training data; no test-split rows) so that the check needs neither
../shared/data nor astropy where it runs. `run` embeds them on the CPU and on the GPU and
reports the largest differences (embeddings, parameters, reconstruction error, RV) and how
often the 10 nearest neighbours within the set agree; then it times `Embedder.embed_arrays` on
synthetic inputs of the right shape: the CPU with all its cores at the default batch size, the
GPU at several batch sizes, and for LAMOST also without the RV template fit (numpy, CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.records import SURVEY_LAMOST, SURVEY_XP

log = logging.getLogger(__name__)
LENGTH = {SURVEY_LAMOST: 1462, SURVEY_XP: 343}


def prepare(out: Path, n_lamost: int = 400, n_xp: int = 3000) -> None:
    from training import data as D
    from training.train import LAMOST_LABELS, XP_LABELS

    train, val, _ = D.load_lamost_split(D.default_data_root(), LAMOST_LABELS)
    lam = D.concat_sets([val, train])
    xp = D.load_xp("val", XP_LABELS)
    arrays = {}
    for name, s, n in ((SURVEY_LAMOST, lam, n_lamost), (SURVEY_XP, xp, n_xp)):
        rows = np.arange(min(n, len(s)))
        for k in ("flux", "weight", "scale"):
            arrays[f"{name}_{k}"] = np.asarray(getattr(s, k)[rows], np.float32)
    np.savez_compressed(out, **arrays)
    log.info("wrote %s (%d LAMOST, %d XP spectra)", out, len(arrays["lamost_flux"]),
             len(arrays["xp_flux"]))


def top10(x: np.ndarray) -> np.ndarray:
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :10]


def agreement(cpu: Embedder, gpu: Embedder, survey: str, flux, weight, scale) -> dict:
    a = cpu.embed_arrays(survey, flux, weight, scale)
    b = gpu.embed_arrays(survey, flux, weight, scale)
    out = {"n": len(flux)}
    for k in ("shared", "own", "translated"):
        out[f"max_abs_diff_{k}"] = float(np.abs(getattr(a, k) - getattr(b, k)).max())
    out["max_rel_diff_recon_error"] = float(
        np.nanmax(np.abs(a.recon_error - b.recon_error) / np.abs(a.recon_error)))
    out["params_max_abs_diff"] = {n: float(np.nanmax(np.abs(a.params[n] - b.params[n])))
                                  for n in a.params}
    out["params_median_sigma"] = {n: float(np.nanmedian(a.sigmas[n])) for n in a.sigmas}
    na, nb = top10(a.shared), top10(b.shared)
    out["top10_shared_overlap"] = float(np.mean([len(set(p) & set(q)) / 10
                                                 for p, q in zip(na, nb, strict=True)]))
    return out


def rate(embedder: Embedder, survey: str, n: int, repeats: int = 2) -> float:
    rng = np.random.default_rng(0)
    flux = (1 + 0.05 * rng.standard_normal((n, LENGTH[survey]))).astype(np.float32)
    weight, scale = np.ones_like(flux), np.zeros(n, np.float32)
    embedder.embed_arrays(survey, flux[:64], weight[:64], scale[:64])     # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        embedder.embed_arrays(survey, flux, weight, scale)   # ends in .cpu(): synchronised
        best = min(best, time.perf_counter() - t0)
    return round(n / best, 1)


def throughput(cpu: Embedder, gpu: Embedder, n_cpu: int, n_gpu: int,
               batches: list[int]) -> dict:
    out: dict = {"cpu": {"threads": torch.get_num_threads(), "batch": cpu.batch_size,
                         "n": n_cpu}, "gpu": {"n": n_gpu}}
    for survey in (SURVEY_LAMOST, SURVEY_XP):
        out["cpu"][survey] = rate(cpu, survey, n_cpu)
        out["gpu"][survey] = {}
        for b in batches:
            gpu.batch_size = b
            out["gpu"][survey][f"batch_{b}"] = rate(gpu, survey, n_gpu)
            log.info("gpu %s batch %d: %s/s", survey, b, out["gpu"][survey][f"batch_{b}"])
    rv, gpu.bundle.rv = gpu.bundle.rv, None        # the networks alone, without the RV fit
    out["gpu"]["lamost_without_rv_fit"] = {}
    for b in batches:
        gpu.batch_size = b
        out["gpu"]["lamost_without_rv_fit"][f"batch_{b}"] = rate(gpu, SURVEY_LAMOST, n_gpu)
    gpu.bundle.rv = rv
    out["gpu"]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def run(inputs: Path, out_dir: Path, n_cpu: int, n_gpu: int, batches: list[int]) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    cpu = Embedder(load_bundle(None))
    gpu = Embedder(load_bundle(None), device="cuda")
    z = np.load(inputs, allow_pickle=False)
    report = {
        "machine": {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(),
                    "cpu": platform.processor() or platform.machine(),
                    "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                    "tf32_cudnn": torch.backends.cudnn.allow_tf32},
        "bundle": cpu.version,
        "agreement": {s: agreement(cpu, gpu, s, z[f"{s}_flux"], z[f"{s}_weight"],
                                   z[f"{s}_scale"]) for s in (SURVEY_LAMOST, SURVEY_XP)},
    }
    log.info("agreement: %s", report["agreement"])
    report["throughput_spectra_per_s"] = throughput(cpu, gpu, n_cpu, n_gpu, batches)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "device_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("inputs")
    r.add_argument("--out", default=".")
    r.add_argument("--n-cpu", type=int, default=4096)
    r.add_argument("--n-gpu", type=int, default=65536)
    r.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.cmd == "prepare":
        prepare(Path(args.out))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("device_check run needs a CUDA GPU (torch sees none)")
        run(Path(args.inputs), Path(args.out), args.n_cpu, args.n_gpu, args.batches)


if __name__ == "__main__":
    main()
