"""Gaia archive tables (CSV, ECSV, FITS, VOTable) as served for XP_SAMPLED / XP_CONTINUOUS.

One loader for both XP readers. The archive writes array columns differently per format
(FACTS.md): CSV strings "(v1, v2, ...)", ECSV "[v1,...]" (astropy parses them), FITS
variable-length columns, VOTable object / masked arrays. `array_column` turns any of these
into one float64 [N, K] array, NaN where a row has no array (a missing band).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning
from astropy.utils.exceptions import AstropyWarning

from engine.errors import SpectrumReadError
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits, read_bytes


def sniff_format(head: bytes) -> str:
    """'fits', 'votable', 'ecsv' or 'csv' from the first bytes of a file."""
    if is_fits_head(head):
        return "fits"
    text = head.lstrip()[:4096].lower()
    if text.startswith(b"<?xml") or b"<votable" in text:
        return "votable"
    if text.startswith(b"# %ecsv"):
        return "ecsv"
    return "csv"


def head_text(source: Any) -> bytes:
    """First bytes of a path / file object / HDUList (HDUList: its header cards)."""
    if isinstance(source, fits.HDUList):
        return b"SIMPLE  =" + "".join(
            str(h.header) for h in source).encode("ascii", "replace")
    return head_bytes(source, 64 * 1024)


def load_table(source: Any, path: str) -> Table:
    """Read an archive table from a path, file object or HDUList; column names lower-cased."""
    if isinstance(source, fits.HDUList):
        table = _fits_table(source, path)
    else:
        data = read_bytes(source, path)
        kind = sniff_format(data[:8192])
        if kind == "fits":
            with open_fits(io.BytesIO(data), path) as hdul:
                table = _fits_table(hdul, path)
        else:
            fmt = {"votable": "votable", "ecsv": "ascii.ecsv", "csv": "ascii.csv"}[kind]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UnitsWarning)
                    warnings.simplefilter("ignore", AstropyWarning)
                    table = Table.read(io.BytesIO(data), format=fmt)
            except Exception as exc:  # astropy raises many types for malformed text
                raise SpectrumReadError(path, f"cannot parse as {kind.upper()} table "
                                              f"({type(exc).__name__}: {exc})") from exc
    for name in table.colnames:
        if name != name.lower():
            table.rename_column(name, name.lower())
    if len(table) == 0:
        raise SpectrumReadError(path, "table has no rows")
    return table


def _fits_table(hdul: fits.HDUList, path: str) -> Table:
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnitsWarning)
                return Table.read(hdu)
    raise SpectrumReadError(path, "FITS file has no binary table extension")


def require_columns(table: Table, columns: tuple[str, ...], path: str, what: str) -> None:
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise SpectrumReadError(path, f"not a {what} table: missing columns "
                                      f"{', '.join(missing)}")


def array_column(table: Table, name: str, length: int | None = None) -> np.ndarray:
    """An array-valued column as float64 [N, K]; rows without an array are NaN.

    `length` fixes K (rows of other lengths are an error); else K is the longest row.
    """
    column = table[name]
    if column.dtype.kind == "f" and column.ndim == 2 and not np.ma.is_masked(column):
        out = np.asarray(column, dtype=np.float64)
        if length is not None and out.shape[1] != length:
            raise ValueError(f"column {name} has {out.shape[1]} values per row, not {length}")
        return out
    rows = [_row_values(value) for value in column]
    width = length or max((r.size for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        if r.size == 0:
            continue
        if r.size != width:
            raise ValueError(f"column {name} row {i} has {r.size} values, expected {width}")
        out[i] = r
    return out


def _row_values(value: Any) -> np.ndarray:
    if value is None or value is np.ma.masked:
        return np.empty(0)
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        text = value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)
        text = text.strip().strip("()[]").strip()
        if not text or text.lower() in ("null", "nan", "--"):
            return np.empty(0)
        parts = [p.strip() for p in text.split(",")]
        return np.array([np.nan if p.lower() in ("null", "nan", "") else float(p)
                         for p in parts])
    if np.ma.isMaskedArray(value):
        return np.ma.filled(value.astype(np.float64), np.nan)
    return np.asarray(value, dtype=np.float64).ravel()


def scalar_column(table: Table, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for masked/missing values."""
    column = table[name]
    return np.ma.filled(np.ma.asarray(column).astype(np.float64), np.nan)


def source_ids(table: Table) -> np.ndarray:
    return np.asarray(np.ma.filled(np.ma.asarray(table["source_id"]), 0), dtype=np.int64)
