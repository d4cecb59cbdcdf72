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


def test_a_closed_pipe_ends_quietly():
    """`specclip ... | head`: the reader leaving early is not an error worth a traceback."""
    import subprocess
    import sys

    code = "\n".join([
        "import argparse, sys",
        "import engine.cli as cli",
        "def broken(args):",
        "    raise BrokenPipeError(32, 'Broken pipe')",
        "def parser():",
        "    p = argparse.ArgumentParser()",
        "    p.add_argument('-v', '--verbose', action='count', default=0)",
        "    p.set_defaults(func=broken)",
        "    return p",
        "cli.build_parser = parser",
        "sys.exit(cli.main([]))",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
