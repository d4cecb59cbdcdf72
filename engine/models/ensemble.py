"""LAMOST parameters averaged over independently trained runs (config heads.lamost_members).

With ~1,500 labelled LAMOST training spectra, two training runs that differ only in their seed
disagree by a good part of their error (validation Teff 107-121 K between seeds). Averaging K
runs removes that part. Each extra run is a *member*: its fine-tuned LAMOST encoder copy, its
LAMOST head and its linear stack, nothing else (the shared space, decoders and XP side stay
those of the main run, so the embeddings do not change; the cross-instrument ranking, which
reads the predicted parameters, does). The members' weights live in
this module's buffers and parameters, so they travel in weights.safetensors and change the
version id.

With config heads.lamost_params_steps > 0 the main run's path is left out: the LAMOST
parameters are then the average of K paths trained for that purpose alone (seeds seed, seed +
1, ...; `include_main` False), while the main run's own path, which the alignment reads,
keeps the schedule that gives the shared space its outlier and OOD behaviour.

With heads.lamost_runs_labels as well, the bundle holds both groups: the main run and
K - 1 more whole runs, and the K paths of their own. Each label is averaged over one group
(`label_mask`, built from the config, not stored): the listed labels over the runs, the
others over the paths, because on LAMOST validation the longer paths helped Teff and logg
and not [Fe/H] (training/ensemble_fit.py's CHOSEN_ON_GROUPS).

Combination per label: the mean of the K values of its group; sigma^2 = mean of the K
sigma^2 (each run's own, recalibrated, error) + the variance of the K values (their
disagreement), then recalibrated on validation with a `training/sigma_calibration.py`
recipe (scale, floor, power), because the K errors are correlated and the sum over-states them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.models.heads import ParameterHead
from engine.models.lamost_encoder import LamostEncoder
from engine.models.stacking import LinearStack


def combine_paths(values: torch.Tensor, sigmas: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, B, L] values and sigmas -> the mean and the uncalibrated combined sigma [B, L]:
    sigma^2 = mean own sigma^2 + variance of the values; with `mask` [K, L], each label over
    the paths whose mask is 1."""
    if mask is None:
        mean = values.mean(0)
        return mean, ((sigmas ** 2).mean(0) + values.var(0, unbiased=False)).sqrt()
    w = mask[:, None, :].to(values.dtype)                      # [K, 1, L]
    n = w.sum(0)
    # a path's value for a label outside its group is not read, not even as 0 x NaN
    values = torch.where(w > 0, values, 0.0)
    sigmas = torch.where(w > 0, sigmas, 0.0)
    mean = values.sum(0) / n
    var = (sigmas ** 2).sum(0) / n + (w * (values - mean) ** 2).sum(0) / n
    return mean, var.sqrt()


def recalibrate(sigma: torch.Tensor, scale: torch.Tensor, floor: torch.Tensor,
                power: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A training/sigma_calibration.py recipe: sqrt((scale sigma (sigma / ref)^power)^2 +
    floor^2), per label."""
    s = sigma * (sigma / ref) ** power
    return torch.sqrt((s * scale) ** 2 + floor ** 2)


class LamostMember(nn.Module):
    """One extra run's LAMOST parameter path: encoder copy -> head -> stack."""

    def __init__(self, encoder: LamostEncoder, head: ParameterHead, stack: LinearStack | None):
        super().__init__()
        self.encoder, self.head, self.stack = encoder, head, stack

    def forward(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value, sigma) [B, labels]; `scale` already standardised by the main model."""
        value, sigma = self.head.predict(self.encoder(flux, weight, scale))
        return self.stack(flux, weight, value, sigma) if self.stack is not None else (value,
                                                                                        sigma)


class LamostEnsemble(nn.Module):
    """The (value, sigma) of `members`, with the main run's first when `include_main`.
    `label_mask` [paths, labels] (main run's row first when included): 1 where a path counts
    for a label; None: every path counts for every label."""

    def __init__(self, members: list[LamostMember], labels: tuple[str, ...],
                 include_main: bool = True, label_mask: torch.Tensor | None = None):
        super().__init__()
        if not members and not include_main:
            raise ValueError("an ensemble without the main run needs at least one member")
        self.labels = tuple(labels)
        self.include_main = include_main
        self.members = nn.ModuleList(members)
        n = len(labels)
        if label_mask is not None:
            if label_mask.shape != (len(members) + int(include_main), n):
                raise ValueError(f"label_mask of shape {tuple(label_mask.shape)} for "
                                 f"{len(members) + int(include_main)} paths and {n} labels")
            if bool((label_mask.sum(0) == 0).any()):
                raise ValueError("label_mask: every label needs at least one path")
        # derived from the config, so not stored: bundles without groups load unchanged
        self.register_buffer("label_mask", None if label_mask is None
                             else label_mask.to(torch.float32), persistent=False)
        # the combined sigma's recalibration (training/ensemble_fit.py); defaults: none
        self.register_buffer("sigma_scale", torch.ones(n))
        self.register_buffer("sigma_floor", torch.zeros(n))    # physical units
        self.register_buffer("sigma_power", torch.zeros(n))
        self.register_buffer("sigma_ref", torch.ones(n))       # physical units

    def combine_raw(self, values: torch.Tensor, sigmas: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[K, B, L] values and sigmas -> mean and the uncalibrated combined sigma [B, L],
        each label over its group's paths."""
        return combine_paths(values, sigmas, self.label_mask)

    def calibrate(self, sigma: torch.Tensor) -> torch.Tensor:
        return recalibrate(sigma, self.sigma_scale, self.sigma_floor, self.sigma_power,
                           self.sigma_ref)

    def member_outputs(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                       value: torch.Tensor, sigma: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """[K, B, L] values and sigmas: the main run's first (when included), then each
        member's."""
        outs = ([(value, sigma)] if self.include_main else []) + [m(flux, weight, scale)
                                                                  for m in self.members]
        return torch.stack([v for v, _ in outs]), torch.stack([s for _, s in outs])

    def forward(self, flux: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                value: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.combine_raw(*self.member_outputs(flux, weight, scale, value, sigma))
        return mean, self.calibrate(raw)
