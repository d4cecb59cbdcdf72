"""Tables keyed by survey ids that users hand us: the cross-match (pair) table LAMOST obsid ->
Gaia source_id, and the position table Gaia source_id -> (ra, dec). One parser for ids, so
the indexer, the training code and the evaluation read the same file the same way.

Ids are parsed as integers without passing through float (a 19-digit Gaia source_id does
not survive float64); "123.0", as a float-typed export writes it, is read as 123. A row whose
id is not an integer ("abc", "nan", "1.5") is skipped with a warning naming the file, the line
and the reason; the rest of the table is read.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re

from engine.errors import SpecClipError

log = logging.getLogger(__name__)

# The Gaia source_id column of a pair table: the first of these that is filled in a row.
SOURCE_ID_COLUMNS = ("source_id", "gaia_source_id", "apogee_gaiaedr3_source_id", "gaia_id")
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")


def parse_id(text: str | int) -> int:
    """An integer survey id from a table cell: "123", " 123 ", "123.0" -> 123.

    Raises ValueError (with the text) for anything that is not an integer."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if not _INTEGER.match(s):
        raise ValueError(f"{s!r} is not an integer id")
    return int(s.split(".", 1)[0])


def _rows(path: str | os.PathLike, needed: str):
    """(line number, row) of a CSV; refuses a file that lacks the `needed` column."""
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise SpecClipError(f"{path}: cannot read the table ({exc})") from exc
    with fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if needed not in columns:
            raise SpecClipError(f"{path}: no {needed!r} column (columns: "
                                f"{sorted(columns) or 'none'})")
        for line, row in enumerate(reader, start=2):
            yield line, row, columns


def read_pair_table(path: str | os.PathLike) -> list[tuple[str, int]]:
    """[(obsid, Gaia source_id)] from a cross-match CSV: column `obsid` and one of
    SOURCE_ID_COLUMNS (the first filled one per row). pairs.csv works as it is."""
    out: list[tuple[str, int]] = []
    checked = False
    for line, row, columns in _rows(path, "obsid"):
        if not checked:
            if not columns & set(SOURCE_ID_COLUMNS):
                raise SpecClipError(f"{path}: no Gaia source id column (one of "
                                    f"{list(SOURCE_ID_COLUMNS)})")
            checked = True
        obsid = (row.get("obsid") or "").strip()
        sid = next(((row.get(c) or "").strip() for c in SOURCE_ID_COLUMNS
                    if (row.get(c) or "").strip()), "")
        if not obsid or not sid:
            continue                     # a LAMOST spectrum without a Gaia counterpart
        try:
            out.append((str(parse_id(obsid)), parse_id(sid)))
        except ValueError as exc:
            log.warning("%s line %d: skipped (%s)", path, line, exc)
    return out


def read_crossmatch(path: str | os.PathLike) -> dict[str, int]:
    """obsid -> Gaia source_id (the indexer's form of `read_pair_table`)."""
    return dict(read_pair_table(path))


def read_positions(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Gaia source_id (as a string, like a record's object_id) -> (ra, dec) in degrees, from
    a CSV with columns `source_id`, `ra`, `dec`."""
    out: dict[str, tuple[float, float]] = {}
    for line, row, columns in _rows(path, "source_id"):
        if not {"ra", "dec"} <= columns:
            raise SpecClipError(f"{path}: a position table needs columns source_id, ra, dec")
        try:
            sid = parse_id(row.get("source_id") or "")
            ra, dec = float(row["ra"]), float(row["dec"])
            if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
                raise ValueError(f"position ({row['ra']}, {row['dec']}) is not on the sky")
        except (TypeError, ValueError) as exc:
            log.warning("%s line %d: skipped (%s)", path, line, exc)
            continue
        out[str(sid)] = (ra % 360.0, dec)
    return out


__all__ = ["SOURCE_ID_COLUMNS", "parse_id", "read_crossmatch", "read_pair_table",
           "read_positions"]
