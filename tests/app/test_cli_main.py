"""`specclip app` and the entry script's configuration."""

from __future__ import annotations

import argparse
import sys

import pytest

from app import cli
from app.main import parse_config


def parse(argv, monkeypatch, **env):
    for k in ("SPECCLIP_STORE", "SPECCLIP_URL", "SPECCLIP_BUNDLE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["app", *argv])


def test_command_runs_streamlit_on_main_with_store_and_port(monkeypatch, tmp_path):
    args = parse(["--store", str(tmp_path / "s"), "--port", "8765", "--bundle", "b"],
                 monkeypatch)
    cmd = cli.build_command(args)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", cli.MAIN]
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "20"
    tail = cmd[cmd.index("--") + 1:]
    assert tail[:2] == ["--store", str(tmp_path / "s")] and tail[2] == "--bundle"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"


def test_url_and_environment_defaults(monkeypatch):
    args = parse([], monkeypatch, SPECCLIP_URL="http://qdrant:6333")
    assert cli.build_command(args)[-2:] == ["--url", "http://qdrant:6333"]
    with pytest.raises(SystemExit):
        parse(["--store", "a", "--url", "b"], monkeypatch)


def test_run_refuses_without_a_store_and_runs_the_command(monkeypatch, tmp_path):
    assert cli.run(parse([], monkeypatch)) == 2
    assert cli.run(parse(["--store", "x"], monkeypatch, SPECCLIP_URL="http://q")) == 2
    seen = {}

    class Done:
        returncode = 0

    def fake_run(cmd, check):
        seen["cmd"] = cmd
        return Done()

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    # a folder that is no store (a typo, or not indexed yet) is refused before Streamlit
    assert cli.run(parse(["--store", str(tmp_path)], monkeypatch)) == 2 and not seen
    (tmp_path / "store.json").write_text("{}")
    assert cli.run(parse(["--store", str(tmp_path)], monkeypatch)) == 0
    assert seen["cmd"][-2:] == ["--store", str(tmp_path)]


def test_entry_config_arguments_win_over_environment():
    env = {"SPECCLIP_STORE": "/env/store", "SPECCLIP_BUNDLE": "/env/bundle"}
    cfg = parse_config([], env)
    assert (cfg.store, cfg.url, cfg.bundle) == ("/env/store", None, "/env/bundle")
    cfg = parse_config(["--url", "http://q:6333"], env)
    assert (cfg.store, cfg.url, cfg.bundle) == (None, "http://q:6333", "/env/bundle")
    cfg = parse_config(["--store", "/arg", "--bundle", "/b"], {})
    assert (cfg.store, cfg.url, cfg.bundle) == ("/arg", None, "/b")


def test_entry_script_opens_the_store_and_shows_the_search_page(app_store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app.main import __file__ as main_file

    monkeypatch.setenv("SPECCLIP_STORE", app_store.path)
    at = AppTest.from_file(main_file, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Spectrum search"]
    assert any(app_store.path in c.value for c in at.sidebar.caption)


def test_entry_script_without_a_store_says_how_to_start(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app.main import __file__ as main_file

    for k in ("SPECCLIP_STORE", "SPECCLIP_URL"):
        monkeypatch.delenv(k, raising=False)
    at = AppTest.from_file(main_file, default_timeout=60)
    at.run()
    assert any("specclip app --store" in e.value for e in at.error)
