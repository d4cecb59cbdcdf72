"""The scoring reference: what "typical" and "inside the training data" mean, fitted from data.

A separate bundle artefact (`reference.safetensors` + `reference.json` in the bundle folder,
written by `specclip fit-reference`, see training/reference_fit.py). It does not change any
vector, so it is not part of the bundle's version id; it records the version it was fitted
for and is refused with any other bundle. Per survey it holds:

- `shared` [R, D]: shared-space vectors of labelled *training* stars (the data the parameter
  heads learnt from);
- `tau2` [R, B]: each of those stars' squared reconstruction residual per wavelength bin,
  less its own noise: the model's error for that kind of star;
- `templates` [T, L] (LAMOST): stellar templates for the redshift evidence
  (engine/redshift.py);
- quantiles of each score over a *validation* set (the model's validation split, stars the
  network never trained on; never the test split), so a score becomes a percentile without
  a pass over the store, and the OOD threshold (the validation 99th percentile of the OOD
  score below) comes from data, not from a constant tuned to one bundle.

Scores (`score_spectra`):
- `recon_chi2`: reduced chi^2 of the reconstruction residual per pixel, each pixel's
  variance = the spectrum's own noise + the model error of its 20 nearest reference stars in
  the shared space (its look-alikes). A cool star is compared with cool stars, a noisy
  spectrum with its noise. Catches emission lines, blends, flat or inverted spectra.
- `recon_peak`: the largest single term of that chi^2 (one bin's squared residual in units
  of its own noise + its look-alikes' model error at that bin). A cosmic-ray spike or a
  dead segment is a few bins out of hundreds, diluted in the mean; their worst bin is not.
  Pure noise gives the largest of `bins` chi^2_1 draws at any SNR (median 9.5 for XP's 343
  samples, 12 for LAMOST's 1,462 pixels), so noise is not oddity here either.
- `features_z`: are the features the model expects (reconstruction - continuum) there, at
  the strength expected? The residual projected on them, in units of its own noise + model
  error: ~N(0, 1) for a star its model fits whatever its SNR, large when the expected lines
  are missing or elsewhere (a redshifted galaxy read as a star). Noise does not raise it.
- `ood_distance`: cosine distance to the k-th nearest reference star;
- `ood_score`: Fisher's combination -sum(log p) of the p-values (among validation stars) of
  independent ways a spectrum can lie outside what the model learnt (`OOD_SIGNALS`): far
  from the training stars in the shared space; unsure of its parameters (the least certain
  sigma, Bonferroni over the parameters); a reconstruction residual beyond its look-alikes'
  (chi^2) or features stronger or weaker than the model makes (features_z, two-sided);
  a predicted Teff at either edge of the validation stars' (two-sided); for LAMOST, a
  stellar-template match at a galaxy's redshift (engine/redshift.py). `ood` when above the
  validation 99th percentile of that score (target false-positive rate 1 %; the rate on
  held-out validation stars is measured by cross-fitting, reference.json `ood_fpr_crossfit`).
  Validation = the model's own validation split (crc32(id) % 10 == 1), stars the network
  never trained on, like the spectra a user indexes.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from engine.errors import BundleError
from engine.records import SURVEY_LAMOST, SURVEY_XP

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.safetensors"
REFERENCE_META = "reference.json"
# Bin widths (model pixels) for the residual. One pixel: wider bins were tried on the DR7 plate
# (4-128 px) and found fewer of its galaxies; a spike or a narrow emission line needs pixels.
BINS = {SURVEY_LAMOST: 1, SURVEY_XP: 1}
LOOKALIKES = 20
OOD_K = 10
OOD_QUANTILE = 0.99
# spectra whose non-stellar pipeline class says the stellar parameters do not apply
NON_STELLAR = ("GALAXY", "QSO", "Unknown")
# OOD signals: name -> tail whose p-value counts ("upper" or "two-sided")
OOD_SIGNALS = {"ood_distance": "upper", "recon_chi2": "upper", "features_z": "two-sided",
               "log_pred_teff": "two-sided", "redshift_evidence": "upper"}


def bin_residual(resid: np.ndarray, sigma: np.ndarray, weight: np.ndarray, width: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean residual and the variance of that mean per bin of `width` pixels; NaN for bins
    with fewer than half their pixels usable."""
    n, length = resid.shape
    m = length // width * width
    good = (np.asarray(weight) > 0) & np.isfinite(sigma) & np.isfinite(resid)
    r = np.where(good, resid, 0.0)[:, :m].reshape(n, -1, width)
    s2 = np.where(good, np.asarray(sigma, float) ** 2, 0.0)[:, :m].reshape(n, -1, width)
    cnt = good[:, :m].reshape(n, -1, width).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = r.sum(axis=2) / cnt
        var = s2.sum(axis=2) / cnt ** 2
    keep = cnt >= width / 2
    return np.where(keep, mean, np.nan), np.where(keep, var, np.nan)


def cosine_knn(query: np.ndarray, ref: np.ndarray, k: int, exclude_self: bool = False,
               chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(indices [N, k], cosine distances [N, k]) of the k nearest rows of `ref` (unit vectors)."""
    k = min(k, len(ref) - int(exclude_self))
    idx = np.empty((len(query), k), np.int64)
    dist = np.empty((len(query), k))
    for start in range(0, len(query), chunk):
        sims = query[start:start + chunk] @ ref.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, start + rows] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(-sims, part, 1).argsort(axis=1)
        top = np.take_along_axis(part, order, 1)
        idx[start:start + chunk] = top
        dist[start:start + chunk] = 1.0 - np.take_along_axis(sims, top, 1)
    return idx, dist


def percentile_from_quantiles(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Percentile (0..1) of each value within a reference distribution given by its sorted
    quantiles. Above the largest quantile the percentile keeps rising towards 1 (1 - tail
    share * max / value), so the strongest outliers stay ordered instead of tying at 1."""
    q = np.asarray(quantiles, float)
    v = np.asarray(values, float)
    levels = np.linspace(0.0, 1.0, len(q))
    tail = 1.0 / len(q)
    out = np.interp(v, q, levels) * (1 - tail)
    above = v > q[-1]
    if q[-1] > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(above, 1.0 - tail * q[-1] / v, out)
    return np.where(np.isfinite(v), out, np.nan)


def continuum_level(survey: str, recon: np.ndarray) -> np.ndarray:
    """What "no features" means for a reconstruction: 1 for continuum-normalised LAMOST; for
    XP (a smooth SED normalised at 550 nm) the reconstruction smoothed over ~60 nm."""
    if survey == SURVEY_LAMOST:
        return np.ones_like(recon)
    box = np.ones(31) / 31
    pad = np.pad(recon, ((0, 0), (15, 15)), mode="edge")
    return np.stack([np.convolve(r, box, "valid") for r in pad])


def signal_pvalue(values: np.ndarray, quantiles: np.ndarray, tail: str, n: int
                  ) -> np.ndarray:
    """p-value of each value within a validation distribution of `n` stars, at least
    1 / (n + 1) (beyond the largest of n stars is all n of them can say: a conformal
    p-value); NaN (no such signal for this spectrum) counts as typical (p = 1)."""
    pct = percentile_from_quantiles(np.asarray(values, float), quantiles)
    p = 1.0 - pct if tail == "upper" else 2.0 * np.minimum(pct, 1.0 - pct)
    return np.clip(np.nan_to_num(p, nan=1.0), 1.0 / (n + 1), 1.0)


def ood_pvalues(quantiles: dict[str, np.ndarray], signals: dict[str, np.ndarray],
                sigmas: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per OOD signal present in both `signals` and `quantiles` (fitted on `n` validation
    stars), its p-value; "sigma": the smallest p of the parameters' sigmas times their
    number (Bonferroni)."""
    out = {name: signal_pvalue(signals[name], quantiles[name], tail, n)
           for name, tail in OOD_SIGNALS.items() if name in signals and name in quantiles}
    ps = [signal_pvalue(v, quantiles[f"sigma_{k}"], "upper", n) for k, v in sigmas.items()
          if f"sigma_{k}" in quantiles]
    if ps:
        out["sigma"] = np.minimum(1.0, np.min(ps, axis=0) * len(ps))
    return out


def ood_score(quantiles: dict[str, np.ndarray], signals: dict[str, np.ndarray],
              sigmas: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Fisher's -sum(log p) over the OOD signals (see the module docstring)."""
    ps = ood_pvalues(quantiles, signals, sigmas, n)
    n = len(next(iter(signals.values())))
    return -np.sum([np.log(p) for p in ps.values()], axis=0) if ps else np.zeros(n)


def ood_signals(distance: np.ndarray, chi2: np.ndarray, features_z: np.ndarray,
                params: dict[str, np.ndarray], redshift: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    out = {"ood_distance": distance, "recon_chi2": chi2, "features_z": features_z}
    if "teff" in params:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["log_pred_teff"] = np.log10(np.asarray(params["teff"], float))
    if redshift is not None:
        out["redshift_evidence"] = redshift
    return out


def lof_from_distances(own_kth: np.ndarray, neighbours_kth: np.ndarray) -> np.ndarray:
    """Local isolation: a point's distance to its k-th neighbour over the median of the same
    distance for its k neighbours (~1 inside any cluster, dense or sparse; large for a point
    off on its own). Relative to look-alikes, so a sparse region (cool stars) is not odd."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(own_kth, float) / np.maximum(np.median(neighbours_kth, axis=1), 1e-9)


@dataclass(frozen=True)
class SurveyReference:
    survey: str
    shared: np.ndarray            # [R, D] unit vectors of reference (training) stars
    tau2: np.ndarray              # [R, B] model error per bin of those stars
    quantiles: dict[str, np.ndarray]   # score name -> sorted validation quantiles
    ood_threshold: float
    templates: np.ndarray | None = None   # [T, L] stellar templates (engine/redshift.py)
    n_validation: int = 1000      # stars the quantiles were fitted on

    def recon_scores(self, shared: np.ndarray, recon: np.ndarray, flux: np.ndarray,
                     sigma: np.ndarray, weight: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(recon_chi2, features_z, recon_peak) against own noise + the look-alikes' model
        error; recon_peak is the largest single-bin term of recon_chi2."""
        mean, var = bin_residual(recon - flux, sigma, weight, BINS[self.survey])
        feat, _ = bin_residual(recon - continuum_level(self.survey, recon), sigma, weight,
                               BINS[self.survey])
        nn, _ = cosine_knn(np.asarray(shared, np.float32), self.shared, LOOKALIKES)
        total = var + np.median(self.tau2[nn].astype(np.float64), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # a spectrum without uncertainties has no finite bin: its chi2 is NaN (typical,
            # see ood_score), which nanmean would also announce as a RuntimeWarning
            warnings.simplefilter("ignore", RuntimeWarning)
            z2 = mean ** 2 / total
            z2 = np.where(np.isfinite(z2), z2, np.nan)
            chi2 = np.nanmean(z2, axis=1)
            peak = np.nanmax(np.where(np.isfinite(z2).any(axis=1, keepdims=True), z2, 0.0),
                             axis=1)
            proj = np.nansum(np.where(np.isfinite(total), feat * mean / total, 0.0), axis=1)
            norm = np.nansum(np.where(np.isfinite(total), feat ** 2 / total, 0.0), axis=1)
            z = proj / np.sqrt(norm)
        return chi2, np.where(norm > 0, z, np.nan), np.where(np.isfinite(chi2), peak, np.nan)

    def ood_distance(self, shared: np.ndarray) -> np.ndarray:
        _, dist = cosine_knn(np.asarray(shared, np.float32), self.shared, OOD_K)
        return dist[:, -1]

    def redshift_evidence(self, flux: np.ndarray, sigma: np.ndarray, weight: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray] | None:
        """(evidence, z) against this reference's stellar templates; None without them."""
        if self.templates is None:
            return None
        from engine.redshift import redshift_evidence

        return redshift_evidence(flux, sigma, weight, self.templates)

    def ood_score(self, signals: dict[str, np.ndarray], sigmas: dict[str, np.ndarray]
                  ) -> np.ndarray:
        """See the module docstring; NaN signals and sigmas (no head) count as typical."""
        return ood_score(self.quantiles, signals, sigmas, self.n_validation)

    def percentile(self, name: str, values: np.ndarray) -> np.ndarray:
        if name not in self.quantiles:
            raise KeyError(f"the reference has no distribution for {name!r}")
        return percentile_from_quantiles(values, self.quantiles[name])


@dataclass(frozen=True)
class Reference:
    bundle_version: str
    surveys: dict[str, SurveyReference]
    meta: dict

    def get(self, survey: str) -> SurveyReference | None:
        return self.surveys.get(survey)


def save_reference(folder: str | Path, ref: Reference) -> None:
    folder = Path(folder)
    tensors, meta = {}, {"bundle_version": ref.bundle_version, **ref.meta, "surveys": {}}
    for s, r in ref.surveys.items():
        tensors[f"{s}.shared"] = np.ascontiguousarray(r.shared, np.float32)
        # float16: a model-error variance needs two digits, not seven (halves the file)
        tensors[f"{s}.tau2"] = np.ascontiguousarray(np.minimum(r.tau2, 6e4), np.float16)
        if r.templates is not None:
            tensors[f"{s}.templates"] = np.ascontiguousarray(r.templates, np.float32)
        meta["surveys"][s] = {"ood_threshold": r.ood_threshold, "n_reference": len(r.shared),
                              "n_validation": r.n_validation,
                              "quantiles": {k: [float(x) for x in v]
                                            for k, v in r.quantiles.items()},
                              **ref.meta.get("per_survey", {}).get(s, {})}
    save_file(tensors, str(folder / REFERENCE_FILE))
    # quantile lists on one line each: thousands of numbers, not thousands of lines
    (folder / REFERENCE_META).write_text(json.dumps(meta, sort_keys=True) + "\n")


def load_reference(folder: str | Path, bundle_version: str | None = None) -> Reference | None:
    """The reference in `folder`, None when there is none. A reference fitted for another
    bundle version is refused (BundleError): its thresholds would describe other vectors."""
    folder = Path(folder)
    if not (folder / REFERENCE_FILE).exists() or not (folder / REFERENCE_META).exists():
        return None
    try:
        meta = json.loads((folder / REFERENCE_META).read_text())
        tensors = load_file(str(folder / REFERENCE_FILE))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{folder / REFERENCE_META}: unreadable reference ({exc})") from exc
    fitted = meta.get("bundle_version")
    if bundle_version is not None and fitted != bundle_version:
        raise BundleError(f"{folder}: the scoring reference was fitted for bundle {fitted}, "
                          f"not {bundle_version}: re-run `specclip fit-reference --bundle "
                          f"{folder}`")
    surveys = {}
    for s, m in meta.get("surveys", {}).items():
        surveys[s] = SurveyReference(s, tensors[f"{s}.shared"], tensors[f"{s}.tau2"],
                                     {k: np.asarray(v, float) for k, v in m["quantiles"].items()},
                                     float(m["ood_threshold"]), tensors.get(f"{s}.templates"),
                                     int(m.get("n_validation", 1000)))
    return Reference(str(fitted), surveys, {k: v for k, v in meta.items() if k != "surveys"})
