"""Does the LAMOST stack gain from out-of-fold head predictions? A study by cross-validation
over the labelled *training* rows only: the validation split serves, as in `specclip train`,
only the heads' early stopping, and the test split is not read.

Why: the stack (training/stacking_fit.py) fits its ridge on the head's predictions for the
head's own training rows, which are in-sample, tighter than the head's predictions for new
stars; the ridge leans on them, and the blend chosen on validation corrects for that only in
part. The textbook remedy (stacked generalisation) fits the ridge on out-of-fold predictions.
Measuring that on the 194 labelled validation stars resolves little; 5-fold cross-validation
over the ~1,500 labelled training rows resolves more and spends no validation decision.

    python -m training.stack_cv --out benchmarks/results/stack_cv.json --jobs 2

One LAMOST pretraining (the small config's, seed 0), then heads exactly as `specclip train`
fits them (same steps, batch, augmentation, early stopping on validation), each on the
training rows less some folds: less fold k (5 heads) and less folds k and j (10 heads).
Then for each fold k, scored on its rows with the head that never saw them:
- `head`: that head alone;
- `stack_in_sample`: the stack as shipped, its ridge fitted on head k's own (in-sample)
  predictions for the other folds' rows;
- `stack_out_of_fold`: the ridge fitted on out-of-fold predictions for those rows (row in
  fold j: the head fitted without folds k and j, which saw neither it nor fold k);
- `ridge_pca_only`: the ridge on the PCA coefficients alone.
The PCA (deterministic, full SVD) and the input standardisation are fitted on the other folds'
rows each time. Reported for every (ridge strength, blend) of the stack's grid, and each
variant at its best grid point by the cross-validated robust sigma (the same optimistic
choice for every variant), with paired bootstrap intervals over rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import multiprocessing as mp
import time
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from engine.models.specclip import SpecClipModel
from engine.models.stacking import STACK_INPUTS
from engine.records import SURVEY_LAMOST
from training import data as D
from training import metrics as M
from training.bootstrap import paired_sigma_difference
from training.config import load_config
from training.stacking_fit import ALPHAS, BLENDS, _ridge
from training.train import (LAMOST_LABELS, fit_head, head_predictions, pretrain,
                            seed_everything, stage_rng)

log = logging.getLogger(__name__)
K_FOLDS = 5
LABELS = ("teff", "logg", "feh")
_STATE: dict = {}      # set before the workers fork: the pretrained model and the data


def fold_of(obsid: str) -> int:
    """A fold independent of the splits (which take crc32(obsid) % 5 and % 10 themselves)."""
    return zlib.crc32(f"stack-cv:{obsid}".encode()) % K_FOLDS


def fit_without(excluded: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray, dict]:
    """A head fitted on the labelled training rows outside `excluded` folds; its predictions
    for every training row."""
    torch.set_num_threads(1)
    cfg, model0, train, val, folds = (_STATE[k] for k in ("cfg", "model", "train", "val",
                                                           "folds"))
    t0 = time.time()
    model = copy.deepcopy(model0)
    keep = np.where(~np.isin(folds, excluded))[0]
    seed = cfg.train.seed
    fit = fit_head(model, SURVEY_LAMOST, train.subset(keep), val, cfg.train.heads_lamost_steps,
                   cfg.train.batch_size, stage_rng(seed, "heads_lamost"))
    value, _ = head_predictions(model, SURVEY_LAMOST, train)
    info = {"excluded": list(excluded), "rows": int(len(keep)), "kept_step": fit["best_step"],
            "seconds": round(time.time() - t0, 1)}
    log.info("head without folds %s: %s", excluded, info)
    return excluded, value, info


def _design(x_fit: np.ndarray, x_eval: np.ndarray, head_fit: np.ndarray | None,
            head_eval: np.ndarray | None, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised ridge inputs (head predictions, log10 Teff first, then PCA coefficients)
    of the fitting rows and the scored rows; PCA and standardisation from the fitting rows."""
    from sklearn.decomposition import PCA

    pca = PCA(min(n_components, len(x_fit) - 1, x_fit.shape[1]), svd_solver="full").fit(x_fit)
    zf, ze = pca.transform(x_fit), pca.transform(x_eval)
    if head_fit is not None:
        zf = np.hstack([head_fit, zf])
        ze = np.hstack([head_eval, ze])
    mean, std = zf.mean(0), zf.std(0)
    std = np.where(std > 0, std, 1.0)
    return (zf - mean) / std, (ze - mean) / std


def _head_inputs(value: np.ndarray) -> np.ndarray:
    cols = [LAMOST_LABELS.index(n) for n in STACK_INPUTS]
    out = value[:, cols].astype(np.float64).copy()
    out[:, 0] = np.log10(out[:, 0])
    return out


def analyse(train: D.SpectraSet, folds: np.ndarray, rows: np.ndarray,
            preds: dict[tuple[int, ...], np.ndarray], n_components: int) -> dict:
    """Out-of-fold predictions of every variant and grid point for the labelled rows."""
    x = np.where(train.weight > 0, train.flux - 1.0, 0.0).astype(np.float64)
    truth = train.labels[:, [LAMOST_LABELS.index(n) for n in LABELS]].astype(np.float64)
    oof: dict[str, np.ndarray] = {"head": np.full((len(train), len(LABELS)), np.nan)}
    for k in range(K_FOLDS):
        fit_rows = rows[folds[rows] != k]
        eval_rows = rows[folds[rows] == k]
        own = preds[(k,)]
        oof["head"][eval_rows] = own[eval_rows][:, [LAMOST_LABELS.index(n) for n in LABELS]]
        crossed = np.empty_like(own)
        for j in range(K_FOLDS):
            if j != k:
                in_j = folds == j
                crossed[in_j] = preds[tuple(sorted((k, j)))][in_j]
        designs = {
            "stack_in_sample": _design(x[fit_rows], x[eval_rows], _head_inputs(own[fit_rows]),
                                       _head_inputs(own[eval_rows]), n_components),
            "stack_out_of_fold": _design(x[fit_rows], x[eval_rows],
                                         _head_inputs(crossed[fit_rows]),
                                         _head_inputs(own[eval_rows]), n_components),
            "ridge_pca_only": _design(x[fit_rows], x[eval_rows], None, None, n_components)}
        for name, (zf, ze) in designs.items():
            for li, label in enumerate(LABELS):
                y = truth[fit_rows, li]
                y = np.log10(y) if label == "teff" else y
                head_eval = own[eval_rows, LAMOST_LABELS.index(label)]
                for alpha in ALPHAS:
                    coef, icpt = _ridge(zf, y, alpha)
                    fit = ze @ coef + icpt
                    fit = 10.0 ** fit if label == "teff" else fit
                    for blend in BLENDS:
                        key = f"{name}|alpha={alpha:g},blend={blend:g}"
                        col = oof.setdefault(key, np.full((len(train), len(LABELS)), np.nan))
                        col[eval_rows, li] = blend * fit + (1 - blend) * head_eval
    return {"oof": oof, "truth": truth}


def summarise(oof: dict[str, np.ndarray], truth: np.ndarray, rows: np.ndarray) -> dict:
    res = {name: v[rows] - truth[rows] for name, v in oof.items()}
    grid = {name: {label: round(M.robust_sigma(r[:, i]), 4) for i, label in enumerate(LABELS)}
            for name, r in res.items()}
    best: dict[str, dict] = {}
    for variant in ("stack_in_sample", "stack_out_of_fold", "ridge_pca_only"):
        best[variant] = {}
        for label in LABELS:
            key = min((k for k in grid if k.startswith(variant + "|")),
                      key=lambda k: grid[k][label])
            best[variant][label] = {"setting": key.split("|", 1)[1],
                                    "robust_sigma": grid[key][label], "_key": key}
    best["head"] = {label: {"setting": "", "robust_sigma": grid["head"][label], "_key": "head"}
                    for label in LABELS}
    comparisons = {}
    for a, b in (("stack_out_of_fold", "stack_in_sample"), ("stack_in_sample", "head"),
                 ("stack_out_of_fold", "head"), ("ridge_pca_only", "stack_in_sample")):
        comparisons[f"{a} - {b}"] = {}
        for i, label in enumerate(LABELS):
            ra = res[best[a][label]["_key"]][:, i]
            rb = res[best[b][label]["_key"]][:, i]
            d = paired_sigma_difference(ra, rb)
            comparisons[f"{a} - {b}"][label] = {
                "difference": round(d["difference"], 4),
                "ci95": [round(v, 4) for v in d["ci95"]]}
    for v in best.values():
        for e in v.values():
            e.pop("_key")
    return {"n_rows": int(len(rows)), "grid": grid, "best": best, "comparisons": comparisons}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--head-steps", type=int, default=None,
                    help="override the config's heads_lamost_steps (a quick smoke run)")
    ap.add_argument("--pretrain-steps", type=int, default=None,
                    help="override the config's pretrain_lamost_steps (a quick smoke run)")
    ap.add_argument("--predictions", default=None,
                    help="save every head's training-row predictions here (.npz), or reuse "
                         "them when the file exists")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config)
    import dataclasses as dc

    cfg = dc.replace(cfg, train=dc.replace(
        cfg.train, heads_lamost_steps=args.head_steps or cfg.train.heads_lamost_steps,
        pretrain_lamost_steps=args.pretrain_steps or cfg.train.pretrain_lamost_steps))
    train, val, _ = D.load_lamost_split(D.default_data_root(), LAMOST_LABELS)
    folds = np.array([fold_of(i) for i in train.ids])
    rows = train.labelled(3)
    jobs = [(k,) for k in range(K_FOLDS)] + list(combinations(range(K_FOLDS), 2))
    t0 = time.time()
    cached = Path(args.predictions) if args.predictions else None
    if cached is not None and cached.exists():
        saved = np.load(cached)
        preds = {tuple(int(c) for c in k.split("_")): saved[k] for k in saved.files}
        infos: list[dict] = []
    else:
        seed_everything(cfg.train.seed)
        model = SpecClipModel(cfg)
        model.set_scale_norm(SURVEY_LAMOST, torch.from_numpy(train.scale))
        torch.set_num_threads(1)
        pretrain(model, SURVEY_LAMOST, train, cfg.train.pretrain_lamost_steps,
                 cfg.train.batch_size, stage_rng(cfg.train.seed, "pretrain_lamost"))
        _STATE.update(cfg=cfg, model=model, train=train, val=val, folds=folds)
        with mp.get_context("fork").Pool(max(1, args.jobs)) as pool:
            done = pool.map(fit_without, jobs, chunksize=1)
        preds = {ex: value for ex, value, _ in done}
        infos = [info for _, _, info in done]
        if cached is not None:
            np.savez(cached, **{"_".join(map(str, k)): v for k, v in preds.items()})
    n_comp = cfg.heads.stack_components
    analysed = analyse(train, folds, rows, preds, n_comp)
    report = {
        "what": __doc__.split("\n\n")[0],
        "config": args.config, "heads_lamost_steps": cfg.train.heads_lamost_steps,
        "pretrain_lamost_steps": cfg.train.pretrain_lamost_steps,
        "folds": f"zlib.crc32('stack-cv:' + obsid) % {K_FOLDS} over the labelled LAMOST "
        "training rows (the validation split only stops the heads early, as in "
        "specclip train; the test split is not read)",
        "heads": infos, "seconds": round(time.time() - t0, 1),
        **summarise(analysed["oof"], analysed["truth"], rows)}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("n_rows", "best", "comparisons")}, indent=1))
    return report


if __name__ == "__main__":
    main()
