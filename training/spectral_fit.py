"""Fit the bundle's spectrum-space PCA bases (engine/spectral.py) on the training spectra and
add them to a bundle. Part of `specclip train`; `add_spectral_bases` also upgrades a bundle
trained before the bases existed (the network weights are untouched; the version id changes
because the stored vectors change)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.bundle import restamp_version
from engine.records import SURVEY_LAMOST, SURVEY_XP
from engine.spectral import fit_basis, save_bases

log = logging.getLogger(__name__)

SPECTRAL_COMPONENTS = 16   # 8-24 gave the best repeat-observation retrieval on real DR8 data


def add_spectral_bases(bundle_dir: str | Path, lamost, xp,
                       n_components: int = SPECTRAL_COMPONENTS) -> str:
    """`lamost`/`xp` are training SpectraSets (flux, weight); returns the new version id."""
    bases = {SURVEY_LAMOST: fit_basis(SURVEY_LAMOST, lamost.flux, lamost.weight, n_components),
             SURVEY_XP: fit_basis(SURVEY_XP, xp.flux, xp.weight, n_components)}
    save_bases(bundle_dir, bases)
    version = restamp_version(bundle_dir)
    log.info("spectral bases (%d components) added; bundle version %s", n_components, version)
    return version


def main(bundle_dir: str, data_root: str | None = None) -> str:
    """Upgrade an existing bundle from the training data it was trained on."""
    from training import data as D
    from engine.models.specclip import LAMOST_LABELS, XP_LABELS

    root = Path(data_root) if data_root else D.default_data_root()
    lamost, _val, _test = D.load_lamost_split(root, LAMOST_LABELS)
    xp = D.load_xp("train", XP_LABELS, data_root=root)
    return add_spectral_bases(bundle_dir, lamost, xp)


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    print(main(*sys.argv[1:]))
