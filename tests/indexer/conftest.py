"""Fixtures for indexer tests: tiny LAMOST DR2-DR7-layout FITS files written on the fly
(the real layout: a 5 x N primary image with the pipeline's header keywords)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from astropy.io import fits

from tests.indexer.doubles import ProjectionEmbedder


def write_lamost_file(path: str, obsid: int, teff: float = 5500.0, n: int = 3908,
                      seed: int = 0, klass: str = "STAR") -> str:
    """A synthetic LAMOST LRS spectrum in the DR2-DR7 image layout."""
    rng = np.random.default_rng(seed)
    loglam = 3.5682 + 1e-4 * np.arange(n)
    wave = 10 ** loglam
    cont = (wave / 5000.0) ** (-4 + teff / 2000.0)
    lines = 1 - 0.4 * np.exp(-0.5 * ((wave - 4861.3) / 4) ** 2) \
              - 0.3 * np.exp(-0.5 * ((wave - 5175.0) / 6) ** 2) * (6000 / teff)
    flux = 1000 * cont * lines * (1 + 0.01 * rng.normal(size=n))
    ivar = np.full(n, 1e-2)
    data = np.vstack([flux, ivar, wave, np.zeros(n), np.zeros(n)]).astype(np.float32)
    hdr = fits.Header()
    hdr.update({"OBSID": obsid, "DATA_V": "LAMOST DR7", "FILENAME": os.path.basename(path),
                "EXTEN0": "Flux, Inverse, Wavelength, Andmask, Ormask", "RA": 10.0 + obsid % 7,
                "DEC": 20.0 + obsid % 5, "CLASS": klass, "SUBCLASS": "G2", "Z": 1e-4,
                "SNRU": 10.0, "SNRG": 50.0, "SNRR": 60.0, "SNRI": 70.0, "SNRZ": 40.0,
                "COEFF0": 3.5682, "COEFF1": 1e-4, "VACUUM": True, "HELIO": True,
                "DESIG": f"LAMOST J{obsid}", "LMJD": 55859, "PLANID": "TEST", "SPID": 1,
                "FIBERID": obsid % 250})
    fits.PrimaryHDU(data, hdr).writeto(path, overwrite=True)
    return path


def age(folder, seconds_ago: float = 3600.0) -> None:
    """Backdate every file of `folder`: older than the indexer's racy window (a file
    recorded within 2 s of its mtime is read again by the next sync, indexer/file_index.py),
    so a test counting reads does not depend on how fast the run was."""
    for f in folder.iterdir():
        os.utime(f, (time.time() - seconds_ago, time.time() - seconds_ago))


def write_lamost_folder(folder, n: int, first_obsid: int, teff0: float, dteff: float,
                        last_is_galaxy: bool = False):
    """`folder` (created) with n synthetic spectra along a Teff sequence; obsids from
    first_obsid; the last one classed GALAXY when asked."""
    folder.mkdir(parents=True)
    for i in range(n):
        klass = "GALAXY" if last_is_galaxy and i == n - 1 else "STAR"
        write_lamost_file(str(folder / f"spec-{first_obsid + i}.fits"), first_obsid + i,
                          teff=teff0 + dteff * i, seed=i, klass=klass)
    return folder


@pytest.fixture
def lamost_folder(tmp_path):
    return write_lamost_folder(tmp_path / "spectra", 12, 1000, 4500.0, 150.0)


@pytest.fixture
def embedder():
    return ProjectionEmbedder()
