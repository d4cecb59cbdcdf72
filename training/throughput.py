"""Encoder throughput (spectra/s) per survey on this CPU: `python -m training.throughput`.

Times `Embedder.embed_arrays` (encoders, projections, heads, decoders) on synthetic inputs of
the right shape, for a bundle or for a freshly built config (build-only, e.g. paper).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from engine.bundle import Bundle, load_bundle
from engine.inference import Embedder
from engine.models.specclip import SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP


def measure(embedder: Embedder, n: int = 1024, repeats: int = 2) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    for survey, length in ((SURVEY_LAMOST, 1462), (SURVEY_XP, 343)):
        flux = (1 + 0.05 * rng.standard_normal((n, length))).astype(np.float32)
        weight = np.ones_like(flux)
        scale = np.zeros(n, np.float32)
        embedder.embed_arrays(survey, flux[:8], weight[:8], scale[:8])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            embedder.embed_arrays(survey, flux, weight, scale)
            best = min(best, time.perf_counter() - t0)
        out[survey] = round(n / best, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", default=None)
    p.add_argument("--config", default=None, help="build-only: time an untrained config")
    p.add_argument("-n", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.config:
        from training.config import load_config

        cfg = load_config(args.config)
        bundle = Bundle(None, cfg, SpecClipModel(cfg).eval(), "untrained")
    else:
        bundle = load_bundle(args.bundle)
    print(json.dumps({"spectra_per_s": measure(Embedder(bundle), args.n),
                      "threads": args.threads, "n": args.n}))


if __name__ == "__main__":
    main()
