"""Rewrite LAMOST DR8+ COADD-table files into the DR2-DR7 layout (5 x N primary image: flux,
ivar, wavelength, andmask, ormask; the primary header kept), so that one real spectrum can be
scored in both layouts. Used by `specclip evaluate` (metrics per layout) and the layout test.
The image layout carries no pipeline normalisation, as real DR2-DR7 files do not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

log = logging.getLogger(__name__)

LAYOUT_TABLE = "coadd_table"   # DR8+ v2.0: primary header + COADD binary table
LAYOUT_IMAGE = "image_5xN"     # DR2-DR7: 5 x N primary image


def rewrite_as_image(src: str | Path, dst: str | Path) -> None:
    """Write `src` (a COADD-table file) as a DR2-DR7 image file `dst`. Raises ValueError
    naming the file when `src` has no COADD table."""
    with fits.open(src, memmap=False) as hdul:
        if "COADD" not in hdul:
            raise ValueError(f"{src}: no COADD table to rewrite")
        header = hdul[0].header.copy()
        row = hdul["COADD"].data[0]
        names = [n.upper() for n in hdul["COADD"].columns.names]

        def col(name: str, like: np.ndarray | None = None) -> np.ndarray:
            if name in names:
                return np.asarray(row[name], np.float64).ravel()
            return np.zeros_like(like)

        flux = col("FLUX")
        image = np.stack([flux, col("IVAR"), col("WAVELENGTH"), col("ANDMASK", flux),
                          col("ORMASK", flux)]).astype(np.float32)
    for key in ("EXTEN0", "EXTEN1", "EXTEN2", "EXTEN3", "EXTEN4"):
        header.remove(key, ignore_missing=True)
    header["EXTEN0"] = "Flux"
    header["EXTEN1"] = "Inverse Variance"
    header["EXTEN2"] = "WaveLength"
    header["EXTEN3"] = "Andmask"
    header["EXTEN4"] = "Ormask"
    fits.PrimaryHDU(image, header=header).writeto(dst, overwrite=True)


def rewrite_folder(files: list[Path], out_dir: Path) -> list[Path]:
    """Rewrite every COADD-table file of `files` into `out_dir` (same base names, .fits);
    files that cannot be rewritten are logged and skipped. Returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        dst = out_dir / (f.name[:-3] if f.name.endswith(".gz") else f.name)
        try:
            rewrite_as_image(f, dst)
        except (ValueError, OSError) as exc:
            log.info("not rewritten: %s", exc)
            continue
        written.append(dst)
    return written
