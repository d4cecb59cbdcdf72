"""Fit the LAMOST linear stack (engine/models/stacking.py) after the heads are trained and
calibrated. Part of `specclip train` when the config has heads.stack_labels.

- PCA (heads.stack_components, deterministic full SVD) of the training split's model inputs;
- per label, ridge regression of the label (log10 Teff for Teff) on the standardised
  (head predictions, PCA coefficients) of the labelled training rows, for each ridge
  strength in ALPHAS;
- per label, the (ridge strength, blend with the head) pair with the lowest robust sigma on
  the validation split is kept; then the head's sigma is recalibrated against the stacked
  value's validation errors, scale and floor or scale and power, whichever generalises
  better inside validation (training/sigma_calibration.py `choose_recipe`).
The head's predictions on its own training rows are in-sample (tighter than on new stars),
which makes the ridge lean on them; choosing the blend on validation corrects for that.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from training import data as D
from training.metrics import robust_sigma
from training.sigma_calibration import choose_recipe

log = logging.getLogger(__name__)

ALPHAS = (1.0, 10.0, 100.0)
BLENDS = (1.0, 0.75, 0.5)
MAX_FLOOR_FACTOR = 1.0    # sigma floors tried: 0 .. this times the median validation sigma


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge on standardised inputs (intercept unpenalised)."""
    ym = float(y.mean())
    coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (y - ym))
    return coef, ym


@torch.no_grad()
def fit_stack(model, train: D.SpectraSet, val: D.SpectraSet,
              head_predictions) -> dict:
    """Fill model.stack's buffers; `head_predictions(model, survey, set)` -> (value, sigma)."""
    from sklearn.decomposition import PCA

    stack = model.stack
    tr = train.subset(train.labelled(3))
    va = val.subset(val.labelled(3))
    x = np.where(tr.weight > 0, tr.flux - 1.0, 0.0).astype(np.float64)
    n_comp = stack.pca_components.shape[0]
    pca = PCA(min(n_comp, len(x) - 1, x.shape[1]), svd_solver="full").fit(x)
    stack.pca_mean.copy_(torch.from_numpy(pca.mean_))
    stack.pca_components.zero_()   # fewer training rows than components: the rest stay 0
    stack.pca_components[:pca.n_components_] = torch.from_numpy(pca.components_)
    stack.input_mean.zero_()
    stack.input_std.fill_(1.0)

    def inputs(s: D.SpectraSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        value, sigma = head_predictions(model, "lamost", s)
        z = stack.inputs(torch.from_numpy(s.flux), torch.from_numpy(s.weight),
                         torch.from_numpy(value)).double().numpy()
        return z, value, sigma

    zt, _, _ = inputs(tr)            # raw inputs: the buffers are still mean 0, std 1 here
    zv, v_head, v_sig = inputs(va)
    mean, std = zt.mean(axis=0), zt.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    stack.input_mean.copy_(torch.from_numpy(mean))
    stack.input_std.copy_(torch.from_numpy(std))
    zt, zv = (zt - mean) / std, (zv - mean) / std
    report = {}
    for k, name in enumerate(stack.labels):
        col = stack.head_labels.index(name)
        y = np.log10(tr.labels[:, col]) if name == "teff" else tr.labels[:, col]
        truth = va.labels[:, col]
        scores, best = {}, (np.inf, None)
        for alpha in ALPHAS:
            coef, icpt = _ridge(zt, y, alpha)
            fit = zv @ coef + icpt
            fit = 10.0 ** fit if name == "teff" else fit
            for blend in BLENDS:
                s = robust_sigma(blend * fit + (1 - blend) * v_head[:, col] - truth)
                scores[f"alpha={alpha:g},blend={blend:g}"] = round(s, 4)
                if s < best[0]:
                    best = (s, (alpha, blend, coef, icpt, blend * fit + (1 - blend) *
                                v_head[:, col]))
        alpha, blend, coef, icpt, pred = best[1]
        stack.coef[k] = torch.from_numpy(coef)
        stack.intercept[k] = icpt
        stack.blend[k] = blend
        recipe, recipe_name, recipe_report = choose_recipe(
            np.abs(pred - truth), v_sig[:, col],
            MAX_FLOOR_FACTOR * float(np.nanmedian(v_sig[:, col])))
        stack.sigma_scale[k] = recipe.scale
        stack.sigma_floor[k] = recipe.floor
        stack.sigma_power[k] = recipe.power
        stack.sigma_ref[k] = recipe.ref
        head_sigma = robust_sigma(v_head[:, col] - truth)
        report[name] = {"alpha": alpha, "blend": blend,
                        "validation_robust_sigma_head": round(head_sigma, 4),
                        "validation_robust_sigma": round(best[0], 4),
                        "sigma_recipe": recipe_name, "sigma_scale": round(recipe.scale, 4),
                        "sigma_floor": round(recipe.floor, 4),
                        "sigma_power": round(recipe.power, 4),
                        "sigma_ref": round(recipe.ref, 4),
                        "sigma_recipes_heldout": recipe_report,
                        "validation_grid": scores}
        log.info("stack[%s]: alpha %g blend %g validation robust sigma %.4f (head %.4f)",
                 name, alpha, blend, best[0], report[name]["validation_robust_sigma_head"])
    return report
