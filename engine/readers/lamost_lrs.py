"""LAMOST low-resolution (LRS) spectra, all three layouts the archive has served.

Data model: http://www.lamost.org/dr10/v2.0/doc/lr-data-production-description and the
per-release "LRS data format" pages. Layouts (FACTS.md, checked on the shared data):

- DR8+ ("v2.0", DR10 here): empty primary HDU + `COADD` binary table, one row, columns FLUX,
  IVAR, WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION (the pipeline's normalised flux).
- DR2-DR7 (also DR8 image files): primary image 5 x N = flux, ivar, wavelength, andmask, ormask.
- pilot / DR1 (pipeline v2.6): primary image 5 x N = flux, ivar, *continuum-normalised flux*,
  andmask, ormask (header EXTEN0 says "Subcontinuum"); wavelength from COEFF0/COEFF1.

Every layout is log-linear, log10(lambda) = 3.5682 + 1e-4 i (vacuum, heliocentric), but files
differ in length (red end cut), so pixels are placed by an integer offset on that native grid
(`record.pixel_offset`) and the record's wavelengths are the exact grid values.
Medium-resolution (MRS, `med-*`) files are refused: they are not the same instrument mode.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.grids import LAMOST_LOG10_STEP, LAMOST_NATIVE_LOG10_START, lamost_native_wavelength
from engine.readers.columns import bad_pixels
from engine.readers.fits_headers import as_float, as_text
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits
from engine.records import SURVEY_LAMOST, SpectrumRecord

log = logging.getLogger(__name__)

NAME = "lamost-lrs"
SNR_BANDS = ("u", "g", "r", "i", "z")
# Largest tolerated distance (in native pixels) between a file's wavelengths and the grid.
GRID_TOLERANCE_PX = 0.1
NORM_MISSING = -9999.0   # what DR10 files with NORM=0 hold in NORMALIZATION
# A LAMOST LRS file (one spectrum, ~3909 px x 5-6 rows, plus header) is ~0.1-0.5 MB
# uncompressed; anything far larger is not one, and is refused before it is inflated.
MAX_FILE_BYTES = 8 * 1024 * 1024
# Where a file's first pixel may sit on the native grid: LRS coverage is ~3700-9100 A
# (native pixels 0..~3909); a start outside about 2900-9100 A is not an LRS spectrum.
OFFSET_RANGE_PX = (-1000, 3909)


def identify(source: Any, *, path: str = "") -> bool:
    """True for any LAMOST FITS file (LRS or MRS: the reader refuses MRS with a reason)."""
    try:
        if isinstance(source, fits.HDUList):
            header = source[0].header
            return "LAMOST" in str(header.get("TELESCOP", "")) or \
                "LAMOST" in str(header.get("ORIGIN", ""))
        head = head_bytes(source)
        return is_fits_head(head) and b"LAMOST" in head
    except Exception:  # identify never raises
        return False


def read(source: Any, *, path: str = "") -> list[SpectrumRecord]:
    """Read one LAMOST LRS file into a one-element list of records.

    Raises SpectrumReadError for MRS files, files with no LRS spectrum, off-grid wavelengths,
    and spectra with no usable pixel (all flux non-finite or all ivar <= 0).
    """
    with open_fits(source, path, MAX_FILE_BYTES) as hdul:
        header = hdul[0].header
        if _is_mrs(hdul, header):
            raise SpectrumReadError(path, "LAMOST medium-resolution (MRS) spectrum: only "
                                          "low-resolution (LRS) spectra are supported")
        if "COADD" in hdul and isinstance(hdul["COADD"], fits.BinTableHDU):
            arrays = _read_coadd(hdul["COADD"], header, path)
        elif hdul[0].data is not None and np.ndim(hdul[0].data) == 2:
            arrays = _read_image(np.asarray(hdul[0].data, dtype=np.float64), header, path)
        else:
            raise SpectrumReadError(path, "no LAMOST LRS spectrum found (neither a COADD "
                                          "table nor a 5 x N primary image)")
        # Inside the block: header cards are parsed lazily and a corrupt card raises here.
        return [_make_record(arrays, header, path)]


def _is_mrs(hdul: fits.HDUList, header: fits.Header) -> bool:
    filename = str(header.get("FILENAME", ""))
    return filename.startswith("med-") or "COADD_B" in hdul or "COADD_R" in hdul


def _read_coadd(hdu: fits.BinTableHDU, header: fits.Header, path: str) -> dict:
    names = [n.upper() for n in hdu.columns.names]
    missing = [c for c in ("FLUX", "IVAR", "WAVELENGTH") if c not in names]
    if missing or len(hdu.data) < 1:
        raise SpectrumReadError(path, f"COADD table lacks columns {missing} or has no rows")
    if len(hdu.data) > 1:
        # A LAMOST LRS file is one spectrum: the primary header (OBSID, position, SNR)
        # describes one row, so extra rows cannot be attributed to any observation.
        raise SpectrumReadError(path, f"COADD table has {len(hdu.data)} rows; a LAMOST LRS "
                                      "file holds one spectrum (one row) described by its "
                                      "header, so the rows cannot be told apart")
    row = hdu.data[0]

    def col(name: str) -> np.ndarray | None:
        return np.asarray(row[name], dtype=np.float64).ravel() if name in names else None

    flux, ivar, wave = col("FLUX"), col("IVAR"), col("WAVELENGTH")
    norm = col("NORMALIZATION")
    if norm is not None and not _norm_usable(norm, flux, header):
        log.debug("%s: NORMALIZATION unusable (NORM=%s, %d vs %d px); dropped", path,
                  header.get("NORM"), norm.size, flux.size)
        norm = None
    return dict(flux=flux, ivar=ivar, offset=_offset_from_wavelength(wave, path),
                andmask=col("ANDMASK"), ormask=col("ORMASK"), norm=norm, layout="coadd")


def _norm_usable(norm: np.ndarray, flux: np.ndarray, header: fits.Header) -> bool:
    """The pipeline's normalised flux is kept only when it can be trusted: NORM != 0, same
    length as FLUX (three DR10 files carry a shorter, unrelated array), no -9999 fill."""
    if str(header.get("NORM", 1)).strip() in ("0", "F", "False"):
        return False
    if norm.shape != flux.shape or np.any(norm == NORM_MISSING):
        return False
    return bool(np.isfinite(norm).any() and np.any(norm != 0))


def _read_image(data: np.ndarray, header: fits.Header, path: str) -> dict:
    if data.shape[0] < 3:
        raise SpectrumReadError(path, f"primary image has shape {data.shape}; expected 5 x N "
                                      "(flux, ivar, wavelength, andmask, ormask)")
    rows = [s.strip().lower() for s in re.split(r"[,\s]+", str(header.get("EXTEN0", ""))) if s]
    pilot = len(rows) > 2 and rows[2].startswith("subcont")
    andmask = data[3] if data.shape[0] > 3 else None
    ormask = data[4] if data.shape[0] > 4 else None
    if pilot:
        offset = _offset_from_coefficients(header, path)
        return dict(flux=data[0], ivar=data[1], offset=offset, andmask=andmask, ormask=ormask,
                    norm=data[2], layout="pilot")
    return dict(flux=data[0], ivar=data[1], offset=_offset_from_wavelength(data[2], path),
                andmask=andmask, ormask=ormask, norm=None, layout="image")


def _offset_from_wavelength(wave: np.ndarray, path: str) -> int:
    """Native-grid index of the first pixel; refuses wavelengths that are off the grid."""
    good = np.isfinite(wave) & (wave > 0)
    if not good.any():
        raise SpectrumReadError(path, "wavelength array has no finite positive value")
    steps = (np.log10(wave[good]) - LAMOST_NATIVE_LOG10_START) / LAMOST_LOG10_STEP
    index = np.flatnonzero(good)
    offsets = steps - index
    median = float(np.median(offsets))
    offset = _checked_offset(median, path, f"first wavelength {wave[good][0]:.6g} A")
    if np.max(np.abs(offsets - offset)) > GRID_TOLERANCE_PX:
        raise SpectrumReadError(path, "wavelengths are not on the LAMOST log-linear grid "
                                      "(log10 lambda = 3.5682 + 1e-4 i)")
    return offset


def _checked_offset(offset: float, path: str, what: str) -> int:
    """The native-grid offset as an int, refused when it puts the spectrum outside LAMOST
    LRS coverage (a corrupt COEFF0 or wavelength row: 1e12 once gave offsets near 1e16)."""
    low, high = OFFSET_RANGE_PX
    if not np.isfinite(offset) or not low <= offset <= high:
        raise SpectrumReadError(path, f"{what} puts the first pixel outside LAMOST LRS "
                                      "coverage (about 2900-9100 A on the native grid)")
    return int(round(offset))


def _offset_from_coefficients(header: fits.Header, path: str) -> int:
    start = header.get("COEFF0", header.get("CRVAL1"))
    step = header.get("COEFF1", header.get("CD1_1"))
    if start is None or step is None:
        raise SpectrumReadError(path, "pilot-layout file without COEFF0/COEFF1 wavelength keys")
    start, step = as_float(start), as_float(step)
    if start is None or step is None:
        raise SpectrumReadError(path, "COEFF0/COEFF1 are not finite numbers")
    if abs(step - LAMOST_LOG10_STEP) > 1e-8:
        raise SpectrumReadError(path, f"log10 dispersion {step} is not LAMOST's 1e-4")
    offset = (start - LAMOST_NATIVE_LOG10_START) / LAMOST_LOG10_STEP
    whole = _checked_offset(offset, path, f"COEFF0 = {start}")
    if abs(offset - whole) > GRID_TOLERANCE_PX:
        raise SpectrumReadError(path, f"COEFF0 = {start} is not on the LAMOST native grid")
    return whole


def _pixel_mask(arrays: dict, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, ivar, mask): non-finite flux -> 0, bad ivar -> 0, mask = unusable pixel."""
    flux, ivar = arrays["flux"], arrays["ivar"]
    finite = np.isfinite(flux)
    if not finite.any():
        raise SpectrumReadError(path, "flux is NaN/non-finite at every pixel")
    ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    if not (ivar > 0).any():
        raise SpectrumReadError(path, "inverse variance is zero (or invalid) at every pixel")
    mask = bad_pixels(flux, ivar, arrays.get("andmask"), arrays.get("ormask"))
    if mask.all():
        raise SpectrumReadError(path, "every pixel is masked (andmask/ormask, ivar, NaN)")
    return np.where(finite, flux, 0.0), ivar, mask


def _make_record(arrays: dict, header: fits.Header, path: str) -> SpectrumRecord:
    flux, ivar, mask = _pixel_mask(arrays, path)
    offset = arrays["offset"]
    norm = arrays.get("norm")
    if norm is not None:
        # The pipeline marks bad pixels with 0 in its normalised flux; keep them finite.
        norm = np.where(np.isfinite(norm), norm, 0.0)
    return SpectrumRecord(
        survey=SURVEY_LAMOST,
        object_id=_object_id(header, path),
        wavelength=lamost_native_wavelength(flux.size, offset),
        flux=flux, ivar=ivar, mask=mask,
        source_path=path, source_index=0,
        data_release=_data_release(header, arrays["layout"]),
        ra=as_float(header.get("RA")), dec=as_float(header.get("DEC")),
        obj_class=as_text(header.get("CLASS")), subclass=as_text(header.get("SUBCLASS")),
        z=as_float(header.get("Z")),
        snr=_snr(header),
        pixel_offset=offset,
        norm_flux=norm,
        meta=_meta(header, arrays["layout"]),
    )


def _object_id(header: fits.Header, path: str) -> str:
    """OBSID when the file has one; otherwise (pilot files) the file name without extension,
    which LAMOST builds from lmjd-planid_spid-fiberid and is therefore unique and stable."""
    obsid = header.get("OBSID")
    if obsid not in (None, "", 0):
        return str(obsid).strip()
    name = str(header.get("FILENAME") or os.path.basename(path))
    return re.sub(r"(\.fits?)?(\.gz)?$", "", name, flags=re.IGNORECASE)


def _data_release(header: fits.Header, layout: str) -> str:
    version = str(header.get("DATA_V", "")).strip()
    match = re.search(r"(DR\d+)", version, flags=re.IGNORECASE)
    if match:
        return match.group(1).upper()
    # Pipeline v2.6 pilot-layout files carry no DATA_V; they were released in DR1.
    return "DR1" if layout == "pilot" else version


def _snr(header: fits.Header) -> dict[str, float]:
    snr = {}
    for band in SNR_BANDS:
        for key in (f"SNR{band.upper()}", f"SN_{band.upper()}"):
            value = as_float(header.get(key))
            if value is not None:
                snr[band] = value
                break
    return snr


def _meta(header: fits.Header, layout: str) -> dict:
    keys = {"filename": "FILENAME", "designation": "DESIG", "lmjd": "LMJD", "mjd": "MJD",
            "planid": "PLANID", "spid": "SPID", "fiberid": "FIBERID", "z_err": "Z_ERR",
            "pipeline": "VERSPIPE"}
    meta = {"layout": layout}
    for name, key in keys.items():
        value = header.get(key)
        if value is not None and value != "":
            meta[name] = value.strip() if isinstance(value, str) else value
    return meta

