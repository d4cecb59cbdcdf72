import math

import pytest
import torch

from engine.models.config import XpEncoderConfig, XpMlpConfig
from engine.models.heads import ParameterHead
from engine.models.xp_encoder import XpEncoder, standardise


def test_standardise_ignores_bad_samples():
    flux = torch.tensor([[1.0, 3.0, 100.0]])
    z, mean, std = standardise(flux, torch.tensor([[1.0, 1.0, 0.0]]))
    assert mean.item() == 2.0 and std.item() == 1.0
    assert torch.allclose(z, torch.tensor([[-1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("kind,dim", [("mlp", 8), ("transformer", 16)])
def test_both_kinds_build_embed_and_pretrain(xp_batch, kind, dim):
    from engine.models.config import TransformerConfig

    cfg = XpEncoderConfig(kind=kind, mlp=XpMlpConfig(hidden=(32,), latent=8),
                          transformer=TransformerConfig(n_pixels=343, width=16, depth=1, heads=2))
    enc = XpEncoder(cfg)
    assert enc(*xp_batch).shape == (4, dim)
    loss = enc.pretrain_loss(*xp_batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        XpEncoder(XpEncoderConfig(kind="cnn"))


def test_mean_std_inputs_change_the_embedding(xp_batch):
    flux, weight, scale = xp_batch
    torch.manual_seed(0)
    with_ms = XpEncoder(XpEncoderConfig(mlp=XpMlpConfig(hidden=(32,), latent=8)))
    brighter = flux * 3.0   # same standardised shape, different mean/std
    assert not torch.allclose(with_ms(flux, weight, scale), with_ms(brighter, weight, scale))
    without = XpEncoder(XpEncoderConfig(mlp=XpMlpConfig(hidden=(32,), latent=8,
                                                        mean_std_inputs=False)))
    assert torch.allclose(without(flux, weight, scale), without(brighter, weight, scale),
                          atol=1e-5)


def test_input_noise_changes_the_pretraining_loss(xp_batch):
    torch.manual_seed(0)
    clean = XpEncoder(XpEncoderConfig(mlp=XpMlpConfig(hidden=(32,), latent=8)))
    torch.manual_seed(0)
    noisy = XpEncoder(XpEncoderConfig(mlp=XpMlpConfig(hidden=(32,), latent=8, input_noise=0.5)))
    g = torch.Generator
    assert clean.pretrain_loss(*xp_batch, g().manual_seed(0)) != noisy.pretrain_loss(
        *xp_batch, g().manual_seed(0))


def test_gaussian_nll_hand_value_and_nan_labels():
    head = ParameterHead(3, (), ("teff", "logg"), log_teff=False)
    with torch.no_grad():
        head.net[0].weight.zero_()
        head.net[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, math.log(2.0)]))
    y = torch.tensor([[1.0, 3.0], [float("nan"), 1.0]])
    nll = head.nll(torch.zeros(2, 3), y)
    s2 = 2.0 + 1e-3
    c = 0.5 * math.log(2 * math.pi)
    terms = [0.5 * (1 / (1 + 1e-3)) ** 2 + math.log(1 + 1e-3) + c,       # teff row 0 (mu 0)
             0.5 * (3 / s2) ** 2 + math.log(s2) + c,                      # logg row 0
             0.5 * (1 / s2) ** 2 + math.log(s2) + c]                      # logg row 1 (teff NaN)
    assert abs(nll.item() - sum(terms) / 3) < 1e-5


def test_log_teff_round_trip_and_sigma_units():
    for log_teff in (True, False):
        head = ParameterHead(2, (), ("teff", "feh"), log_teff=log_teff)
        y = torch.tensor([[4000.0, -1.0], [6000.0, 0.0], [8000.0, 0.3]])
        head.set_label_norms(y)
        with torch.no_grad():
            head.net[0].weight.zero_()
            head.net[0].bias.zero_()
        value, sigma = head.predict(torch.zeros(1, 2))
        mean_teff = 10 ** torch.log10(y[:, 0]).mean() if log_teff else y[:, 0].mean()
        assert torch.allclose(value[0, 0], mean_teff, rtol=1e-5)
        assert sigma[0, 0] > 100  # Kelvin, not standardised units
