"""The LAMOST linear stack (engine/models/stacking.py): identity until fitted, the ridge
formula when blended in, options that change the model, refused labels."""

import copy

import pytest
import torch

from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from engine.models.stacking import LinearStack
from tests.engine.models.conftest import make_inputs, tiny_dict

LABELS = ("teff", "logg", "feh", "rv")


def head_outputs(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    value = torch.tensor([[5000.0, 4.0, -0.2, 10.0]] * n)
    value[:, 1] += torch.arange(n) * 0.1
    return value, torch.full((n, 4), 0.2)


def test_unfitted_stack_leaves_the_head_unchanged():
    stack = LinearStack(10, 3, LABELS, ("logg", "feh"))
    value, sigma = head_outputs()
    v, s = stack(torch.rand(4, 10), torch.ones(4, 10), value, sigma)
    assert torch.equal(v, value) and torch.equal(s, sigma)


def test_blended_stack_is_the_ridge_formula():
    torch.manual_seed(0)
    stack = LinearStack(10, 3, LABELS, ("feh",))
    stack.pca_components.copy_(torch.randn(3, 10))
    stack.coef.copy_(torch.randn(1, 6))
    stack.intercept.fill_(-0.3)
    stack.blend.fill_(0.75)
    stack.sigma_scale.fill_(2.0)
    stack.sigma_floor.fill_(0.3)
    flux, weight = 1 + 0.1 * torch.randn(4, 10), torch.ones(4, 10)
    weight[:, 0] = 0.0                       # a masked pixel enters as the continuum (0)
    value, sigma = head_outputs()
    v, s = stack(flux, weight, value, sigma)
    x = torch.where(weight > 0, flux - 1, torch.zeros_like(flux))
    feats = torch.cat([torch.stack([value[:, 0].log10(), value[:, 1], value[:, 2]], 1),
                       x @ stack.pca_components.T], 1)
    ridge = feats @ stack.coef[0] - 0.3
    assert torch.allclose(v[:, 2], 0.75 * ridge + 0.25 * value[:, 2], atol=1e-5)
    assert torch.equal(v[:, [0, 1, 3]], value[:, [0, 1, 3]])
    assert torch.allclose(s[:, 2], torch.sqrt((sigma[:, 2] * 2) ** 2 + 0.3 ** 2))
    assert torch.equal(s[:, :2], sigma[:, :2])


def test_unknown_stack_label_is_refused():
    with pytest.raises(ValueError, match="alpha_m"):
        LinearStack(10, 3, LABELS, ("alpha_m",))


@pytest.mark.parametrize("key,value", [("stack_labels", ["logg", "feh"]), ("stack_components", 7)])
def test_stack_options_change_the_model(key, value):
    base = tiny_dict()
    base["heads"]["stack_labels"] = ["feh"]
    changed = copy.deepcopy(base)
    changed["heads"][key] = value
    shapes = [sorted((k, tuple(v.shape)) for k, v in
                     SpecClipModel(config_from_dict(d)).state_dict().items())
              for d in (base, changed)]
    assert shapes[0] != shapes[1]


def test_model_without_stack_has_no_stack_tensors():
    model = SpecClipModel(config_from_dict(tiny_dict()))
    assert model.stack is None
    assert not [k for k in model.state_dict() if k.startswith("stack.")]
    lam = make_inputs("lamost")
    v1, _ = model.predict_params("lamost", *lam)
    assert v1.shape[1] == 4


def test_sigma_power_widens_large_sigmas_more():
    stack = LinearStack(10, 3, LABELS, ("feh",))
    stack.sigma_scale.fill_(1.5)
    stack.sigma_power.fill_(1.0)
    stack.sigma_ref.fill_(0.1)
    value, _ = head_outputs(2)
    sigma = torch.tensor([[50.0, 0.1, 0.05, 3.0], [50.0, 0.1, 0.2, 3.0]])
    _, s = stack(torch.rand(2, 10), torch.ones(2, 10), value, sigma)
    # 1.5 * sigma * (sigma / 0.1): 0.0375 and 0.6 (a floor of 0 adds nothing)
    assert torch.allclose(s[:, 2], torch.tensor([0.0375, 0.6]))
