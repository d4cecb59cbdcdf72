"""What FITS headers state, read one way by every FITS reader (engine/readers/fits_headers.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from engine import readers
from engine.errors import SpectrumReadError
from engine.readers.fits_headers import (
    as_float, as_int, as_text, first_image, header_medium, header_name, header_unit,
)


def test_first_image_skips_empty_primary_and_tables():
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="D", array=[1.0])])
    image = fits.ImageHDU(np.zeros(5))
    assert first_image(fits.HDUList([fits.PrimaryHDU(), table, image])) is image
    assert first_image(fits.HDUList([fits.PrimaryHDU(), table])) is None


def test_name_unit_medium_and_values():
    ext = fits.Header({"OBJECT": "  ", "CUNIT1": " "})
    primary = fits.Header({"OBJECT": "star", "OBJNAME": "other", "WAVEUNIT": "nm",
                           "AIRORVAC": "air"})
    # the first header holding the key decides, even when its value is blank
    assert header_name(ext, primary) is None and header_name(primary, ext) == "star"
    assert header_name(fits.Header({"OBJNAME": "b"}), keys=("OBJECT", "OBJNAME")) == "b"
    assert header_unit(ext) is None and header_unit(primary, ("WAVEUNIT", "CUNIT1")) == "nm"
    assert header_medium(None, ext, primary) == "air"
    assert header_medium(fits.Header({"VACUUM": True})) == "vacuum"
    assert (as_float("1.5"), as_float("nan"), as_float(None)) == (1.5, None, None)
    assert (as_int(np.int16(7)), as_int("x")) == (7, None)
    assert (as_text(" G2 "), as_text(""), as_text(None)) == ("G2", None, None)


def _wcs_file(header: dict) -> io.BytesIO:
    wave0 = 4000.0
    cards = {"CRVAL1": wave0, "CDELT1": 1.0, "CRPIX1": 1.0, "VACUUM": True, **header}
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ones(500), header=fits.Header(cards)).writeto(buf)
    buf.seek(0)
    return buf


def test_blank_cunit1_is_an_unstated_unit():
    """A blank CUNIT1 says nothing: Angstrom when the values look like it (not 'unknown unit')."""
    (record,) = readers.read(_wcs_file({"CUNIT1": ""}), path="blank.fits")
    assert record.meta["wavelength_unit"] == "Angstrom" and record.n_pixels > 400
    (record,) = readers.read(_wcs_file({"CRVAL1": 400.0, "CDELT1": 0.1, "CUNIT1": "nm"}),
                             path="nm.fits")
    assert record.meta["wavelength_unit"] == "nm" and record.n_pixels > 400


def test_wcs_refusal_names_the_image_shape_or_its_absence():
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ones((4, 50))).writeto(buf)
    with pytest.raises(SpectrumReadError, match=r"first image with data has shape \(4, 50\)"):
        readers.read(io.BytesIO(buf.getvalue()), format="fits-wcs-1d", path="img.fits")
    buf = io.BytesIO()
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="D", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    with pytest.raises(SpectrumReadError, match="the file has no image with data"):
        readers.read(io.BytesIO(buf.getvalue()), format="fits-wcs-1d", path="tab.fits")
