"""The LAMOST parameter ensemble (engine/models/ensemble.py): its arithmetic, and that adding
members leaves the main run's initial weights and random draws as they were."""

import dataclasses as dc

import pytest
import torch

from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import make_inputs, tiny_dict


def with_members(k: int, **heads):
    d = tiny_dict()
    d["heads"] = {**d["heads"], "lamost_members": k, **heads}
    return config_from_dict(d)


def test_combination_is_the_mean_and_the_quadrature_of_error_and_disagreement():
    model = SpecClipModel(with_members(2))
    ens = model.lamost_ensemble
    values = torch.tensor([[[1.0, 10.0, 0.0, 0.0]], [[3.0, 10.0, 0.0, 0.0]]])  # [K, B, L]
    sigmas = torch.tensor([[[1.0, 2.0, 1.0, 1.0]], [[1.0, 2.0, 1.0, 1.0]]])
    mean, raw = ens.combine_raw(values, sigmas)
    assert mean.tolist() == [[2.0, 10.0, 0.0, 0.0]]
    assert raw[0, 0].item() == pytest.approx(2 ** 0.5)            # sqrt(1 + 1): both parts
    assert raw[0, 1].item() == pytest.approx(2.0)                 # runs agree: their error
    calib = torch.ones(4)
    ens.sigma_scale.copy_(calib * 2)
    assert ens.calibrate(raw)[0, 0].item() == pytest.approx(2 * 2 ** 0.5)
    ens.sigma_floor.copy_(calib * 3)
    assert ens.calibrate(raw)[0, 1].item() == pytest.approx((16 + 9) ** 0.5)


def test_members_do_not_change_the_main_runs_initial_weights_or_later_draws():
    torch.manual_seed(0)
    single = SpecClipModel(with_members(1))
    after_single = torch.rand(5)
    torch.manual_seed(0)
    ensemble = SpecClipModel(with_members(3))
    after_ensemble = torch.rand(5)
    assert torch.equal(after_single, after_ensemble)
    a, b = single.state_dict(), ensemble.state_dict()
    assert set(b) - set(a) and all(k.startswith("lamost_ensemble.") for k in set(b) - set(a))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(ensemble.lamost_ensemble.members) == 2 and single.lamost_ensemble is None


def test_lamost_params_are_the_ensembles_and_xp_params_are_not():
    torch.manual_seed(0)
    model = SpecClipModel(with_members(2)).eval()
    f, w, s = make_inputs("lamost")
    with torch.no_grad():
        feats = model.head_features("lamost", f, w, s)
        head = model.refine("lamost", f, w, *model.heads["lamost"].predict(feats))
        value, sigma = model.predict_params("lamost", f, w, s)
        other = model.lamost_ensemble.members[0](f, w, model._scale("lamost", s))
        assert torch.allclose(value, (head[0] + other[0]) / 2)
        xf, xw, xs = make_inputs("gaia_xp")
        xfeats = model.head_features("gaia_xp", xf, xw, xs)
        assert torch.equal(model.predict_params("gaia_xp", xf, xw, xs)[0],
                           model.heads["gaia_xp"].predict(xfeats)[0])


def test_members_need_fine_tuned_encoder_copies():
    with pytest.raises(ValueError, match="finetune_encoder"):
        SpecClipModel(dc.replace(with_members(2), align=dc.replace(
            with_members(2).align, features="pretrained"),
            heads=dc.replace(with_members(2).heads, finetune_encoder=False)))


def test_own_paths_leave_the_main_runs_path_out_of_the_average():
    # heads.lamost_params_steps > 0: lamost_members paths of their own, the main run's not
    # averaged (it is the copy the alignment reads)
    torch.manual_seed(0)
    model = SpecClipModel(with_members(2, lamost_params_steps=50)).eval()
    ens = model.lamost_ensemble
    assert len(ens.members) == 2 and not ens.include_main
    f, w, s = make_inputs("lamost")
    with torch.no_grad():
        value, _ = model.predict_params("lamost", f, w, s)
        sc = model._scale("lamost", s)
        a, b = (m(f, w, sc)[0] for m in ens.members)
        assert torch.allclose(value, (a + b) / 2)
    # one own path alone is an ensemble too: the main run's path is never the answer
    one = SpecClipModel(with_members(1, lamost_params_steps=50))
    assert one.lamost_ensemble is not None and len(one.lamost_ensemble.members) == 1


def test_params_steps_must_not_be_negative():
    with pytest.raises(ValueError, match="lamost_params_steps"):
        with_members(1, lamost_params_steps=-1)


def test_labels_from_runs_are_averaged_over_the_runs_and_the_rest_over_the_paths():
    # heads.lamost_runs_labels: the main run + K - 1 runs for those labels, K paths for the
    # others; a path's value outside its group is not read, not even a NaN
    torch.manual_seed(0)
    model = SpecClipModel(with_members(2, lamost_params_steps=50,
                                       lamost_runs_labels=["feh"])).eval()
    ens = model.lamost_ensemble
    assert len(ens.members) == 3 and ens.include_main       # 1 extra run + 2 paths
    assert ens.label_mask.tolist() == [[0, 0, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], [1, 1, 0, 1]]
    assert "lamost_ensemble.label_mask" not in model.state_dict()   # from the config
    values = torch.tensor([[[1.0, 1.0, 0.1, 5.0]], [[3.0, 3.0, 0.3, 5.0]],
                           [[10.0, 4.0, float("nan"), 7.0]], [[20.0, 6.0, 9.0, 9.0]]])
    sigmas = torch.ones_like(values)
    mean, raw = ens.combine_raw(values, sigmas)
    assert mean[0].tolist() == pytest.approx([15.0, 5.0, 0.2, 8.0])
    assert raw[0, 2].item() == pytest.approx((1 + 0.01) ** 0.5)   # runs' error + spread
    f, w, s = make_inputs("lamost")
    with torch.no_grad():
        feats = model.head_features("lamost", f, w, s)
        main = model.refine("lamost", f, w, *model.heads["lamost"].predict(feats))[0]
        outs = [m(f, w, model._scale("lamost", s))[0] for m in ens.members]
        value = model.predict_params("lamost", f, w, s)[0]
    assert torch.allclose(value[:, 2], (main[:, 2] + outs[0][:, 2]) / 2)
    assert torch.allclose(value[:, 0], (outs[1][:, 0] + outs[2][:, 0]) / 2)


@pytest.mark.parametrize("heads, message", [
    ({"lamost_runs_labels": ["feh"]}, "lamost_params_steps > 0"),
    ({"lamost_params_steps": 50, "lamost_runs_labels": ["vsini"]}, "not LAMOST labels"),
])
def test_labels_from_runs_are_refused_where_they_mean_nothing(heads, message):
    with pytest.raises(ValueError, match=message):
        SpecClipModel(with_members(2, **heads))
