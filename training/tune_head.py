"""Choose one survey's encoder / head settings on its validation split: for each variant,
pretrain that survey's encoder and fit its head exactly as `specclip train` does (same stage
functions, same seed), then score the head's predictions on that survey's validation split
(robust sigma per label). The test split is not read. Variants run in parallel processes, one
torch thread each.

    python -m training.tune_head --survey gaia_xp --config small \
        --variant base --variant "train.heads_xp_steps=18000" \
        --variant "heads.hidden=[256,256]" --seeds 0 1 --jobs 2 --out tune_xp.json

For LAMOST the score is that of one run's head alone: a bundle averages
`heads.lamost_members` runs or LAMOST paths (per label with `heads.lamost_runs_labels`)
and stacks logg and [Fe/H] (training/ensemble_fit.py,
training/stacking_fit.py), so a variant's gain here is an upper bound on the bundle's.

A variant is `name=value;name=value` with dotted config field names and JSON values.
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch

from engine.models.config import ModelConfig
from engine.models.specclip import SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import data as D
from training import metrics as M
from training.config import load_config
from training.train import (LAMOST_LABELS, XP_LABELS, fit_head, head_predictions, pretrain,
                            seed_everything, stage_rng)

log = logging.getLogger(__name__)
_DATA: dict = {}   # {survey: (train, validation)}, loaded once before the workers fork
STAGE_NAMES = {SURVEY_XP: "xp", SURVEY_LAMOST: "lamost"}
SPLITS = {SURVEY_XP: "XP validation (crc32(apogee_id) % 10 == 1)",
          SURVEY_LAMOST: "LAMOST validation (crc32(obsid) % 10 == 1; the real pairs in no split)"}


def apply_variant(cfg: ModelConfig, variant: str) -> ModelConfig:
    """`cfg` with the variant's `section.field=json;...` overrides (nested dataclasses)."""
    if variant in ("", "base"):
        return cfg
    for part in variant.split(";"):
        name, _, raw = part.partition("=")
        if not raw:
            raise ValueError(f"variant part {part!r} is not name=value")
        path, value = name.strip().split("."), json.loads(raw)
        objs = [cfg]
        for p in path[:-1]:
            objs.append(getattr(objs[-1], p))
        if not hasattr(objs[-1], path[-1]):
            raise ValueError(f"variant {variant!r}: the config has no field {name!r}")
        if isinstance(getattr(objs[-1], path[-1]), tuple):
            value = tuple(value)
        new = dc.replace(objs[-1], **{path[-1]: value})
        for obj, p in zip(reversed(objs[:-1]), reversed(path[:-1]), strict=True):
            new = dc.replace(obj, **{p: new})
        cfg = new
    return cfg


def run_variant(args: tuple[ModelConfig, str, int, str]) -> dict:
    base, variant, seed, survey = args
    torch.set_num_threads(1)
    cfg = apply_variant(base, variant)
    cfg = dc.replace(cfg, train=dc.replace(cfg.train, seed=seed))
    s, val = _DATA[survey]
    t = cfg.train
    stage = STAGE_NAMES[survey]      # the stage names specclip train seeds its draws with
    if survey == SURVEY_XP:
        steps, pre_steps, batch, ema = t.heads_xp_steps, t.pretrain_xp_steps, t.xp_batch_size, \
            t.heads_xp_ema
    else:
        steps, pre_steps, batch, ema = t.heads_lamost_steps, t.pretrain_lamost_steps, \
            t.batch_size, 0.0       # specclip train fits the LAMOST head without an average
    t0 = time.time()
    seed_everything(seed)
    model = SpecClipModel(cfg)
    model.set_scale_norm(survey, torch.from_numpy(s.scale))
    pretrain(model, survey, s, pre_steps, batch, stage_rng(seed, f"pretrain_{stage}"))
    fit = fit_head(model, survey, s, val, steps, batch, stage_rng(seed, f"heads_{stage}"),
                   ema=ema)
    value, _ = head_predictions(model, survey, val)
    scores = {n: round(M.robust_sigma(value[:, i] - val.labels[:, i]), 4)
              for i, n in enumerate(model.heads[survey].labels)}
    out = {"variant": variant, "seed": seed, "validation_robust_sigma": scores,
           "best_step": fit["best_step"], "seconds": round(time.time() - t0, 1)}
    log.info("%s", out)
    return out


def summarise(results: list[dict]) -> dict[str, dict[str, float]]:
    """Mean validation robust sigma per variant over its seeds."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r["validation_robust_sigma"])
    return {v: {k: round(float(np.mean([s[k] for s in ss])), 4) for k in ss[0]}
            for v, ss in by.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--survey", choices=(SURVEY_XP, SURVEY_LAMOST), default=SURVEY_XP,
                    help="whose encoder and head to fit and score")
    ap.add_argument("--config", default="small")
    ap.add_argument("--variant", action="append", default=None,
                    help="config overrides name=json;... ('base' = the config as it is)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = load_config(args.config)
    variants = args.variant or ["base"]
    for v in variants:            # refuse a bad override before minutes of data loading
        apply_variant(base, v)
    root = D.default_data_root()
    if args.survey == SURVEY_XP:
        _DATA[SURVEY_XP] = (D.load_xp("train", XP_LABELS, base.train.max_xp_train,
                                      base.train.seed, root),
                            D.load_xp("val", XP_LABELS, data_root=root))
    else:      # the same rows as specclip train's (labelled or not, the real pairs excluded)
        lamost, lamost_val, _ = D.load_lamost_split(root, LAMOST_LABELS)
        _DATA[SURVEY_LAMOST] = (lamost, lamost_val)
    jobs = [(base, v, s, args.survey) for v in variants for s in args.seeds]
    with mp.get_context("fork").Pool(max(1, args.jobs)) as pool:
        results = pool.map(run_variant, jobs, chunksize=1)
    report = {"config": args.config, "survey": args.survey, "split": SPLITS[args.survey],
              "runs": results, "mean_over_seeds": summarise(results)}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["mean_over_seeds"], indent=2))
    return report


if __name__ == "__main__":
    main()
