"""The whole SpecCLIP model: two encoders, split projections, decoders, CLIP loss and heads.

One nn.Module so that one state dict (one safetensors file) holds everything and the config
rebuilds it. Every method takes model inputs (flux, weight, scale) as produced by
engine.preprocess; the raw log10 flux scale is standardised here with buffers fitted on the
training data, so inference needs nothing but the bundle.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from engine.grids import LAMOST_MODEL_N_PIXELS, XP_N_SAMPLES
from engine.models.clip import ClipLoss
from engine.models.config import ModelConfig
from engine.models.decoders import SpectrumDecoder
from engine.models.ensemble import LamostEnsemble, LamostMember
from engine.models.heads import ParameterHead
from engine.models.lamost_encoder import LamostEncoder
from engine.models.projection import SplitProjection
from engine.models.stacking import LinearStack
from engine.models.xp_encoder import XpEncoder
from engine.models.xp_params import XpParamsEnsemble, XpParamsPath
from engine.records import SURVEY_LAMOST, SURVEY_XP

LAMOST_LABELS = ("teff", "logg", "feh", "rv")  # rv: km/s, LASP c z
COMMON_LABELS = ("teff", "logg", "feh")          # labels both instruments predict
XP_LABELS = ("teff", "logg", "feh", "alpha_m")
N_PIXELS = {SURVEY_LAMOST: LAMOST_MODEL_N_PIXELS, SURVEY_XP: XP_N_SAMPLES}
OTHER = {SURVEY_LAMOST: SURVEY_XP, SURVEY_XP: SURVEY_LAMOST}


class SpecClipModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        a = cfg.align
        self.encoders = nn.ModuleDict({SURVEY_LAMOST: LamostEncoder(cfg.lamost),
                                       SURVEY_XP: XpEncoder(cfg.xp, XP_N_SAMPLES)})
        dims = {s: e.out_dim for s, e in self.encoders.items()}
        self.proj = nn.ModuleDict({s: SplitProjection(dims[s], a.proj_hidden, a.shared_dim,
                                                      a.private_dim) for s in dims})
        self.recon = nn.ModuleDict({s: SpectrumDecoder(a.shared_dim + a.private_dim,
                                                       a.decoder_hidden, N_PIXELS[s], s)
                                    for s in dims})
        # translate[s] maps survey s's shared embedding to the OTHER survey's spectrum
        self.translate = nn.ModuleDict({s: SpectrumDecoder(a.shared_dim, a.decoder_hidden,
                                                           N_PIXELS[OTHER[s]], OTHER[s])
                                        for s in dims})
        self.clip = ClipLoss(a.logit_scale_init, a.learnable_logit_scale)
        h = cfg.heads
        labels = {SURVEY_LAMOST: LAMOST_LABELS, SURVEY_XP: XP_LABELS}
        self.heads = nn.ModuleDict({s: ParameterHead(dims[s], h.hidden, labels[s], h.log_teff,
                                                     h.min_sigma) for s in dims})
        # optional linear stack refining some LAMOST labels (config heads.stack_labels)
        self.stack = (LinearStack(N_PIXELS[SURVEY_LAMOST], h.stack_components, LAMOST_LABELS,
                                  tuple(h.stack_labels)) if h.stack_labels else None)
        if a.features == "finetuned" and not h.finetune_encoder:
            raise ValueError("align.features='finetuned' needs heads.finetune_encoder=true")
        if h.finetune_encoder:  # heads read their own fine-tuned copy of each encoder
            self.head_encoders = nn.ModuleDict({SURVEY_LAMOST: LamostEncoder(cfg.lamost),
                                                SURVEY_XP: XpEncoder(cfg.xp, XP_N_SAMPLES)})
        else:
            self.head_encoders = None
        self.lamost_ensemble = None
        own_paths = h.lamost_params_steps > 0   # the main run's path not among the paths
        if h.lamost_members > 1 or own_paths:
            if not h.finetune_encoder:
                raise ValueError("heads.lamost_members > 1 and heads.lamost_params_steps > 0 "
                                 "need heads.finetune_encoder=true")
            unknown = sorted(set(h.lamost_runs_labels) - set(LAMOST_LABELS))
            if unknown:
                raise ValueError(f"heads.lamost_runs_labels: not LAMOST labels: {unknown}")
            runs = h.lamost_members - 1 if (h.lamost_runs_labels or not own_paths) else 0
            paths = h.lamost_members if own_paths else 0
            # drawn from a forked generator: the main run's initial weights and every later
            # draw stay those of a single run (its members' weights are loaded, not drawn)
            with torch.random.fork_rng(devices=[]):
                members = [LamostMember(
                    LamostEncoder(cfg.lamost),
                    ParameterHead(dims[SURVEY_LAMOST], h.hidden, LAMOST_LABELS, h.log_teff,
                                  h.min_sigma),
                    LinearStack(N_PIXELS[SURVEY_LAMOST], h.stack_components, LAMOST_LABELS,
                                tuple(h.stack_labels)) if h.stack_labels else None)
                    for _ in range(runs + paths)]
            mask = None
            if own_paths and h.lamost_runs_labels:   # runs (main first), then the paths
                from_runs = torch.tensor([lab in h.lamost_runs_labels for lab in LAMOST_LABELS])
                mask = torch.cat([from_runs.expand(runs + 1, -1),
                                  (~from_runs).expand(paths, -1)]).float()
            self.lamost_ensemble = LamostEnsemble(
                members, LAMOST_LABELS, include_main=not own_paths or bool(h.lamost_runs_labels),
                label_mask=mask)
        self.xp_params = None
        if h.xp_params_hidden:   # forked generator too: the main run's draws stay its own
            wide = replace(cfg.xp, mlp=replace(cfg.xp.mlp, hidden=tuple(h.xp_params_hidden)))
            with torch.random.fork_rng(devices=[]):
                paths = []
                for _ in range(h.xp_params_members):
                    enc = XpEncoder(wide, XP_N_SAMPLES)
                    paths.append(XpParamsPath(enc, ParameterHead(
                        enc.out_dim, h.hidden, XP_LABELS, h.log_teff, h.min_sigma)))
            # one path keeps the module layout bundles before heads.xp_params_members had
            self.xp_params = (paths[0] if len(paths) == 1
                              else XpParamsEnsemble(paths, XP_LABELS))
        for s in dims:
            self.register_buffer(f"scale_mean_{s}", torch.zeros(()))
            self.register_buffer(f"scale_std_{s}", torch.ones(()))

    # ---- inputs -------------------------------------------------------------------------
    def set_scale_norm(self, survey: str, scale: torch.Tensor) -> None:
        getattr(self, f"scale_mean_{survey}").fill_(float(scale.mean()))
        getattr(self, f"scale_std_{survey}").fill_(float(scale.std().clamp_min(1e-3)))

    def _scale(self, survey: str, scale: torch.Tensor) -> torch.Tensor:
        mean, std = getattr(self, f"scale_mean_{survey}"), getattr(self, f"scale_std_{survey}")
        return (scale - mean) / std

    # ---- embeddings ---------------------------------------------------------------------
    def encode(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
               scale: torch.Tensor) -> torch.Tensor:
        """Instrument ("own") embedding [B, out_dim]."""
        return self.encoders[survey](flux, weight, self._scale(survey, scale))

    def pretrain_loss(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
                      scale: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encoders[survey].pretrain_loss(flux, weight, self._scale(survey, scale),
                                                   generator)

    def align_features(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
                       scale: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """What the split projection reads (config align.features)."""
        if self.cfg.align.features == "finetuned":
            if self.head_encoders is None:
                raise ValueError("align.features='finetuned' needs heads.finetune_encoder=true")
            return self.head_encoders[survey](flux, weight, self._scale(survey, scale))
        if self.cfg.align.features != "pretrained":
            raise ValueError(f"unknown align.features {self.cfg.align.features!r}")
        return h if h is not None else self.encode(survey, flux, weight, scale)

    def align_encoders(self) -> nn.ModuleDict:
        """The encoders whose output the projections read."""
        if self.cfg.align.features == "finetuned" and self.head_encoders is not None:
            return self.head_encoders
        return self.encoders

    def split(self, survey: str, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(shared L2-normalised, private)."""
        return self.proj[survey](h)

    def reconstruct(self, survey: str, shared: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
        """Own spectrum from shared + private, in model-input units."""
        return self.recon[survey].spectrum(torch.cat([shared, private], dim=1))

    def translated(self, survey: str, shared: torch.Tensor) -> torch.Tensor:
        """The other instrument's spectrum from the shared part only."""
        return self.translate[survey].spectrum(shared)

    # ---- parameters ---------------------------------------------------------------------
    def head_features(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
                      scale: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """What the head reads: its fine-tuned encoder copy, or the (frozen) own embedding."""
        if self.head_encoders is not None:
            return self.head_encoders[survey](flux, weight, self._scale(survey, scale))
        return h if h is not None else self.encode(survey, flux, weight, scale)

    def predict_params(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
                       scale: torch.Tensor, h: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.params_from(survey, flux, weight, scale,
                                self.head_features(survey, flux, weight, scale, h))

    def params_from(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
                    scale: torch.Tensor, feats: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value, sigma) in physical units from the head's features: the head, the LAMOST
        stack, then the LAMOST ensemble's per-label average over runs and / or paths when the
        config has one; XP parameters from the XP path of their own (or the average of
        heads.xp_params_members such paths) when the config has one."""
        if survey == SURVEY_XP and self.xp_params is not None:
            return self.xp_params(flux, weight, self._scale(survey, scale))
        ens = self.lamost_ensemble if survey == SURVEY_LAMOST else None
        if ens is not None and not ens.include_main:   # the main run's head is not read
            value = sigma = torch.empty(0)
        else:
            value, sigma = self.refine(survey, flux, weight,
                                       *self.heads[survey].predict(feats))
        if ens is not None:
            value, sigma = ens(flux, weight, self._scale(survey, scale), value, sigma)
        return value, sigma

    def refine(self, survey: str, flux: torch.Tensor, weight: torch.Tensor,
               value: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's (value, sigma) through the LAMOST stack, when the config has one."""
        if survey != SURVEY_LAMOST or self.stack is None:
            return value, sigma
        return self.stack(flux, weight, value, sigma)
