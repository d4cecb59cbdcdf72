"""SDSS / BOSS / eBOSS single-spectrum files `spec-PLATE-MJD-FIBER.fits`, read as LAMOST-like
input so that an SDSS star can be searched against LAMOST and Gaia XP.

Data model: https://data.sdss.org/datamodel/files/BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec.html
HDU1 `COADD` is a table with one row per pixel: loglam (log10 vacuum Angstrom, steps of 1e-4),
flux (1e-17 erg/s/cm^2/A), ivar, and_mask, or_mask, wdisp (line-spread sigma in pixels of
1e-4 in log10 lambda), sky, model. HDU2 (`SPECOBJ` in SDSS-I/II files, `SPALL` in BOSS files)
is one row with CLASS, SUBCLASS, Z, PLUG_RA/PLUG_DEC (the fibre's position; the primary
header's RA/DEC are the plate centre), SN_MEDIAN (u, g, r, i, z) and the ELODIE template fit.

How it becomes LAMOST-like:
1. Pixels with ivar <= 0 or and_mask != 0 (a problem in every exposure) are masked.
2. Resolution: SDSS/BOSS is R ~ 1800-2200 across 4000-5600 A (wdisp 0.83-1.17 px, median
   1.01 and 0.98, in the two real files here), LAMOST LRS R ~ 1800. Both are
   sampled at 1e-4 in log10 lambda, where a constant R is a constant width, so each SDSS pixel
   is convolved with a Gaussian of sigma sqrt(sigma_LAMOST^2 - wdisp^2) pixels
   (`engine.resample.degrade_to_lamost`; sigma_LAMOST = 1.025 px for R = 1800). wdisp is the
   file's own per-pixel line-spread sigma; where it is missing or not positive, R = 2000
   (0.922 px) is assumed. A pixel already broader than LAMOST is left as it is. The kernel
   is small (sigma ~0.25 px at the median): for the real BOSS star it moves the shipped
   model's prediction by 4 K, 0.006 in log g and 0.02 dex in [Fe/H].
3. The convolved spectrum is resampled flux-conservingly onto LAMOST's native grid by
   `engine.resample.resample_to_lamost_grid`. SDSS's loglam values are whole multiples of
   1e-4 like LAMOST's (COEFF0 = 3.5526 or 3.5811 in the two real files), so the pixels
   coincide up to float32 rounding (< 0.003 px) and the resampling is close to a copy.
   Both surveys are vacuum and heliocentric.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from astropy.io import fits

from engine.errors import SpectrumReadError
from engine.readers.columns import bad_pixels
from engine.readers.fits_headers import as_float, as_int, as_text
from engine.readers.fitsio import FITS_BLOCK, head_bytes, is_fits_head, open_fits
from engine.readers.generic import lamost_like_record
from engine.records import SpectrumRecord
from engine.resample import degrade_to_lamost, sigma_pixels

log = logging.getLogger(__name__)

NAME = "sdss-spec"
SDSS_LOG10_STEP = 1e-4
DEFAULT_SDSS_RESOLUTION = 2000.0
INFO_HDUS = ("SPALL", "SPECOBJ")
HEAD_BLOCKS = 12   # primary (~140 cards) + COADD header fit well inside 12 FITS blocks


def identify(source: Any, *, path: str = "") -> bool:
    """A FITS file with a `COADD` table holding loglam and flux columns (not LAMOST)."""
    try:
        if isinstance(source, fits.HDUList):
            return _is_sdss(source)
        head = head_bytes(source, HEAD_BLOCKS * FITS_BLOCK)
        if not is_fits_head(head) or b"LAMOST" in head:
            return False
        # Header cards only (no data read): the COADD extension and its loglam/flux columns.
        cards = head.lower()
        return b"extname = 'coadd" in cards and b"'loglam" in cards and b"'flux" in cards
    except Exception:  # identify never raises
        return False


def _is_sdss(hdul: fits.HDUList) -> bool:
    if "LAMOST" in str(hdul[0].header.get("TELESCOP", "")):
        return False
    if "COADD" not in hdul or not isinstance(hdul["COADD"], fits.BinTableHDU):
        return False
    names = {n.lower() for n in hdul["COADD"].columns.names}
    return {"loglam", "flux"} <= names


def read(source: Any, *, path: str = "") -> list[SpectrumRecord]:
    """Read one spec file into a one-element list of LAMOST-like records."""
    with open_fits(source, path) as hdul:
        if not _is_sdss(hdul):
            raise SpectrumReadError(path, "not an SDSS spec file (no COADD table with "
                                          "loglam and flux columns)")
        table = hdul["COADD"].data
        cols = {n.lower(): n for n in table.columns.names}

        def col(name: str) -> np.ndarray | None:
            return np.asarray(table[cols[name]], dtype=np.float64) if name in cols else None

        loglam, flux = col("loglam"), col("flux")
        ivar = col("ivar")
        if ivar is None:
            raise SpectrumReadError(path, "SDSS COADD table has no ivar column")
        mask = bad_pixels(flux, ivar, col("and_mask"))
        if mask.all():
            raise SpectrumReadError(path, "every pixel is masked (ivar = 0 or and_mask set)")
        _check_step(loglam, path)
        sigma_in, sigma_source = _line_spread(col("wdisp"))
        flux, ivar, mask = degrade_to_lamost(flux, np.where(mask, 0.0, ivar), mask, sigma_in)
        info = _info_row(hdul)
        header = hdul[0].header
        plate = as_int(info.get("PLATE", header.get("PLATEID")))
        mjd = as_int(info.get("MJD", header.get("MJD")))
        fiber = as_int(info.get("FIBERID", header.get("FIBERID")))
        object_id = (f"sdss-{plate:04d}-{mjd:05d}-{fiber:04d}"
                     if None not in (plate, mjd, fiber) else None)
        sn = np.atleast_1d(np.asarray(info.get("SN_MEDIAN", []), dtype=np.float64))
        snr = ({b: float(v) for b, v in zip("ugriz", sn, strict=True) if np.isfinite(v)}
               if sn.size == 5 else {})
        run2d = str(info.get("RUN2D", header.get("RUN2D", "")) or "").strip()
        meta = {"plate": plate, "mjd": mjd, "fiberid": fiber, "run2d": run2d,
                "resolution": f"degraded to R={1800:.0f} ({sigma_source})",
                "median_wdisp_px": float(np.nanmedian(sigma_in))}
        for key in ("ELODIE_SPTYPE", "ELODIE_TEFF", "ELODIE_LOGG", "ELODIE_FEH", "OBJTYPE",
                    "SN_MEDIAN_ALL"):
            if key in info:
                meta[key.lower()] = _plain(info[key])
        return [lamost_like_record(
            path, 10.0 ** loglam, flux, ivar, mask, unit="Angstrom", medium="vacuum",
            object_id=object_id, instrument="SDSS/BOSS", layout="sdss-coadd", meta=meta,
            data_release=f"SDSS {run2d}".strip(),
            ra=as_float(info.get("PLUG_RA", header.get("PLUG_RA"))),
            dec=as_float(info.get("PLUG_DEC", header.get("PLUG_DEC"))),
            obj_class=as_text(info.get("CLASS")), subclass=as_text(info.get("SUBCLASS")),
            z=as_float(info.get("Z")), snr=snr)]


def _check_step(loglam: np.ndarray, path: str) -> None:
    step = np.median(np.diff(loglam)) if loglam.size > 1 else np.nan
    if not np.isfinite(step) or abs(step - SDSS_LOG10_STEP) > 0.01 * SDSS_LOG10_STEP:
        raise SpectrumReadError(path, f"loglam step {step:.3g} is not SDSS's 1e-4 "
                                      "(the resolution matching assumes it)")


def _line_spread(wdisp: np.ndarray | None) -> tuple[np.ndarray | float, str]:
    """Per-pixel line-spread sigma in pixels: the file's wdisp, or R = 2000 where absent."""
    default = float(sigma_pixels(DEFAULT_SDSS_RESOLUTION))
    if wdisp is None:
        return default, f"no wdisp column: R={DEFAULT_SDSS_RESOLUTION:.0f} assumed"
    usable = np.isfinite(wdisp) & (wdisp > 0)
    if not usable.any():
        return default, f"wdisp not positive: R={DEFAULT_SDSS_RESOLUTION:.0f} assumed"
    return np.where(usable, wdisp, default), "from the file's wdisp"


def _info_row(hdul: fits.HDUList) -> dict:
    for name in INFO_HDUS:
        if name in hdul and isinstance(hdul[name], fits.BinTableHDU) and len(hdul[name].data):
            row = hdul[name].data[0]
            return {n.upper(): row[n] for n in hdul[name].columns.names}
    return {}


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, str)):
        return as_text(value.decode() if isinstance(value, bytes) else value)
    value = np.asarray(value)
    return value.tolist() if value.ndim else value.item()

