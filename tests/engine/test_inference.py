"""Embedder on a tiny trained bundle (synthetic data), and on real records when readers exist."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.bundle import load_bundle, save_bundle
from engine.inference import EmbeddingBatch, Embedder
from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import tiny_dict
from tests.training.synthetic import synthetic_sets

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    torch.manual_seed(0)
    model = SpecClipModel(config_from_dict(tiny_dict())).eval()
    path = tmp_path_factory.mktemp("bundle")
    save_bundle(path, model, {}, {}, "# tiny\n", {})
    return Embedder(load_bundle(path), batch_size=3)


def test_shapes_dims_and_normalisation(embedder):
    lam, xp = synthetic_sets(n_lamost=7, n_xp=5)
    out = embedder.embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert isinstance(out, EmbeddingBatch) and len(out) == 7
    assert out.shared.shape == (7, embedder.shared_dim) and out.shared.dtype == np.float32
    assert np.allclose(np.linalg.norm(out.shared, axis=1), 1.0, atol=1e-5)
    assert out.own.shape == (7, embedder.own_dim("lamost")) == (7, 16)
    assert out.translated.shape == (7, 343) and set(out.params) == {"teff", "logg", "feh", "rv"}
    assert np.all(np.isfinite(out.recon_error)) and out.valid.all()
    xo = embedder.embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    assert xo.translated.shape == (5, 1462) and "alpha_m" in xo.params
    assert embedder.model_grid("lamost").shape == (1462,)
    assert embedder.model_grid("gaia_xp")[0] == 3360.0
    assert embedder.version == (embedder.bundle.path / "VERSION").read_text().strip()


def test_batching_does_not_change_results(embedder):
    lam, _ = synthetic_sets(n_lamost=7, n_xp=2)
    a = embedder.embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    whole = Embedder(embedder.bundle, batch_size=100)
    b = whole.embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.allclose(a.shared, b.shared, atol=1e-5)


def test_invalid_rows_are_blanked(embedder):
    lam, _ = synthetic_sets(n_lamost=3, n_xp=2)
    valid = np.array([True, False, True])
    out = embedder.embed_arrays("lamost", lam.flux, lam.weight, lam.scale, valid)
    assert np.all(out.shared[1] == 0) and np.isnan(out.params["teff"][1])
    assert not out.valid[1] and np.isfinite(out.params["teff"][0])


def test_mixed_surveys_are_refused(embedder):
    from engine.records import SpectrumRecord

    def rec(survey):
        z = np.zeros(3)
        return SpectrumRecord(survey, "1", z, z, z, np.zeros(3, bool))

    with pytest.raises(ValueError, match="one survey"):
        embedder.embed([rec("lamost"), rec("gaia_xp")])


@pytest.mark.real_data
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data not present")
def test_real_lamost_records(embedder):
    readers = pytest.importorskip("engine.readers")
    pytest.importorskip("engine.preprocess")
    files = sorted((DATA / "lamost_dr10" / "spectra").glob("*.fits*"))[:4]
    records, _ = readers.read_many([str(f) for f in files])
    out = embedder.embed(records)
    assert out.shared.shape == (len(records), 8) and out.valid.any()
    flux, weight = embedder.model_input(records)
    assert flux.shape == (len(records), 1462)
    assert embedder.reconstruct(records).shape == (len(records), 1462)


def test_bundle_preprocess_option_picks_the_continuum_and_the_version(tmp_path):
    from tests.engine.test_preprocess import lamost_record

    rec = lamost_record(norm=True)
    out = {}
    for choice in ("own", "pipeline"):
        cfg = tiny_dict()
        cfg["preprocess"] = {"lamost_continuum": choice}
        torch.manual_seed(0)
        save_bundle(tmp_path / choice, SpecClipModel(config_from_dict(cfg)).eval(), {}, {},
                    "# tiny\n", {})
        emb = Embedder(load_bundle(tmp_path / choice))
        out[choice] = (emb.version, emb.embed([rec]).continuum[0])
    assert out["own"][1] == "own" and out["pipeline"][1] == "pipeline"
    assert out["own"][0] != out["pipeline"][0]     # same weights, other input: new version
