"""Reading in reader processes: the same records as reading in-process (so content hashes and
points do not depend on how files were read), order kept, a dead reader is replaced (files
read one at a time) without losing a file, and reader processes never outlive the indexer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from engine import readers
from engine.store import open_store
from indexer.ids import content_hash
from indexer.reading import FileReader, chunked
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    paths = [write_lamost_file(str(folder / f"spec-{2000 + i}.fits"), 2000 + i,
                               teff=4000 + 40 * i, seed=i) for i in range(60)]
    bad = folder / "spec-bad.fits"
    bad.write_bytes(b"SIMPLE  =    T / not really\n")
    return sorted(paths + [str(bad)])


def _same(a, b) -> None:
    assert [r.object_id for r in a] == [r.object_id for r in b]
    assert [content_hash(r) for r in a] == [content_hash(r) for r in b]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.flux, y.flux) and x.meta == y.meta


def test_chunked_covers_every_file_once_with_a_small_first_chunk():
    files = [str(i) for i in range(150)]
    chunks = list(chunked(files, 16, 64))
    assert [len(c) for c in chunks] == [16, 64, 64, 6]
    assert sum(chunks, []) == files
    assert list(chunked([], 16, 64)) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_reader_processes_give_what_read_many_gives(files, workers):
    expected, expected_refused = readers.read_many(files)
    with FileReader(workers) as reader:
        results = list(reader.read_chunks(chunked(files, 7, 20)))
        procs = [p.proc for p in reader._procs]
        assert len(procs) == workers
    records = [r for recs, _ in results for r in recs]
    refused = [x for _, ref in results for x in ref]
    _same(records, expected)
    assert refused == expected_refused and "spec-bad.fits" in refused[0]["path"]
    assert all(p.poll() is not None for p in procs), "a reader process outlived close()"


def test_a_reader_that_dies_is_replaced_without_losing_a_file(files, caplog):
    expected, _ = readers.read_many(files)
    with FileReader(1) as reader:
        chunks = reader.read_chunks(chunked(files, 10, 10))
        first = next(chunks)
        reader._procs[0].proc.kill()
        reader._procs[0].proc.wait()
        rest = list(chunks)
    _same([r for recs, _ in [first, *rest] for r in recs], expected)
    assert reader.workers == 0
    assert "reading the remaining files one at a time" in caplog.text


class _SendFailsOnce:
    """A reader connection whose `n`-th send fails, as when a reader dies between answering
    one chunk and being handed the next."""

    def __init__(self, conn, n: int):
        self._conn, self._n, self.sends = conn, n, 0

    def send(self, obj) -> None:
        self.sends += 1
        if self.sends == self._n:
            raise BrokenPipeError(32, "Broken pipe")
        self._conn.send(obj)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_hand_off_after_an_answer_loses_no_chunk(files, caplog):
    expected, _ = readers.read_many(files)
    with FileReader(1) as reader:
        proc = reader.start()._procs[0]
        proc._conn = _SendFailsOnce(proc.conn(), n=3)   # 2 sent up front, the 3rd fails
        results = list(reader.read_chunks(chunked(files, 10, 10)))
    _same([r for recs, _ in results for r in recs], expected)
    assert "reading the remaining files one at a time" in caplog.text


def test_syncer_points_do_not_depend_on_how_files_were_read(tmp_path, files, embedder):
    folder = os.path.dirname(files[0])
    found = {}
    for workers in (0, 1):
        store = open_store(path=tmp_path / f"store{workers}")
        report = Syncer(store=store, embedder=embedder, read_workers=workers, batch_size=16,
                        min_files_for_process=1,
                        state_path=str(tmp_path / f"state{workers}.json")
                        ).run(parse_sources([folder]))
        assert report.added == 60 and len(report.refused) == 1
        found[workers] = {h.id: h.payload["content_hash"]
                          for h in store.scroll(report.collection)}
        store.close()
    assert found[0] == found[1]


def test_reader_process_exits_when_the_indexer_is_killed(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from indexer.reading import FileReader
        reader = FileReader(1).start()
        reader._procs[0].conn()              # connected: the child is fully up
        print(reader._procs[0].proc.pid, flush=True)
        time.sleep(60)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=root, env=dict(os.environ, PYTHONPATH=root))
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return                               # gone (reaped by init)
        if _is_zombie(child):
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the reader process outlived its killed indexer")


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_a_reader_whose_indexer_already_stopped_exits_quietly(tmp_path):
    """An indexer that refuses its store (say) stops while its reader processes boot: they
    must not bury its one-line error under connection tracebacks."""
    done = subprocess.run([sys.executable, "-m", "indexer.read_worker",
                           str(tmp_path / "no-such-socket")], input="00ff\n",
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
