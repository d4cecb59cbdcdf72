"""A tiny config and fixed synthetic inputs so model tests run in seconds."""

from __future__ import annotations

import pytest
import torch

from engine.models.config import ModelConfig, config_from_dict


def tiny_dict() -> dict:
    return {
        "name": "tiny",
        "lamost": {"width": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0},
        "xp": {"kind": "mlp", "mlp": {"hidden": [32], "latent": 8},
               "transformer": {"n_pixels": 343, "width": 16, "depth": 1, "heads": 2}},
        "align": {"shared_dim": 8, "private_dim": 4, "proj_hidden": 16, "decoder_hidden": [16]},
        "heads": {"hidden": [16]},
        "train": {"batch_size": 8, "xp_batch_size": 16, "pretrain_lamost_steps": 2,
                  "pretrain_xp_steps": 2, "align_steps": 2, "heads_lamost_steps": 2,
                  "heads_xp_steps": 2, "threads": 1},
    }


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return config_from_dict(tiny_dict())


def make_inputs(survey: str, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    length = 1462 if survey == "lamost" else 343
    flux = 1.0 + 0.1 * torch.randn(n, length, generator=g)
    weight = torch.ones(n, length)
    weight[:, :7] = 0.0
    scale = torch.randn(n, generator=g)
    return flux, weight, scale


@pytest.fixture
def lamost_batch():
    return make_inputs("lamost")


@pytest.fixture
def xp_batch():
    return make_inputs("gaia_xp")
