"""Read spectrum files in separate processes while the indexer embeds.

Why processes and not a thread: astropy parses FITS headers in pure Python, holding the GIL
for most of a file's read, and the embedder (torch between ops, numpy preprocessing, building
payloads) needs the GIL between every small step. In one process the two convoy on the GIL:
indexing ran at ~50% of the astropy read rate on 2 cores. With reading in its own process the
two run side by side (numbers in the README).

Why not `concurrent.futures.ProcessPoolExecutor`: its spawn/forkserver start re-imports the
caller's `__main__`, so a user's unguarded script would run twice; and fork is unsafe in a
process that already holds torch's and Qdrant Edge's threads. So each reader is a plain
`python -m indexer.read_worker` subprocess talking over `multiprocessing.connection` (a local
socket, authenticated with a random key). Records travel pickled: our own `SpectrumRecord`s,
made a moment ago by our own reader in our own child, never a user's pickle file.

A reader process never stops the run. A Python exception on a file is that file's refusal
inside the reader (`read_many`). If a reader process dies (killed, crashed on a file, out of
memory) the remaining files are read one at a time in one fresh reader process, so a file
that kills it again is refused alone, with the reason, and every other file is read; if no
process can be started, in this process. Readers never outlive this process: each watches
its parent (`read_worker`), and one that dies before connecting is noticed at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Iterable, Iterator

from engine import readers
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)

ReadResult = tuple[list[SpectrumRecord], list[dict]]

# Below this many files a reader process costs more to start (~0.6 s) than it saves.
MIN_FILES_FOR_PROCESS = 48
CONNECT_TIMEOUT_S = 60.0
CONNECT_POLL_S = 0.05
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:            # not on Linux
        return os.cpu_count() or 2


def default_read_workers() -> int:
    """One reader process per core, at most 4. Even on 2 cores two readers beat one: one
    reader process reads at ~0.8-0.9x the astropy floor (pickling and start-up included), so
    with one the indexer can never reach the floor; the embedder, on the 2 cores' spare
    time, keeps up with two (measured in benchmarks/throughput.py)."""
    return max(1, min(4, usable_cores()))


class _ReaderProcess:
    """One `indexer.read_worker` child and its connection."""

    def __init__(self) -> None:
        key = secrets.token_bytes(32)
        self._listener = Listener(family="AF_UNIX", authkey=key)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT),
                                                        env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "indexer.read_worker", str(self._listener.address),
             str(os.getpid())], stdin=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None
        self.proc.stdin.write(key.hex().encode() + b"\n")
        self.proc.stdin.close()
        self._conn: Connection | None = None

    def conn(self) -> Connection:
        if self._conn is None:
            # accept() has no timeout: wait in a thread, so a child that never connects
            # (died at start-up) cannot hang the indexer.
            box: list[Connection] = []

            def accept() -> None:
                try:
                    box.append(self._listener.accept())
                except OSError:           # closed by hang_up(): the child never came
                    pass

            t = threading.Thread(target=accept, name="specclip-reader-accept", daemon=True)
            t.start()
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            # Poll the child while waiting: one that died before connecting is noticed at
            # once instead of after the whole timeout.
            while t.is_alive() and time.monotonic() < deadline and self.proc.poll() is None:
                t.join(CONNECT_POLL_S)
            t.join(CONNECT_POLL_S)     # a child that connected and then exited
            if not box:
                self._listener.close()
                code = self.proc.poll()
                raise ConnectionError("reader process did not connect (" + (
                    f"exited with code {code})" if code is not None else
                    f"no answer in {CONNECT_TIMEOUT_S:.0f} s)"))
            self._conn = box[0]
        return self._conn

    def read(self, paths: list[str]) -> ReadResult:
        """One request and its answer (for isolated reading, after a reader died)."""
        conn = self.conn()
        conn.send(paths)
        return conn.recv()

    def hang_up(self) -> None:
        if self._conn is not None:
            self._conn.close()            # the child sees EOF and exits
            self._conn = None
        self._listener.close()

    def close(self) -> None:
        self.hang_up()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class FileReader:
    """`read_many` over chunks of files, each chunk in one of `workers` reader processes,
    one chunk queued ahead per process (`workers=0`: in the calling thread). Results come
    back in chunk order.

    Use as a context manager; `start()` may be called early so the children boot while the
    caller does other work (opening the store, creating the collection).
    """

    def __init__(self, workers: int = 1):
        self.workers = max(0, int(workers))
        self._procs: list[_ReaderProcess] = []
        self._isolated = False          # after a reader died: one file per request

    def start(self) -> "FileReader":
        try:
            while len(self._procs) < self.workers:
                self._procs.append(_ReaderProcess())
        except OSError as exc:
            log.warning("cannot start a reader process (%s); reading in-process", exc)
            self._fall_back()
        return self

    def close(self) -> None:
        for p in self._procs:
            p.hang_up()
        for p in self._procs:        # they exit together, not one after another
            p.close()
        self._procs = []

    def __enter__(self) -> "FileReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fall_back(self) -> None:
        self.close()
        self.workers = 0

    def read_chunks(self, chunks: Iterable[list[str]]) -> Iterator[ReadResult]:
        """(records, refused) per chunk, in order."""
        it = iter(chunks)
        if self._isolated:             # a reader died earlier in this run: stay careful
            yield from self._read_isolated(it)
            return
        if self.workers:
            self.start()
        if not self.workers:
            for chunk in it:
                yield readers.read_many(chunk)
            return
        pending: deque[tuple[list[str], _ReaderProcess]] = deque()
        turn = 0

        def submit() -> bool:
            nonlocal turn
            chunk = next(it, None)
            if chunk is None:
                return False
            proc = self._procs[turn % len(self._procs)]
            turn += 1
            pending.append((chunk, proc))   # before sending: a failed send is re-read
            proc.conn().send(chunk)
            return True

        try:
            for _ in range(2 * len(self._procs)):   # each process: one reading, one queued
                if not submit():
                    break
            while pending:
                result = pending[0][1].conn().recv()
                submit()              # may fail: the chunk stays pending and is re-read
                pending.popleft()
                yield result
        except (OSError, EOFError) as exc:
            log.warning("reader process failed (%s); reading the remaining files one at a "
                        "time in a fresh reader process", exc)
            self._fall_back()
            self._isolated = True
            yield from self._read_isolated([chunk for chunk, _ in pending], it)

    def _read_isolated(self, *chunk_lists: Iterable[list[str]]) -> Iterator[ReadResult]:
        """After a reader died: one fresh reader process reads one file per request, so a
        file on which it dies again is refused alone (with the exit code) and a new process
        takes the next file. If no reader process can be started, read in this process."""
        isolated = _IsolatedReader()
        try:
            for chunks in chunk_lists:
                for chunk in chunks:
                    records: list[SpectrumRecord] = []
                    refused: list[dict] = []
                    for path in chunk:
                        got = isolated.read(path)
                        records += got[0]
                        refused += got[1]
                    yield records, refused
        finally:
            isolated.close()


class _IsolatedReader:
    """One file per request in one reader process, replaced when it dies."""

    def __init__(self) -> None:
        self._proc: _ReaderProcess | None = None
        self._in_process = False

    def read(self, path: str) -> ReadResult:
        if not self._in_process and self._proc is None:
            try:
                self._proc = _ReaderProcess()
                self._proc.conn()
            except OSError as exc:        # cannot start one: no file is at fault
                log.warning("cannot start a reader process (%s); reading in-process", exc)
                self.close()
                self._in_process = True
        if self._in_process:
            return readers.read_many([path])
        assert self._proc is not None
        try:
            return self._proc.read([path])
        except (OSError, EOFError):
            code = _exit_code(self._proc)
            self._proc = None
            log.warning("reader process died reading %s (exit code %s)", path, code)
            return [], [{"path": path, "reason": "the reader process died reading this file "
                                                 f"(exit code {code})"}]

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None


def _exit_code(proc: _ReaderProcess) -> int | None:
    """Close a dead (or dying) reader and return its exit code (negative: the signal)."""
    proc.hang_up()
    try:
        return proc.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.proc.kill()
        return proc.proc.wait()


def chunked(files: list[str], first: int, size: int) -> Iterator[list[str]]:
    """`files` in chunks: a small first one, so embedding starts soon, then `size` each."""
    if not files:
        return
    yield files[:first]
    for i in range(first, len(files), size):
        yield files[i:i + size]
