"""One spectrum, two LAMOST layouts: real DR10 COADD-table files rewritten into the DR2-DR7
5 x N primary image (flux, ivar, wavelength, andmask, ormask; header kept) must give the
shipped model the same predictions and the same neighbours."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from astropy.io import fits

from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.readers import read_many
from training.layouts import rewrite_as_image, rewrite_folder
from training.metrics import top_k

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_rewrite_keeps_arrays_and_header(tmp_path):
    n = 50
    cols = {name: np.arange(n, dtype=np.float32) + i for i, name in
            enumerate(("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK", "NORMALIZATION"))}
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=f"{n}E", array=v[None]) for k, v in cols.items()],
        name="COADD")
    primary = fits.PrimaryHDU()
    primary.header["OBSID"] = 123
    src = tmp_path / "spec.fits"
    fits.HDUList([primary, table]).writeto(src)
    rewrite_as_image(src, tmp_path / "img.fits")
    with fits.open(tmp_path / "img.fits") as hdul:
        assert hdul[0].header["OBSID"] == 123 and hdul[0].data.shape == (5, n)
        for row, name in enumerate(("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")):
            np.testing.assert_array_equal(hdul[0].data[row], cols[name])
    with pytest.raises(ValueError, match="no COADD"):
        rewrite_as_image(tmp_path / "img.fits", tmp_path / "again.fits")


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")
def test_dr10_files_in_image_layout_get_the_same_answers(tmp_path):
    files = sorted((DATA / "lamost_dr10").rglob("*.fits*"))[:120]
    written = rewrite_folder(files, tmp_path)
    table, _ = read_many([str(f) for f in files])
    image, refused = read_many([str(f) for f in written])
    assert not refused and len(image) == len(table) == len(written)
    assert {r.data_release for r in image} == {r.data_release for r in table}
    assert all(r.norm_flux is None for r in image)          # as real DR2-DR7 files
    emb = Embedder(load_bundle())
    a, b = emb.embed(table), emb.embed(image)
    ok = a.valid & b.valid
    assert ok.mean() > 0.9
    assert np.median(np.abs(a.params["feh"] - b.params["feh"])[ok]) < 0.03
    assert np.all(np.abs(a.params["teff"] - b.params["teff"])[ok] < 30)
    na = top_k(a.shared[ok], a.shared[ok], 6)
    nb = top_k(b.shared[ok], a.shared[ok], 6)
    assert np.mean([set(x) == set(y) for x, y in zip(na, nb, strict=True)]) > 0.95
    assert set(a.continuum[ok]) == set(b.continuum[ok]) == {"own"}
