"""Which column of a spectrum table is which, and the inverse variance and bad-pixel mask that
a spectrum's arrays give: shared by the text-table and FITS-table readers (column names), the
FITS image readers (an error row or extension) and the LAMOST and SDSS readers (bad pixels).

Column names are case-insensitive; a unit and the medium may ride in the name
(`wavelength_air [nm]`, `lambda(A, vacuum)`, `wave_vac`). An error column becomes an inverse
variance 1 / error^2 (0 where the error is not finite and positive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.wavelength import unit_scale

UNCERTAINTIES = ("ivar", "error")

WAVE_NAMES = {"wavelength", "wave", "lambda", "lam", "wl", "wavelen", "wvl", "wav"}
LOGWAVE_NAMES = {"loglam", "log_lambda", "loglambda", "log_wave", "logwave", "log_wavelength",
                 "log10lam", "log10_lambda"}
FLUX_NAMES = {"flux", "f_lambda", "flam", "flux_density", "fluxdensity", "spectrum", "counts"}
IVAR_NAMES = {"ivar", "invvar", "inv_var", "inverse_variance", "flux_ivar"}
ERROR_NAMES = {"error", "err", "sigma", "uncertainty", "unc", "flux_err", "flux_error",
               "e_flux", "eflux", "noise", "stddev", "std", "flux_sigma"}
MASK_NAMES = {"mask", "and_mask", "andmask", "badpix", "flag", "flags"}
_UNIT_TOKENS = {"nm", "um", "angstrom", "angstroms", "aa", "ang", "micron", "microns"}
_MEDIUM_TOKENS = {"air": "air", "vac": "vacuum", "vacuum": "vacuum"}


@dataclass(frozen=True)
class Column:
    """A column name split into what it is, its unit and its medium ('wavelength_air [nm]')."""

    role: str | None         # wave, loglam, flux, ivar, error, mask, or None
    unit: str | None
    medium: str | None


def parse_column(name: str) -> Column:
    text = str(name).strip().lower()
    unit = medium = None
    bracket = re.findall(r"[\[(]([^\])]*)[\])]", text)
    text = re.sub(r"[\[(][^\])]*[\])]", " ", text)
    for inner in bracket:
        for token in re.split(r"[,\s;]+", inner.strip()):
            if token in _MEDIUM_TOKENS:
                medium = _MEDIUM_TOKENS[token]
            elif token:
                try:
                    unit_scale(token)
                    unit = token
                except ValueError:
                    pass
    tokens = [t for t in re.split(r"[_\s\-]+", text) if t]
    kept = []
    for token in tokens:
        if token in _MEDIUM_TOKENS:
            medium = _MEDIUM_TOKENS[token]
        elif token in _UNIT_TOKENS and kept:
            unit = token
        else:
            kept.append(token)
    base = "_".join(kept)
    for role, names in (("wave", WAVE_NAMES), ("loglam", LOGWAVE_NAMES), ("flux", FLUX_NAMES),
                        ("ivar", IVAR_NAMES), ("error", ERROR_NAMES), ("mask", MASK_NAMES)):
        if base in names:
            return Column(role, unit, medium)
    return Column(None, unit, medium)


def find_columns(names: list[str]) -> dict[str, tuple[int, Column]]:
    """{role: (index, Column)} for the first column of each role."""
    found: dict[str, tuple[int, Column]] = {}
    for i, name in enumerate(names):
        col = parse_column(name)
        if col.role and col.role not in found:
            found[col.role] = (i, col)
    return found


def has_axis_and_flux(names: list[str]) -> bool:
    roles = find_columns(names)
    return ("wave" in roles or "loglam" in roles) and "flux" in roles


def uncertainty_to_ivar(values: np.ndarray, kind: str) -> np.ndarray:
    """An inverse variance from values that are one (`kind` "ivar") or an error ("error")."""
    values = np.asarray(values, dtype=np.float64)
    if kind == "ivar":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), 1.0 / values ** 2, 0.0)


def ivar_and_mask(roles: dict, column: Callable[[str], np.ndarray]
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(ivar, mask) from a table's `find_columns` roles: the ivar column, else the error
    column as 1 / error^2, else None; mask = the mask column != 0, else None.
    `column(role)` returns that role's values."""
    kind = "ivar" if "ivar" in roles else ("error" if "error" in roles else None)
    ivar = uncertainty_to_ivar(column(kind), kind) if kind else None
    mask = column("mask") != 0 if "mask" in roles else None
    return ivar, mask


def bad_pixels(flux: np.ndarray, ivar: np.ndarray, *bitmasks: np.ndarray | None) -> np.ndarray:
    """True where a pixel is unusable: flux not finite, ivar not finite and positive, or any
    bit set in a bitmask of the same shape (a missing or differently shaped one is ignored)."""
    mask = ~np.isfinite(flux) | ~(np.isfinite(ivar) & (ivar > 0))
    for bits in bitmasks:
        if bits is not None and bits.shape == flux.shape:
            mask |= bits != 0
    return mask
