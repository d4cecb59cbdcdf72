"""The XP parameter path (engine/models/xp_params.py, config heads.xp_params_hidden): it
alone gives the XP parameters, it leaves the main run's weights and draws as they were, and
it is refused where it cannot work; with heads.xp_params_members > 1, the average of several
such paths."""

import pytest
import torch

from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import make_inputs, tiny_dict


def with_path(hidden=(64,), members=1, **xp):
    d = tiny_dict()
    d["heads"] = {**d["heads"], "xp_params_hidden": list(hidden),
                  "xp_params_members": members}
    d["xp"] = {**d["xp"], **xp}
    return config_from_dict(d)


def test_the_path_gives_the_xp_parameters_and_lamost_is_untouched():
    torch.manual_seed(0)
    model = SpecClipModel(with_path()).eval()
    path = model.xp_params
    assert path.encoder.encoder[0].out_features == 64 and path.encoder.decoder is None
    xf, xw, xs = make_inputs("gaia_xp")
    lf, lw, ls = make_inputs("lamost")
    with torch.no_grad():
        value, sigma = model.predict_params("gaia_xp", xf, xw, xs)
        mine = path(xf, xw, model._scale("gaia_xp", xs))
        assert torch.equal(value, mine[0]) and torch.equal(sigma, mine[1])
        head = model.heads["gaia_xp"].predict(model.head_features("gaia_xp", xf, xw, xs))
        assert not torch.allclose(value, head[0])       # the main run's XP head is not used
        lam = model.heads["lamost"].predict(model.head_features("lamost", lf, lw, ls))
        assert torch.equal(model.predict_params("lamost", lf, lw, ls)[0],
                           model.refine("lamost", lf, lw, *lam)[0])


def test_the_path_leaves_the_main_runs_weights_and_draws():
    torch.manual_seed(0)
    plain = SpecClipModel(config_from_dict(tiny_dict()))
    after_plain = torch.rand(5)
    torch.manual_seed(0)
    with_xp = SpecClipModel(with_path())
    assert torch.equal(after_plain, torch.rand(5))
    a, b = plain.state_dict(), with_xp.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    extra = set(b) - set(a)
    assert extra and all(k.startswith("xp_params.") for k in extra)
    assert not any(".decoder." in k for k in extra)    # only what parameters need is stored


def test_the_path_needs_an_mlp_xp_encoder():
    with pytest.raises(ValueError, match="xp_params_hidden"):
        with_path(kind="transformer")


def test_several_paths_give_their_mean_and_recalibrated_combined_sigma():
    torch.manual_seed(0)
    model = SpecClipModel(with_path(members=3)).eval()
    ens = model.xp_params
    assert len(ens.paths) == 3
    w0 = [p.encoder.encoder[0].weight for p in ens.paths]
    assert not torch.equal(w0[0], w0[1])                 # each path drawn on its own
    ens.sigma_scale.fill_(2.0)
    ens.sigma_floor.fill_(0.01)
    xf, xw, xs = make_inputs("gaia_xp")
    with torch.no_grad():
        value, sigma = model.predict_params("gaia_xp", xf, xw, xs)
        outs = [p(xf, xw, model._scale("gaia_xp", xs)) for p in ens.paths]
    v = torch.stack([o[0] for o in outs])
    s = torch.stack([o[1] for o in outs])
    torch.testing.assert_close(value, v.mean(0))
    raw = ((s ** 2).mean(0) + v.var(0, unbiased=False)).sqrt()
    torch.testing.assert_close(sigma, torch.sqrt((2.0 * raw) ** 2 + 0.01 ** 2))


def test_one_path_keeps_the_layout_of_bundles_before_members():
    one = SpecClipModel(with_path(members=1)).state_dict()
    assert any(k.startswith("xp_params.encoder.") for k in one)
    assert not any(k.startswith("xp_params.paths.") for k in one)
    assert "xp_params.sigma_scale" not in one
    three = SpecClipModel(with_path(members=3)).state_dict()
    assert any(k.startswith("xp_params.paths.2.") for k in three)
    assert "xp_params.sigma_scale" in three


def test_several_paths_leave_the_main_runs_weights_and_draws():
    torch.manual_seed(0)
    plain = SpecClipModel(config_from_dict(tiny_dict()))
    after_plain = torch.rand(5)
    torch.manual_seed(0)
    ens = SpecClipModel(with_path(members=2))
    assert torch.equal(after_plain, torch.rand(5))
    a, b = plain.state_dict(), ens.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("members, hidden, message", [(0, (64,), "at least 1"),
                                                      (2, (), "needs heads.xp_params_hidden")])
def test_members_are_refused_where_they_mean_nothing(members, hidden, message):
    d = tiny_dict()
    d["heads"] = {**d["heads"], "xp_params_hidden": list(hidden), "xp_params_members": members}
    with pytest.raises(ValueError, match=message):
        config_from_dict(d)
