"""CPU smoke training on synthetic data, one step of each config, and the data helpers."""

import dataclasses as dc
import sys
import types

import numpy as np
import pytest
import torch

from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.models.specclip import SpecClipModel
from tests.training.synthetic import synthetic_sets
from training import data as D
from training.config import load_config
from training import ensemble_fit
from training.train import TrainingData, align, fit_head, pretrain, train


def tiny_steps(cfg, **kw):
    """`cfg` with a few steps per stage and no LAMOST paths (the tests that want them set
    heads.lamost_params_steps themselves)."""
    t = dc.replace(cfg.train, pretrain_lamost_steps=3, pretrain_xp_steps=3, align_steps=3,
                   heads_lamost_steps=3, heads_xp_steps=3, batch_size=8, xp_batch_size=16,
                   threads=1, **kw)
    heads = dc.replace(cfg.heads, lamost_params_steps=0, lamost_runs_labels=())
    return dc.replace(cfg, train=t, heads=heads)


def synthetic_data() -> TrainingData:
    lam, xp = synthetic_sets()
    lam_val, xp_val = synthetic_sets(n_lamost=24, n_xp=40, seed=1)
    return TrainingData(lam, lam_val, 0, xp, xp_val, np.zeros((0, 2), np.int64),
                        {"data": "synthetic"})


def test_small_config_trains_end_to_end_and_bundle_loads(tmp_path):
    cfg = tiny_steps(load_config("small"))
    # one run here; the LAMOST ensemble's extra runs are tested below
    cfg = dc.replace(cfg, heads=dc.replace(cfg.heads, lamost_members=1))
    version = train(cfg, tmp_path / "bundle", data=synthetic_data(),
                    checkpoints=tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {"align.safetensors",
                                                               "heads_xp.safetensors"}
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.version == version
    assert bundle.provenance["wall_seconds"]["total"] > 0
    lam, xp = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    out = Embedder(bundle).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    assert out.shared.shape == (5, 32) and out.translated.shape == (5, 1462)
    assert set(out.params) == {"teff", "logg", "feh", "alpha_m"}
    assert np.all(out.sigmas["teff"] > 0)
    # the small config's LAMOST stack and RV templates are fitted and travel in the bundle
    assert bundle.model.stack is not None and float(bundle.model.stack.blend.abs().sum()) > 0
    assert bundle.rv is not None and len(bundle.rv.flux) == cfg.heads.rv_templates
    assert set(bundle.provenance["final_losses"]) >= {"stack_lamost", "rv_templates"}
    lam_out = Embedder(bundle).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.all(np.isfinite(lam_out.params["rv"])) and np.all(lam_out.sigmas["rv"] > 0)


@pytest.mark.slow
def test_paper_config_builds_and_takes_a_step():
    cfg = load_config("paper")
    assert (cfg.lamost.width, cfg.lamost.depth, cfg.lamost.heads) == (768, 6, 6)
    torch.manual_seed(0)
    model = SpecClipModel(cfg)
    lam, xp = synthetic_sets(n_lamost=4, n_xp=4)
    before = model.encoders["lamost"].patch_embed.weight.detach().clone()
    cfg2 = dc.replace(cfg.train, batch_size=2, threads=0)
    model.cfg = dc.replace(cfg, train=cfg2)
    pretrain(model, "lamost", lam, steps=1, batch=2, rng=np.random.default_rng(0))
    assert not torch.equal(before, model.encoders["lamost"].patch_embed.weight)


def test_training_lowers_the_losses():
    cfg = tiny_steps(load_config("small"))
    cfg = dc.replace(cfg, train=dc.replace(cfg.train, lr=3e-3))
    torch.manual_seed(0)
    model = SpecClipModel(cfg)
    d = synthetic_data()
    rng = np.random.default_rng(0)
    first = pretrain(model, "gaia_xp", d.xp, 1, 32, rng)["loss"]
    later = pretrain(model, "gaia_xp", d.xp, 60, 32, rng)["loss"]
    assert later < first


def test_tune_encoders_option_moves_the_encoders():
    d = synthetic_data()
    moved = {}
    for tune in (False, True):
        cfg = tiny_steps(load_config("small"))
        cfg = dc.replace(cfg, align=dc.replace(cfg.align, tune_encoders=tune))
        torch.manual_seed(0)
        model = SpecClipModel(cfg)
        enc = model.align_encoders()["gaia_xp"].encoder[0]
        before = enc.weight.detach().clone()
        align(model, d, np.random.default_rng(0))
        moved[tune] = not torch.equal(before, enc.weight)
    assert moved == {False: False, True: True}


def test_frozen_heads_leave_encoders_alone():
    cfg = tiny_steps(load_config("small"))
    cfg = dc.replace(cfg, heads=dc.replace(cfg.heads, finetune_encoder=False, lamost_members=1),
                     align=dc.replace(cfg.align, features="pretrained"))
    model = SpecClipModel(cfg)
    d = synthetic_data()
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    fit_head(model, "gaia_xp", d.xp, d.xp_val, 3, 16, np.random.default_rng(0))
    after = model.encoders.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_label_matched_pairs_are_nearest_and_resampled():
    lam = np.array([[5000.0, 4.5, 0.0], [8000.0, 4.0, -0.2]])
    xp = np.array([[5010.0, 4.5, 0.0, 0.1], [9000.0, 1.0, 0.0, 0.0], [7990.0, 4.0, np.nan, np.nan],
                   [5000.0, 4.4, 0.05, 0.0], [3500.0, 0.5, -2.0, 0.3]])
    m = D.LabelMatchedPairs(lam, xp, k=2)
    assert set(m.neighbours[0]) == {0, 3}
    assert 2 in m.neighbours[1]              # the hot star without [Fe/H] is still matched
    draws = {tuple(m.sample(np.random.default_rng(s))[0]) for s in range(20)}
    assert draws == {(0, 0), (0, 3)}


def test_real_pair_table(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("obsid,gaia_id,apogee_gaiaedr3_source_id\n10,,1001\n11,999,\n"
                   "12,,3314245809274264832\n")
    table = D.read_pair_table(csv)
    assert table == [("10", 1001), ("11", 999), ("12", 3314245809274264832)]  # no float rounding
    lam, xp = synthetic_sets(n_lamost=20, n_xp=10)
    lam.ids[5] = "10"
    pairs = D.index_real_pairs(table, lam, xp)
    assert pairs.tolist() == [[5, 1]]        # source 999 is not in the XP set


def test_lamost_holdout_is_deterministic_and_about_a_fifth():
    ids = [str(900000000 + i) for i in range(5000)]
    share = np.mean([D.is_lamost_holdout(i) for i in ids])
    assert 0.17 < share < 0.23
    assert D.is_lamost_holdout("938509188") == D.is_lamost_holdout(" 938509188 ")


@pytest.mark.slow
def test_lamost_paths_of_their_own_keep_the_main_run_and_replace_its_parameters(tmp_path):
    # heads.lamost_params_steps: the main run is the single run of the config without it (so
    # the shared space is unchanged), and the LAMOST parameters are the average of K paths
    # with heads of that many steps, each the LAMOST path a whole run of its config trains
    base = tiny_steps(load_config("small"))
    single_cfg = dc.replace(base, heads=dc.replace(base.heads, lamost_members=1))
    own_cfg = dc.replace(base, heads=dc.replace(base.heads, lamost_members=2,
                                                lamost_params_steps=5))
    data = synthetic_data()
    train(single_cfg, tmp_path / "single", data=data)
    version = train(own_cfg, tmp_path / "own", data=data)
    single, own = load_bundle(tmp_path / "single"), load_bundle(tmp_path / "own")
    assert own.version == version != single.version
    assert own.config.heads.lamost_params_steps == 5 and own.config.heads.lamost_members == 2
    a, b = single.model.state_dict(), own.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)       # the main run is the single run
    report = own.provenance["final_losses"]["lamost_ensemble"]
    assert not report["main_run_averaged"]
    assert [(m["seed"], m["heads_lamost_steps"]) for m in report["members"]] == [
        (base.train.seed, 5), (base.train.seed + 1, 5)]
    # path 0 equals the LAMOST path of a whole run of its config (seed 0, 5 head steps)
    whole_cfg = dc.replace(single_cfg, train=dc.replace(single_cfg.train, heads_lamost_steps=5))
    train(whole_cfg, tmp_path / "whole", data=data)
    whole = load_bundle(tmp_path / "whole").model
    # assembling by hand refuses members trained with another number of head steps
    with pytest.raises(SystemExit):
        ensemble_fit.main([str(tmp_path / "single"), str(tmp_path / "whole"),
                           "--lamost-params-steps", "7"])
    path0 = own.model.lamost_ensemble.members[0]
    for mine, theirs in ((path0.encoder, whole.head_encoders["lamost"]),
                         (path0.head, whole.heads["lamost"]), (path0.stack, whole.stack)):
        s1, s2 = mine.state_dict(), theirs.state_dict()
        assert all(torch.equal(s1[k], s2[k]) for k in s2)
    lam, xp = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    one = Embedder(single).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    avg = Embedder(own).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.array_equal(one.shared, avg.shared)            # embeddings are the main run's
    assert not np.allclose(one.params["teff"], avg.params["teff"])
    assert np.all(np.isfinite(avg.params["feh"])) and np.all(avg.sigmas["feh"] > 0)


@pytest.mark.slow
def test_xp_parameter_path_keeps_the_main_run_and_replaces_its_xp_parameters(tmp_path):
    # heads.xp_params_hidden: the main run is the single run of the config without it, and the
    # XP parameters come from the XP path a whole run with those XP widths would train
    base = tiny_steps(load_config("small"))
    single_cfg = dc.replace(base, heads=dc.replace(base.heads, lamost_members=1,
                                                   xp_params_hidden=()))
    path_cfg = dc.replace(single_cfg, heads=dc.replace(single_cfg.heads,
                                                       xp_params_hidden=(64, 32)))
    data = synthetic_data()
    train(single_cfg, tmp_path / "single", data=data)
    version = train(path_cfg, tmp_path / "path", data=data)
    single, withp = load_bundle(tmp_path / "single"), load_bundle(tmp_path / "path")
    assert withp.version == version != single.version
    assert withp.config.heads.xp_params_hidden == (64, 32)
    a, b = single.model.state_dict(), withp.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)       # the main run is the single run
    report = withp.provenance["final_losses"]["xp_params_path"]
    assert [p["xp_hidden"] for p in report["paths"]] == [[64, 32]]
    assert set(report) >= {"teff", "alpha_m"}
    wide = dc.replace(single_cfg, xp=dc.replace(single_cfg.xp, mlp=dc.replace(
        single_cfg.xp.mlp, hidden=(64, 32))))
    train(wide, tmp_path / "wide", data=data)
    whole = load_bundle(tmp_path / "wide").model
    mine = withp.model.xp_params
    for part, theirs in ((mine.encoder, whole.head_encoders["gaia_xp"]),
                         (mine.head, whole.heads["gaia_xp"])):
        s1, s2 = part.state_dict(), theirs.state_dict()
        assert s1 and all(torch.equal(s1[k], s2[k]) for k in s1)
    lam, xp = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    one = Embedder(single).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    two = Embedder(withp).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    assert np.array_equal(one.shared, two.shared)            # embeddings are the main run's
    assert not np.allclose(one.params["teff"], two.params["teff"])
    assert np.all(two.sigmas["alpha_m"] > 0)
    l1 = Embedder(single).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    l2 = Embedder(withp).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.array_equal(l1.params["teff"], l2.params["teff"])


@pytest.mark.slow
def test_xp_parameter_paths_are_averaged_and_the_first_is_the_single_path(tmp_path):
    # heads.xp_params_members = 2: paths of seeds seed and seed + 1; the first is the path of
    # the one-path config, the second that of a one-path config of seed + 1
    base = tiny_steps(load_config("small"))
    heads = dc.replace(base.heads, lamost_members=1, xp_params_hidden=(64, 32))
    one_cfg = dc.replace(base, heads=heads)
    two_cfg = dc.replace(base, heads=dc.replace(heads, xp_params_members=2))
    next_cfg = dc.replace(one_cfg, train=dc.replace(base.train, seed=base.train.seed + 1))
    data = synthetic_data()
    for name, cfg in (("one", one_cfg), ("two", two_cfg), ("next", next_cfg)):
        train(cfg, tmp_path / name, data=data)
    one, two, nxt = (load_bundle(tmp_path / n) for n in ("one", "two", "next"))
    assert two.config.heads.xp_params_members == 2 and two.version != one.version
    a, b = one.model.state_dict(), two.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("xp_params."))
    for path, single in ((two.model.xp_params.paths[0], one.model.xp_params),
                         (two.model.xp_params.paths[1], nxt.model.xp_params)):
        s1, s2 = path.state_dict(), single.state_dict()
        assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    report = two.provenance["final_losses"]["xp_params_path"]
    assert [p["seed"] for p in report["paths"]] == [base.train.seed, base.train.seed + 1]
    assert len(report["teff"]["validation_robust_sigma_per_path"]) == 2
    assert report["teff"]["sigma_recipe"] in ("scale_floor", "scale_power")
    _, xp = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    got = Embedder(two).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    p0 = Embedder(one).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    p1 = Embedder(nxt).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    for label in ("teff", "logg", "feh", "alpha_m"):
        np.testing.assert_allclose(got.params[label], (p0.params[label] + p1.params[label]) / 2,
                                   rtol=1e-5, atol=1e-6)
        assert np.all(got.sigmas[label] > 0)
    assert np.array_equal(got.shared, p0.shared)             # embeddings are the main run's
    assert "average of 2 paths" in (tmp_path / "two" / "card.md").read_text()


@pytest.mark.slow
def test_lamost_ensemble_trains_k_runs_and_its_first_run_is_the_single_run(tmp_path):
    base = tiny_steps(load_config("small"))
    single_cfg = dc.replace(base, heads=dc.replace(base.heads, lamost_members=1))
    ens_cfg = dc.replace(base, heads=dc.replace(base.heads, lamost_members=2))
    data = synthetic_data()
    train(single_cfg, tmp_path / "single", data=data)
    version = train(ens_cfg, tmp_path / "ens", data=data)
    single, ens = load_bundle(tmp_path / "single"), load_bundle(tmp_path / "ens")
    assert ens.version == version != single.version
    assert ens.config.heads.lamost_members == 2 and ens.config.name == base.name
    a, b = single.model.state_dict(), ens.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)       # the first run is the single run
    report = ens.provenance["final_losses"]["lamost_ensemble"]
    assert [m["seed"] for m in report["members"]] == [base.train.seed + 1]
    assert len(report["teff"]["validation_robust_sigma_per_run"]) == 2
    lam, xp = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    one = Embedder(single).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    avg = Embedder(ens).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    assert np.array_equal(one.shared, avg.shared)            # embeddings are the main run's
    assert not np.allclose(one.params["teff"], avg.params["teff"])
    assert np.all(np.isfinite(avg.params["feh"])) and np.all(avg.sigmas["feh"] > 0)
    x1 = Embedder(single).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    x2 = Embedder(ens).embed_arrays("gaia_xp", xp.flux, xp.weight, xp.scale)
    assert np.array_equal(x1.params["teff"], x2.params["teff"])


@pytest.mark.slow
def test_labels_from_runs_beside_paths_and_two_workers_give_the_same_bundle(tmp_path,
                                                                          monkeypatch):
    # heads.lamost_runs_labels: [Fe/H] from the main run and K - 1 whole runs, the other
    # labels from K paths; trained one at a time or two at a time, the same tensors.
    # A spawned worker re-runs the parent's __main__ file; in the whole suite that can be a
    # script the app tests' Streamlit runner left behind, so give the workers a blank one
    # (`specclip train`'s own __main__ is the console script, which is guarded)
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    base = tiny_steps(load_config("small"))
    heads = dc.replace(base.heads, lamost_members=2, lamost_params_steps=5,
                       lamost_runs_labels=("feh",), xp_params_hidden=(64, 32))
    cfg = dc.replace(base, heads=heads)
    data = synthetic_data()
    train(cfg, tmp_path / "one", data=data)
    train(cfg, tmp_path / "two", data=data, workers=2)
    one, two = load_bundle(tmp_path / "one"), load_bundle(tmp_path / "two")
    a, b = one.model.state_dict(), two.model.state_dict()
    assert a.keys() == b.keys()
    # the networks bit for bit; the linear stacks (PCA and ridge through LAPACK) and the
    # ensemble's sigma recalibration fitted on their outputs to rounding: in the whole suite
    # this process's BLAS threading can differ from a fresh worker's, which moves the last
    # digits of the float64 PCA (so the version ids may differ too)
    for k in a:
        if ".stack." in f".{k}" or k.startswith("lamost_ensemble.sigma_"):
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k
    report = two.provenance["final_losses"]["lamost_ensemble"]
    assert report["workers"] == 2 and report["labels_from_runs"] == ["feh"]
    assert report["feh"]["averaged_over"] == "runs" and report["teff"]["averaged_over"] == "paths"
    # members: the whole run of seed + 1, then paths of seeds seed, seed + 1
    assert [m.get("heads_lamost_steps") for m in report["members"]] == [None, 5, 5]
    # each label is the mean of its own group: [Fe/H] that of the runs-only bundle, Teff
    # that of the paths-only bundle
    runs_cfg = dc.replace(base, heads=dc.replace(heads, lamost_params_steps=0,
                                                 lamost_runs_labels=()))
    paths_cfg = dc.replace(base, heads=dc.replace(heads, lamost_runs_labels=()))
    train(runs_cfg, tmp_path / "runs", data=data)
    train(paths_cfg, tmp_path / "paths", data=data)
    lam, _ = synthetic_sets(n_lamost=5, n_xp=5, seed=3)
    got = Embedder(two).embed_arrays("lamost", lam.flux, lam.weight, lam.scale)
    runs = Embedder(load_bundle(tmp_path / "runs")).embed_arrays("lamost", lam.flux,
                                                                 lam.weight, lam.scale)
    paths = Embedder(load_bundle(tmp_path / "paths")).embed_arrays("lamost", lam.flux,
                                                                   lam.weight, lam.scale)
    np.testing.assert_allclose(got.params["feh"], runs.params["feh"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.params["teff"], paths.params["teff"], rtol=1e-5)
    np.testing.assert_allclose(got.params["logg"], paths.params["logg"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(got.shared, runs.shared)           # embeddings are the main run's
