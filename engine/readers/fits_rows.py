"""FITS images of 2 x N or 3 x N (or N x 2, N x 3): rows of wavelength, flux and an optional
uncertainty (the "matrix" layout), read as LAMOST-like input (see `generic.py`).

Row 1 is the wavelength (it must be monotonic: that is what makes it an axis), row 2 the flux.
A third row is an inverse variance or an error, as the `uncertainty` option says, else as the
header says (BANDID3, IRAF's band description, or ROW3: a text containing 'ivar' / 'inverse'
or 'err' / 'sigma'); otherwise the file is refused rather than guessed. Unit: `unit` option,
else WAVEUNIT or CUNIT1 in the header, else Angstrom when plausible. Medium: `medium` option,
else VACUUM / AIRORVAC; never guessed. LAMOST's own 5 x N images go to the LAMOST reader.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.readers.fitsio import head_bytes, is_fits_head, open_fits
from engine.readers.generic import (
    AxisOptions, default_object_id, header_medium, is_claimed_by_survey_reader,
    lamost_like_record, uncertainty_to_ivar,
)
from engine.records import SpectrumRecord

NAME = "fits-rows"
MIN_PIXELS = 4


def identify(source: Any, *, path: str = "") -> bool:
    """FITS whose first image with data is 2/3 x N (not LAMOST or SDSS). The first row is
    checked by `read`, which refuses a non-monotonic one with that reason."""
    try:
        if not isinstance(source, fits.HDUList) and not is_fits_head(head_bytes(source)):
            return False
        if is_claimed_by_survey_reader(source, path):
            return False
        with open_fits(source, path or "<identify>") as hdul:
            hdu = _image(hdul)
            if hdu is None:
                return False
            return _rows(np.asarray(hdu.data, dtype=np.float64)) is not None
    except Exception:  # identify never raises
        return False
    finally:
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except Exception:
                pass


def _image(hdul: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU | None:
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
            return hdu
    return None


def _rows(data: np.ndarray) -> np.ndarray | None:
    """The data as rows (2 or 3, N), whichever way round it is stored; None if neither."""
    if data.ndim != 2:
        return None
    if data.shape[0] in (2, 3) and data.shape[1] >= MIN_PIXELS:
        return data
    if data.shape[1] in (2, 3) and data.shape[0] >= MIN_PIXELS:
        return data.T
    return None


def _monotonic(wave: np.ndarray) -> bool:
    step = np.diff(wave)
    return bool(np.all(np.isfinite(wave)) and (np.all(step > 0) or np.all(step < 0)))


def read(source: Any, *, path: str = "", **options: Any) -> list[SpectrumRecord]:
    opts = AxisOptions.from_options(options, path)
    with open_fits(source, path) as hdul:
        hdu = _image(hdul)
        shape = None if hdu is None else np.shape(hdu.data)
        rows = None if hdu is None else _rows(np.asarray(hdu.data, dtype=np.float64))
        if rows is None:
            raise SpectrumReadError(path, f"image of shape {shape} is not 2 x N or 3 x N "
                                          "(wavelength, flux[, ivar or error])")
        if not _monotonic(rows[0]):
            raise SpectrumReadError(path, "cannot place the spectrum on a wavelength axis: "
                                          "the first row is not a monotonic wavelength")
        header = hdu.header
        ivar = None
        if rows.shape[0] == 3:
            kind = opts.uncertainty or _third_row_kind(header)
            if kind is None:
                raise SpectrumReadError(path, "the third row is not described as ivar or "
                                              "error (header BANDID3 / ROW3): pass "
                                              "uncertainty=ivar|error")
            ivar = uncertainty_to_ivar(rows[2], kind)
        unit = opts.unit or _header_unit(header)
        medium = opts.medium or header_medium(header, hdul[0].header)
        name = str(header.get("OBJECT", "") or "").strip()
        return [lamost_like_record(
            path, rows[0], rows[1], ivar, None, unit=unit, medium=medium,
            object_id=name or default_object_id(path), instrument="FITS 2/3 x N image",
            layout=NAME)]


def _third_row_kind(header: fits.Header) -> str | None:
    for key in ("BANDID3", "ROW3"):
        text = str(header.get(key, "")).lower()
        if "ivar" in text or "inverse" in text:
            return "ivar"
        if "err" in text or "sigma" in text:
            return "error"
    return None


def _header_unit(header: fits.Header) -> str | None:
    for key in ("WAVEUNIT", "CUNIT1"):
        if key in header and str(header[key]).strip():
            return str(header[key]).strip()
    return None
