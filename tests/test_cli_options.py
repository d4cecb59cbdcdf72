"""Every option of every `specclip` subcommand either changes what the command does or is
refused with a one-line message (issue 14). The options are enumerated from the real parser,
so an option added without a check here fails `test_every_option_has_a_check`.

Three kinds of check, all in-process and fast:
- differs: the command's output (stdout, exit code, files) with the option differs from
  without it, on a small store generated here (a projection test double embeds it);
- refused: the option in a combination where it would do nothing, or with a bad value,
  ends with exit code != 0, one line naming the problem, and no traceback;
- reaches: where the real work needs a server, a cluster or a training run, the option's
  value is seen by the function that does the work (recorded by a stand-in).

Over 400 lines because it is a table: one check per option (~90 of them), grouped by
subcommand. Split it by subcommand if it grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine import cli
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import SyncReport, Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder

OBSIDS = (8100, 8101, 8102, 8103)     # ra = 10 + obsid % 7, dec = 20 + obsid % 5


# cli.main configures logging for the process: tests/conftest.py undoes it after each test
pytestmark = pytest.mark.usefixtures("restore_root_logger")


def all_options() -> set[tuple[str, str]]:
    """(subcommand, option) for every option of every registered subcommand."""
    parser = cli.build_parser()
    out = {("", a.option_strings[-1]) for a in parser._actions
           if a.option_strings and a.dest not in ("help",)}
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.dest == "help":
                continue
            opt = max(a.option_strings, key=len) if a.option_strings else a.dest
            out.add((name, opt))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-options")
    folder = tmp / "spectra"
    folder.mkdir()
    for i, obsid in enumerate(OBSIDS):
        write_lamost_file(str(folder / f"spec-{obsid}.fits"), obsid, teff=4500 + 500 * i,
                          seed=i)
    store = open_store(path=tmp / "store")
    Syncer(store=store, embedder=ProjectionEmbedder(), state_path=str(tmp / "state.json"),
           crossmatch={"8102": 4242}, read_workers=0).run(parse_sources([str(folder)]))
    store.close()
    return SimpleNamespace(tmp=tmp, folder=folder, store=str(tmp / "store"))


class Ctx:
    def __init__(self, world, tmp_path, monkeypatch, capsys):
        self.w, self.tmp, self.mp, self.capsys = world, tmp_path, monkeypatch, capsys
        self.calls: dict[str, list] = {}

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:             # argparse refusing a value
            rc = e.code if isinstance(e.code, int) else 1
        out = self.capsys.readouterr()
        return rc, out.out, out.err

    def record(self, target: object, name: str, ret=None) -> list:
        """Replace target.name by a stand-in that records its calls and returns ret(*a, **k)
        (or ret itself when not callable)."""
        calls = self.calls.setdefault(name, [])

        def stand_in(*a, **k):
            calls.append((a, k))
            return ret(*a, **k) if callable(ret) else ret
        self.mp.setattr(target, name, stand_in)
        return calls

    def differs(self, base: list[str], changed: list[str]) -> None:
        a, b = self.run(*base), self.run(*changed)
        assert a[:2] != b[:2], f"{changed} gave the same result as {base}: {a}"

    def refused(self, argv: list[str], match: str) -> None:
        rc, out, err = self.run(*argv)
        assert rc != 0, (argv, out, err)
        assert "Traceback" not in err, err
        assert match.lower() in err.lower(), err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage")
                 and not ln.startswith(" ")]
        assert len(lines) == 1, err


@pytest.fixture
def ctx(world, tmp_path, monkeypatch, capsys):
    return Ctx(world, tmp_path, monkeypatch, capsys)


def _projection_engine(c: Ctx) -> None:
    """Queries that embed (--file) use the test double the store was built with."""
    from engine.query import Engine
    c.mp.setattr(Engine, "embedder", property(lambda self: ProjectionEmbedder()))


# ---- query / outliers ----------------------------------------------------------------------

def _q(c, *more):
    return ["query", "--store", c.w.store, "--obsid", "8100", *more]


def _o(c, *more):
    return ["outliers", "--store", c.w.store, *more]


def _url_reaches(c: Ctx, argv: list[str]) -> None:
    from engine.errors import StoreError
    import engine.store as store_pkg

    def refuse(**k):
        raise StoreError(f"recorded url={k.get('url')}")
    calls = c.record(store_pkg, "open_store", refuse)
    rc, _, err = c.run(*argv)
    assert rc == 1 and calls[0][1]["url"] == "http://example.invalid:6333", err


def _json_is_real(c: Ctx, base: list[str]) -> None:
    import sys

    # as on a terminal, where the default is the table (a pipe gets JSON either way)
    c.mp.setattr(type(sys.stdout), "isatty", lambda self: True, raising=False)
    rc, out, _ = c.run(*base, "--json")
    assert rc == 0 and isinstance(json.loads(out), list)
    c.differs(base, [*base, "--json"])


def _query_reads_file(c: Ctx, more: list[str], probe) -> None:
    """A reader option reaches the reader of --file (and is refused without --file)."""
    import engine.query_cli as qcli

    _projection_engine(c)
    real = qcli.read_spectra
    # the stand-in reads the LAMOST file without the options (which the LAMOST reader
    # refuses: tests/engine/readers cover what each generic reader does with them)
    calls = c.record(qcli, "read_spectra", lambda path, **k: real(path))
    rc, _, err = c.run("query", "--store", c.w.store, "--file",
                       c.w.folder / "spec-8103.fits", *more)
    assert rc == 0, err
    assert probe(calls[-1][1]), calls
    c.refused(_q(c, *more), "only to --file")


def _query_search_kwargs(c: Ctx, more: list[str], probe) -> None:
    from engine.query import Engine

    real = Engine.search
    calls = c.record(Engine, "search", lambda *a, **k: real(*a, **k))
    rc, _, err = c.run(*_q(c, *more))
    assert rc == 0, err
    assert probe(calls[-1][1]), calls

CHECKS = {
    ("query", "--store"): lambda c: c.refused(
        ["query", "--store", c.tmp, "--obsid", "8100"], "no embedded store"),
    ("query", "--url"): lambda c: _url_reaches(
        c, ["query", "--url", "http://example.invalid:6333", "--obsid", "8100"]),
    ("query", "--bundle"): lambda c: c.refused(
        _q(c, "--bundle", Path(cli.__file__).parent / "bundles" / "small"), "built with model"),
    ("query", "--collection"): lambda c: c.differs(_q(c), _q(c, "--collection", "other")),
    ("query", "--json"): lambda c: _json_is_real(c, _q(c)),
    ("query", "--obsid"): lambda c: c.differs(
        _q(c), ["query", "--store", c.w.store, "--obsid", "8101"]),
    ("query", "--source-id"): lambda c: c.differs(
        _q(c), ["query", "--store", c.w.store, "--source-id", "4242"]),
    ("query", "--file"): lambda c: (_projection_engine(c), c.differs(
        _q(c), ["query", "--store", c.w.store, "--file", c.w.folder / "spec-8103.fits"])),
    ("query", "--ra"): lambda c: c.differs(
        _q(c), ["query", "--store", c.w.store, "--ra", "12", "--dec", "21"]),
    ("query", "--dec"): lambda c: (
        c.refused(_q(c, "--dec", "21"), "--dec and --radius go with --ra"),
        c.refused(["query", "--store", c.w.store, "--ra", "12", "--dec", "95"], "[-90, 90]")),
    ("query", "--radius"): lambda c: (
        c.differs(["query", "--store", c.w.store, "--ra", "12.0001", "--dec", "21"],
                  ["query", "--store", c.w.store, "--ra", "12.0001", "--dec", "21",
                   "--radius", "1e-6"]),
        c.refused(_q(c, "--radius", "1"), "go with --ra")),
    ("query", "--target"): lambda c: c.differs(_q(c, "--target", "lamost"),
                                               _q(c, "--target", "gaia_xp")),
    ("query", "-k"): lambda c: (c.differs(_q(c), _q(c, "-k", "1")),
                                c.refused(_q(c, "-k", "-1"), "at least 1")),
    ("query", "--space"): lambda c: c.differs(_q(c), _q(c, "--space", "shared")),
    ("query", "--filter"): lambda c: (c.differs(_q(c), _q(c, "--filter", "ra=0:1")),
                                      c.refused(_q(c, "--filter", "ra=nan:1"), "finite")),
    ("query", "--fields"): lambda c: (c.differs(_q(c), _q(c, "--fields", "snr")),
                                      c.refused(_q(c, "--fields", "../../etc"), "field")),
    ("query", "--format"): lambda c: (
        c.refused(["query", "--store", c.w.store, "--file", c.w.folder / "spec-8103.fits",
                   "--format", "no-such-reader"], "no-such-reader"),
        _query_reads_file(c, ["--format", "lamost-lrs"], lambda k: k["format"] == "lamost-lrs")),
    ("query", "--wavelength-unit"): lambda c: _query_reads_file(
        c, ["--wavelength-unit", "nm"], lambda k: k["options"]["unit"] == "nm"),
    ("query", "--medium"): lambda c: _query_reads_file(
        c, ["--medium", "air"], lambda k: k["options"]["medium"] == "air"),
    ("query", "--uncertainty"): lambda c: _query_reads_file(
        c, ["--uncertainty", "error"], lambda k: k["options"]["uncertainty"] == "error"),
    ("query", "--quality-cut"): lambda c: (
        _query_search_kwargs(c, ["--quality-cut", "off"], lambda k: k["quality_cut"] is False),
        _query_search_kwargs(c, ["--quality-cut", "on"], lambda k: k["quality_cut"] is True),
        c.refused(["query", "--store", c.w.store, "--ra", "12", "--dec", "21",
                   "--quality-cut", "on"], "applies to similarity searches")),
    ("query", "--cross-rank"): lambda c: (
        _query_search_kwargs(c, ["--cross-rank", "off"], lambda k: k["cross_rank"] is False),
        _query_search_kwargs(c, [], lambda k: k["cross_rank"] is True),
        c.refused(["query", "--store", c.w.store, "--ra", "12", "--dec", "21",
                   "--cross-rank", "off"], "applies to similarity searches")),
    ("query", "--sigma-weight"): lambda c: (
        _query_search_kwargs(c, ["--sigma-weight", "0"], lambda k: k["sigma_weight"] == 0.0),
        _query_search_kwargs(c, [], lambda k: k["sigma_weight"] is None),
        c.refused(_q(c, "--sigma-weight", "-1"), "0 or more"),
        c.refused(_q(c, "--sigma-weight", "1", "--cross-rank", "off"), "cross_rank off"),
        c.refused(_q(c, "--sigma-weight", "1", "--target", "lamost"), "has none"),
        c.refused(["query", "--store", c.w.store, "--ra", "12", "--dec", "21",
                   "--sigma-weight", "1"], "applies to similarity searches")),
    ("query", "--grouped"): lambda c: (
        c.differs(_q(c), _q(c, "--grouped")),
        isinstance(json.loads(c.run(*_q(c, "--grouped"))[1]), dict) or pytest.fail("grouped"),
        c.refused(_q(c, "--grouped", "--target", "lamost"), "--grouped needs --target any")),
    ("query", "--with-query"): lambda c: (
        c.differs(_q(c), _q(c, "--with-query")),
        "query" in json.loads(c.run(*_q(c, "--with-query"))[1]) or pytest.fail("with-query")),
    ("outliers", "--store"): lambda c: c.refused(["outliers", "--store", c.tmp],
                                                 "no embedded store"),
    ("outliers", "--url"): lambda c: _url_reaches(
        c, ["outliers", "--url", "http://example.invalid:6333"]),
    ("outliers", "--bundle"): lambda c: c.refused(
        _o(c, "--bundle", Path(cli.__file__).parent / "bundles" / "small"), "built with model"),
    ("outliers", "--collection"): lambda c: c.differs(_o(c), _o(c, "--collection", "other")),
    ("outliers", "--json"): lambda c: _json_is_real(c, _o(c)),
    ("outliers", "--survey"): lambda c: c.differs(_o(c), _o(c, "--survey", "gaia_xp")),
    ("outliers", "-k"): lambda c: (c.differs(_o(c), _o(c, "-k", "1")),
                                   c.refused(_o(c, "-k", "-5"), "at least 1")),
    ("outliers", "--score"): lambda c: c.differs(_o(c), _o(c, "--score", "anomaly_recon")),
    ("outliers", "--filter"): lambda c: c.differs(_o(c), _o(c, "--filter", "ra=0:1")),
}


# ---- index ----------------------------------------------------------------------------------

def _index_world(c: Ctx) -> dict[str, list]:
    """index with the real CLI code up to the sync, whose inputs are recorded: the Syncer
    itself is tested in tests/indexer; here what matters is what each option reaches."""
    import indexer.cli as icli
    import indexer.distributed as dist

    seen: dict[str, list] = {"syncer": []}

    def fake_run(self, sources):
        seen["syncer"].append(self)
        return SyncReport(collection="spectra__x", sources=[s.spec for s in sources],
                          started_at="2026-01-01T00:00:00Z")
    c.mp.setattr(icli.Syncer, "run", fake_run)
    c.record(icli, "load_bundle", lambda path: SimpleNamespace(path=path))
    c.record(icli, "Embedder", lambda bundle, **k: ProjectionEmbedder())
    c.record(icli, "open_store", lambda **k: open_store(path=c.tmp / "s") if k.get("path")
             else open_store(memory=True))
    c.record(icli, "watch", 1)
    c.record(icli, "parse_sources", parse_sources)
    c.record(dist, "distributed_sync", lambda *a, **k: fake_run(None, []))
    return seen


def _i(c, *more):
    return ["index", "--store", c.tmp / "s", "--no-progress", *more]


def _index_reaches(c: Ctx, argv: list[str], probe) -> None:
    seen = _index_world(c)
    rc, out, err = c.run(*argv)
    assert rc == 0, err
    assert probe(seen, c.calls), (argv, c.calls)


def _syncer(attr, value):
    return lambda seen, calls: getattr(seen["syncer"][-1], attr) == value


def _option(attr, value):
    return lambda seen, calls: getattr(seen["syncer"][-1].options, attr) == value


def _index_refused(c: Ctx, argv: list[str], match: str) -> None:
    _index_world(c)
    c.refused(argv, match)


CHECKS.update({
    ("index", "--store"): lambda c: _index_reaches(
        c, _i(c), lambda s, k: k["open_store"][0][1]["path"] == str(c.tmp / "s")),
    ("index", "--url"): lambda c: _index_reaches(
        c, ["index", "--url", "http://q:6333", "--no-progress"],
        lambda s, k: k["open_store"][0][1]["url"] == "http://q:6333"),
    ("index", "sources"): lambda c: _index_reaches(
        c, _i(c, c.w.folder), lambda s, k: k["parse_sources"][0][0][0] == [str(c.w.folder)]),
    ("index", "--report"): lambda c: (_index_reaches(
        c, _i(c, "--report", c.tmp / "r.json"), lambda s, k: True),
        json.loads((c.tmp / "r.json").read_text())),
    ("index", "--labels"): lambda c: _index_reaches(
        c, _i(c, "--labels", "l.csv"), lambda s, k: k["parse_sources"][0][0][1] == ["l.csv"]),
    ("index", "--crossmatch"): lambda c: (
        (c.tmp / "x.csv").write_text("obsid,source_id\n8100,77\n"),
        _index_reaches(c, _i(c, "--crossmatch", c.tmp / "x.csv"),
                       _syncer("crossmatch", {"8100": 77}))),
    ("index", "--bundle"): lambda c: _index_reaches(
        c, _i(c, "--bundle", "b"), lambda s, k: k["load_bundle"][0][0] == ("b",)),
    ("index", "--device"): lambda c: (
        _index_reaches(c, _i(c, "--device", "CPU"),
                       lambda s, k: k["Embedder"][0][1]["device"] == "cpu"),
        _index_refused(c, _i(c, "--device", "tpu"), "unknown device 'tpu'"),
        None if torch.cuda.is_available() else
        _index_refused(c, _i(c, "--device", "cuda"), "'cuda' asked for")),
    ("index", "--alias"): lambda c: (
        _index_reaches(c, _i(c, "--alias", "stars"), _syncer("alias", "stars")),
        _index_refused(c, _i(c, "--alias", "../../escape"), "collection/alias name")),
    ("index", "--batch-size"): lambda c: (
        _index_reaches(c, _i(c, "--batch-size", "7"), _syncer("batch_size", 7)),
        _index_refused(c, _i(c, "--batch-size", "0"), "at least 1")),
    ("index", "--state"): lambda c: _index_reaches(
        c, _i(c, "--state", c.tmp / "st.json"), _syncer("state_path", str(c.tmp / "st.json"))),
    ("index", "--quantization"): lambda c: _index_reaches(
        c, _i(c, "--quantization", "int8"), _option("quantization", "int8")),
    ("index", "--on-disk"): lambda c: _index_reaches(c, _i(c, "--on-disk"),
                                                     _option("on_disk", True)),
    ("index", "--payload-on-disk"): lambda c: _index_reaches(
        c, _i(c, "--payload-on-disk"), _option("payload_on_disk", True)),
    ("index", "--shards"): lambda c: (
        _index_refused(c, _i(c, "--shards", "2"), "--shards applies to a server"),
        _index_reaches(c, ["index", "--url", "http://q:6333", "--shards", "3"],
                       _option("shard_number", 3))),
    ("index", "--replication"): lambda c: (
        _index_refused(c, _i(c, "--replication", "2"), "--replication applies to a server"),
        _index_reaches(c, ["index", "--url", "http://q:6333", "--replication", "2"],
                       _option("replication_factor", 2))),
    ("index", "--write-consistency"): lambda c: (
        _index_refused(c, _i(c, "--write-consistency", "2"),
                       "--write-consistency applies to a server"),
        _index_refused(c, ["index", "--url", "http://q:6333", "--replication", "2",
                           "--write-consistency", "3"], "cannot exceed --replication"),
        _index_reaches(c, ["index", "--url", "http://q:6333", "--replication", "2",
                           "--write-consistency", "2"], _option("write_consistency_factor", 2))),
    ("index", "--search-threads"): lambda c: (
        _index_reaches(c, _i(c, "--search-threads", "3"), _option("search_threads", 3)),
        _index_refused(c, ["index", "--url", "http://q:6333", "--search-threads", "2"],
                       "--search-threads applies to the embedded store")),
    ("index", "--max-segment-points"): lambda c: (
        _index_reaches(c, _i(c, "--max-segment-points", "50000"),
                       _option("max_segment_points", 50_000)),
        _index_reaches(c, _i(c), _option("max_segment_points", 200_000)),
        _index_refused(c, _i(c, "--max-segment-points", "0"), "at least 1")),
    ("index", "--read-workers"): lambda c: (
        _index_reaches(c, _i(c, "--read-workers", "0"), _syncer("read_workers", 0)),
        _index_refused(c, _i(c, "--read-workers", "-1"), "0 or more")),
    ("index", "--watch"): lambda c: _index_reaches(c, _i(c, "--watch"),
                                                   lambda s, k: len(k["watch"]) == 1),
    ("index", "--interval"): lambda c: (
        _index_reaches(c, _i(c, "--watch", "--interval", "2.5"),
                       lambda s, k: k["watch"][0][0][2] == 2.5),
        _index_refused(c, _i(c, "--interval", "2"), "--interval goes with --watch")),
    ("index", "--max-cycles"): lambda c: (
        _index_reaches(c, _i(c, "--watch", "--max-cycles", "3"),
                       lambda s, k: k["watch"][0][0][3] == 3),
        _index_refused(c, _i(c, "--max-cycles", "3"), "--max-cycles goes with --watch")),
    ("index", "--dask"): lambda c: (
        _index_reaches(c, _i(c, "--dask", "2"),
                       lambda s, k: k["distributed_sync"][0][0][4] == 2),
        _index_refused(c, _i(c, "--dask", "2", "--watch"), "--watch with --dask")),
    ("index", "--no-progress"): lambda c: (
        c.record(__import__("indexer.cli").cli, "TqdmProgress", lambda **k: SimpleNamespace(
            close=lambda: None, **k)),
        _index_reaches(c, _i(c), lambda s, k: k["TqdmProgress"][-1][1]["disable"] is True),
        _index_reaches(c, ["index", "--store", c.tmp / "s"],
                       lambda s, k: k["TqdmProgress"][-1][1]["disable"] is False)),
    ("index", "--positions"): lambda c: (
        (c.tmp / "pos.csv").write_text("source_id,ra,dec\n77,10.5,-3.25\n"),
        _index_reaches(c, _i(c, "--positions", c.tmp / "pos.csv"),
                       _syncer("positions", {"77": (10.5, -3.25)})),
        (c.tmp / "bad.csv").write_text("source_id,x\n1,2\n"),
        _index_refused(c, _i(c, "--positions", c.tmp / "bad.csv"), "position table")),
    ("index", "--spectra"): lambda c: (
        _index_refused(c, _i(c, "--spectra", c.tmp / "sp"), "--spectra is for a server"),
        _index_reaches(c, ["index", "--url", "http://q:6333", "--no-progress", "--spectra",
                           c.tmp / "sp"],
                       lambda s, k: s["syncer"][-1].archive.folder == str(c.tmp / "sp"))),
    ("index", "--verify"): lambda c: _index_reaches(c, _i(c, "--verify"),
                                                    _syncer("verify", True)),
})


# ---- rescore: a full refresh of the anomaly scores of a copy of the small store --------------

def _rescore(c: Ctx, more: list[str], store: bool = True) -> tuple[int, str, str]:
    import shutil

    import indexer.cli as icli

    if not (c.tmp / "rs").exists():
        shutil.copytree(c.w.store, c.tmp / "rs")
    c.record(icli, "load_bundle", lambda path: SimpleNamespace(path=path))
    c.record(icli, "Embedder", lambda bundle: ProjectionEmbedder())
    where = ["--store", c.tmp / "rs"] if store else []
    return c.run("rescore", *where, "--state", c.tmp / "rs-state.json", *more)


def _rescore_url(c: Ctx) -> None:
    import indexer.cli as icli
    from engine.errors import StoreError

    def refuse(**k):
        raise StoreError(f"recorded url={k.get('url')}")
    calls = c.record(icli, "open_store", refuse)
    rc, _, err = c.run("rescore", "--url", "http://example.invalid:6333")
    assert rc == 1 and calls[0][1]["url"] == "http://example.invalid:6333", err


CHECKS.update({
    ("rescore", "--store"): lambda c: (
        _rescore(c, [])[0] == 0 or pytest.fail("rescore"),
        c.refused(["rescore", "--store", c.tmp / "empty"], "no embedded store here")),
    ("rescore", "--url"): _rescore_url,
    ("rescore", "--bundle"): lambda c: (
        _rescore(c, ["--bundle", "B"]),
        c.calls["load_bundle"][-1][0] == ("B",) or pytest.fail("bundle")),
    ("rescore", "--alias"): lambda c: (
        _rescore(c, [])[0] == 0 or pytest.fail("rescore"),
        _rescore(c, ["--alias", "other"])[0] == 1 or pytest.fail("alias")),
    ("rescore", "--state"): lambda c: (
        _rescore(c, []),
        json.loads((c.tmp / "rs-state.json").read_text())["scores_fresh"]
        or pytest.fail("state")),
})


# ---- ingest ---------------------------------------------------------------------------------

def _g(c, *more):
    return ["ingest", c.w.folder / "spec-8100.fits", "--out", c.tmp / "cat.parquet",
            "--no-progress", *more]


def _ingest_reaches(c: Ctx, argv: list[str], target, name: str, ret, probe) -> None:
    calls = c.record(target, name, ret)
    rc, _, err = c.run(*argv)
    assert rc == 0, err
    assert calls and probe(calls), calls


def _real_read_many():
    from engine import readers
    real = readers.read_many
    # options reach the call; the LAMOST file is read without them (its reader refuses
    # generic options: tests/engine/readers cover what each generic reader does with them)
    return lambda paths, **k: real(paths, progress=k.get("progress", False))


CHECKS.update({
    ("ingest", "paths"): lambda c: c.differs(
        ["ingest", "--out", c.tmp / "a.parquet"], _g(c)),
    ("ingest", "--out"): lambda c: (
        c.run(*_g(c)), (c.tmp / "cat.parquet").stat(),
        c.refused(["ingest", c.w.folder, "--out", c.tmp], "is a folder"),
        not list(c.tmp.glob("*.tmp-*")) or pytest.fail("stray .tmp file")),
    ("ingest", "--report"): lambda c: (
        c.run(*_g(c, "--report", c.tmp / "r.json")),
        json.loads((c.tmp / "r.json").read_text())["read"] == 1 or pytest.fail("report")),
    ("ingest", "--labels"): lambda c: _ingest_reaches(
        c, _g(c, "--labels", "lab.csv"), __import__("engine.readers.lamost_labels").readers
        .lamost_labels, "load_lamost_labels", {}, lambda k: k[0][0] == ("lab.csv",)),
    ("ingest", "--xp-library"): lambda c: _ingest_reaches(
        c, _g(c, "--xp-library"), __import__("engine.readers").readers, "read_xp_library",
        [], lambda k: len(k) == 1),
    ("ingest", "--format"): lambda c: (
        _ingest_reaches(c, _g(c, "--format", "lamost-lrs"), __import__("engine.readers")
                        .readers, "read_many", _real_read_many(),
                        lambda k: k[-1][1]["format"] == "lamost-lrs")),
    ("ingest", "--wavelength-unit"): lambda c: _ingest_reaches(
        c, _g(c, "--wavelength-unit", "nm"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["unit"] == "nm"),
    ("ingest", "--medium"): lambda c: _ingest_reaches(
        c, _g(c, "--medium", "vacuum"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["medium"] == "vacuum"),
    ("ingest", "--uncertainty"): lambda c: _ingest_reaches(
        c, _g(c, "--uncertainty", "ivar"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["uncertainty"] == "ivar"),
    ("ingest", "--no-progress"): lambda c: (
        _ingest_reaches(c, _g(c), __import__("engine.readers").readers, "read_many",
                        _real_read_many(), lambda k: k[-1][1]["progress"] is False),
        _ingest_reaches(c, [a for a in _g(c) if a != "--no-progress"],
                        __import__("engine.readers").readers, "read_many",
                        _real_read_many(), lambda k: k[-1][1]["progress"] is True)),
})


# ---- train / evaluate: the work is a training run; the options must reach it --------------

def _train(c: Ctx, more: list[str], probe, config=lambda name: f"cfg:{name}") -> None:
    import training.config
    import training.train

    c.record(training.config, "load_config", config)
    calls = c.record(training.train, "train", "v-test")
    rc, _, err = c.run("train", "--out", c.tmp / "b", *more)
    assert rc == 0, err
    assert probe(calls[0]), calls


def _evaluate(c: Ctx, more: list[str], probe) -> None:
    import training.evaluate

    def fake(bundle, lamost, labels, out, **k):
        Path(out).write_text("{}")
        return {"lamost_params": {}, "xp_params": {}}
    calls = c.record(training.evaluate, "evaluate", fake)
    rc, _, err = c.run("evaluate", "--lamost", "L", "--lamost-labels", "LL",
                       "--out", c.tmp / "m.json", *more)
    assert rc == 0, err
    assert probe(calls[0]), calls


def _fit_reference(c: Ctx, more: list[str], probe) -> None:
    import training.reference_fit

    calls = c.record(training.reference_fit, "fit_reference",
                     SimpleNamespace(bundle_version="v-test", surveys={}))
    rc, out, err = c.run("fit-reference", *more)
    assert rc == 0 and json.loads(out)["bundle_version"] == "v-test", err
    assert probe(calls[0]), calls


def _logs_to_file(c: Ctx, fn, argv_more) -> None:
    import logging
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        fn(c, ["--log", c.tmp / "run.log", *argv_more], lambda call: True)
        assert (c.tmp / "run.log").exists()
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()


def _train_workers(c: Ctx) -> None:
    import dataclasses as dc

    import training.config
    real = training.config.load_config("small")
    _train(c, ["--workers", "2"], lambda k: k[1]["workers"] == 2, lambda name: real)
    # a config of one run has nothing to train side by side
    single = dc.replace(real, heads=dc.replace(real.heads, lamost_members=1,
                                               lamost_params_steps=0, lamost_runs_labels=(),
                                               xp_params_hidden=()))
    c.record(training.config, "load_config", lambda name: single)
    c.refused(["train", "--out", c.tmp / "b", "--workers", "2"], "single run")
    c.refused(["train", "--out", c.tmp / "b", "--workers", "0"], "--workers")


CHECKS.update({
    ("train", "--workers"): _train_workers,
    ("train", "--config"): lambda c: _train(c, ["--config", "paper"],
                                            lambda k: k[0][0] == "cfg:paper"),
    ("train", "--out"): lambda c: _train(c, [], lambda k: k[0][1] == str(c.tmp / "b")),
    ("train", "--data"): lambda c: _train(c, ["--data", "D"],
                                          lambda k: k[1]["data_root"] == "D"),
    ("train", "--pairs"): lambda c: _train(c, ["--pairs", "p.csv"],
                                           lambda k: k[1]["pairs_csv"] == "p.csv"),
    ("train", "--checkpoints"): lambda c: _train(c, ["--checkpoints", "ck"],
                                                 lambda k: k[1]["checkpoints"] == "ck"),
    ("train", "--log"): lambda c: _logs_to_file(c, _train, []),
    ("evaluate", "--bundle"): lambda c: _evaluate(c, ["--bundle", "B"],
                                                  lambda k: k[0][0] == "B"),
    ("evaluate", "--lamost"): lambda c: _evaluate(c, [], lambda k: k[0][1] == "L"),
    ("evaluate", "--lamost-labels"): lambda c: _evaluate(c, [], lambda k: k[0][2] == "LL"),
    ("evaluate", "--out"): lambda c: _evaluate(c, [],
                                               lambda k: k[0][3] == str(c.tmp / "m.json")),
    ("evaluate", "--data"): lambda c: _evaluate(c, ["--data", "D"],
                                                lambda k: k[1]["data_root"] == "D"),
    ("evaluate", "--all-lamost"): lambda c: _evaluate(c, ["--all-lamost"],
                                                      lambda k: k[1]["all_lamost"] is True),
    ("evaluate", "--no-plots"): lambda c: _evaluate(c, ["--no-plots"],
                                                    lambda k: k[1]["plots"] is False),
    ("evaluate", "--into-bundle"): lambda c: (
        (c.tmp / "B").mkdir(),
        c.record(__import__("training.card").card, "write_card"),
        _evaluate(c, ["--bundle", c.tmp / "B", "--into-bundle"], lambda k: True),
        (c.tmp / "B" / "metrics.json").exists() or pytest.fail("metrics not copied"),
        c.calls["write_card"][0][0] == (c.tmp / "B",) or pytest.fail("card not written")),
    ("evaluate", "--log"): lambda c: _logs_to_file(c, _evaluate, []),
    ("fit-reference", "--bundle"): lambda c: _fit_reference(
        c, ["--bundle", "B"], lambda k: k[0] == ("B", None)),
    ("fit-reference", "--data"): lambda c: _fit_reference(
        c, ["--data", "D"], lambda k: k[0] == (None, "D")),
})


# ---- app ------------------------------------------------------------------------------------

def _app(c: Ctx, more: list[str], expect: list[str]) -> None:
    import app.cli

    calls = c.record(app.cli.subprocess, "run",
                     lambda cmd, **k: subprocess.CompletedProcess(cmd, 0))
    rc, _, err = c.run("app", *more)
    assert rc == 0, err
    cmd = [str(x) for x in calls[0][0][0]]
    assert all(e in cmd for e in expect), (cmd, expect)


CHECKS.update({
    ("app", "--store"): lambda c: _app(c, ["--store", c.w.store], ["--store", c.w.store]),
    ("app", "--url"): lambda c: _app(c, ["--url", "http://q:6333"], ["http://q:6333"]),
    ("app", "--bundle"): lambda c: _app(c, ["--store", c.w.store, "--bundle", c.tmp],
                                        ["--bundle", str(c.tmp)]),
    ("app", "--port"): lambda c: (_app(c, ["--store", c.w.store, "--port", "8999"], ["8999"]),
                                  c.refused(["app", "--port", "0"], "at least 1")),
    ("app", "--address"): lambda c: _app(c, ["--store", c.w.store, "--address", "0.0.0.0"],
                                         ["0.0.0.0"]),
})


# ---- the global -v: tracebacks only when asked ----------------------------------------------

def _verbose(c: Ctx) -> None:
    rc, _, quiet = c.run("outliers", "--store", c.tmp)
    rc_v, _, loud = c.run("-v", "outliers", "--store", c.tmp)
    assert rc == rc_v == 1
    assert "Traceback" not in quiet and "Traceback" in loud


CHECKS[("", "--verbose")] = _verbose

PENDING: dict = {}


# ---- predict ---------------------------------------------------------------------------------

def _p(c, *more):
    """`specclip predict` over the world's 4 files, with the projection double as the model."""
    import engine.inference as inference

    c.mp.setattr(inference, "Embedder", lambda *a, **k: ProjectionEmbedder())
    return ["predict", c.w.folder, "--out", c.tmp / "t.csv", "--no-progress", *more]


def _predict_reaches(c: Ctx, argv: list[str], target, name: str, ret, probe) -> None:
    calls = c.record(target, name, ret)
    rc, _, err = c.run(*argv)
    assert rc == 0, err
    assert calls and probe(calls), calls


def _embedder_args(c: Ctx, more: list[str], probe) -> None:
    argv = _p(c, *more)            # installs the double first; record() wraps it
    import engine.inference as inference

    _predict_reaches(c, argv, inference, "Embedder", lambda *a, **k: ProjectionEmbedder(),
                     probe)


def _predict_batches(c: Ctx, size: str, expected: list[int]) -> None:
    import indexer.predict as PR

    real, sizes = PR.prediction_rows, []
    c.mp.setattr(PR, "prediction_rows",
                 lambda recs, emb: (sizes.append(len(recs)), real(recs, emb))[1])
    rc, _, err = c.run(*_p(c, "--batch-size", size))
    assert rc == 0 and sizes == expected, (err, sizes)


CHECKS.update({
    ("predict", "paths"): lambda c: c.differs(
        _p(c), ["predict", c.w.folder / "spec-8100.fits", "--out", c.tmp / "t.csv",
                "--no-progress"]),
    ("predict", "--out"): lambda c: (
        c.run(*_p(c)), (c.tmp / "t.csv").stat(),
        c.refused(["predict", c.w.folder, "--out", c.tmp / "t.txt"], "CSV or Parquet"),
        c.refused(["predict", c.w.folder, "--out", c.tmp], "CSV or Parquet"),
        not list(c.tmp.glob(".predict-*")) or pytest.fail("stray temporary table")),
    ("predict", "--report"): lambda c: (
        c.run(*_p(c, "--report", c.tmp / "r.json")),
        json.loads((c.tmp / "r.json").read_text())["spectra"] == 4 or pytest.fail("report")),
    ("predict", "--labels"): lambda c: _predict_reaches(
        c, _p(c, "--labels", "lab.csv"), __import__("engine.readers.lamost_labels").readers
        .lamost_labels, "load_lamost_labels", {}, lambda k: k[0][0] == ("lab.csv",)),
    ("predict", "--bundle"): lambda c: _embedder_args(
        c, ["--bundle", "B"], lambda k: k[-1][0][0] == "B"),
    ("predict", "--device"): lambda c: _embedder_args(
        c, ["--device", "auto"], lambda k: k[-1][1]["device"] == "auto"),
    ("predict", "--batch-size"): lambda c: (_predict_batches(c, "2", [2, 2]),
                                            _predict_batches(c, "3", [3, 1]),
                                            c.refused(_p(c, "--batch-size", "0"), "at least 1")),
    ("predict", "--no-progress"): lambda c: (
        _predict_reaches(c, _p(c), __import__("indexer.predict").predict, "predict_files",
                         {"spectra": 0, "ood": 0, "low_quality": 0, "refused": []},
                         lambda k: k[-1][1]["progress"] is False),
        _predict_reaches(c, [a for a in _p(c) if a != "--no-progress"],
                         __import__("indexer.predict").predict, "predict_files",
                         {"spectra": 0, "ood": 0, "low_quality": 0, "refused": []},
                         lambda k: k[-1][1]["progress"] is True)),
    ("predict", "--format"): lambda c: _predict_reaches(
        c, _p(c, "--format", "lamost-lrs"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["format"] == "lamost-lrs"),
    ("predict", "--wavelength-unit"): lambda c: _predict_reaches(
        c, _p(c, "--wavelength-unit", "nm"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["unit"] == "nm"),
    ("predict", "--medium"): lambda c: _predict_reaches(
        c, _p(c, "--medium", "air"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["medium"] == "air"),
    ("predict", "--uncertainty"): lambda c: _predict_reaches(
        c, _p(c, "--uncertainty", "error"), __import__("engine.readers").readers, "read_many",
        _real_read_many(), lambda k: k[-1][1]["options"]["uncertainty"] == "error"),
})


def test_every_option_has_a_check():
    missing = sorted(all_options() - set(CHECKS))
    assert not missing, f"options with no check (add one to CHECKS): {missing}"


@pytest.mark.parametrize("key", [pytest.param(k, marks=PENDING.get(k, ()),
                                              id=f"{k[0] or 'specclip'}{k[1]}")
                                 for k in sorted(CHECKS)])
def test_option_changes_behaviour_or_is_refused(ctx, key):
    if key not in all_options():
        pytest.skip(f"{key} is not registered here")
    CHECKS[key](ctx)


def test_an_unavailable_subcommand_says_why(monkeypatch, capsys):
    """A subcommand whose module fails to import is listed and explains itself."""
    import importlib.metadata as md

    class Broken:
        name = "train"

        def load(self):
            raise ImportError("No module named 'torchvision'")
    real = md.entry_points
    monkeypatch.setattr(cli, "entry_points", lambda group: [
        Broken() if ep.name == "train" else ep for ep in real(group=group)])
    rc = cli.main(["train", "--out", "x"])
    err = capsys.readouterr().err
    assert rc == 1 and "unavailable" in err and "torchvision" in err
    assert "Traceback" not in err
    assert isinstance(cli.build_parser(), argparse.ArgumentParser)
