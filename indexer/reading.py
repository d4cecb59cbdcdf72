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

Any failure of a reader process (killed, crashed, would not start) falls back to reading the
remaining chunks in this process: slower, never a lost or skipped file.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
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
            [sys.executable, "-m", "indexer.read_worker", str(self._listener.address)],
            stdin=subprocess.PIPE, env=env)
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
            t.join(CONNECT_TIMEOUT_S)
            if not box:
                raise ConnectionError(f"reader process did not connect (exit code "
                                      f"{self.proc.poll()})")
            self._conn = box[0]
        return self._conn

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
            log.warning("reader process failed (%s); reading the remaining files in-process",
                        exc)
            self._fall_back()
            for chunk, _ in pending:
                yield readers.read_many(chunk)
            for chunk in it:
                yield readers.read_many(chunk)


def chunked(files: list[str], first: int, size: int) -> Iterator[list[str]]:
    """`files` in chunks: a small first one, so embedding starts soon, then `size` each."""
    if not files:
        return
    yield files[:first]
    for i in range(first, len(files), size):
        yield files[i:i + size]
