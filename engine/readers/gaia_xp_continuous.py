"""Gaia DR3 XP_CONTINUOUS (BP/RP basis-function coefficients) converted to XP_SAMPLED.

Data model: Gaia DR3 documentation, XP_CONTINUOUS datalink product / `xp_continuous_mean_
spectrum` table: for bp_ and rp_, coefficients[55], coefficient_errors[55],
coefficient_correlations[1485] (lower triangle without the diagonal), n_parameters (NaN when
the band is missing), standard_deviation, ...

Conversion: exactly gaiaxpy's `calibrate` on the default 336-1020 nm / 2 nm grid, but as one
batched matrix product. The design matrices D (55 x 343 per band) and merge weights come from
gaiaxpy's own configuration (built once per process, see `design_matrices`):

    flux = merge_bp * (C_bp @ D_bp) + merge_rp * (C_rp @ D_rp)
    var  = merge_bp^2 diag(D_bp^T Cov_bp D_bp) + merge_rp^2 diag(D_rp^T Cov_rp D_rp)

with Cov = diag(err) Corr diag(err) (gaiaxpy's normalisation by standard_deviation cancels),
and no BP-RP cross covariance, as in gaiaxpy. A row with one band missing keeps that band's
flux where gaiaxpy does (RP alone above 635 nm, BP alone below 643 nm) and masks the rest;
a row with no band is skipped with a logged reason.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from typing import Any

import numpy as np

from engine.errors import SpectrumReadError
from engine.grids import XP_SAMPLING_NM
from engine.readers.gaia_xp_sampled import build_records
from engine.readers.guards import refuse_row
from engine.readers.xp_table import (
    array_column,
    head_text,
    load_table,
    require_columns,
    scalar_column,
    source_ids,
)
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)

NAME = "gaia-xp-continuous"
BANDS = ("bp", "rp")
N_COEFF = 55
N_CORR = N_COEFF * (N_COEFF - 1) // 2
REQUIRED = ("source_id",) + tuple(
    f"{b}_{c}" for b in BANDS for c in ("n_parameters", "coefficients", "coefficient_errors",
                                        "coefficient_correlations"))
BP_MAX_NM, RP_MIN_NM = 643.0, 635.0   # gaiaxpy.core.satellite BP_WL.high / RP_WL.low
BP_MODEL, RP_MODEL = "v375wi", "v142r"  # gaiaxpy's default calibration models


@functools.lru_cache(maxsize=1)
def design_matrices() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{band: (design matrix [55, 343], merge weights [343])} from gaiaxpy's configuration.

    gaiaxpy prints to stdout and emits pandas deprecation warnings on import; both are
    silenced here so that library code stays quiet (and pytest's warnings-as-errors holds).
    """
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import gaiaxpy.calibrator.calibrator as calibrator

        build = getattr(calibrator, "__generate_xp_matrices_and_merge")
        matrices, merge = build("calibrator", XP_SAMPLING_NM, BP_MODEL, RP_MODEL)
    return {b: (np.asarray(matrices[b].get_design_matrix(), dtype=np.float64),
                np.asarray(merge[b], dtype=np.float64)) for b in BANDS}


def identify(source: Any, *, path: str = "") -> bool:
    try:
        head = head_text(source).lower()
        return b"source_id" in head and (b"bp_coefficients" in head or
                                         b"rp_coefficients" in head)
    except Exception:  # identify never raises
        return False


def read(source: Any, *, path: str = "") -> list[SpectrumRecord]:
    """Every row of an XP_CONTINUOUS table, converted to the 343-sample grid."""
    table = load_table(source, path)
    require_columns(table, REQUIRED, path, "Gaia XP_CONTINUOUS")
    try:
        bands = {b: _band_arrays(table, b) for b in BANDS}
    except ValueError as exc:
        raise SpectrumReadError(path, f"malformed XP_CONTINUOUS arrays ({exc})") from exc
    flux, err = continuous_to_sampled(bands)
    ids, ok = source_ids(table, path)
    present = {b: bands[b]["present"] for b in BANDS}
    none = ~present["bp"] & ~present["rp"] & ok
    for i in np.flatnonzero(none):
        refuse_row(path, int(i), f"source {ids[i]} has neither BP nor RP coefficients")
    meta = [{"bands": "+".join(b for b in BANDS if present[b][i]) or "none"}
            for i in range(len(ids))]
    return build_records(ids, flux, err, path, table, meta, ok=ok & ~none)


def _band_arrays(table: Any, band: str) -> dict[str, np.ndarray]:
    n_par = scalar_column(table, f"{band}_n_parameters")
    # Widths fixed up front: one long row must not make every row that wide.
    coeff = array_column(table, f"{band}_coefficients", N_COEFF)
    errors = array_column(table, f"{band}_coefficient_errors", N_COEFF)
    corr = array_column(table, f"{band}_coefficient_correlations", N_CORR)
    n = len(table)
    coeff = _fit_width(coeff, N_COEFF, n)
    errors = _fit_width(errors, N_COEFF, n)
    corr = _fit_width(corr, N_COEFF * (N_COEFF - 1) // 2, n)
    present = np.isfinite(n_par) & (n_par > 0) & np.isfinite(coeff).all(axis=1)
    return {"coefficients": coeff, "errors": errors, "correlations": corr, "present": present}


def _fit_width(values: np.ndarray, width: int, n: int) -> np.ndarray:
    """All-NaN columns (a band missing in every row) come back 0 wide: widen them."""
    if values.shape[1] == width:
        return values
    if values.shape[1] == 0 or not np.isfinite(values).any():
        return np.full((n, width), np.nan)
    raise ValueError(f"expected {width} values per row, found {values.shape[1]}")


def covariances(errors: np.ndarray, correlations: np.ndarray) -> np.ndarray:
    """[N, 55, 55] covariance from errors [N, 55] and lower-triangle correlations [N, 1485].

    The lower triangle is in numpy's `tril_indices(55, -1)` order, as gaiaxpy reads it.
    Rows without correlations fall back to a diagonal covariance.
    """
    n = errors.shape[0]
    corr = np.zeros((n, N_COEFF, N_COEFF))
    lower = np.tril_indices(N_COEFF, -1)
    filled = np.where(np.isfinite(correlations), correlations, 0.0)
    corr[:, lower[0], lower[1]] = filled
    corr += corr.transpose(0, 2, 1)
    corr[:, np.arange(N_COEFF), np.arange(N_COEFF)] = 1.0
    return errors[:, :, None] * corr * errors[:, None, :]


def _sampled_variance(design: np.ndarray, errors: np.ndarray, correlations: np.ndarray,
                      chunk: int = 4096) -> np.ndarray:
    """diag(D^T Cov D) per row. einsum's optimised path turns this into one large GEMM per
    chunk, which measured faster here than batched matmul; chunks bound memory (n x 55 x 55)."""
    out = np.empty((errors.shape[0], design.shape[1]))
    for start in range(0, errors.shape[0], chunk):
        sl = slice(start, start + chunk)
        cov = covariances(errors[sl], correlations[sl])
        out[sl] = np.einsum("ks,nkl,ls->ns", design, cov, design, optimize=True)
    return out


def continuous_to_sampled(bands: dict[str, dict[str, np.ndarray]]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(flux [N, 343], flux_error [N, 343]); NaN where no band covers a sample."""
    matrices = design_matrices()
    n = len(bands["bp"]["present"])
    flux = np.zeros((n, XP_SAMPLING_NM.size))
    var = np.zeros((n, XP_SAMPLING_NM.size))
    both = bands["bp"]["present"] & bands["rp"]["present"]
    for band in BANDS:
        design, merge = matrices[band]
        b = bands[band]
        ok = b["present"]
        coeff = np.where(ok[:, None], b["coefficients"], 0.0)
        band_flux = coeff @ design                                        # [N, 343]
        band_var = _sampled_variance(design, np.where(ok[:, None], b["errors"], 0.0),
                                     b["correlations"])
        # Both bands: gaiaxpy's merge weights. One band: that band alone where it covers.
        alone = ok & ~both
        weight = np.where(both[:, None], merge[None, :], 0.0)
        covers = XP_SAMPLING_NM < BP_MAX_NM if band == "bp" else XP_SAMPLING_NM > RP_MIN_NM
        weight = np.where(alone[:, None] & covers[None, :], 1.0, weight)
        flux += weight * band_flux
        var += weight ** 2 * band_var
    covered = np.zeros_like(flux, dtype=bool)
    for band in BANDS:
        covers = XP_SAMPLING_NM < BP_MAX_NM if band == "bp" else XP_SAMPLING_NM > RP_MIN_NM
        covered |= bands[band]["present"][:, None] & (covers[None, :] | both[:, None])
    flux = np.where(covered, flux, np.nan)
    err = np.where(covered, np.sqrt(var), np.nan)
    return flux, err
