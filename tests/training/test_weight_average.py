"""training.weight_average: the moving average follows its formula, `applied` swaps it in and
restores the module's own weights, and a head fitted with it keeps a state the checks scored."""

import numpy as np
import pytest
import torch

from training.weight_average import WeightAverage


def test_average_follows_the_formula_and_applied_restores_own_weights():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = WeightAverage([lin], 0.5)
    for value in (2.0, 4.0):
        with torch.no_grad():
            lin.weight.fill_(value)
        avg.update()
    # 0 -> 0.5 * 0 + 0.5 * 2 = 1 -> 0.5 * 1 + 0.5 * 4 = 2.5
    with avg.applied():
        assert torch.allclose(lin.weight, torch.full((1, 2), 2.5))
    assert torch.allclose(lin.weight, torch.full((1, 2), 4.0))


def test_buffers_are_copied_not_averaged():
    """A constant buffer (a head's label normalisation) stays bit-exact through many updates."""
    lin = torch.nn.Linear(2, 1)
    lin.register_buffer("label_mean", torch.tensor([0.0791831538081169]))
    avg = WeightAverage([lin], 0.998)
    for _ in range(500):
        avg.update()
    with avg.applied():
        assert lin.label_mean.item() == torch.tensor([0.0791831538081169]).item()


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_the_open_interval_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([torch.nn.Linear(2, 1)], decay)


def test_the_xp_head_keeps_an_averaged_state_when_asked(monkeypatch):
    from training import tune_head as T
    from training.config import load_config
    from tests.training.synthetic import synthetic_sets

    _, xp = synthetic_sets(n_lamost=4, n_xp=96)
    monkeypatch.setitem(T._DATA, "gaia_xp", (xp.subset(np.arange(64)),
                                             xp.subset(np.arange(64, 96))))
    tiny = ("train.pretrain_xp_steps=3;train.heads_xp_steps=6;train.eval_every=2;"
            "train.xp_batch_size=16;xp.mlp.hidden=[32]")
    cfg = T.apply_variant(load_config("small"), tiny)
    plain = T.run_variant((cfg, "base", 0, "gaia_xp"))
    averaged = T.run_variant((cfg, "train.heads_xp_ema=0.5", 0, "gaia_xp"))
    # same seed, same data: only the kept weights differ
    assert plain["validation_robust_sigma"] != averaged["validation_robust_sigma"]
    assert all(np.isfinite(v) for v in averaged["validation_robust_sigma"].values())


@pytest.mark.parametrize("value", [1.0, -0.5])
def test_a_config_with_an_impossible_decay_is_refused_when_read(value):
    from engine.models.config import config_from_dict, config_to_dict
    from training.config import load_config

    data = config_to_dict(load_config("small"))
    data["train"]["heads_xp_ema"] = value
    with pytest.raises(ValueError, match="heads_xp_ema"):
        config_from_dict(data)
