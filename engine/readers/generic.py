"""The path the generic readers (text table, FITS table, 1-D WCS image, 2/3 x N image) share
from a file to a LAMOST-like record: the caller's options, which FITS files a generic reader
may claim, and the record built from a resampled spectrum (the SDSS reader's last step too).
Column names are in `columns.py`, what FITS headers state in `fits_headers.py`.

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
from typing import Any, Callable

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.grids import lamost_native_wavelength
from engine.readers import lamost_lrs
from engine.readers.columns import UNCERTAINTIES
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits, rewind
from engine.resample import resample_to_lamost_grid
from engine.records import SURVEY_LAMOST, SpectrumRecord
from engine.wavelength import normalise_medium, to_vacuum_angstrom, unit_scale

OPTION_NAMES = ("unit", "medium", "uncertainty")


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


def is_claimed_by_survey_reader(source: Any, path: str) -> bool:
    """LAMOST and SDSS files are read by their own readers, never by a generic one."""
    from engine.readers import sdss_spec  # sdss_spec imports this module

    return lamost_lrs.identify(source, path=path) or sdss_spec.identify(source, path=path)


def identify_fits_layout(source: Any, path: str,
                         claims: Callable[[fits.HDUList], bool]) -> bool:
    """The `identify` of a generic FITS reader: FITS input (path, file object or HDUList)
    that no survey reader claims and whose open HDUList `claims` accepts. Never raises
    (identify may swallow exceptions); a file object is rewound."""
    try:
        if not isinstance(source, fits.HDUList) and not is_fits_head(head_bytes(source)):
            return False
        if is_claimed_by_survey_reader(source, path):
            return False
        with open_fits(source, path or "<identify>") as hdul:
            return bool(claims(hdul))
    except Exception:  # identify never raises
        return False
    finally:
        rewind(source)


def lamost_like_record(path: str, wavelength: np.ndarray, flux: np.ndarray,
                       ivar: np.ndarray | None, mask: np.ndarray | None, *,
                       unit: str | None, medium: str | None, log10: bool = False,
                       object_id: str | None = None, source_index: int = 0,
                       instrument: str, layout: str, **fields: Any) -> SpectrumRecord:
    """Convert the axis to vacuum Angstrom, resample onto the LAMOST grid, build the record.

    `object_id` None or empty: the file name (`default_object_id`).
    Raises SpectrumReadError (naming the file) when the axis cannot be placed: unstated
    medium, unknown or implausible unit, non-monotonic wavelengths, no overlap with the grid.
    """
    meta = dict(fields.pop("meta", {}) or {})
    try:
        if medium is None:
            raise ValueError("air or vacuum wavelengths not stated: say so in the file "
                             "(column 'wavelength_air', header VACUUM/AIRORVAC, a comment "
                             "'# vacuum') or pass medium=air|vacuum (CLI: --medium)")
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
