"""Symmetric InfoNCE (CLIP) loss with an optionally learnable temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps 1/T at 100 so the loss cannot blow up


class ClipLoss(nn.Module):
    """Loss between two batches of L2-normalised embeddings whose rows i are true pairs.

    loss = (CE(logits, arange) + CE(logits.T, arange)) / 2, logits = exp(logit_scale) a @ b.T.
    The logit scale is stored as a log; when learnable it is a Parameter and the loss uses it,
    so it receives a gradient (tests check this: AstroCLIP's counter-example did not).
    """

    def __init__(self, logit_scale_init: float = math.log(1 / 0.07), learnable: bool = True):
        super().__init__()
        value = torch.tensor(float(logit_scale_init))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, a: torch.Tensor, b: torch.Tensor, soft: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Returns {"loss", "acc_a2b", "acc_b2a"} (accuracies are detached).

        `soft` [B, B] (optional, rows and columns >= 0, diagonal largest): target weights for
        pairs that are near-duplicates of the true one (label-matched pairs: another star of
        the batch with nearly the same labels is not a real negative). Rows are normalised
        for a->b and columns for b->a; None = the identity (CLIP's hard targets).
        """
        logits = self.scale() * a @ b.T
        target = torch.arange(a.shape[0], device=a.device)
        if soft is None:
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        else:
            t_ab = soft / soft.sum(1, keepdim=True)
            t_ba = (soft / soft.sum(0, keepdim=True)).T
            loss = 0.5 * (F.cross_entropy(logits, t_ab) + F.cross_entropy(logits.T, t_ba))
        with torch.no_grad():
            acc_ab = (logits.argmax(dim=1) == target).float().mean()
            acc_ba = (logits.argmax(dim=0) == target).float().mean()
        return {"loss": loss, "acc_a2b": acc_ab, "acc_b2a": acc_ba}
