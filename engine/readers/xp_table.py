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
from engine.readers.guards import check_declared_arrays, refuse_row

UTF8_BOM = b"\xef\xbb\xbf"
# The largest array in a Gaia XP table: 55 x 54 / 2 coefficient correlations per band
# (XP_SAMPLED rows hold 343 samples, XP_CONTINUOUS 55 coefficients and 55 errors).
XP_MAX_CELL_VALUES = 1485


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
    """Read an archive table from a path, file object or HDUList; column names lower-cased.

    Before a text table is parsed, a UTF-8 byte-order mark is dropped (it would hide the
    first column's name) and declared array sizes (ECSV subtype, VOTable arraysize) are
    checked against XP's largest array, so a tiny header cannot make astropy allocate GBs.
    """
    if isinstance(source, fits.HDUList):
        table = _fits_table(source, path)
    else:
        data = read_bytes(source, path)
        if data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM):]
        kind = sniff_format(data[:8192])
        if kind in ("ecsv", "votable"):
            check_declared_arrays(_declarations(data, kind), path, XP_MAX_CELL_VALUES,
                                  "Gaia XP")
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


def _declarations(data: bytes, kind: str) -> bytes:
    """The part of a text table that declares its columns: ECSV's '#' header lines, or the
    whole VOTable (a second TABLE may declare FIELDs after the first one's DATA)."""
    if kind == "ecsv":
        lines = []
        for line in io.BytesIO(data):
            if not line.startswith(b"#"):
                break
            lines.append(line)
        return b"".join(lines)
    return data


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

    `length` fixes K (rows of other lengths are an error); else K is the longest row, at
    most XP_MAX_CELL_VALUES (one long row must not make every row that wide).
    """
    column = table[name]
    if column.dtype.kind == "f" and column.ndim == 2 and not np.ma.is_masked(column):
        out = np.asarray(column, dtype=np.float64)
        if length is not None and out.shape[1] != length:
            raise ValueError(f"column {name} has {out.shape[1]} values per row, not {length}")
        return out
    rows = [_row_values(value) for value in column]
    width = length or max((r.size for r in rows), default=0)
    if width > XP_MAX_CELL_VALUES:
        raise ValueError(f"column {name} has a row of {width} values; Gaia XP arrays hold "
                         f"at most {XP_MAX_CELL_VALUES}")
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


def source_ids(table: Table, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(source ids as int64, usable [N] bool). A row whose source_id is empty, not an
    integer, or outside Gaia's positive int64 range is refused on its own (`refuse_row`):
    an empty id once became source "0", and one huge id aborted the whole run."""
    column = table["source_id"]
    values = np.ma.asarray(column)
    ids = np.zeros(len(table), dtype=np.int64)
    ok = np.zeros(len(table), dtype=bool)
    for i in range(len(table)):
        if values.mask is not np.ma.nomask and np.ma.getmaskarray(values)[i]:
            refuse_row(path, i, "source_id is empty")
            continue
        sid, why = _source_id(values.data[i])
        if sid is None:
            refuse_row(path, i, why)
            continue
        ids[i], ok[i] = sid, True
    return ids, ok


def _source_id(value: Any) -> tuple[int | None, str]:
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (str, np.str_)):
        text = str(value).strip()
        if not text:
            return None, "source_id is empty"
        try:
            sid = int(text)
        except ValueError:
            return None, f"source_id {text[:40]!r} is not an integer"
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or value != np.floor(value) or abs(value) > 2 ** 53:
            return None, f"source_id {value!r} is not an exact integer"
        sid = int(value)
    else:
        try:
            sid = int(value)
        except (TypeError, ValueError, OverflowError):
            return None, f"source_id {str(value)[:40]!r} is not an integer"
    if not 0 < sid < 2 ** 63:
        return None, f"source_id {sid} is outside Gaia's range (1 to 2**63 - 1)"
    return sid, ""
