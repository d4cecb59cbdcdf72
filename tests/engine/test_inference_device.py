"""Where the Embedder's networks run (`device`): names accepted, GPUs never faked."""

import numpy as np
import pytest
import torch

from engine.bundle import load_bundle, save_bundle
from engine.inference import Embedder, resolve_device
from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import tiny_dict
from tests.training.synthetic import synthetic_sets

NO_GPU = not torch.cuda.is_available()


def test_cpu_and_auto_and_case():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cpu" if NO_GPU else "cuda")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "cuda:-1"])
def test_unknown_names_are_refused_with_the_accepted_ones(name):
    with pytest.raises(ValueError, match="unknown device.*cpu, cuda, cuda:N, auto"):
        resolve_device(name)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_a_gpu_asked_for_and_absent_is_an_error_not_a_cpu_fallback(name):
    with pytest.raises(ValueError, match=f"'{name}' asked for.*torch"):
        resolve_device(name)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_gpu_embeddings_agree_with_the_cpu(tmp_path):
    torch.manual_seed(0)
    save_bundle(tmp_path, SpecClipModel(config_from_dict(tiny_dict())).eval(), {}, {}, "#\n",
                {})
    cpu, gpu = Embedder(load_bundle(tmp_path)), Embedder(load_bundle(tmp_path), device="cuda")
    lam, _ = synthetic_sets(n_lamost=9, n_xp=3)
    a = cpu.embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    b = gpu.embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.allclose(a.shared, b.shared, atol=1e-5)
    assert all(np.allclose(a.params[k], b.params[k], rtol=1e-4) for k in a.params)
