"""What an open FITS file states in its headers and HDUs, read one way by the LAMOST, SDSS and
generic FITS readers: the first image with data, the wavelength unit, air or vacuum, the
object's name, and the values of header cards (or of one-row info tables, as SDSS has) as
plain Python numbers and text (None when a value is missing, blank or not a finite number).

Air or vacuum is taken only from cards that state it (VACUUM T/F, as SDSS and LAMOST write
it; AIRORVAC): it is never guessed, see `engine/readers/generic.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits


def first_image(hdul: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU | None:
    """The first primary or image HDU that holds data (None if there is none)."""
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
            return hdu
    return None


def header_medium(*headers: Any) -> str | None:
    """Air or vacuum as FITS headers state it: VACUUM (T/F, SDSS and LAMOST), AIRORVAC."""
    for header in headers:
        if header is None:
            continue
        if "VACUUM" in header:
            return "vacuum" if bool(header["VACUUM"]) else "air"
        value = str(header.get("AIRORVAC", "")).strip().lower()
        if value.startswith("vac"):
            return "vacuum"
        if value == "air":
            return "air"
    return None


def header_unit(header: fits.Header, keys: tuple[str, ...] = ("CUNIT1",)) -> str | None:
    """The wavelength unit from the first of `keys` that is present and not blank."""
    for key in keys:
        if key in header and str(header[key]).strip():
            return str(header[key]).strip()
    return None


def header_name(*headers: Any, keys: tuple[str, ...] = ("OBJECT",)) -> str | None:
    """The object's name: the first header (in order) holding one of `keys` (in order)
    decides; a blank value there gives None (the caller then names the spectrum by file)."""
    for header in headers:
        for key in keys:
            if key in header:
                return str(header[key] or "").strip() or None
    return None


def as_float(value: Any) -> float | None:
    """A card or cell value as a finite float, else None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """A card or cell value as an int, else None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_text(value: Any) -> str | None:
    """A card or cell value as stripped text, None when missing or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
