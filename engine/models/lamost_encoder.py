"""Transformer encoder over overlapping patches of a normalised 1-D spectrum.

SpecCLIP's LAMOST encoder: the continuum-normalised spectrum on the model grid is cut into
patches of 20 px with a stride of 10 (so neighbouring patches overlap by half), each patch is
linearly embedded, a token carrying the spectrum's flux scale (log10 of its continuum level) is
prepended, and pre-LayerNorm blocks mix them. Pretraining is masked-patch modelling: some patch
tokens are replaced by a learned mask token and the model predicts their pixels; the loss
counts masked patches only (the visible ones would be trivially copied).

The same class serves as the XP transformer when `XpEncoderConfig.kind == "transformer"`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.config import TransformerConfig


class Block(nn.Module):
    """Pre-LayerNorm transformer block (LayerNorm before attention and MLP, residual after)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


def n_patches(cfg: TransformerConfig) -> int:
    """Patches needed to cover every pixel (the input is edge-padded to fit)."""
    return max(1, math.ceil((cfg.n_pixels - cfg.patch_size) / cfg.patch_stride) + 1)


def patchify(x: torch.Tensor, cfg: TransformerConfig) -> torch.Tensor:
    """[B, L] -> [B, P, patch_size], padding the red end by repeating the last pixel."""
    need = (n_patches(cfg) - 1) * cfg.patch_stride + cfg.patch_size
    if need > x.shape[1]:
        x = torch.cat([x, x[:, -1:].expand(-1, need - x.shape[1])], dim=1)
    return x.unfold(1, cfg.patch_size, cfg.patch_stride)


class PatchTransformerEncoder(nn.Module):
    """Spectrum -> token states -> pooled embedding, with a masked-patch pretraining head.

    Inputs are `flux` [B, L] (normalised, ~1 on the continuum), `weight` [B, L] (0 where a pixel
    is bad) and `scale` [B] (log10 continuum level, already standardised by the caller).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.n_patches = n_patches(cfg)
        # each patch carries its pixels and their good/bad flags, so bad pixels are not data
        self.patch_embed = nn.Linear(2 * cfg.patch_size, cfg.width)
        self.pos = nn.Parameter(torch.zeros(1, self.n_patches, cfg.width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        if cfg.scale_token:
            self.scale_embed = nn.Linear(1, cfg.width)
            self.scale_pos = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.mpm_head = nn.Linear(cfg.width, cfg.patch_size)  # predicts a masked patch's pixels
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def out_dim(self) -> int:
        return self.cfg.width

    def tokens(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
               patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final token states [B, P(+1), width]; `patch_mask` [B, P] True = hidden patch."""
        good = (weight > 0).to(flux.dtype)
        x = torch.cat([patchify((flux - 1.0) * good, self.cfg), patchify(good, self.cfg)], dim=2)
        h = self.patch_embed(x)
        if patch_mask is not None:
            h = torch.where(patch_mask[..., None], self.mask_token.expand_as(h), h)
        h = h + self.pos
        if self.cfg.scale_token:
            s = self.scale_embed(scale[:, None, None].to(h.dtype)) + self.scale_pos
            h = torch.cat([s, h], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        first = 1 if self.cfg.scale_token else 0
        if self.cfg.pool == "scale" and self.cfg.scale_token:
            return h[:, 0]
        if self.cfg.pool not in ("mean", "scale"):
            raise ValueError(f"unknown pool {self.cfg.pool!r}")
        return h[:, first:].mean(dim=1)

    def forward(self, flux: torch.Tensor, weight: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
        """Embedding [B, width]."""
        return self.pool(self.tokens(flux, weight, scale))

    def random_patch_mask(self, batch: int, generator: torch.Generator | None = None,
                          device: torch.device | None = None) -> torch.Tensor:
        """[B, P] bool with round(mask_ratio * P) hidden patches per spectrum (at least one)."""
        k = max(1, round(self.cfg.mask_ratio * self.n_patches))
        noise = torch.rand(batch, self.n_patches, generator=generator, device=device)
        idx = noise.argsort(dim=1)[:, :k]
        mask = torch.zeros(batch, self.n_patches, dtype=torch.bool, device=device)
        return mask.scatter_(1, idx, True)

    def masked_patch_loss(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                          patch_mask: torch.Tensor) -> torch.Tensor:
        """Weighted MSE of predicted vs true pixels, over masked patches only."""
        h = self.tokens(flux, weight, scale, patch_mask)
        if self.cfg.scale_token:
            h = h[:, 1:]
        pred = self.mpm_head(h)                                   # [B, P, patch]
        target = patchify(flux - 1.0, self.cfg)
        w = patchify(weight, self.cfg) * patch_mask[..., None].to(flux.dtype)
        return ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1e-8)

    def pretrain_loss(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked-patch modelling loss on a fresh random mask."""
        mask = self.random_patch_mask(flux.shape[0], generator, flux.device)
        return self.masked_patch_loss(flux, weight, scale, mask)


# The LAMOST encoder is the patch transformer on the 1462-px model grid.
LamostEncoder = PatchTransformerEncoder
