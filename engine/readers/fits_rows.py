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
from engine.readers.columns import uncertainty_to_ivar
from engine.readers.fits_headers import first_image, header_medium, header_name, header_unit
from engine.readers.fitsio import open_fits
from engine.readers.generic import AxisOptions, identify_fits_layout, lamost_like_record
from engine.records import SpectrumRecord

NAME = "fits-rows"
MIN_PIXELS = 4


def identify(source: Any, *, path: str = "") -> bool:
    """FITS whose first image with data is 2/3 x N (not LAMOST or SDSS). The first row is
    checked by `read`, which refuses a non-monotonic one with that reason."""
    return identify_fits_layout(source, path, lambda hdul: _image_rows(first_image(hdul))
                                is not None)


def _image_rows(hdu: fits.ImageHDU | fits.PrimaryHDU | None) -> np.ndarray | None:
    return None if hdu is None else _rows(np.asarray(hdu.data, dtype=np.float64))


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
        hdu = first_image(hdul)
        shape = None if hdu is None else np.shape(hdu.data)
        rows = _image_rows(hdu)
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
        unit = opts.unit or header_unit(header, ("WAVEUNIT", "CUNIT1"))
        medium = opts.medium or header_medium(header, hdul[0].header)
        return [lamost_like_record(
            path, rows[0], rows[1], ivar, None, unit=unit, medium=medium,
            object_id=header_name(header), instrument="FITS 2/3 x N image", layout=NAME)]


def _third_row_kind(header: fits.Header) -> str | None:
    for key in ("BANDID3", "ROW3"):
        text = str(header.get(key, "")).lower()
        if "ivar" in text or "inverse" in text:
            return "ivar"
        if "err" in text or "sigma" in text:
            return "error"
    return None

