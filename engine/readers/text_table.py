"""Plain text spectra: CSV / TXT / DAT / TSV with two or three columns (wavelength, flux,
optional error or inverse variance), read as LAMOST-like input (see `generic.py`).

- A header row names the columns (case-insensitive; `wavelength`, `wave`, `lambda`, `loglam`,
  `flux`, `ivar`, `error`, `sigma`, `mask`, ...). Units and medium may ride in the name:
  `wavelength_air [nm]`, `lambda(A, vacuum)`, `wave_vac`.
- Without a header row, two numeric columns are (wavelength, flux) and a third needs
  `uncertainty=ivar|error`.
- Comment lines start with `#`; a comment may state the medium (`# vacuum`, `# air
  wavelengths`, `# medium: air`: the word alone, or beside "wave", "lambda" or "medium") and
  the unit (`# unit: nm`, `# wavelength unit = Angstrom`; not a comment about flux).
- Separators: comma, semicolon, tab or whitespace; gzip is undone by magic number.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.readers.fitsio import head_bytes, is_fits_head, read_bytes
from engine.readers.columns import find_columns, has_axis_and_flux, ivar_and_mask
from engine.readers.generic import AxisOptions, lamost_like_record
from engine.records import SpectrumRecord

NAME = "text-table"
SUFFIXES = (".csv", ".txt", ".dat", ".tsv", ".tab", ".ascii", ".ecsv", ".csv.gz", ".txt.gz",
            ".dat.gz")
COMMENT = ("#", "%", "!")
_MEDIUM_RE = re.compile(r"\b(air|vacuum|vac)\b", re.IGNORECASE)
_ABOUT_AXIS_RE = re.compile(r"wave|lambda|medium", re.IGNORECASE)
_UNIT_RE = re.compile(r"unit\w*\s*[:=]\s*\[?([A-Za-z\u00c5\u00b5]+)", re.IGNORECASE)


def identify(source: Any, *, path: str = "") -> bool:
    """Text whose header row names a wavelength and a flux column, or whose first data row
    has 2 or 3 numbers (files named .csv/.txt/.dat/.tsv/...)."""
    try:
        if isinstance(source, fits.HDUList):
            return False
        name = str(path).lower()
        if name and not name.endswith(SUFFIXES):
            return False
        head = head_bytes(source, 16384)
        if is_fits_head(head) or b"\x00" in head:
            return False
        lines = _content_lines(head.decode("utf-8", errors="ignore").splitlines())
        if not lines:
            return False
        first = split_row(lines[0])
        if is_numeric(first):
            return len(first) in (2, 3)
        return has_axis_and_flux(first) and "source_id" not in [c.lower() for c in first]
    except Exception:  # identify never raises
        return False


def read(source: Any, *, path: str = "", **options: Any) -> list[SpectrumRecord]:
    opts = AxisOptions.from_options(options, path)
    try:
        text = read_bytes(source, path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpectrumReadError(path, f"not a UTF-8 text table ({exc.reason})") from exc
    lines = text.splitlines()
    comments = [ln.lstrip("#%! ").strip() for ln in lines if ln.lstrip().startswith(COMMENT)]
    rows = _content_lines(lines)
    if not rows:
        raise SpectrumReadError(path, "no data rows in the text table")
    header = split_row(rows[0])
    names = None if is_numeric(header) else header
    data = _parse_numbers(rows[1:] if names else rows, path)
    roles = _roles(names, data.shape[1], opts, path)
    wave_col, wave_info = roles["wave"]
    unit = opts.unit or wave_info.get("unit") or _comment_unit(comments)
    medium = opts.medium or wave_info.get("medium") or _comment_medium(comments, path)
    ivar, mask = ivar_and_mask(roles, lambda role: data[:, roles[role][0]])
    return [lamost_like_record(
        path, data[:, wave_col], data[:, roles["flux"][0]], ivar, mask, unit=unit,
        medium=medium, log10=wave_info["log10"], instrument="text table", layout=NAME)]


def _content_lines(lines: list[str]) -> list[str]:
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(COMMENT)]


def split_row(line: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in line:
            return [c.strip().strip('"').strip("'") for c in line.split(sep)]
    return line.split()


def is_numeric(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return bool(cells)


def _parse_numbers(rows: list[str], path: str) -> np.ndarray:
    values = []
    width = None
    for i, row in enumerate(rows):
        cells = split_row(row)
        if width is None:
            width = len(cells)
        if len(cells) != width:
            raise SpectrumReadError(path, f"data row {i + 1} has {len(cells)} columns, "
                                          f"the first has {width}")
        try:
            values.append([float(c) for c in cells])
        except ValueError as exc:
            raise SpectrumReadError(path, f"data row {i + 1} is not numeric ({exc})") from exc
    if len(values) < 2:
        raise SpectrumReadError(path, "fewer than 2 data rows")
    return np.asarray(values, dtype=np.float64)


def _roles(names: list[str] | None, width: int, opts: AxisOptions, path: str) -> dict:
    """{role: (column, info)} with info for the wavelength: unit, medium, log10."""
    if names is None:
        if width not in (2, 3):
            raise SpectrumReadError(path, f"{width} unnamed columns: name them in a header "
                                          "row (wavelength, flux, ivar or error)")
        roles: dict = {"wave": (0, {"unit": None, "medium": None, "log10": False}),
                       "flux": (1, {})}
        if width == 3:
            if opts.uncertainty is None:
                raise SpectrumReadError(path, "the third column is not named: add a header "
                                              "row or pass uncertainty=ivar|error (CLI: "
                                              "--uncertainty)")
            roles[opts.uncertainty] = (2, {})
        return roles
    found = find_columns(names)
    axis = found.get("wave") or found.get("loglam")
    if axis is None or "flux" not in found:
        raise SpectrumReadError(path, f"no wavelength and flux columns among {names} "
                                      "(names such as wavelength/wave/lambda/loglam, flux)")
    roles = {"wave": (axis[0], {"unit": axis[1].unit, "medium": axis[1].medium,
                                "log10": "wave" not in found}),
             "flux": (found["flux"][0], {})}
    for role in ("ivar", "error", "mask"):
        if role in found:
            roles[role] = (found[role][0], {})
    return roles


def _comment_medium(comments: list[str], path: str) -> str | None:
    """Air or vacuum from comments that state it ('# vacuum', '# air wavelengths'), not from
    any comment that happens to contain the word ('# air-glow removed')."""
    stating = [c for c in comments if c.strip().lower() in ("air", "vacuum", "vac")
               or _ABOUT_AXIS_RE.search(c)]
    found = {m.lower().replace("vacuum", "vac") for c in stating for m in _MEDIUM_RE.findall(c)}
    if len(found) > 1:
        raise SpectrumReadError(path, "comments mention both air and vacuum; pass "
                                      "medium=air|vacuum")
    if not found:
        return None
    return "air" if found == {"air"} else "vacuum"


def _comment_unit(comments: list[str]) -> str | None:
    for comment in comments:
        if "flux" in comment.lower():
            continue  # '# flux unit: erg/s/cm2/A' is not the wavelength unit
        match = _UNIT_RE.search(comment)
        if match:
            return match.group(1)
    return None
