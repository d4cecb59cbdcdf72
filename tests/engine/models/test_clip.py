import math

import torch
import torch.nn.functional as F

from engine.models.clip import MAX_LOGIT_SCALE, ClipLoss


def test_infonce_matches_hand_computed_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    loss = ClipLoss(logit_scale_init=math.log(2.0), learnable=False)(a, b)["loss"]
    # logits = 2 * a @ b.T = [[1.2, 0], [1.6, 2]]
    rows = [-math.log(math.exp(1.2) / (math.exp(1.2) + 1)),
            -math.log(math.exp(2) / (math.exp(1.6) + math.exp(2)))]
    cols = [-math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(1.6))),
            -math.log(math.exp(2) / (1 + math.exp(2)))]
    expected = 0.5 * (sum(rows) / 2 + sum(cols) / 2)
    assert abs(loss.item() - expected) < 1e-6


def test_learnable_logit_scale_gets_a_gradient():
    clip = ClipLoss(learnable=True)
    a = F.normalize(torch.randn(5, 3), dim=1)
    b = F.normalize(torch.randn(5, 3), dim=1)
    clip(a, b)["loss"].backward()
    assert isinstance(clip.logit_scale, torch.nn.Parameter)
    assert clip.logit_scale.grad is not None and clip.logit_scale.grad.abs() > 0


def test_fixed_logit_scale_is_not_trained():
    clip = ClipLoss(learnable=False)
    assert list(clip.parameters()) == []
    assert "logit_scale" in clip.state_dict()


def test_scale_is_clamped_and_perfect_pairs_are_found():
    clip = ClipLoss(logit_scale_init=10.0)
    assert abs(clip.scale().item() - math.exp(MAX_LOGIT_SCALE)) < 1e-3
    a = torch.eye(4)
    out = clip(a, a)
    assert out["acc_a2b"] == 1.0 and out["acc_b2a"] == 1.0
