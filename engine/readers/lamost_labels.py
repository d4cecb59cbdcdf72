"""Join LAMOST catalogue labels (teff, logg, feh and their errors) onto LAMOST records.

Two real tables are known (see ../shared/data/README.md):
- LASP labels (`lamost_dr10/labels.csv`): obsid, filename, teff, logg, feh; no errors.
- The DR1 catalogue (`lamost_dr1/catalogue.csv`): obsid, filename, teff, teff_err, logg,
  logg_err, feh, feh_err, ... The pilot-era files have no OBSID in their header, so they
  match by file name.
Both hold LASP's parameters (LAMOST's stellar parameter pipeline computes the teff/logg/feh of
every LRS catalogue, with or without error columns), so the label source is "LAMOST LASP"
unless the caller names another; which release a spectrum is from is the record's own
`data_release`, not a property of the table.

A table is a plain dict keyed by obsid (as a string) *and* by normalised file name (the base
name without `.gz`), so one lookup serves both kinds of record. Records are frozen; labels
are attached with `dataclasses.replace`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import replace
from typing import Iterable

from engine.errors import SpectrumReadError
from engine.readers.guards import require_regular_file
from engine.records import SURVEY_LAMOST, SpectrumRecord

log = logging.getLogger(__name__)

LabelEntry = tuple[dict[str, float], dict[str, float], str]
# our label name -> the CSV column it comes from (errors are "<column>_err")
COLUMNS = {"teff": "teff", "logg": "logg", "feh": "feh", "alpha_m": "alpha_m"}
SOURCE_LASP = "LAMOST LASP"
FILL_VALUES = (-9999.0, -999.0, 99999.0)


def filename_key(name: str) -> str:
    """Base name without directories and a trailing `.gz`: 'spec-...-013.fits'."""
    return re.sub(r"\.gz$", "", os.path.basename(str(name).strip()), flags=re.IGNORECASE)


def load_lamost_labels(path: str, source: str = SOURCE_LASP) -> dict[str, LabelEntry]:
    """Read a LAMOST label table (LASP labels CSV, DR1 catalogue CSV) into
    {obsid or filename: entry}.

    `source` names where the labels come from (default "LAMOST LASP", see the module doc).
    Raises SpectrumReadError when the CSV has neither an `obsid` nor a `filename` column,
    or no label column.
    """
    path = str(path)
    require_regular_file(path)
    # utf-8-sig: a byte-order mark (spreadsheet exports) must not hide the first column
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        present = [name for name, col in COLUMNS.items() if col in fields]
        if not present or not ({"obsid", "filename"} & set(fields)):
            raise SpectrumReadError(path, "not a LAMOST label table: needs 'obsid' or "
                                          "'filename' and at least one of teff/logg/feh")
        table: dict[str, LabelEntry] = {}
        lines: dict[str, int] = {}
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            entry = _entry(row, present, source)
            if entry is None:
                continue
            keys = []
            obsid = (row.get("obsid") or "").strip()
            if obsid:
                keys.append(_obsid_key(obsid))
            if row.get("filename"):
                keys.append(filename_key(row["filename"]))
            for key in keys:
                if key in table and table[key][:2] != entry[:2]:
                    log.warning("%s line %d: %s already has different labels (line %d); "
                                "the later line is used", path, reader.line_num, key,
                                lines[key])
                table[key], lines[key] = entry, reader.line_num
    log.info("%s: %d label keys (%s)", path, len(table), source)
    return table


def _obsid_key(text: str) -> str:
    """'605006', '605006.0' -> '605006' (pandas-written CSVs sometimes add '.0')."""
    try:
        return str(int(float(text)))
    except ValueError:
        return text.strip()


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value in FILL_VALUES:
        return None
    return value


def _entry(row: dict, present: list[str], source: str) -> LabelEntry | None:
    labels, errors = {}, {}
    for name in present:
        value = _number(row.get(COLUMNS[name]))
        if value is None:
            continue
        labels[name] = value
        err = _number(row.get(COLUMNS[name] + "_err"))
        if err is not None:
            errors[name] = err
    return (labels, errors, source) if labels else None


def lookup(record: SpectrumRecord, table: dict[str, LabelEntry]) -> LabelEntry | None:
    """The entry for a record: by obsid first, then by file name."""
    if record.object_id in table:
        return table[record.object_id]
    for name in (record.meta.get("filename"), record.source_path):
        if name and filename_key(name) in table:
            return table[filename_key(name)]
    return None


def attach_labels(records: Iterable[SpectrumRecord], table: dict[str, LabelEntry]
                  ) -> list[SpectrumRecord]:
    """Records with the table's labels attached (LAMOST records only; others unchanged).

    Labels already on a record are kept unless the table has the same label name.
    """
    out = []
    for record in records:
        entry = lookup(record, table) if record.survey == SURVEY_LAMOST else None
        if entry is None:
            out.append(record)
            continue
        labels, errors, source = entry
        out.append(replace(record, labels={**record.labels, **labels},
                           label_errors={**record.label_errors, **errors},
                           label_source=source))
    return out
