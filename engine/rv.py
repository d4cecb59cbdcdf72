"""Radial velocity of a LAMOST spectrum by a chi-square fit over velocity against rest-frame
templates (the bundle's `rv_templates.safetensors`).

Why not a network head: the encoders learn from spectra shifted by random radial velocities
(training/augment.py), so their embeddings are built to be nearly blind to velocity; a head
on them measured 24.6 km/s robust sigma against LASP on the LAMOST test split. A velocity is
a shift of the lines in log wavelength, which a template fit measures directly.

How:
- The model grid is log-linear (log10 lambda = 3.602 + 1e-4 k, engine/grids.py), so a
  velocity v is a uniform shift of delta = log10(1 + v / c) / 1e-4 pixels (~69 km/s per
  pixel); rv = c z as LASP defines it (1 + z = lambda_obs / lambda_rest).
- Templates: continuum-normalised rest-frame spectra on the model grid, built at training
  time from training-split LAMOST spectra shifted to rest with their LASP z and averaged in
  groups of similar stars (training/rv_fit.py). Each template carries a key in the
  standardised label space (log10 Teff / 0.01, logg / 0.1, [Fe/H] / 0.1); a spectrum is fit
  against the template whose key is nearest to the model's predicted labels.
- Fit: for every velocity of a grid (VELOCITY_STEP km/s over +-MAX_VELOCITY) the shifted
  template (cubic Catmull-Rom interpolation, so sub-pixel shifts do not smooth the lines) is
  fit to the spectrum as a * template + b + c * x (a line-depth scale and a linear continuum
  mismatch) by least squares over the usable pixels (weight > 0; masked pixels take no part).
  Only pixels that every shift of the grid can cover are used, so every velocity is judged
  on the same pixels. A parabola through the chi-square minimum and its neighbours gives the
  velocity and its curvature.
- Sigma: 1 / sqrt(curvature) with the per-pixel noise estimated from the residuals (the
  model inputs carry no inverse variance), then recalibrated on the validation split:
  sigma = sqrt((scale * sigma_fit)^2 + floor^2), the two numbers stored with the templates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.grids import LAMOST_LOG10_STEP

log = logging.getLogger(__name__)

RV_FILE = "rv_templates.safetensors"
C_KMS = 299792.458
MAX_VELOCITY = 1000.0     # km/s searched either side of zero (the label cap of training data)
VELOCITY_STEP = 10.0      # km/s between trial velocities (the chi-square well is ~100+ km/s)
MIN_PIXELS = 200          # fewer usable pixels in the fit: no velocity


def velocity_to_pixels(v: np.ndarray | float) -> np.ndarray:
    """Shift in model-grid pixels of a radial velocity (km/s; rv = c z)."""
    return np.log10(1.0 + np.asarray(v, np.float64) / C_KMS) / LAMOST_LOG10_STEP


def pixels_to_velocity(p: np.ndarray | float) -> np.ndarray:
    return (10.0 ** (np.asarray(p, np.float64) * LAMOST_LOG10_STEP) - 1.0) * C_KMS


def shift_spectrum(flux: np.ndarray, weight: np.ndarray, delta: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """out[..., k] = flux[..., k - delta] by Catmull-Rom cubic interpolation.

    flux, weight: [..., L]; delta: broadcastable to flux[..., 0] (pixels). A pixel is usable
    (weight 1) only when all four interpolation taps are usable and inside the array.
    """
    flux = np.asarray(flux, np.float64)
    n = flux.shape[-1]
    delta = np.asarray(delta, np.float64)[..., None]
    pos = np.arange(n) - delta                       # where each output pixel reads from
    base = np.floor(pos).astype(np.int64)
    t = pos - base
    taps = (-0.5 * t ** 3 + t ** 2 - 0.5 * t,        # Catmull-Rom weights for base-1..base+2
            1.5 * t ** 3 - 2.5 * t ** 2 + 1.0,
            -1.5 * t ** 3 + 2.0 * t ** 2 + 0.5 * t,
            0.5 * t ** 3 - 0.5 * t ** 2)
    out = np.zeros(np.broadcast_shapes(flux.shape, pos.shape))
    ok = np.ones(out.shape, bool)
    good = np.asarray(weight) > 0
    for j, w in enumerate(taps):
        idx = base + j - 1
        inside = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
        out += w * np.take_along_axis(np.broadcast_to(flux, out.shape), idx, axis=-1)
        ok &= inside & np.take_along_axis(np.broadcast_to(good, out.shape), idx, axis=-1)
    return np.where(ok, out, 0.0), ok.astype(np.float32)


def label_key(labels: np.ndarray) -> np.ndarray:
    """Physical (Teff, logg, [Fe/H]) [N, 3] -> (log10 Teff / 0.01, logg / 0.1, [Fe/H] / 0.1),
    one unit ~ a typical label error (the scaling of training/data.py's label space)."""
    labels = np.asarray(labels, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.log10(labels[:, 0]) / 0.01, labels[:, 1] / 0.1,
                         labels[:, 2] / 0.1], 1)


@dataclass(frozen=True)
class RvTemplates:
    """Rest-frame templates [K, L] with their label-space keys and the sigma calibration."""

    flux: np.ndarray          # [K, L] continuum-normalised rest-frame flux on the model grid
    weight: np.ndarray        # [K, L] 1 where the template is known
    keys: np.ndarray          # [K, 3] standardised (log10 Teff/0.01, logg/0.1, [Fe/H]/0.1)
    sigma_scale: float = 1.0  # validation recalibration of the fit's sigma
    sigma_floor: float = 0.0  # km/s added in quadrature (template mismatch, LASP's own error)

    def choose(self, labels: np.ndarray) -> np.ndarray:
        """Template row per spectrum, nearest key to physical (Teff, logg, [Fe/H]) [N, 3];
        a NaN label is left out of the distance."""
        q = label_key(np.asarray(labels, np.float64))
        d = (q[:, None, :] - self.keys[None]) ** 2
        d = np.where(np.isfinite(d), d, 0.0).sum(axis=2)
        return d.argmin(axis=1)

    def measure(self, flux: np.ndarray, weight: np.ndarray, labels: np.ndarray,
                device=None) -> tuple[np.ndarray, np.ndarray]:
        """(rv, sigma) [N] km/s for model-input spectra; NaN where no fit is possible.
        `device`: where the chi-square curves are computed (see `chi2_curve`)."""
        rows = self.choose(labels)
        rv = np.full(len(flux), np.nan)
        sig = np.full(len(flux), np.nan)
        v = velocity_grid()
        for r in np.unique(rows):
            at = np.flatnonzero(rows == r)
            rv[at], s = velocity_from_curve(*chi2_curve(flux[at], weight[at],
                                                        *self._shifted(int(r)), device), v)
            sig[at] = np.sqrt((self.sigma_scale * s) ** 2 + self.sigma_floor ** 2)
        return rv, sig

    def _shifted(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Template `row` at every trial velocity, computed once per template and kept."""
        cache = self.__dict__.setdefault("_cache", {})
        if row not in cache:
            cache[row] = shifted_template(self.flux[row], self.weight[row], velocity_grid())
        return cache[row]

def velocity_grid(max_velocity: float = MAX_VELOCITY, step: float = VELOCITY_STEP
                  ) -> np.ndarray:
    n = int(round(max_velocity / step))
    return np.arange(-n, n + 1) * step


def shifted_template(template: np.ndarray, template_weight: np.ndarray,
                     velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T_v [J, L] the template seen at each trial velocity, usable [L]): the pixels every
    trial velocity covers, inside a margin of the largest shift, so each chi2 value of a
    curve is computed on the same pixels."""
    length = template.shape[-1]
    delta = velocity_to_pixels(velocities)
    margin = int(np.ceil(np.abs(delta).max())) + 2
    shifted, ok = shift_spectrum(np.broadcast_to(template, (len(delta), length)),
                                 np.broadcast_to(template_weight, (len(delta), length)), delta)
    usable = ok.all(axis=0) > 0
    usable[:margin] = usable[length - margin:] = False
    return shifted, usable


def chi2_curve(flux: np.ndarray, weight: np.ndarray, shifted: np.ndarray,
               usable: np.ndarray, device=None) -> tuple[np.ndarray, np.ndarray]:
    """(chi2 [N, J] residual sums of the least-squares fits f = a T_v + b + c x, usable pixel
    count [N]) for spectra [N, L] against one template's shifts [J, L]. `device`: a torch
    CUDA device to do the sums and solves on (float64, the same operations, so the curves
    agree with numpy's to rounding); None or the CPU: numpy."""
    f = np.asarray(flux, np.float64)
    w = ((np.asarray(weight) > 0) & np.isfinite(f) & usable[None]).astype(np.float64)  # [N, L]
    f = np.where(w > 0, f, 0.0)                       # masked pixels take no part in any sum
    x = np.linspace(-1.0, 1.0, f.shape[1])
    if device is None or str(device) == "cpu":
        return _least_squares_chi2(np, f, w, x, np.asarray(shifted, np.float64))
    import torch

    chi2, npix = _least_squares_chi2(torch, *(torch.as_tensor(a, device=device) for a in (
        f, w, x, np.asarray(shifted, np.float64))))
    return chi2.cpu().numpy(), npix.cpu().numpy()


def _least_squares_chi2(lib, f, w, x, shifted):
    """The body of `chi2_curve` on float64 arrays of `lib` (numpy or torch, same calls)."""
    # the normal equations' sums, each a matrix product over pixels
    st, st2 = w @ shifted.T, w @ (shifted ** 2).T                         # [N, J]
    stx, stf = (w * x) @ shifted.T, (w * f) @ shifted.T
    s1, sx, sxx = w.sum(1), w @ x, w @ (x * x)                            # [N]
    sf, sxf, sff = (w * f).sum(1), (w * f) @ x, (w * f * f).sum(1)

    def full(a):                                                          # [N] -> [N, J]
        return lib.broadcast_to(a[:, None], st.shape)
    gram = lib.stack([lib.stack([st2, st, stx], -1),
                      lib.stack([st, full(s1), full(sx)], -1),
                      lib.stack([stx, full(sx), full(sxx)], -1)], -2)    # [N, J, 3, 3]
    rhs = lib.stack([stf, full(sf), full(sxf)], -1)                       # [N, J, 3]
    eye = lib.eye(3, dtype=w.dtype) if lib is np else lib.eye(3, dtype=w.dtype,
                                                              device=w.device)
    coef = lib.linalg.solve(gram + 1e-9 * eye, rhs[..., None])[..., 0]
    chi2 = sff[:, None] - lib.einsum("nja,nja->nj", coef, rhs)
    return lib.clip(chi2, 0.0, None), w.sum(1)


def fit_velocity(flux: np.ndarray, weight: np.ndarray, template: np.ndarray,
                 template_weight: np.ndarray, velocities: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(rv, sigma_fit) [N] km/s of spectra [N, L] against one template [L]."""
    v = velocity_grid() if velocities is None else np.asarray(velocities, np.float64)
    return velocity_from_curve(*chi2_curve(flux, weight,
                                           *shifted_template(template, template_weight, v)), v)


def velocity_from_curve(chi2: np.ndarray, npix: np.ndarray, v: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The chi2 minimum over the grid refined by a parabola through it and its two
    neighbours; sigma from the curvature, the per-pixel noise estimated from the residuals."""
    n = len(chi2)
    j = np.clip(chi2.argmin(axis=1), 1, len(v) - 2)
    ar = np.arange(n)
    c_m, c_0, c_p = chi2[ar, j - 1], chi2[ar, j], chi2[ar, j + 1]
    step = v[1] - v[0]
    curv = (c_p + c_m - 2.0 * c_0) / step ** 2                   # d2 chi2 / dv2
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = 0.5 * step * (c_m - c_p) / (c_p + c_m - 2.0 * c_0)
        rv = v[j] + np.clip(offset, -step, step)
        noise2 = chi2.min(axis=1) / np.maximum(npix - 4, 1)       # per-pixel variance
        sigma = np.sqrt(2.0 * noise2 / curv)                      # delta chi2 = 1 -> 1 sigma
    bad = (npix < MIN_PIXELS) | ~(curv > 0) | ~np.isfinite(rv)
    return np.where(bad, np.nan, rv), np.where(bad, np.nan, sigma)


def save_templates(bundle_dir: str | Path, t: RvTemplates) -> None:
    from safetensors.numpy import save_file

    save_file({"flux": np.ascontiguousarray(t.flux, np.float32),
               "weight": np.ascontiguousarray(t.weight, np.float32),
               "keys": np.ascontiguousarray(t.keys, np.float64),
               "calibration": np.array([t.sigma_scale, t.sigma_floor], np.float64)},
              str(Path(bundle_dir) / RV_FILE))


def load_templates(bundle_dir: str | Path) -> RvTemplates | None:
    """The bundle's templates, or None when it has none (bundles trained before them)."""
    from safetensors.numpy import load_file

    path = Path(bundle_dir) / RV_FILE
    if not path.exists():
        return None
    z = load_file(str(path))
    cal = z["calibration"]
    return RvTemplates(z["flux"].astype(np.float64), z["weight"], z["keys"],
                       float(cal[0]), float(cal[1]))
