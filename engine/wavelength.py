"""Wavelength units and air/vacuum, in one place: every non-native reader turns its wavelength
axis into vacuum Angstrom here before `engine.resample` puts it on the LAMOST grid (LAMOST and
SDSS spectra are in vacuum wavelengths; many reduced spectra are in air).

Air to vacuum uses the IAU standard refractive index of air (Morton 2000, ApJS 130, 403, as
used by SDSS and VALD): n - 1 = 8.34254e-5 + 2.406147e-2 / (130 - s^2) + 1.5998e-4 / (38.9 - s^2)
with s = 1e4 / lambda_vac (in micron^-1). The formula is written in vacuum wavelength, so the
conversion from air solves lambda_vac = lambda_air * n(lambda_vac) by fixed-point iteration
(converges to < 1e-8 A in three steps). Valid above ~2000 A; below it air is not used.
"""

from __future__ import annotations

import re

import numpy as np

# unit name (lower case, as written in headers) -> Angstrom per unit
UNITS_TO_ANGSTROM = {
    "angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "aa": 1.0, "ang": 1.0, "\u00c5": 1.0,
    "0.1nm": 1.0, "1e-10m": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "um": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4, "\u00b5m": 1e4,
    "m": 1e10, "meter": 1e10, "metre": 1e10, "cm": 1e8,
}
MEDIA = ("air", "vacuum")
# A wavelength axis whose unit is not stated is read as Angstrom only inside this range
# (anything else is more likely nm or micron, and is refused with the reason).
ANGSTROM_PLAUSIBLE = (1000.0, 100000.0)


def unit_scale(unit: str) -> float:
    """Angstrom per `unit`; ValueError for a unit that is not a wavelength."""
    key = re.sub(r"\s+", "", str(unit)).strip().lower().strip("[]()")
    if key in UNITS_TO_ANGSTROM:
        return UNITS_TO_ANGSTROM[key]
    raise ValueError(f"unknown wavelength unit {unit!r} "
                     f"(known: Angstrom, nm, um, m, cm)")


def normalise_medium(medium: str | None) -> str | None:
    """'air' / 'vacuum' (or None) from the ways files and users write it."""
    if medium is None:
        return None
    text = str(medium).strip().lower()
    if text in ("air", "awav"):
        return "air"
    if text in ("vacuum", "vac", "wave"):
        return "vacuum"
    raise ValueError(f"air or vacuum expected, got {medium!r}")


def refractive_index_air(vacuum_angstrom: np.ndarray) -> np.ndarray:
    """n(lambda_vac) of standard air (Morton 2000)."""
    s2 = (1e4 / np.asarray(vacuum_angstrom, dtype=np.float64)) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def vacuum_to_air(vacuum_angstrom: np.ndarray) -> np.ndarray:
    wave = np.asarray(vacuum_angstrom, dtype=np.float64)
    return wave / refractive_index_air(wave)


def air_to_vacuum(air_angstrom: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths (Angstrom) of air wavelengths (Angstrom), >= 2000 A."""
    air = np.asarray(air_angstrom, dtype=np.float64)
    vac = air.copy()
    for _ in range(4):
        vac = air * refractive_index_air(vac)
    return vac


def to_vacuum_angstrom(wavelength: np.ndarray, unit: str | None, medium: str,
                       log10: bool = False) -> np.ndarray:
    """A file's wavelength axis -> vacuum Angstrom.

    `log10=True` means the values are log10(lambda / unit). `unit=None` means Angstrom, but only
    when the values fall in ANGSTROM_PLAUSIBLE (ValueError otherwise, naming the range).
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    if log10:
        wave = 10.0 ** wave
    if unit is None:
        finite = wave[np.isfinite(wave)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
        if not (ANGSTROM_PLAUSIBLE[0] <= lo and hi <= ANGSTROM_PLAUSIBLE[1]):
            raise ValueError(f"wavelength unit not stated and the values ({lo:.4g}-{hi:.4g}) "
                             "are not Angstrom; state the unit (e.g. nm)")
        scale = 1.0
    else:
        scale = unit_scale(unit)
    wave = wave * scale
    medium = normalise_medium(medium)
    if medium is None:
        raise ValueError("air or vacuum wavelengths not stated")
    return air_to_vacuum(wave) if medium == "air" else wave
