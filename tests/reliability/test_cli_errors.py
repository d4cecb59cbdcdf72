"""Issue 15, items 18, 21 and 22: every argument validated; `ingest --out <folder>` refused
before anything is read, with no stray file; an error is one line on stderr (a JSON object
with --json) and a non-zero exit code, with a traceback only under -v."""

from __future__ import annotations

import json

import pytest

from engine import cli
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


# cli.main configures logging for the process: tests/conftest.py undoes it after each test
pytestmark = pytest.mark.usefixtures("restore_root_logger")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-errors")
    folder = tmp / "spectra"
    folder.mkdir()
    for i in range(3):
        write_lamost_file(str(folder / f"spec-{9300 + i}.fits"), 9300 + i, seed=i)
    s = open_store(path=tmp / "store")
    Syncer(store=s, embedder=ProjectionEmbedder(), state_path=str(tmp / "st.json"),
           read_workers=0).run(parse_sources([str(folder)]))
    s.close()
    return str(tmp / "store")


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(rc, err):
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    # one error line (argparse's usage lines above it may name options such as
    # "--uncertainty {ivar,error}", which are not errors)
    assert len([ln for ln in err.splitlines()
                if "error:" in ln.lower() or '"error"' in ln]) == 1, err


@pytest.mark.parametrize("argv,match", [
    (["query", "--obsid", "9300", "-k", "-1"], "at least 1"),
    (["query", "--obsid", "9300", "-k", "0"], "at least 1"),
    (["outliers", "-k", "-5"], "at least 1"),
    (["query", "--obsid", "9300", "--fields", "../../etc"], "field"),
    (["query", "--ra", "nan", "--dec", "1"], "finite"),
    (["query", "--obsid", "9300", "--filter", "ra=nan:5"], "finite"),
    (["query", "--obsid", "9300", "--filter", "snr"], "KEY=LO:HI"),
    (["query", "--obsid", "9300", "--collection", "../x"], "name"),
])
def test_bad_query_arguments_are_one_line_errors(store, capsys, argv, match):
    rc, out, err = run(capsys, argv[0], "--store", store, *argv[1:])
    _one_line_error(rc, err)
    assert match in err and out == ""


@pytest.mark.parametrize("more,match", [(["--batch-size", "0"], "at least 1"),
                                        (["--alias", "../../escape"], "name"),
                                        (["--read-workers", "-2"], "0 or more"),
                                        (["--interval", "-1"], "positive")])
def test_bad_index_arguments_are_refused_before_any_work(tmp_path, capsys, more, match):
    rc, _, err = run(capsys, "index", "--store", tmp_path / "s", *more)
    _one_line_error(rc, err)
    assert match in err
    assert not (tmp_path / "s").exists()              # refused before the store was made


def test_ingest_out_an_existing_folder_is_refused_without_a_stray_file(tmp_path, capsys):
    spec = write_lamost_file(str(tmp_path / "spec-9400.fits"), 9400)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, _, err = run(capsys, "ingest", spec, "--out", out_dir, "--no-progress")
    _one_line_error(rc, err)
    assert "is a folder" in err
    assert list(out_dir.iterdir()) == [] and not list(tmp_path.glob("*.tmp-*"))


def test_ingest_names_each_refused_file_on_stderr(tmp_path, capsys):
    write_lamost_file(str(tmp_path / "spec-9402.fits"), 9402)
    (tmp_path / "spec-broken.fits").write_bytes(b"not FITS")
    rc, out, err = run(capsys, "ingest", tmp_path, "--out", tmp_path / "c.parquet",
                       "--no-progress")
    assert rc == 0 and "read 1 spectra, refused 1 files" in out
    assert f"refused {tmp_path / 'spec-broken.fits'}: " in err


def test_index_names_each_refused_file_on_stderr(tmp_path, capsys, monkeypatch):
    import indexer.cli as icli

    monkeypatch.setattr(icli, "Embedder", lambda *a, **k: ProjectionEmbedder())
    monkeypatch.setattr(icli, "load_bundle", lambda *a, **k: None)
    folder = tmp_path / "spectra"
    folder.mkdir()
    write_lamost_file(str(folder / "spec-9403.fits"), 9403)
    (folder / "spec-broken.fits").write_bytes(b"not FITS")
    rc, out, err = run(capsys, "index", "--store", tmp_path / "s", folder, "--no-progress",
                       "--read-workers", "0")
    assert rc == 0 and json.loads(out)["refused"] == 1
    assert f"refused {folder / 'spec-broken.fits'}: " in err


def test_a_failed_catalogue_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from engine import catalogue
    from engine.readers import read

    records = read(write_lamost_file(str(tmp_path / "spec-9401.fits"), 9401))

    def fail(*a, **k):
        open(a[1], "wb").write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(catalogue.pq, "write_table", fail)
    with pytest.raises(OSError):
        catalogue.write_catalogue(records, tmp_path / "cat.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec-9401.fits"]


def test_an_error_is_one_line_a_traceback_only_with_v(tmp_path, capsys):
    rc, _, err = run(capsys, "outliers", "--store", tmp_path)
    _one_line_error(rc, err)
    assert "no embedded store" in err
    rc, _, err = run(capsys, "-v", "outliers", "--store", tmp_path)
    assert rc == 1 and "Traceback" in err and "StoreError" in err


def test_an_error_with_json_is_a_json_object(tmp_path, capsys):
    rc, out, err = run(capsys, "outliers", "--store", tmp_path, "--json")
    assert rc == 1 and out == ""
    doc = json.loads(err.strip().splitlines()[-1])
    assert "no embedded store" in doc["error"] and doc["type"] == "StoreError"


def test_a_bug_is_one_line_that_says_how_to_see_more(monkeypatch, capsys, store):
    from engine import query

    monkeypatch.setattr(query.Engine, "outliers",
                        lambda *a, **k: {}["a key that is not there"])
    rc, _, err = run(capsys, "outliers", "--store", store)
    _one_line_error(rc, err)
    assert "internal error KeyError" in err and "-v" in err
