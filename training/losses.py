"""The training objective: `training_forward(model, batch) -> (losses, report)` for every
stage (open_clip style: named loss terms whose sum is minimised, plus floats to log).

Terms, to check against SpecCLIP (arXiv 2507.01939):
- pretraining, LAMOST: masked-patch modelling, MSE on the masked patches only
  (`LamostEncoder.pretrain_loss`); XP: autoencoder reconstruction (`XpEncoder.pretrain_loss`);
- alignment: symmetric InfoNCE between the L2-normalised shared parts of paired embeddings
  with a learnable temperature (`ClipLoss`); own-spectrum reconstruction from shared + private
  and cross-instrument translation from the shared part only (`SpectrumDecoder.loss`),
  weighted by `align.recon_weight` and `align.translation_weight`;
- heads: Gaussian negative log likelihood of each finite label (`ParameterHead.nll`).
Additions of this project: soft CLIP targets from label distance (label-matched pairs make
near-duplicates in a batch) and reconstruction on unpaired spectra of both surveys.
"""

from __future__ import annotations

from dataclasses import dataclass

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
            "translation": translation.detach(), "acc": acc, "clip_term": clip["loss"],
            "recon_term": recon, "translation_term": translation}


@dataclass
class StageBatch:
    """One optimisation step's inputs. `stage` is "pretrain", "head" or "align".

    pretrain: survey, inputs (flux, weight, scale), generator.
    head: survey, labels, and either inputs (run through the head's encoder) or features.
    align: h_lamost, h_xp (projection inputs of paired rows), lamost and xp (flux, weight)
    targets, optional soft targets and unpaired rows (see `align_losses`).
    """

    stage: str
    survey: str | None = None
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    labels: torch.Tensor | None = None
    features: torch.Tensor | None = None
    generator: torch.Generator | None = None
    h_lamost: torch.Tensor | None = None
    h_xp: torch.Tensor | None = None
    lamost: tuple[torch.Tensor, torch.Tensor] | None = None
    xp: tuple[torch.Tensor, torch.Tensor] | None = None
    soft: torch.Tensor | None = None
    unpaired: tuple | None = None


def training_forward(model: SpecClipModel, batch: StageBatch
                     ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(losses, report): the weighted terms to sum and minimise, and floats to log (every
    term, the total as "loss", and the CLIP retrieval accuracy in the batch for align)."""
    if batch.stage == "pretrain":
        name = "masked_patch" if batch.survey == SURVEY_LAMOST else "reconstruction"
        losses = {name: model.pretrain_loss(batch.survey, *batch.inputs,
                                            generator=batch.generator)}
        extra: dict[str, float] = {}
    elif batch.stage == "head":
        feats = (batch.features if batch.features is not None
                 else model.head_features(batch.survey, *batch.inputs))
        losses = {"gaussian_nll": model.heads[batch.survey].nll(feats, batch.labels)}
        extra = {}
    elif batch.stage == "align":
        parts = align_losses(model, batch.h_lamost, batch.h_xp, batch.lamost, batch.xp,
                             soft=batch.soft, unpaired=batch.unpaired)
        w = model.cfg.align
        losses = {"clip": parts["clip_term"], "recon": w.recon_weight * parts["recon_term"],
                  "translation": w.translation_weight * parts["translation_term"]}
        extra = {"acc": float(parts["acc"])}
    else:
        raise ValueError(f"unknown training stage {batch.stage!r}")
    report = {k: float(v.detach()) for k, v in losses.items()}
    report["loss"] = sum(report.values())
    return losses, {**report, **extra}
