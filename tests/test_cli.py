"""The `specclip` command: every subcommand is registered and has help a newcomer can read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.cli import build_parser

EXPECTED = ("ingest", "index", "query", "outliers", "train", "evaluate", "app")


def test_all_subcommands_are_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(EXPECTED) <= set(sub.choices)


@pytest.mark.parametrize("command", EXPECTED)
def test_each_subcommand_has_help(command):
    out = subprocess.run([sys.executable, "-m", "engine.cli", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: specclip" in out.stdout and len(out.stdout) > 200
