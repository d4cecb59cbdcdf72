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
from engine.readers.columns import find_columns, ivar_and_mask
from engine.readers.fits_headers import as_float, header_medium, header_name
from engine.readers.fitsio import open_fits
from engine.readers.generic import (
    AxisOptions, default_object_id, identify_fits_layout, lamost_like_record,
)
from engine.records import SpectrumRecord

NAME = "fits-table"
MAX_ROWS_AS_SPECTRA = 1000   # array-cell tables: more rows than this is not a spectrum file


def identify(source: Any, *, path: str = "") -> bool:
    # A table with a flux column but no wavelength is claimed too, so that `read` refuses it
    # with that reason instead of "not recognised".
    return identify_fits_layout(
        source, path, lambda hdul: _spectrum_table(hdul, need_axis=False) is not None)


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
        data = hdu.data
        rows = _as_spectra(data, names[w_index], path)
        records = []
        for i in rows:
            def cell(role: str, row: int | None = i) -> np.ndarray:
                values = data[names[roles[role][0]]]
                return np.asarray(values if row is None else values[row],
                                  dtype=np.float64).ravel()

            ivar, mask = ivar_and_mask(roles, cell)
            records.append(lamost_like_record(
                path, cell("wave" if not log10 else "loglam"), cell("flux"), ivar, mask,
                unit=unit, medium=medium, log10=log10, source_index=i or 0,
                object_id=_object_id(hdul, path, i), instrument="FITS table", layout=NAME,
                ra=as_float(hdul[0].header.get("RA")),
                dec=as_float(hdul[0].header.get("DEC"))))
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


def _object_id(hdul: fits.HDUList, path: str, row: int | None) -> str:
    base = header_name(hdul[0].header, keys=("OBJECT", "OBJNAME")) or default_object_id(path)
    return base if row in (None, 0) else f"{base}#{row}"
