"""training.tune_head: variant overrides reach the nested config and bad ones are refused
before any data is read; tiny runs score XP and LAMOST validation end to end on synthetic
data."""

import numpy as np
import pytest

from training import tune_head as T
from training.config import load_config
from tests.training.synthetic import synthetic_sets


def test_overrides_reach_nested_fields_and_keep_the_rest():
    base = load_config("small")
    cfg = T.apply_variant(base, "xp.mlp.hidden=[64,32]; train.heads_xp_steps=7")
    assert cfg.xp.mlp.hidden == (64, 32) and cfg.train.heads_xp_steps == 7
    assert cfg.xp.mlp.latent == base.xp.mlp.latent and cfg.lamost == base.lamost
    assert T.apply_variant(base, "base") == base


@pytest.mark.parametrize("bad, match", [("xp.mlp.widths=[1]", "no field 'xp.mlp.widths'"),
                                        ("train.lr", "not name=value")])
def test_bad_overrides_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        T.apply_variant(load_config("small"), bad)


def test_a_tiny_run_scores_validation_and_the_summary_averages_seeds(monkeypatch):
    _, xp = synthetic_sets(n_lamost=4, n_xp=96)
    train, val = xp.subset(np.arange(64)), xp.subset(np.arange(64, 96))
    monkeypatch.setitem(T._DATA, "gaia_xp", (train, val))
    cfg = T.apply_variant(load_config("small"), "train.pretrain_xp_steps=3;"
                          "train.heads_xp_steps=4;train.eval_every=2;train.xp_batch_size=16;"
                          "xp.mlp.hidden=[32]")
    runs = [T.run_variant((cfg, "base", s, "gaia_xp")) for s in (0, 1)]
    for r in runs:
        assert set(r["validation_robust_sigma"]) == {"teff", "logg", "feh", "alpha_m"}
        assert all(np.isfinite(v) for v in r["validation_robust_sigma"].values())
    mean = T.summarise(runs)["base"]["teff"]
    assert mean == pytest.approx(np.mean([r["validation_robust_sigma"]["teff"] for r in runs]),
                                 abs=1e-4)


def test_a_tiny_lamost_run_scores_lamost_validation(monkeypatch):
    lamost, _ = synthetic_sets(n_lamost=48, n_xp=4)
    monkeypatch.setitem(T._DATA, "lamost", (lamost.subset(np.arange(32)),
                                            lamost.subset(np.arange(32, 48))))
    cfg = T.apply_variant(load_config("small"), "train.pretrain_lamost_steps=2;"
                          "train.heads_lamost_steps=4;train.eval_every=2;train.batch_size=8;"
                          "lamost.width=16;lamost.depth=1")
    plain = T.run_variant((cfg, "base", 0, "lamost"))
    longer = T.run_variant((cfg, "train.heads_lamost_steps=8", 0, "lamost"))
    assert set(plain["validation_robust_sigma"]) == {"teff", "logg", "feh", "rv"}
    assert all(np.isfinite(v) for v in plain["validation_robust_sigma"].values())
    # same seed, same data: the LAMOST head's own budget is the one read
    assert plain["validation_robust_sigma"] != longer["validation_robust_sigma"]
