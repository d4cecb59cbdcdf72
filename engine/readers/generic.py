"""What the generic readers (text table, FITS table, 1-D WCS image, 2/3 x N image) and the SDSS
reader share: reading options, column names, and the LAMOST-like record built from a
resampled spectrum.

Every such reader states three things about the wavelength axis before it resamples:
the unit (from the file or the `unit` option; unstated = Angstrom, but only when the values
look like Angstrom), air or vacuum (from the file or the `medium` option; never guessed:
an unstated medium is refused, because 1.4 A at 5000 A is more than a LAMOST pixel), and for
a third, unnamed column or row whether it is an inverse variance or an error (`uncertainty`
option; it also wins over a FITS BANDID3/ROW3 description, but named table columns such as
`ivar` or `error` are read as named). The `unit` and `medium` options win over the file.

The records are LAMOST-like (survey "lamost"): the flux is put on LAMOST's native log-linear
grid by `engine.resample`, `pixel_offset` is set, and `meta["instrument"]` keeps the origin.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import SpectrumReadError
from engine.grids import lamost_native_wavelength
from engine.readers import lamost_lrs
from engine.resample import resample_to_lamost_grid
from engine.records import SURVEY_LAMOST, SpectrumRecord
from engine.wavelength import normalise_medium, to_vacuum_angstrom, unit_scale

OPTION_NAMES = ("unit", "medium", "uncertainty")
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
class AxisOptions:
    """What the caller states about a file (None = take it from the file)."""

    unit: str | None = None
    medium: str | None = None
    uncertainty: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], path: str) -> "AxisOptions":
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise SpectrumReadError(path, f"unknown reader option(s) {unknown}; "
                                          f"known: {', '.join(OPTION_NAMES)}")
        try:
            medium = normalise_medium(options.get("medium"))
            unit = options.get("unit")
            if unit is not None:
                unit_scale(unit)
        except ValueError as exc:
            raise SpectrumReadError(path, str(exc)) from exc
        uncertainty = options.get("uncertainty")
        if uncertainty is not None and uncertainty not in UNCERTAINTIES:
            raise SpectrumReadError(path, f"uncertainty must be one of {UNCERTAINTIES}, "
                                          f"got {uncertainty!r}")
        return cls(unit=unit, medium=medium, uncertainty=uncertainty)


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


def header_medium(*headers: Any) -> str | None:
    """Air or vacuum as FITS headers state it: VACUUM (T/F, SDSS and LAMOST), AIRORVAC."""
    for header in headers:
        if header is None:
            continue
        if "VACUUM" in header:
            return "vacuum" if bool(header["VACUUM"]) else "air"
        value = str(header.get("AIRORVAC", "")).strip().lower()
        if value.startswith("vac"):
            return "vacuum"
        if value == "air":
            return "air"
    return None


def is_claimed_by_survey_reader(source: Any, path: str) -> bool:
    """LAMOST and SDSS files are read by their own readers, never by a generic one."""
    from engine.readers import sdss_spec  # sdss_spec imports this module

    return lamost_lrs.identify(source, path=path) or sdss_spec.identify(source, path=path)


def uncertainty_to_ivar(values: np.ndarray, kind: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if kind == "ivar":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), 1.0 / values ** 2, 0.0)


def lamost_like_record(path: str, wavelength: np.ndarray, flux: np.ndarray,
                       ivar: np.ndarray | None, mask: np.ndarray | None, *,
                       unit: str | None, medium: str | None, log10: bool = False,
                       object_id: str | None = None, source_index: int = 0,
                       instrument: str, layout: str, **fields: Any) -> SpectrumRecord:
    """Convert the axis to vacuum Angstrom, resample onto the LAMOST grid, build the record.

    Raises SpectrumReadError (naming the file) when the axis cannot be placed: unstated
    medium, unknown or implausible unit, non-monotonic wavelengths, no overlap with the grid.
    """
    meta = dict(fields.pop("meta", {}) or {})
    try:
        if medium is None:
            raise ValueError("air or vacuum wavelengths not stated: say so in the file "
                             "(column 'wavelength_air', header VACUUM/AIRORVAC, a comment "
                             "'# vacuum') or pass medium=air|vacuum")
        vacuum = to_vacuum_angstrom(wavelength, unit, medium, log10=log10)
        resampled = resample_to_lamost_grid(vacuum, flux, ivar, mask)
    except ValueError as exc:
        raise SpectrumReadError(path, f"cannot place the spectrum on a wavelength axis: {exc}"
                                ) from exc
    if resampled.mask.all():
        raise SpectrumReadError(path, "no usable pixel on the LAMOST grid after resampling "
                                      "(all masked, NaN or zero ivar where the grids overlap)")
    meta.update(layout=layout, instrument=instrument, resampled=True,
                wavelength_medium=medium, wavelength_unit=unit or "Angstrom")
    return SpectrumRecord(
        survey=SURVEY_LAMOST,
        object_id=object_id or default_object_id(path),
        wavelength=lamost_native_wavelength(resampled.flux.size, resampled.pixel_offset),
        flux=resampled.flux, ivar=resampled.ivar, mask=resampled.mask,
        source_path=path, source_index=source_index, pixel_offset=resampled.pixel_offset,
        meta=meta, **fields)


def default_object_id(path: str) -> str:
    """The file name without directories and spectrum extensions."""
    name = os.path.basename(str(path)) or "spectrum"
    return re.sub(r"(\.(fits?|fts|csv|txt|dat|tsv|ecsv|tab|ascii))?(\.gz)?$", "", name,
                  flags=re.IGNORECASE)
