"""Issue 15, items 1, 2 and 20 on the reading side: one file never stops a run, whether it
raises in a reader process or kills it; a FIFO is refused, never waited on; a reader process
never outlives its indexer, even mid-file; a reader killed before it connects is noticed at
once (not after the 60 s connect timeout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine import readers
from indexer.reading import CONNECT_TIMEOUT_S, FileReader, chunked
from tests.indexer.conftest import write_lamost_file
from tests.reliability import hostile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def good(tmp_path) -> list[str]:
    folder = tmp_path / "good"
    folder.mkdir()
    return [write_lamost_file(str(folder / f"spec-{7000 + i}.fits"), 7000 + i, seed=i)
            for i in range(6)]


def _ids(results) -> list[str]:
    return [r.object_id for recs, _ in results for r in recs]


def _refused(results) -> dict[str, str]:
    return {os.path.basename(x["path"]): x["reason"] for _, ref in results for x in ref}


def test_an_overflow_inside_a_reader_process_is_that_files_refusal(tmp_path, good):
    """Before: the worker died on OverflowError and the in-process retry raised it again."""
    huge = hostile.xp_csv(tmp_path / "xp-huge-id.csv",
                          ["99999999999999999999999", str(hostile.XP_GOOD_ID)])
    inf = hostile.pilot_with_coeff0(tmp_path, "1E999", "spec-coeff-inf.fits")
    files = good[:3] + [str(huge), str(inf)] + good[3:]
    with FileReader(1) as reader:
        results = list(reader.read_chunks(chunked(files, 2, 3)))
        assert reader.workers == 1, "the reader process died"
    assert _ids(results) == [str(7000 + i) for i in range(3)] + [str(hostile.XP_GOOD_ID)] + \
        [str(7000 + i) for i in range(3, 6)]
    refused = _refused(results)
    assert "COEFF0" in refused["spec-coeff-inf.fits"]
    assert "outside Gaia's range" in refused["xp-huge-id.csv"]


def test_a_file_that_kills_its_reader_process_is_refused_alone(tmp_path, good, monkeypatch):
    """A file on which the reader process dies (twice: in its chunk, then alone in a fresh
    reader) is refused with the exit code; every other file of the run is read."""
    monkeypatch.setenv("PYTHONPATH", str(hostile.reader_hook(tmp_path / "hook")))
    monkeypatch.setenv("SPECCLIP_TEST_READER_HOOK", "1")
    killer = tmp_path / "spec-kills-reader.fits"
    killer.write_bytes(Path(good[0]).read_bytes())     # a good file: only the hook kills
    files = good[:2] + [str(killer)] + good[2:]
    with FileReader(1) as reader:
        results = list(reader.read_chunks(chunked(files, 2, 3)))
        assert _ids(results) == [str(7000 + i) for i in range(6)]
        assert "died reading this file (exit code 70)" in _refused(results)[killer.name]
        # the next source of the same run: read as carefully, never in the indexer itself
        later = list(reader.read_chunks(chunked([str(killer), good[0]], 2, 2)))
    assert _ids(later) == ["7000"] and killer.name in _refused(later)


def test_a_fifo_named_like_a_spectrum_is_refused_not_waited_on(tmp_path, good):
    """Before: open() of the FIFO blocked the run forever (ingest and index alike)."""
    folder = Path(good[0]).parent
    hostile.fifo(folder, "spec-fifo.fits")
    script = ("import json, sys; from engine import readers; "
              "recs, ref = readers.read_many([sys.argv[1]]); "
              "print(json.dumps([len(recs), ref]))")
    try:
        out = subprocess.run([sys.executable, "-c", script, str(folder)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("read_many blocked on a FIFO")
    n, refused = json.loads(out.stdout)
    assert n == 6 and len(refused) == 1
    assert refused[0]["path"].endswith("spec-fifo.fits") and "FIFO" in refused[0]["reason"]
    with pytest.raises(readers.SpectrumReadError, match="FIFO"):   # named explicitly, too
        readers.read(str(folder / "spec-fifo.fits"))


def test_a_reader_process_busy_on_a_file_dies_with_its_indexer(tmp_path, good):
    """Before: a reader blocked inside a read never saw its socket close and stayed orphaned
    after kill -9 of the indexer."""
    hook = hostile.reader_hook(tmp_path / "hook")
    hang = tmp_path / "spec-hangs-reader.fits"
    hang.write_bytes(Path(good[0]).read_bytes())
    script = textwrap.dedent(f"""
        import sys
        from indexer.reading import FileReader
        reader = FileReader(1).start()
        proc = reader._procs[0]
        proc.conn().send([{str(hang)!r}])      # the child is now stuck inside this read
        print(proc.proc.pid, flush=True)
        proc.conn().recv()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(hook)]),
               SPECCLIP_TEST_READER_HOOK="1")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=ROOT, env=env)
    child = int(parent.stdout.readline())
    time.sleep(0.5)                                # inside the read
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        if not _alive(child):
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the reader process outlived its killed indexer while reading a file")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_reader_killed_before_it_connects_is_noticed_at_once(good):
    """Before: the run waited the whole connect timeout (60 s) for a dead child."""
    reader = FileReader(1).start()
    proc = reader._procs[0].proc
    proc.kill()                                    # before it could connect
    proc.wait()
    t0 = time.monotonic()
    with reader:
        results = list(reader.read_chunks(chunked(good, 3, 3)))
    took = time.monotonic() - t0
    assert _ids(results) == [str(7000 + i) for i in range(6)]
    assert took < min(20.0, CONNECT_TIMEOUT_S / 3), f"waited {took:.1f} s for a dead reader"
