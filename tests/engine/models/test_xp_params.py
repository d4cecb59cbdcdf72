"""The XP parameter path (engine/models/xp_params.py, config heads.xp_params_hidden): it
alone gives the XP parameters, it leaves the main run's weights and draws as they were, and
it is refused where it cannot work."""

import pytest
import torch

from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import make_inputs, tiny_dict


def with_path(hidden=(64,), **xp):
    d = tiny_dict()
    d["heads"] = {**d["heads"], "xp_params_hidden": list(hidden)}
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
