"""1-D FITS images whose wavelength axis is a linear or log-linear WCS, read as LAMOST-like
input (see `generic.py`).

The first image HDU with one axis (or 1 x N) holds the flux. Its axis, pixel p = 1..N (FITS
counts from 1), CRPIX1 default 1, step CDELT1 or CD1_1:
- linear: lambda = CRVAL1 + step * (p - CRPIX1);
- log10-linear: log10 lambda = CRVAL1 + step * (p - CRPIX1), when DC-FLAG = 1 (IRAF), when the
  file uses SDSS-I's COEFF0/COEFF1, or when CRVAL1 < 5 with a step < 0.01 (a log10 in Angstrom:
  no optical wavelength is 5 units long in any unit);
- CTYPE1 ending in -LOG (FITS WCS paper III): lambda = CRVAL1 exp(step (p - CRPIX1) / CRVAL1).
An image HDU named IVAR, or ERROR/ERR/SIGMA/UNCERT/STDDEV, of the same length gives the
uncertainty. Unit: `unit` option, else CUNIT1, else Angstrom when plausible. Medium: `medium`
option, else CTYPE1 (WAVE = vacuum, AWAV = air, per the FITS standard), else VACUUM /
AIRORVAC; never guessed. A 1-D image without CRVAL1 and a step is refused.
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

NAME = "fits-wcs-1d"
IVAR_EXT = ("IVAR", "INVVAR")
ERROR_EXT = ("ERROR", "ERR", "SIGMA", "UNCERT", "STDDEV")


def identify(source: Any, *, path: str = "") -> bool:
    """FITS whose first image with data is 1-D (not LAMOST or SDSS). Claimed even without a
    wavelength WCS, so that `read` can refuse it with that reason."""
    return identify_fits_layout(source, path, lambda hdul: _flux_hdu(hdul) is not None)


def _flux_hdu(hdul: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU | None:
    """The first image with data when it is 1-D (or 1 x N); None otherwise: not this layout."""
    hdu = first_image(hdul)
    shape = None if hdu is None else np.shape(hdu.data)
    if shape is not None and (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)):
        return hdu
    return None


def _step(header: fits.Header) -> float | None:
    for key in ("CDELT1", "CD1_1"):
        if key in header:
            return float(header[key])
    return None


def read(source: Any, *, path: str = "", **options: Any) -> list[SpectrumRecord]:
    opts = AxisOptions.from_options(options, path)
    with open_fits(source, path) as hdul:
        hdu = _flux_hdu(hdul)
        if hdu is None:
            image = first_image(hdul)
            raise SpectrumReadError(path, "no 1-D image: " + (
                "the file has no image with data" if image is None else
                f"the first image with data has shape {np.shape(image.data)}"))
        header = hdu.header
        flux = np.asarray(hdu.data, dtype=np.float64).ravel()
        wave, log10 = _axis(header, flux.size, path)
        unit = opts.unit or header_unit(header)
        medium = opts.medium or _ctype_medium(header) or header_medium(header, hdul[0].header)
        ivar = _uncertainty(hdul, flux.size)
        return [lamost_like_record(
            path, wave, flux, ivar, None, unit=unit, medium=medium, log10=log10,
            object_id=header_name(header, hdul[0].header), instrument="FITS 1-D image",
            layout=NAME)]


def _axis(header: fits.Header, n: int, path: str) -> tuple[np.ndarray, bool]:
    """(axis values, whether they are log10): see the module docstring."""
    if "COEFF0" in header and "COEFF1" in header:   # SDSS-I/II spSpec style
        return float(header["COEFF0"]) + float(header["COEFF1"]) * np.arange(n), True
    step = _step(header)
    if "CRVAL1" not in header or step is None:
        raise SpectrumReadError(path, "cannot place the spectrum on a wavelength axis: the "
                                      "1-D image has no CRVAL1 and CDELT1/CD1_1 keywords")
    start, ref = float(header["CRVAL1"]), float(header.get("CRPIX1", 1.0))
    offset = np.arange(1, n + 1) - ref
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype.endswith("-LOG"):
        return start * np.exp(step * offset / start), False
    log10 = int(header.get("DC-FLAG", 0) or 0) == 1 or (start < 5 and abs(step) < 0.01)
    return start + step * offset, log10


def _ctype_medium(header: fits.Header) -> str | None:
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype.startswith("AWAV"):
        return "air"
    if ctype.startswith("WAVE"):
        return "vacuum"
    return None


def _uncertainty(hdul: fits.HDUList, n: int) -> np.ndarray | None:
    for hdu in hdul[1:]:
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
        data = getattr(hdu, "data", None)
        if data is None or np.size(data) != n:
            continue
        if name in IVAR_EXT:
            return np.asarray(data, dtype=np.float64).ravel()
        if name in ERROR_EXT:
            return uncertainty_to_ivar(np.asarray(data).ravel(), "error")
    return None
