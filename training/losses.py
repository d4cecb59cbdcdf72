"""Losses of the alignment stage, returned as named parts (open_clip style)."""

from __future__ import annotations

import torch

from engine.models.specclip import SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP


def align_losses(model: SpecClipModel, h_l: torch.Tensor, h_x: torch.Tensor,
                 lamost: tuple[torch.Tensor, torch.Tensor],
                 xp: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP + own reconstruction (shared+private) + translation (shared only).

    `h_l`, `h_x` are encoder embeddings of paired rows; `lamost` and `xp` are the paired
    (flux, weight) targets. Returns {"loss", "clip", "recon", "translation", "acc"}.
    """
    cfg = model.cfg.align
    s_l, p_l = model.split(SURVEY_LAMOST, h_l)
    s_x, p_x = model.split(SURVEY_XP, h_x)
    clip = model.clip(s_l, s_x)
    recon = (model.recon[SURVEY_LAMOST].loss(torch.cat([s_l, p_l], 1), *lamost)
             + model.recon[SURVEY_XP].loss(torch.cat([s_x, p_x], 1), *xp))
    translation = (model.translate[SURVEY_LAMOST].loss(s_l, *xp)
                   + model.translate[SURVEY_XP].loss(s_x, *lamost))
    loss = clip["loss"] + cfg.recon_weight * recon + cfg.translation_weight * translation
    acc = 0.5 * (clip["acc_a2b"] + clip["acc_b2a"])
    return {"loss": loss, "clip": clip["loss"].detach(), "recon": recon.detach(),
            "translation": translation.detach(), "acc": acc}
