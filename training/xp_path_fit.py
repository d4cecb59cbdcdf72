"""Train the XP parameter path(s) (config heads.xp_params_hidden) and add them to a bundle.

`specclip train` with heads.xp_params_hidden trains the main run (and any LAMOST ensemble)
as the config without it, then one XP-only run of the same seed whose XP MLP encoder has
the path's hidden widths: XP pretraining, the XP head with its weight average, the sigma
scale on validation (`training.train.train_xp_path`). Its fine-tuned encoder (without the
autoencoder's decoder) and head are copied into the bundle's `xp_params`
(engine/models/xp_params.py), which then gives the XP parameters. With
heads.xp_params_members = K > 1 it trains K such runs (seeds seed, seed + 1, ...), and their
combined sigma is recalibrated on XP validation. The main run's XP encoder, head copy and
the shared space are untouched. The test split is never read.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from engine.bundle import _write_json, load_bundle, restamp_version
from engine.models.config import ModelConfig, config_to_dict
from engine.models.ensemble import combine_paths
from engine.models.specclip import XP_LABELS, SpecClipModel
from engine.records import SURVEY_XP
from training import data as D
from training.ensemble_fit import fit_sigma_recipe, single_run_config
from training.metrics import robust_sigma

log = logging.getLogger(__name__)

# What the path was chosen on (the card prints it under "What was chosen on what").
CHOSEN_ON = (
    "XP parameter path (heads.xp_params_hidden)", "XP MLP widths [2048, 1024] for the XP "
    "parameters: on XP validation (python -m training.tune_head --survey gaia_xp; "
    "benchmarks/results/tune_xp_head.json, tune_xp_wide_ema.json) the widest tried, better "
    "than [512, 256] on every label; kept out of the alignment because a main run with a "
    "wider XP encoder failed the oddity corpus (bundle e0ac0633)")


CHOSEN_ON_MEMBERS = (
    "XP parameter paths (heads.xp_params_members)", "the paths' combined sigma recalibration: "
    "the training/sigma_calibration.py recipe of held-out coverage closest to Gaussian over "
    "100 halvings of XP validation. 3 paths were measured on XP validation and not shipped: "
    "69.5 K / 0.179 / 0.106 / 0.036 dex against the seed-0 path's 68.7 / 0.175 / 0.106 / "
    "0.035 (benchmarks/results/xp_params_members_3.json)")


def xp_path_config(cfg: ModelConfig, member: int = 0) -> ModelConfig:
    """XP path `member`'s config: run `member`'s (seed seed + member) with the path's XP
    encoder widths."""
    one = single_run_config(cfg, member)
    mlp = replace(cfg.xp.mlp, hidden=tuple(cfg.heads.xp_params_hidden))
    name = f"{cfg.name}_xp_path" + (str(member) if member else "")
    return replace(one, name=name, xp=replace(cfg.xp, mlp=mlp))


@torch.no_grad()
def _xp_values(predict, s: D.SpectraSet, batch: int = 1024) -> np.ndarray:
    out = []
    for i in range(0, len(s.flux), batch):
        f, w = torch.from_numpy(s.flux[i:i + batch]), torch.from_numpy(s.weight[i:i + batch])
        out.append(predict(f, w, torch.from_numpy(s.scale[i:i + batch]))[0].numpy())
    return np.concatenate(out)


def _path_summary(path_cfg: ModelConfig, report: dict, seconds: float) -> dict:
    return {"xp_hidden": list(path_cfg.xp.mlp.hidden), "seed": path_cfg.train.seed,
            "kept_step": report["heads_xp"]["best_step"],
            "validation_nll": round(report["heads_xp"]["val_nll"], 4),
            "sigma_scale": report["sigma_scale"], "wall_seconds": round(seconds, 1)}


def _fit_ensemble_sigma(model: SpecClipModel, val: D.SpectraSet, summary: dict) -> None:
    """The recalibration of `model`'s combined XP sigma on XP validation, per label (written
    into model.xp_params, an XpParamsEnsemble); per-label figures into `summary`."""
    ens, vals, sigs = model.xp_params, [], []
    with torch.inference_mode():
        for i in range(0, len(val.flux), 1024):
            sc = model._scale(SURVEY_XP, torch.from_numpy(val.scale[i:i + 1024]))
            v, g = ens.path_outputs(torch.from_numpy(val.flux[i:i + 1024]),
                                    torch.from_numpy(val.weight[i:i + 1024]), sc)
            vals.append(v.numpy())
            sigs.append(g.numpy())
    values, sigmas = np.concatenate(vals, 1), np.concatenate(sigs, 1)
    mean, raw = (t.numpy() for t in combine_paths(torch.from_numpy(values),
                                                 torch.from_numpy(sigmas)))
    for j, name in enumerate(XP_LABELS):
        truth = val.labels[:, j]
        summary[name] = {
            "validation_robust_sigma_per_path": [round(robust_sigma(v - truth), 4)
                                                 for v in values[:, :, j]],
            "validation_robust_sigma_ensemble": round(robust_sigma(mean[:, j] - truth), 4),
            **fit_sigma_recipe(ens, j, np.abs(mean[:, j] - truth), raw[:, j])}


def add_xp_path(bundle_dir: str | Path, cfg: ModelConfig, data,
                trained: list[tuple[SpecClipModel, dict, float]]) -> str:
    """Copy the XP paths of `cfg` (heads.xp_params_members of them), `trained` by
    training/run_jobs.py (model, report, wall seconds each, seed order), into the bundle at
    `bundle_dir` (rewritten in place); with several, fit their combined sigma's
    recalibration on `data`'s XP validation split (training.train.TrainingData), on which
    every path is scored too; returns the new version id."""
    from training.card import write_card

    n_paths = cfg.heads.xp_params_members
    if len(trained) != n_paths:
        raise ValueError(f"{len(trained)} trained XP paths for heads.xp_params_members = "
                         f"{n_paths}")
    out = Path(bundle_dir)
    main = load_bundle(out)
    full = replace(main.config, heads=replace(main.config.heads,
                                              xp_params_hidden=tuple(cfg.heads.xp_params_hidden),
                                              xp_params_members=n_paths))
    model = SpecClipModel(full)
    missing, unexpected = model.load_state_dict(main.model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("xp_params.") for k in missing):
        raise ValueError(f"{out}: its weights do not fit this architecture without an XP path")
    slots = [model.xp_params] if n_paths == 1 else list(model.xp_params.paths)
    for slot, (path_model, _, _) in zip(slots, trained, strict=True):
        source = (path_model.head_encoders or path_model.encoders)[SURVEY_XP]
        slot.encoder.load_state_dict(
            {n: v for n, v in source.state_dict().items() if not n.startswith("decoder.")})
        slot.head.load_state_dict(path_model.heads[SURVEY_XP].state_dict())
    model.eval()
    val = data.xp_val
    summary: dict = {"paths": [_path_summary(xp_path_config(cfg, i), report, seconds)
                               for i, (_, report, seconds) in enumerate(trained)]}
    if n_paths > 1:
        _fit_ensemble_sigma(model, val, summary)
    main_values = _xp_values(lambda f, w, s: main.model.predict_params(SURVEY_XP, f, w, s), val)
    values = _xp_values(lambda f, w, s: model.predict_params(SURVEY_XP, f, w, s), val)
    for j, name in enumerate(XP_LABELS):
        truth = val.labels[:, j]
        summary.setdefault(name, {}).update({
            "validation_robust_sigma_main_run": round(robust_sigma(main_values[:, j] - truth), 4),
            "validation_robust_sigma_xp_params": round(robust_sigma(values[:, j] - truth), 4)})
    log.info("XP parameters (%d path%s) on XP validation: %s", n_paths,
             "s" if n_paths > 1 else "",
             {n: summary[n]["validation_robust_sigma_xp_params"] for n in XP_LABELS})
    state = {n: v.detach().contiguous().cpu() for n, v in model.state_dict().items()}
    save_file(state, str(out / "weights.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", config_to_dict(full))
    provenance = {**main.provenance}
    provenance.setdefault("final_losses", {})["xp_params_path"] = summary
    chosen = dict([CHOSEN_ON] + ([CHOSEN_ON_MEMBERS] if n_paths > 1 else []))
    provenance["tuned_on_validation"] = {**(provenance.get("tuned_on_validation") or {}),
                                         **chosen}
    _write_json(out / "provenance.json", provenance)
    _write_json(out / "metrics.json", {})   # metrics of the bundle before are not this model's
    version = restamp_version(out)
    write_card(out)
    log.info("XP parameter path%s added: bundle %s", "s" if n_paths > 1 else "", version)
    return version
