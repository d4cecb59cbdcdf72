"""Train the XP parameter path (config heads.xp_params_hidden) and add it to a bundle.

`specclip train` with heads.xp_params_hidden trains the main run (and any LAMOST ensemble)
as the config without it, then one XP-only run of the same seed whose XP MLP encoder has
the path's hidden widths: XP pretraining, the XP head with its weight average, the sigma
scale on validation (`training.train.train_xp_path`). Its fine-tuned encoder (without the
autoencoder's decoder) and head are copied into the bundle's `xp_params`
(engine/models/xp_params.py), which then gives the XP parameters. The main run's XP
encoder, head copy and the shared space are untouched. The test split is never read.
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
from engine.models.specclip import XP_LABELS, SpecClipModel
from engine.records import SURVEY_XP
from training import data as D
from training.ensemble_fit import single_run_config
from training.metrics import robust_sigma

log = logging.getLogger(__name__)

# What the path was chosen on (the card prints it under "What was chosen on what").
CHOSEN_ON = (
    "XP parameter path (heads.xp_params_hidden)", "XP MLP widths [2048, 1024] for the XP "
    "parameters: on XP validation (python -m training.tune_head --survey gaia_xp; "
    "benchmarks/results/tune_xp_head.json, tune_xp_wide_ema.json) the widest tried, better "
    "than [512, 256] on every label; kept out of the alignment because a main run with a "
    "wider XP encoder failed the oddity corpus (bundle e0ac0633)")


def xp_path_config(cfg: ModelConfig) -> ModelConfig:
    """The main run's config with the path's XP encoder widths."""
    one = single_run_config(cfg)
    mlp = replace(cfg.xp.mlp, hidden=tuple(cfg.heads.xp_params_hidden))
    return replace(one, name=f"{cfg.name}_xp_path", xp=replace(cfg.xp, mlp=mlp))


@torch.no_grad()
def _xp_values(predict, s: D.SpectraSet, batch: int = 1024) -> np.ndarray:
    out = []
    for i in range(0, len(s.flux), batch):
        f, w = torch.from_numpy(s.flux[i:i + batch]), torch.from_numpy(s.weight[i:i + batch])
        out.append(predict(f, w, torch.from_numpy(s.scale[i:i + batch]))[0].numpy())
    return np.concatenate(out)


def add_xp_path(bundle_dir: str | Path, cfg: ModelConfig, data,
                trained: tuple[SpecClipModel, dict, float]) -> str:
    """Copy the XP path of `cfg`, `trained` by training/run_jobs.py (model, report, wall
    seconds), into the bundle at `bundle_dir` (rewritten in place), scoring it on `data`'s
    XP validation split (training.train.TrainingData); returns the new version id."""
    from training.card import write_card

    path_cfg = xp_path_config(cfg)
    path_model, report, seconds = trained
    out = Path(bundle_dir)
    main = load_bundle(out)
    full = replace(main.config, heads=replace(main.config.heads,
                                              xp_params_hidden=tuple(cfg.heads.xp_params_hidden)))
    model = SpecClipModel(full)
    missing, unexpected = model.load_state_dict(main.model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("xp_params.") for k in missing):
        raise ValueError(f"{out}: its weights do not fit this architecture without an XP path")
    source = (path_model.head_encoders or path_model.encoders)[SURVEY_XP]
    model.xp_params.encoder.load_state_dict(
        {k: v for k, v in source.state_dict().items() if not k.startswith("decoder.")})
    model.xp_params.head.load_state_dict(path_model.heads[SURVEY_XP].state_dict())
    model.eval()
    val = data.xp_val
    main_values = _xp_values(lambda f, w, s: main.model.predict_params(SURVEY_XP, f, w, s), val)
    path_values = _xp_values(lambda f, w, s: model.predict_params(SURVEY_XP, f, w, s), val)
    summary = {"xp_hidden": list(path_cfg.xp.mlp.hidden), "seed": path_cfg.train.seed,
               "kept_step": report["heads_xp"]["best_step"],
               "validation_nll": round(report["heads_xp"]["val_nll"], 4),
               "sigma_scale": report["sigma_scale"], "wall_seconds": round(seconds, 1)}
    for j, name in enumerate(XP_LABELS):
        truth = val.labels[:, j]
        summary[name] = {"validation_robust_sigma_main_run": round(robust_sigma(
                             main_values[:, j] - truth), 4),
                         "validation_robust_sigma_path": round(robust_sigma(
                             path_values[:, j] - truth), 4)}
    log.info("XP parameter path on XP validation: %s", {n: summary[n] for n in XP_LABELS})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "weights.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", config_to_dict(full))
    provenance = {**main.provenance}
    provenance.setdefault("final_losses", {})["xp_params_path"] = summary
    provenance["tuned_on_validation"] = {**(provenance.get("tuned_on_validation") or {}),
                                         CHOSEN_ON[0]: CHOSEN_ON[1]}
    _write_json(out / "provenance.json", provenance)
    _write_json(out / "metrics.json", {})   # metrics of the bundle before are not this model's
    version = restamp_version(out)
    write_card(out)
    log.info("XP parameter path added: bundle %s", version)
    return version
