"""Losses of the alignment stage, returned as named parts (open_clip style).

Terms (SpecCLIP, arXiv 2507.01939, sec. 3): symmetric InfoNCE between the shared parts of
paired embeddings (engine/models/clip.py); own-spectrum reconstruction from shared + private;
cross-instrument translation from the shared part only (engine/models/decoders.py).
Additions of this project: soft CLIP targets from label distance (label-matched pairs make
near-duplicates in a batch) and reconstruction on unpaired spectra of both surveys.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.models.specclip import SpecClipModel
from engine.records import SURVEY_LAMOST, SURVEY_XP


def soft_targets(lamost_labels: np.ndarray, xp_labels: np.ndarray, width: float
                 ) -> torch.Tensor:
    """[B, B] weights exp(-d^2 / 2 width^2), d the distance of LAMOST star i and XP star j in
    standardised (log Teff, logg, [Fe/H]) (training.data; [Fe/H] skipped where missing).
    The diagonal (the pair itself) is 1."""
    from training.data import standardised_label_space

    a = standardised_label_space(lamost_labels[:, :3])
    b = standardised_label_space(xp_labels[:, :3])
    diff = a[:, None, :] - b[None, :, :]
    d2 = np.nansum(diff ** 2, axis=2)
    w = np.exp(-d2 / (2.0 * width ** 2))
    np.fill_diagonal(w, 1.0)
    return torch.from_numpy(w.astype(np.float32))


def align_losses(model: SpecClipModel, h_l: torch.Tensor, h_x: torch.Tensor,
                 lamost: tuple[torch.Tensor, torch.Tensor],
                 xp: tuple[torch.Tensor, torch.Tensor], soft: torch.Tensor | None = None,
                 unpaired: tuple | None = None) -> dict[str, torch.Tensor]:
    """CLIP + own reconstruction (shared+private) + translation (shared only).

    `h_l`, `h_x` are encoder embeddings of paired rows; `lamost` and `xp` are the paired
    (flux, weight) targets; `soft` optional CLIP target weights; `unpaired` optional
    (h_lamost, (flux, weight), h_xp, (flux, weight)) of random spectra, reconstruction only.
    Returns {"loss", "clip", "recon", "translation", "acc"}.
    """
    cfg = model.cfg.align
    s_l, p_l = model.split(SURVEY_LAMOST, h_l)
    s_x, p_x = model.split(SURVEY_XP, h_x)
    clip = model.clip(s_l, s_x, soft)
    recon = (model.recon[SURVEY_LAMOST].loss(torch.cat([s_l, p_l], 1), *lamost)
             + model.recon[SURVEY_XP].loss(torch.cat([s_x, p_x], 1), *xp))
    if unpaired is not None:
        uh_l, u_lam, uh_x, u_xp = unpaired
        recon = recon + (model.recon[SURVEY_LAMOST].loss(
            torch.cat(model.split(SURVEY_LAMOST, uh_l), 1), *u_lam)
            + model.recon[SURVEY_XP].loss(torch.cat(model.split(SURVEY_XP, uh_x), 1), *u_xp))
    translation = (model.translate[SURVEY_LAMOST].loss(s_l, *xp)
                   + model.translate[SURVEY_XP].loss(s_x, *lamost))
    loss = clip["loss"] + cfg.recon_weight * recon + cfg.translation_weight * translation
    acc = 0.5 * (clip["acc_a2b"] + clip["acc_b2a"])
    return {"loss": loss, "clip": clip["loss"].detach(), "recon": recon.detach(),
            "translation": translation.detach(), "acc": acc}
