"""How cross-instrument neighbours are ranked: the shared CLIP space proposes, the model's
predicted parameters decide.

The shared space alone ranks a LAMOST star's Gaia XP look-alikes worse than the model's own
predicted (Teff, logg, [Fe/H]) do (`specclip evaluate`, `cross_retrieval`): the two
instruments meet in it only through ~16% of XP stars that were ever a label-matched
partner. So a cross-instrument search takes the `candidates` nearest points of the other
instrument in the shared space and orders them by

    distance = sqrt(|mu_q - mu_c|^2 + sigma_weight |sigma_c|^2) + cosine_weight * (1 - cosine)

in a standardised label space (log10 Teff in units of 0.01 dex, logg and [Fe/H] in units of
0.1 dex: `label_space`). The first term is the expected distance between the query's
predicted labels mu_q and a candidate whose labels are uncertain by sigma_c (the query's own
sigma adds the same amount to every candidate, so it is left out): a candidate whose
parameters the model is unsure of counts as farther away, which keeps noisy spectra from
crowding the list (`sigma_weight` 1; 0 leaves it out, for a direction where the hits'
sigmas mislead more than they help). The second keeps spectral resemblance as a tie-breaker.
Candidates without predicted parameters go last, in shared-space order.

`candidates`, `cosine_weight` and `sigma_weight` are chosen on the validation split for each
direction (`python -m training.cross_rank_fit`): towards Gaia XP, LAMOST validation stars
searched among the XP train + validation stars (the file's top-level settings); towards LAMOST
(`to_lamost`), Gaia XP validation stars searched among the labelled LAMOST train + validation
spectra. The two differ because the two sides' predicted parameters and sigmas do. A file
without `to_lamost` (written before it) applies its one setting both ways, and a file without
`sigma_weight` means 1. The file is not part of the bundle's version id: it changes no
stored vector.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CROSS_RANK_FILE = "cross_rank.json"
TO_LAMOST = "to_lamost"   # cross_rank.json key: the settings of searches for LAMOST hits
LABELS = ("teff", "logg", "feh")
UNITS = (0.01, 0.1, 0.1)   # label-space units: dex of Teff, dex of logg, dex of [Fe/H]


@dataclass(frozen=True)
class CrossRank:
    # the defaults serve a bundle without cross_rank.json (the choice of the first bundle
    # that had one); a bundle's own file says what validation chose for it
    candidates: int = 500         # shared-space neighbours re-ranked
    cosine_weight: float = 10.0   # label-space units per unit of (1 - cosine)
    sigma_weight: float = 1.0     # weight of the candidates' own sigmas (0: left out)

    def __post_init__(self) -> None:
        weights = (self.cosine_weight, self.sigma_weight)
        if self.candidates < 1 or not all(np.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"invalid cross-rank settings {self}")


def label_space(teff, logg, feh) -> np.ndarray:
    """[N, 3] standardised (log10 Teff, logg, [Fe/H]); NaN where a label is missing."""
    teff = np.asarray(teff, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lt = np.where(teff > 0, np.log10(np.where(teff > 0, teff, 1.0)), np.nan)
    return np.stack([lt / UNITS[0], np.asarray(logg, np.float64) / UNITS[1],
                     np.asarray(feh, np.float64) / UNITS[2]], axis=-1)


def sigma_space(teff, teff_sigma, logg_sigma, feh_sigma) -> np.ndarray:
    """[N, 3] label sigmas in the units of `label_space` (Teff's as d log10 T = dT / (T ln 10))."""
    teff = np.asarray(teff, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        st = np.asarray(teff_sigma, np.float64) / (teff * np.log(10.0))
    return np.stack([st / UNITS[0], np.asarray(logg_sigma, np.float64) / UNITS[1],
                     np.asarray(feh_sigma, np.float64) / UNITS[2]], axis=-1)


def distances(query: np.ndarray, cand: np.ndarray, cand_sigma: np.ndarray,
              cosine: np.ndarray, cosine_weight: float, sigma_weight: float = 1.0
              ) -> np.ndarray:
    """The ranking distance of each candidate (module docstring); inf where the query or the
    candidate lacks predicted labels. A missing sigma counts as zero."""
    d2 = ((np.asarray(query, np.float64)[None, :] - cand) ** 2).sum(axis=1)
    s2 = np.nan_to_num(np.asarray(cand_sigma, np.float64) ** 2, nan=0.0).sum(axis=1)
    out = np.sqrt(d2 + sigma_weight * s2) + cosine_weight * (1.0 - np.asarray(cosine, np.float64))
    return np.where(np.isfinite(out), out, np.inf)


def order(query: np.ndarray, cand: np.ndarray, cand_sigma: np.ndarray, cosine: np.ndarray,
          cosine_weight: float, sigma_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the candidates in ranking order, their distances). Ties and candidates
    without labels keep their shared-space order (stable sort; the input is in that order)."""
    d = distances(query, cand, cand_sigma, cosine, cosine_weight, sigma_weight)
    idx = np.argsort(d, kind="stable")
    return idx, d[idx]


def load_cross_rank(bundle_dir: str | Path | None, target: str = "gaia_xp") -> CrossRank:
    """The bundle's settings for searches whose hits are `target`'s spectra ("gaia_xp" or
    "lamost"), or the defaults above when it has no cross_rank.json."""
    from engine.bundle import DEFAULT_BUNDLE

    if target not in ("gaia_xp", "lamost"):
        raise ValueError(f"cross-instrument ranking targets gaia_xp or lamost, not {target!r}")
    path = Path(bundle_dir or DEFAULT_BUNDLE) / CROSS_RANK_FILE
    if not path.exists():
        return CrossRank()
    data = json.loads(path.read_text())
    if target == "lamost" and TO_LAMOST in data:
        data = data[TO_LAMOST]
    return CrossRank(candidates=int(data["candidates"]),
                     cosine_weight=float(data["cosine_weight"]),
                     sigma_weight=float(data.get("sigma_weight", 1.0)))  # older files: 1


def save_cross_rank(bundle_dir: str | Path, settings: CrossRank, report: dict,
                    to_lamost: CrossRank | None = None) -> Path:
    """Write `settings` (towards Gaia XP, and towards LAMOST unless `to_lamost` is given)."""
    path = Path(bundle_dir) / CROSS_RANK_FILE
    extra = {TO_LAMOST: asdict(to_lamost)} if to_lamost is not None else {}
    path.write_text(json.dumps({**asdict(settings), **extra, **report}, indent=2) + "\n")
    return path
