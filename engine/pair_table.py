"""Tables keyed by survey ids that users hand us: the cross-match (pair) table LAMOST obsid ->
Gaia source_id, and the position table Gaia source_id -> (ra, dec). One parser for ids, so
the indexer, the training code and the evaluation read the same file the same way.

Ids are parsed as integers without passing through float (a 19-digit Gaia source_id does
not survive float64); "123.0", as a float-typed export writes it, is read as 123. A row whose
id is not an integer in range ("abc", "nan", "1.5", 1e30) is skipped with a warning naming the
file, the line and the value; the rest of the table is read. An obsid listed again with a
different source_id is warned about (the later line is used, as in the label tables).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from typing import Callable, Iterator

from engine.errors import SpectrumReadError
from engine.readers.guards import require_regular_file

log = logging.getLogger(__name__)

# The Gaia source_id column of a pair table: the first of these that is filled in a row.
SOURCE_ID_COLUMNS = ("source_id", "gaia_source_id", "apogee_gaiaedr3_source_id", "gaia_id")
GAIA_ID_MAX = 2 ** 63 - 1        # source ids are positive int64
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")


def parse_id(text: str | int) -> int:
    """An integer survey id from a table cell: "123", " 123 ", "123.0" -> 123.

    Raises ValueError (with the text) for anything that is not an integer."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if not _INTEGER.match(s):
        raise ValueError(f"{s[:40]!r} is not an integer id")
    return int(s.split(".", 1)[0])


def _rows(path: str | os.PathLike, problem: Callable[[set[str]], str | None]
          ) -> Iterator[tuple[int, dict]]:
    """(line number, row with stripped keys) of a CSV; refuses anything but a regular file
    and a table whose columns `problem` objects to (before any row is read)."""
    path = os.fspath(path)
    require_regular_file(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SpectrumReadError(path, f"cannot read the table ({exc})") from exc
    with fh:
        reader = csv.DictReader(fh)
        columns = {(f or "").strip() for f in reader.fieldnames or ()}
        why = problem(columns)
        if why:
            raise SpectrumReadError(path, f"{why} (columns: {sorted(columns) or 'none'})")
        for row in reader:
            yield reader.line_num, {(k or "").strip(): v for k, v in row.items()}


def _pair_columns_problem(columns: set[str]) -> str | None:
    if "obsid" in columns and columns & set(SOURCE_ID_COLUMNS):
        return None
    return ("not a cross-match table: needs an 'obsid' column and a Gaia source id column "
            f"(one of {', '.join(SOURCE_ID_COLUMNS)})")


def _position_columns_problem(columns: set[str]) -> str | None:
    if {"source_id", "ra", "dec"} <= columns:
        return None
    return "not a position table: needs columns source_id, ra, dec"


def read_pair_table(path: str | os.PathLike) -> list[tuple[str, int]]:
    """[(obsid, Gaia source_id)] from a cross-match CSV: column `obsid` and one of
    SOURCE_ID_COLUMNS (the first filled one per row). pairs.csv works as it is. Rows with no
    Gaia id are skipped (a star seen only by LAMOST)."""
    out: dict[str, int] = {}
    lines: dict[str, int] = {}
    bad = 0
    for line, row in _rows(path, _pair_columns_problem):
        obsid_text = str(row.get("obsid") or "").strip()
        sid_text = next((str(row.get(c) or "").strip() for c in SOURCE_ID_COLUMNS
                         if str(row.get(c) or "").strip()), "")
        if not obsid_text or not sid_text:
            continue
        try:
            obsid = parse_id(obsid_text)
            if obsid <= 0:
                raise ValueError(f"obsid {obsid_text[:40]!r} is not a positive integer")
            sid = parse_id(sid_text)
            if not 0 < sid <= GAIA_ID_MAX:
                raise ValueError(f"Gaia source_id {sid_text[:40]!r} is not an integer in "
                                 "1..2**63-1")
        except ValueError as exc:
            bad += 1
            log.warning("%s line %d skipped: %s", path, line, exc)
            continue
        key = str(obsid)
        if key in out and out[key] != sid:
            log.warning("%s line %d: obsid %s was matched to Gaia %d on line %d and is now "
                        "matched to %d; the later line is used", path, line, key, out[key],
                        lines[key], sid)
        out[key], lines[key] = sid, line
    if bad:
        log.warning("%s: %d cross-match rows skipped (see above); %d pairs read", path, bad,
                    len(out))
    return list(out.items())


def read_crossmatch(path: str | os.PathLike) -> dict[str, int]:
    """obsid -> Gaia source_id (the indexer's form of `read_pair_table`)."""
    return dict(read_pair_table(path))


def read_positions(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Gaia source_id (as a string, like a record's object_id) -> (ra, dec) in degrees, from
    a CSV with columns `source_id`, `ra`, `dec`."""
    out: dict[str, tuple[float, float]] = {}
    for line, row in _rows(path, _position_columns_problem):
        try:
            sid = parse_id(row.get("source_id") or "")
            ra, dec = float(row["ra"]), float(row["dec"])
            if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
                raise ValueError(f"position ({row['ra']}, {row['dec']}) is not on the sky")
        except (TypeError, ValueError) as exc:
            log.warning("%s line %d skipped: %s", path, line, exc)
            continue
        out[str(sid)] = (ra % 360.0, dec)
    return out


__all__ = ["SOURCE_ID_COLUMNS", "parse_id", "read_crossmatch", "read_pair_table",
           "read_positions"]
