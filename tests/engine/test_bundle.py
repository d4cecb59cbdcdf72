import json
import shutil

import pytest
import torch

from engine.bundle import load_bundle, save_bundle
from engine.errors import BundleError
from engine.models.config import config_from_dict
from engine.models.specclip import SpecClipModel
from tests.engine.models.conftest import make_inputs, tiny_dict


@pytest.fixture
def bundle_dir(tmp_path):
    torch.manual_seed(0)
    model = SpecClipModel(config_from_dict(tiny_dict())).eval()
    save_bundle(tmp_path / "b", model, {"n": 1}, {"data": "synthetic"}, "# card {VERSION}\n",
                {"shared_dim": 8}, {"m": 1})
    return tmp_path / "b", model


def test_round_trip_gives_the_same_model(bundle_dir):
    path, model = bundle_dir
    b = load_bundle(path)
    lam = make_inputs("lamost")
    with torch.no_grad():
        assert torch.equal(b.model.encode("lamost", *lam), model.encode("lamost", *lam))
    assert b.version == (path / "VERSION").read_text().strip() and len(b.version) == 16
    assert b.version in b.card["markdown"] and b.card["shared_dim"] == 8
    assert b.metrics == {"m": 1} and b.norms == {"n": 1}


def test_same_content_same_version(bundle_dir, tmp_path):
    path, model = bundle_dir
    v2 = save_bundle(tmp_path / "c", model, {}, {}, "", {})
    assert v2 == load_bundle(path).version


def test_refuses_config_that_disagrees_with_weights(bundle_dir):
    path, _ = bundle_dir
    cfg = json.loads((path / "config.json").read_text())
    cfg["lamost"]["width"] = 32
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="shape mismatch"):
        load_bundle(path)


def test_refuses_missing_tensors(bundle_dir):
    path, _ = bundle_dir
    cfg = json.loads((path / "config.json").read_text())
    cfg["heads"]["finetune_encoder"] = False       # weights still hold head_encoders.*
    cfg["align"]["features"] = "pretrained"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="unexpected"):
        load_bundle(path)


def test_refuses_tampered_version_and_missing_parts(bundle_dir, tmp_path):
    path, _ = bundle_dir
    (path / "VERSION").write_text("0" * 16)
    with pytest.raises(BundleError, match="VERSION"):
        load_bundle(path)
    other = tmp_path / "d"
    shutil.copytree(path, other)
    (other / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(other)
    with pytest.raises(BundleError):
        load_bundle(tmp_path / "nowhere")


def test_refuses_corrupt_weights(bundle_dir):
    path, _ = bundle_dir
    (path / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(path)


def test_shipped_bundle_loads_and_carries_its_metrics():
    from engine.bundle import DEFAULT_BUNDLE

    if not (DEFAULT_BUNDLE / "weights.safetensors").exists():
        pytest.skip("no shipped bundle in this checkout")
    size = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir())
    # 31.3 MiB with the LAMOST ensemble's 2 extra runs; 42.4 MiB with the XP parameter path
    # (its [2048, 1024] encoder is 11.5 MB); 45.3 MiB with the 3 LAMOST paths beside the runs
    assert size <= 47 * 1024 * 1024
    b = load_bundle()
    assert b.config.name == "small" and b.card["shared_dim"] == b.config.align.shared_dim
    for key in ("lamost_params", "xp_params", "baseline", "cross_retrieval", "pairs",
                "translation", "calibration"):
        assert key in b.metrics
    assert b.metrics["bundle_version"] == b.version


def test_config_fields_added_later_keep_an_old_bundles_version(bundle_dir):
    """A bundle written before heads.stack_* / rv_templates existed keeps its version id:
    the id hashes the config as stored, not the config with later defaults filled in."""
    from engine.bundle import extras_digest, restamp_version, version_id
    from engine.models.config import config_to_dict

    path, _ = bundle_dir
    cfg = json.loads((path / "config.json").read_text())
    for key in ("stack_labels", "stack_components", "rv_templates"):
        cfg["heads"].pop(key)
    (path / "config.json").write_text(json.dumps(cfg))
    old = restamp_version(path)           # as the old code stamped it
    b = load_bundle(path)
    weights = (path / "weights.safetensors").read_bytes()
    assert b.version == old == version_id(weights, cfg, extras_digest(path))
    assert old != version_id(weights, config_to_dict(b.config), extras_digest(path))
    assert b.rv is None and b.model.stack is None


def test_keys_hashed_only_when_set_keep_a_retrains_version(bundle_dir):
    """heads.lamost_params_steps at 0 and heads.xp_params_hidden empty (off) hash as absent,
    so retraining a config from before the keys existed gives that bundle's version id
    again; set, they change the id."""
    from engine.bundle import extras_digest, version_id

    path, _ = bundle_dir
    cfg = json.loads((path / "config.json").read_text())
    weights, extra = (path / "weights.safetensors").read_bytes(), extras_digest(path)
    before = {**cfg, "heads": {k: v for k, v in cfg["heads"].items()
                               if k != "lamost_params_steps"}}
    off = {**cfg, "heads": {**cfg["heads"], "lamost_params_steps": 0}}
    on = {**cfg, "heads": {**cfg["heads"], "lamost_params_steps": 50}}
    assert version_id(weights, before, extra) == version_id(weights, off, extra)
    assert version_id(weights, on, extra) != version_id(weights, off, extra)
    assert "lamost_params_steps" not in before["heads"] and "lamost_params_steps" in cfg["heads"]
    no_xp = {**cfg, "heads": {k: v for k, v in cfg["heads"].items() if k != "xp_params_hidden"}}
    xp_on = {**cfg, "heads": {**cfg["heads"], "xp_params_hidden": [64]}}
    assert cfg["heads"]["xp_params_hidden"] == []
    assert version_id(weights, no_xp, extra) == version_id(weights, cfg, extra)
    assert version_id(weights, xp_on, extra) != version_id(weights, cfg, extra)


def test_rv_templates_are_part_of_the_version(bundle_dir):
    import numpy as np

    from engine.bundle import restamp_version
    from engine.rv import RvTemplates, save_templates

    path, _ = bundle_dir
    before = load_bundle(path).version
    flux = np.ones((2, 1462))
    save_templates(path, RvTemplates(flux, np.ones_like(flux, dtype=np.float32),
                                     np.zeros((2, 3))))
    with pytest.raises(BundleError, match="VERSION"):
        load_bundle(path)
    after = restamp_version(path)
    assert after != before and load_bundle(path).rv is not None


def test_stack_bundle_written_before_the_sigma_power_loads_unchanged(tmp_path):
    """stack.sigma_power / stack.sigma_ref came later: a bundle without them loads with the
    identity (power 0), keeps its version id and predicts as before."""
    from safetensors.torch import load_file, save_file

    from engine.bundle import restamp_version

    d = tiny_dict()
    d["heads"]["stack_labels"] = ["feh"]
    torch.manual_seed(0)
    model = SpecClipModel(config_from_dict(d)).eval()
    model.stack.sigma_scale.fill_(1.3)
    path = tmp_path / "old"
    save_bundle(path, model, {}, {}, "", {})
    weights = path / "weights.safetensors"
    state = load_file(str(weights))
    del state["stack.sigma_power"], state["stack.sigma_ref"]
    save_file(state, str(weights))
    old = restamp_version(path)
    b = load_bundle(path)
    assert b.version == old
    assert float(b.model.stack.sigma_power[0]) == 0.0
    lam = make_inputs("lamost")
    with torch.no_grad():
        new = b.model.predict_params("lamost", *lam)
        before = model.predict_params("lamost", *lam)
    assert all(torch.equal(x, y) for x, y in zip(new, before, strict=True))
    state["stack.bogus"] = torch.zeros(1)        # anything else missing or extra is refused
    save_file(state, str(weights))
    restamp_version(path)
    with pytest.raises(BundleError, match="unexpected"):
        load_bundle(path)
