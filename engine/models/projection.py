"""Split projection: an encoder embedding -> (shared, private).

SpecCLIP's "split" model: the shared part lives in the CLIP space that both instruments share
(L2-normalised, trained contrastively); the private part keeps what only this instrument sees
(trained only through reconstruction of its own spectrum). Translation to the other instrument
reads the shared part alone, so anything it needs must be common to both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.xp_encoder import mlp


class SplitProjection(nn.Module):
    """MLP from the encoder embedding to `shared_dim + private_dim` numbers."""

    def __init__(self, in_dim: int, hidden: int, shared_dim: int, private_dim: int):
        super().__init__()
        self.shared_dim = shared_dim
        self.private_dim = private_dim
        self.net = mlp([in_dim, hidden, shared_dim + private_dim])
        # LayerNorm keeps the private part on a scale comparable to the unit-norm shared part
        self.private_norm = nn.LayerNorm(private_dim) if private_dim > 0 else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (shared [B, Ds] L2-normalised, private [B, Dp])."""
        out = self.net(h)
        shared = F.normalize(out[:, : self.shared_dim], dim=1)
        private = out[:, self.shared_dim:]
        if self.private_norm is not None:
            private = self.private_norm(private)
        return shared, private
