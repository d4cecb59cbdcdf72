"""Choose alignment options on the validation split: re-run the align stage from a run's
`heads_xp` checkpoint with each option set and measure cross-instrument retrieval of LAMOST
validation stars among the XP train + validation stars (top-10 label scatter). The test
splits are not read.

    python -m training.tune_align CHECKPOINT_DIR [--widths 0 1 2] [--unpaired both]
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine.models.config import config_from_dict
from engine.models.specclip import COMMON_LABELS, SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import data as D
from training import metrics as M
from training.train import align, embed_all, load_training_data, stage_rng

log = logging.getLogger(__name__)


def retrieval_on_validation(model: SpecClipModel, d, k: int = 10) -> dict[str, float]:
    rows = d.lamost_val.labelled(3)
    lam = d.lamost_val.subset(rows)
    pool = D.concat_sets([d.xp, d.xp_val])
    q = model.split(SURVEY_LAMOST, embed_all(model, SURVEY_LAMOST, lam, what="align"))[0]
    p = model.split(SURVEY_XP, embed_all(model, SURVEY_XP, pool, what="align"))[0]
    nn = M.top_k(q.detach().numpy(), p.detach().numpy(), k)
    return {n: M.robust_sigma(lam.labels[:, i][:, None] - pool.labels[nn, i])
            for i, n in enumerate(COMMON_LABELS)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    ap.add_argument("--unpaired", choices=["off", "on", "both"], default="both")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    ckpt = Path(args.checkpoints)
    cfg = config_from_dict(json.loads((ckpt / "config.json").read_text()))
    torch.set_num_threads(max(1, cfg.train.threads))
    d = load_training_data(cfg, D.default_data_root())
    state = load_file(str(ckpt / "heads_xp.safetensors"))
    unpaired = {"off": [False], "on": [True], "both": [False, True]}[args.unpaired]
    results = {}
    for w in args.widths:
        for u in unpaired:
            c = dc.replace(cfg, align=dc.replace(cfg.align, soft_target_width=w,
                                                 unpaired_recon=u))
            model = SpecClipModel(c)
            model.load_state_dict(state)
            align(model, d, stage_rng(c.train.seed, "align"))
            key = f"soft_target_width={w} unpaired_recon={u}"
            results[key] = retrieval_on_validation(model, d)
            log.info("%s: %s", key, results[key])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
