"""The assembled model: gradient flow to every trainable part, and every option matters."""

import copy

import pytest
import torch

from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import make_inputs, tiny_dict
from training.losses import align_losses


def all_losses(model: SpecClipModel, lam, xp) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h_l, h_x = model.align_features("lamost", *lam), model.align_features("gaia_xp", *xp)
    y_l = torch.tensor([[5000.0, 4.0, 0.0, 10.0]] * 4)  # teff, logg, feh, rv
    y_x = torch.tensor([[5000.0, 4.0, 0.0, 0.1]] * 4)
    return {
        "pretrain": model.pretrain_loss("lamost", *lam, generator=g)
        + model.pretrain_loss("gaia_xp", *xp, generator=g),
        "align": align_losses(model, h_l, h_x, lam[:2], xp[:2])["loss"],
        "heads": model.heads["lamost"].nll(model.head_features("lamost", *lam), y_l)
        + model.heads["gaia_xp"].nll(model.head_features("gaia_xp", *xp), y_x),
    }


def test_gradient_reaches_every_trainable_parameter(tiny_cfg, lamost_batch, xp_batch):
    torch.manual_seed(0)
    model = SpecClipModel(tiny_cfg)
    sum(all_losses(model, lamost_batch, xp_batch).values()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # the heads' encoder copies never pretrain: their pretraining-only parts stay unused
    pretrain_only = ("mask_token", "mpm_head", ".decoder.")
    assert [n for n in dead if not (n.startswith("head_encoders.")
                                    and any(t in n for t in pretrain_only))] == []


def test_split_shapes_and_unit_norm(tiny_cfg, lamost_batch):
    model = SpecClipModel(tiny_cfg).eval()
    shared, private = model.split("lamost", model.align_features("lamost", *lamost_batch))
    assert shared.shape == (4, 8) and private.shape == (4, 4)
    assert torch.allclose(shared.norm(dim=1), torch.ones(4), atol=1e-5)
    assert model.reconstruct("lamost", shared, private).shape == (4, 1462)
    assert model.translated("lamost", shared).shape == (4, 343)
    assert model.translated("gaia_xp", shared).shape == (4, 1462)


def test_translation_reads_only_the_shared_part(tiny_cfg, lamost_batch):
    model = SpecClipModel(tiny_cfg).eval()
    shared, private = model.split("lamost", model.encode("lamost", *lamost_batch))
    a = model.reconstruct("lamost", shared, private)
    b = model.reconstruct("lamost", shared, private + 1.0)
    assert not torch.allclose(a, b)   # private matters for reconstruction...
    # ...and translation has no input for it (its decoder's input width is shared_dim)
    assert model.translate["lamost"].net[0].in_features == 8


OPTIONS = [
    ("align", "shared_dim", 6), ("align", "private_dim", 0), ("align", "proj_hidden", 12),
    ("align", "decoder_hidden", [12]), ("align", "logit_scale_init", 1.0),
    ("align", "learnable_logit_scale", False), ("align", "recon_weight", 0.0),
    ("align", "translation_weight", 0.0), ("heads", "hidden", [12]),
    ("align", "features", "pretrained"), ("heads", "log_teff", False),
    ("heads", "min_sigma", 0.5), ("lamost", "patch_size", 16), ("lamost", "patch_stride", 20),
    ("lamost", "width", 8), ("lamost", "depth", 2), ("lamost", "heads", 4),
    ("lamost", "mlp_ratio", 1.0), ("lamost", "mask_ratio", 0.6), ("lamost", "dropout", 0.5),
    ("xp", "kind", "transformer"), ("heads", "lamost_params_steps", 50),
    ("heads", "xp_params_hidden", [12]),
]


def fingerprint(cfg_dict: dict) -> list:
    torch.manual_seed(0)
    model = SpecClipModel(config_from_dict(cfg_dict))
    model.train()
    lam, xp = make_inputs("lamost"), make_inputs("gaia_xp")
    shapes = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items())
    torch.manual_seed(1)
    losses = {k: round(float(v.detach()), 6) for k, v in all_losses(model, lam, xp).items()}
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return [shapes, losses, n_trainable]


@pytest.mark.parametrize("section,key,value", OPTIONS)
def test_every_model_option_changes_behaviour(section, key, value):
    base = tiny_dict()
    changed = copy.deepcopy(base)
    changed[section][key] = value
    assert fingerprint(base) != fingerprint(changed)


def test_finetuned_features_need_encoder_copies():
    cfg = tiny_dict()
    cfg["heads"]["finetune_encoder"] = False
    with pytest.raises(ValueError, match="finetune_encoder"):
        SpecClipModel(config_from_dict(cfg))
    cfg["align"]["features"] = "pretrained"
    assert SpecClipModel(config_from_dict(cfg)).head_encoders is None
