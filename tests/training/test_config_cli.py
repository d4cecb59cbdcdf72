import argparse
import json

import pytest

from engine.models.config import config_from_dict, config_to_dict
from training.cli import register_evaluate, register_train
from training.config import load_config


def test_both_configs_load_and_round_trip():
    for name in ("small", "paper"):
        cfg = load_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg
    paper = load_config("paper")
    assert (paper.lamost.width, paper.lamost.depth, paper.lamost.heads) == (768, 6, 6)
    small = load_config("small")
    assert (small.lamost.patch_size, small.lamost.patch_stride) == (20, 10)


def test_unknown_keys_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lamost": {"widht": 3}}))
    with pytest.raises(ValueError, match="widht"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config("no-such-config")


def test_cli_registers_train_and_evaluate():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register_train(sub)
    register_evaluate(sub)
    a = parser.parse_args(["train", "--config", "small", "--out", "x"])
    assert a.config == "small" and a.out == "x" and callable(a.func)
    e = parser.parse_args(["evaluate", "--lamost", "d", "--lamost-labels", "l.csv",
                           "--out", "m.json"])
    assert e.bundle is None and e.lamost_labels == "l.csv" and callable(e.func)
