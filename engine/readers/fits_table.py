"""FITS binary tables of wavelength and flux (the "structure" layout), read as LAMOST-like input
(see `generic.py`).

The first binary table with a wavelength column (`wavelength`, `wave`, `lambda`, ... or
`loglam` for log10 Angstrom) and a `flux` column is read; names are case-insensitive, and
`ivar` or an error column (`error`, `err`, `sigma`, `flux_err`, ...) and a `mask` column
(non-zero = bad) are used when present. Two shapes are accepted: one pixel per row, or array
cells with one spectrum per row (each row becomes a record).

Unit: the `unit` option, else the column's TUNITn, else a unit in the column name, else
Angstrom when the values look like Angstrom. Medium: the `medium` option, else the column name
(`wave_air`), else VACUUM / AIRORVAC in the table's or the primary header; never guessed.
LAMOST and SDSS files (which also hold such columns) are left to their own readers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits
from engine.readers.generic import (
    AxisOptions, default_object_id, find_columns, header_medium, is_claimed_by_survey_reader,
    lamost_like_record, uncertainty_to_ivar,
)
from engine.records import SpectrumRecord

NAME = "fits-table"
MAX_ROWS_AS_SPECTRA = 1000   # array-cell tables: more rows than this is not a spectrum file


def identify(source: Any, *, path: str = "") -> bool:
    try:
        if not isinstance(source, fits.HDUList):
            if not is_fits_head(head_bytes(source)):
                return False
        if is_claimed_by_survey_reader(source, path):
            return False
        with open_fits(source, path or "<identify>") as hdul:
            # A table with a flux column but no wavelength is claimed too, so that `read`
            # refuses it with that reason instead of "not recognised".
            return _spectrum_table(hdul, need_axis=False) is not None
    except Exception:  # identify never raises
        return False
    finally:
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except Exception:
                pass


def _spectrum_table(hdul: fits.HDUList, need_axis: bool = True) -> fits.BinTableHDU | None:
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU):
            roles = find_columns(list(hdu.columns.names))
            axis = "wave" in roles or "loglam" in roles
            if "flux" in roles and (axis or not need_axis):
                return hdu
    return None


def read(source: Any, *, path: str = "", **options: Any) -> list[SpectrumRecord]:
    opts = AxisOptions.from_options(options, path)
    with open_fits(source, path) as hdul:
        hdu = _spectrum_table(hdul)
        if hdu is None:
            reason = ("cannot place the spectrum on a wavelength axis: a table has a flux "
                      "column but none has a wavelength column"
                      if _spectrum_table(hdul, need_axis=False) is not None else
                      "no binary table with wavelength and flux columns")
            raise SpectrumReadError(path, reason + " (wavelength/wave/lambda/loglam, flux)")
        names = list(hdu.columns.names)
        roles = find_columns(names)
        log10 = "wave" not in roles
        w_index, w_col = roles["wave"] if not log10 else roles["loglam"]
        tunit = hdu.columns[w_index].unit
        unit = opts.unit or (None if log10 else (tunit or None)) or w_col.unit
        medium = (opts.medium or w_col.medium
                  or header_medium(hdu.header, hdul[0].header))
        uncertainty = "ivar" if "ivar" in roles else ("error" if "error" in roles else None)
        data = hdu.data
        rows = _as_spectra(data, names[w_index], path)
        records = []
        for i in rows:
            def cell(role: str, row: int | None = i) -> np.ndarray:
                values = data[names[roles[role][0]]]
                return np.asarray(values if row is None else values[row],
                                  dtype=np.float64).ravel()

            ivar = uncertainty_to_ivar(cell(uncertainty), uncertainty) if uncertainty else None
            mask = cell("mask") != 0 if "mask" in roles else None
            records.append(lamost_like_record(
                path, cell("wave" if not log10 else "loglam"), cell("flux"), ivar, mask,
                unit=unit, medium=medium, log10=log10, source_index=i or 0,
                object_id=_object_id(hdul, path, i), instrument="FITS table", layout=NAME,
                ra=_float(hdul[0].header.get("RA")), dec=_float(hdul[0].header.get("DEC"))))
        return records


def _as_spectra(data: fits.FITS_rec, wave_name: str, path: str) -> list:
    """[None] for one pixel per row; row indices when cells hold whole spectra."""
    if data is None or len(data) == 0:
        raise SpectrumReadError(path, "the spectrum table has no rows")
    shape = np.shape(data[wave_name])
    if len(shape) == 1:
        return [None]
    if len(data) > MAX_ROWS_AS_SPECTRA:
        raise SpectrumReadError(path, f"{len(data)} rows of array spectra; at most "
                                      f"{MAX_ROWS_AS_SPECTRA} are read from one table")
    return list(range(len(data)))


def _object_id(hdul: fits.HDUList, path: str, row: int | None) -> str | None:
    header = hdul[0].header
    name = str(header.get("OBJECT", header.get("OBJNAME", "")) or "").strip()
    base = name or default_object_id(path)
    return base if row in (None, 0) else f"{base}#{row}"


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None
