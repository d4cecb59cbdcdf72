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

Combination per label: the mean of the K values; sigma^2 = mean of the K sigma^2 (each run's
own, recalibrated, error) + the variance of the K values (their disagreement), then
recalibrated on validation with a `training/sigma_calibration.py` recipe (scale, floor,
power), because the K errors are correlated and the sum over-states them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.models.heads import ParameterHead
from engine.models.lamost_encoder import LamostEncoder
from engine.models.stacking import LinearStack


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
    """The (value, sigma) of `members`, with the main run's first when `include_main`."""

    def __init__(self, members: list[LamostMember], labels: tuple[str, ...],
                 include_main: bool = True):
        super().__init__()
        if not members and not include_main:
            raise ValueError("an ensemble without the main run needs at least one member")
        self.labels = tuple(labels)
        self.include_main = include_main
        self.members = nn.ModuleList(members)
        n = len(labels)
        # the combined sigma's recalibration (training/ensemble_fit.py); defaults: none
        self.register_buffer("sigma_scale", torch.ones(n))
        self.register_buffer("sigma_floor", torch.zeros(n))    # physical units
        self.register_buffer("sigma_power", torch.zeros(n))
        self.register_buffer("sigma_ref", torch.ones(n))       # physical units

    def combine_raw(self, values: torch.Tensor, sigmas: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[K, B, L] values and sigmas -> mean and the uncalibrated combined sigma [B, L]."""
        mean = values.mean(0)
        var = (sigmas ** 2).mean(0) + values.var(0, unbiased=False)
        return mean, var.sqrt()

    def calibrate(self, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma * (sigma / self.sigma_ref) ** self.sigma_power
        return torch.sqrt((s * self.sigma_scale) ** 2 + self.sigma_floor ** 2)

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
