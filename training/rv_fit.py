"""Build the bundle's radial-velocity templates (engine/rv.py) from the LAMOST training split
and calibrate their sigma on the validation split. Part of `specclip train`.

1. Every labelled training spectrum with a LASP velocity (rv = c z) is shifted to its rest
   frame on the model grid (cubic interpolation; pixels whose taps touch a masked or
   uncovered pixel stay masked).
2. The stars are grouped by k-means in the standardised label space (log10 Teff / 0.01,
   logg / 0.1, [Fe/H] / 0.1) into `n_templates` groups; each template is the mean of its
   group's rest-frame spectra over their usable pixels (averaging beats down the noise of
   single spectra; LASP's own velocity errors of single stars average out too), its key the
   group's mean label position.
3. On validation the model's predicted labels choose the template (as at inference), the fit's
   sigma is recalibrated: sigma = sqrt((scale * sigma_fit)^2 + floor^2) with the floor and
   scale chosen so that 68.3 % and 95.4 % of validation stars fall within 1 and 2 sigma.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from engine.rv import RvTemplates, label_key, shift_spectrum, velocity_to_pixels
from training.sigma_calibration import fit_scale_floor

log = logging.getLogger(__name__)

N_TEMPLATES = 64
KMEANS_ITERATIONS = 50
MAX_FLOOR_KMS = 15.0        # largest sigma floor tried in the validation calibration


def rest_frame(flux: np.ndarray, weight: np.ndarray, rv: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Spectra [N, L] observed at velocities rv [N] (km/s) moved to their rest frame."""
    return shift_spectrum(flux, weight, -velocity_to_pixels(rv))


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS
           ) -> np.ndarray:
    """Cluster index per point (Lloyd's algorithm from a seeded draw of k distinct points)."""
    k = min(k, len(points))
    centres = points[np.random.default_rng(seed).choice(len(points), k, replace=False)]
    assign = np.zeros(len(points), np.int64)
    for _ in range(iterations):
        d = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
        for c in range(k):
            members = points[assign == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return assign


def build_templates(flux: np.ndarray, weight: np.ndarray, labels: np.ndarray,
                    n_templates: int = N_TEMPLATES, seed: int = 0) -> RvTemplates:
    """Templates from training spectra; `labels` [N, 4] = (Teff, logg, [Fe/H], rv)."""
    ok = np.isfinite(labels[:, :4]).all(axis=1)
    if ok.sum() < n_templates:
        raise ValueError(f"{int(ok.sum())} labelled spectra with a velocity: too few for "
                         f"{n_templates} RV templates")
    rest, rest_w = rest_frame(flux[ok], weight[ok], labels[ok, 3])
    keys = label_key(labels[ok, :3])
    assign = kmeans(keys, n_templates, seed)
    k = int(assign.max()) + 1
    t_flux = np.ones((k, flux.shape[1]))
    t_w = np.zeros((k, flux.shape[1]), np.float32)
    t_keys = np.zeros((k, 3))
    for c in range(k):
        m = assign == c
        wsum = rest_w[m].sum(axis=0)
        t_flux[c] = np.where(wsum > 0, (rest[m] * rest_w[m]).sum(axis=0) / np.maximum(wsum, 1),
                             1.0)
        t_w[c] = (wsum > 0).astype(np.float32)
        t_keys[c] = keys[m].mean(axis=0)
    log.info("RV templates: %d from %d training spectra", k, int(ok.sum()))
    return RvTemplates(t_flux, t_w, t_keys)


def calibrate(t: RvTemplates, flux: np.ndarray, weight: np.ndarray, predicted: np.ndarray,
              rv_true: np.ndarray) -> tuple[RvTemplates, dict]:
    """Fit (scale, floor) on validation; returns the calibrated templates and a report."""
    raw = RvTemplates(t.flux, t.weight, t.keys, 1.0, 0.0)
    rv, sig = raw.measure(flux, weight, predicted)
    ok = np.isfinite(rv) & np.isfinite(sig) & np.isfinite(rv_true)
    d, s = np.abs(rv[ok] - rv_true[ok]), sig[ok]
    scale, floor = fit_scale_floor(d, s, MAX_FLOOR_KMS)
    z = d / np.sqrt((scale * s) ** 2 + floor ** 2)
    report = {"sigma_scale": round(scale, 4), "sigma_floor_kms": round(floor, 2),
              "n_validation": int(ok.sum()),
              "validation_coverage": {f"{n}sigma": round(float(np.mean(z < n)), 4)
                                      for n in (1, 2, 3)}}
    log.info("RV sigma calibration on validation: %s", report)
    return RvTemplates(t.flux, t.weight, t.keys, scale, floor), report


@torch.no_grad()
def fit_rv(model, train, val, n_templates: int, seed: int = 0) -> tuple[RvTemplates, dict]:
    """Templates from the training split, sigma calibrated on the validation split with the
    model's own predicted labels choosing each star's template (as at inference)."""
    templates = build_templates(train.flux, train.weight, train.labels, n_templates, seed)
    rows = np.flatnonzero(np.isfinite(val.labels[:, 3]))
    model.eval()
    value, _ = model.predict_params("lamost", torch.from_numpy(val.flux[rows]),
                                    torch.from_numpy(val.weight[rows]),
                                    torch.from_numpy(val.scale[rows]))
    predicted = value.numpy()[:, :3].astype(np.float64)
    templates, report = calibrate(templates, val.flux[rows], val.weight[rows], predicted,
                                  val.labels[rows, 3])
    rv, _ = templates.measure(val.flux[rows], val.weight[rows], predicted)
    report["n_templates"] = int(len(templates.flux))
    report["validation_robust_sigma_kms"] = round(float(
        1.4826 * np.nanmedian(np.abs(rv - val.labels[rows, 3]
                                     - np.nanmedian(rv - val.labels[rows, 3])))), 3)
    return templates, report
