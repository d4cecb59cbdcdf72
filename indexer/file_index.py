"""Which files a sync has already indexed, as they were then: (path, size, mtime) and the
ids of the points each one yields, per collection, in a SQLite file beside the indexer's
bookkeeping.

A file whose size and mtime (and inode) are what they were when its points were written is
skipped without being opened: one stat instead of a read and a hash. A file that changed is
read again, and its content hashes decide what is re-embedded, as before. `--verify`
ignores this index and re-hashes every file.

Like the bookkeeping, it is written *after* the store writes it describes, so `kill -9`
leaves at worst a file that is read again (and skipped by its hashes) on the next run.
What the index knows is tied to a *context* (label tables and cross-match) because those
reach the points' payloads without touching the spectrum files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from typing import Iterable, Sequence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (coll TEXT, path TEXT, source TEXT, ino INTEGER,
    size INTEGER, mtime_ns INTEGER, context TEXT, PRIMARY KEY (coll, path));
CREATE INDEX IF NOT EXISTS files_source ON files (coll, source);
CREATE TABLE IF NOT EXISTS points (coll TEXT, id TEXT, path TEXT, PRIMARY KEY (coll, id));
CREATE INDEX IF NOT EXISTS points_path ON points (coll, path);
CREATE TABLE IF NOT EXISTS complete (coll TEXT, source TEXT, context TEXT,
    PRIMARY KEY (coll, source));
"""

FileStat = tuple[int, int, int]          # (inode, size, mtime_ns)


# A file modified less than this long before it was stat'ed may change again within the same
# mtime tick (file systems stamp with a coarse clock) without its stat changing: such a
# "racily clean" file (git's term) is recorded so that the next run reads it again.
RACY_NS = 2_000_000_000


def file_stat(path: str, now_ns: int | None = None) -> FileStat | None:
    """What identifies an unchanged file: one stat. None when it vanished. A racily new
    file (see RACY_NS) gets an mtime of -1, which no later stat matches."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    mtime = st.st_mtime_ns if st.st_mtime_ns < now_ns - RACY_NS else -1
    return (st.st_ino, st.st_size, mtime)


# Bumped when what a sync writes per spectrum changes, so that files recorded before are read
# again (2: every point names its spectrum in the store's archive, engine/spectrum_archive.py;
# 3: `anomaly_peak`, an embed-time score that Gaia XP's `anomaly` combines).
POINT_FORMAT = 3


def context_of(label_paths: Iterable[str], crossmatch: dict[str, int],
               positions: dict[str, tuple[float, float]] | None = None) -> str:
    """A fingerprint of what reaches payloads besides the spectrum files themselves."""
    h = hashlib.sha256()
    h.update(f"point-format-{POINT_FORMAT}".encode())
    for p in label_paths:
        h.update(json.dumps([os.path.abspath(p), file_stat(p)]).encode())
    h.update(json.dumps(sorted(crossmatch.items())).encode())
    if positions:
        h.update(json.dumps(sorted(positions.items())).encode())
    return h.hexdigest()[:24]


class FileIndex:
    """The index of one store's synced files (see the module docstring)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)   # explicit transactions
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "FileIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------
    def recorded(self, coll: str, source: str) -> dict[str, tuple[FileStat, str]]:
        """path -> (stat, context) of the files recorded for one source."""
        rows = self._db.execute("SELECT path, ino, size, mtime_ns, context FROM files "
                                "WHERE coll = ? AND source = ?", (coll, source))
        return {r[0]: ((r[1], r[2], r[3]), r[4]) for r in rows}

    def point_count(self, coll: str, paths: Sequence[str]) -> int:
        n = 0
        for i in range(0, len(paths), 500):
            chunk = list(paths[i:i + 500])
            q = ",".join("?" * len(chunk))
            n += self._db.execute(f"SELECT COUNT(*) FROM points WHERE coll = ? AND path IN "
                                  f"({q})", [coll, *chunk]).fetchone()[0]
        return n

    def ids_of(self, coll: str, paths: Sequence[str]) -> dict[str, str]:
        """id -> path for the points recorded under ``paths``."""
        out: dict[str, str] = {}
        for i in range(0, len(paths), 500):
            chunk = list(paths[i:i + 500])
            q = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT id, path FROM points WHERE coll = ? AND path "
                                        f"IN ({q})", [coll, *chunk]).fetchall())
        return out

    def owners(self, coll: str, ids: Sequence[str]) -> dict[str, str]:
        """id -> the path that yields it, for the ids recorded at all."""
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            q = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT id, path FROM points WHERE coll = ? AND id IN "
                                        f"({q})", [coll, *chunk]).fetchall())
        return out

    def is_complete(self, coll: str, source: str, context: str) -> bool:
        row = self._db.execute("SELECT context FROM complete WHERE coll = ? AND source = ?",
                               (coll, source)).fetchone()
        return row is not None and row[0] == context

    # -- writing (always after the store writes they describe) ---------------------------
    def record(self, coll: str, source: str, context: str,
               files: dict[str, tuple[FileStat, list[str]]]) -> None:
        """Files read this run: their stat (taken before reading) and their points' ids."""
        with self._tx():
            for path, (st, ids) in files.items():
                self._db.execute("DELETE FROM points WHERE coll = ? AND path = ?", (coll, path))
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (coll, path, source, *st, context))
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)",
                                     [(coll, i, path) for i in ids])

    def forget(self, coll: str, paths: Sequence[str]) -> None:
        with self._tx():
            for path in paths:
                self._db.execute("DELETE FROM points WHERE coll = ? AND path = ?", (coll, path))
                self._db.execute("DELETE FROM files WHERE coll = ? AND path = ?", (coll, path))

    def set_complete(self, coll: str, source: str, context: str | None) -> None:
        """``context``: every point of the source is covered by a file record (None: not)."""
        with self._tx():
            self._db.execute("DELETE FROM complete WHERE coll = ? AND source = ?",
                             (coll, source))
            if context is not None:
                self._db.execute("INSERT INTO complete VALUES (?, ?, ?)",
                                 (coll, source, context))

    def drop_collection(self, coll: str) -> None:
        with self._tx():
            for table in ("files", "points", "complete"):
                self._db.execute(f"DELETE FROM {table} WHERE coll = ?", (coll,))

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, *rest):
                db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return _Tx()
