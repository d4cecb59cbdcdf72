"""A user's cross-match table: LAMOST obsid -> Gaia DR3 source_id (`index --crossmatch`).

Columns: `obsid` and one of `source_id`, `gaia_source_id`, `apogee_gaiaedr3_source_id`
(the shared `pairs.csv` works as is). Rows with no Gaia id are skipped (a star seen only by
LAMOST). A row whose obsid or source_id is not an integer in range ("abc", "nan", 1e30) is
skipped with a warning naming the file, the line and the value; an obsid listed again with a
different source_id is warned about (the later line is used, as in the label tables).
"""

from __future__ import annotations

import csv
import logging
import math

from engine.errors import SpectrumReadError
from engine.readers.guards import require_regular_file

log = logging.getLogger(__name__)

GAIA_COLUMNS = ("source_id", "gaia_source_id", "apogee_gaiaedr3_source_id")
GAIA_ID_MAX = 2 ** 63 - 1        # source ids are positive int64


def parse_integer(text: str) -> int | None:
    """'605006' or '605006.0' -> 605006; None for anything that is not an exact integer."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != math.floor(value) or abs(value) > 2 ** 53:
        return None
    return int(value)


def read_crossmatch(path: str) -> dict[str, int]:
    """obsid (as a string) -> Gaia source_id from a cross-match CSV.

    Raises SpectrumReadError when the file is not a regular file or lacks the columns.
    """
    path = str(path)
    require_regular_file(path)
    out: dict[str, int] = {}
    lines: dict[str, int] = {}
    bad = 0
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip() for f in (reader.fieldnames or [])}
        gaia_columns = [c for c in GAIA_COLUMNS if c in fields]
        if "obsid" not in fields or not gaia_columns:
            raise SpectrumReadError(path, "not a cross-match table: needs an 'obsid' column "
                                          f"and one of {', '.join(GAIA_COLUMNS)}")
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            gaia_text = next((str(row[c]).strip() for c in gaia_columns if row.get(c)), "")
            obsid_text = str(row.get("obsid") or "").strip()
            if not obsid_text or not gaia_text:
                continue
            obsid, gaia = parse_integer(obsid_text), parse_integer(gaia_text)
            problem = None
            if obsid is None or obsid <= 0:
                problem = f"obsid {obsid_text[:40]!r} is not a positive integer"
            elif gaia is None or not 0 < gaia <= GAIA_ID_MAX:
                problem = f"Gaia source_id {gaia_text[:40]!r} is not an integer in 1..2**63-1"
            if problem:
                bad += 1
                log.warning("%s line %d skipped: %s", path, reader.line_num, problem)
                continue
            key = str(obsid)
            if key in out and out[key] != gaia:
                log.warning("%s line %d: obsid %s was matched to Gaia %d on line %d and is now "
                            "matched to %d; the later line is used", path, reader.line_num,
                            key, out[key], lines[key], gaia)
            out[key], lines[key] = gaia, reader.line_num
    if bad:
        log.warning("%s: %d cross-match rows skipped (see above); %d pairs read", path, bad,
                    len(out))
    return out
