"""Immutable published generations of an embedded store: how one writer process and any
number of reader processes share a folder.

Qdrant Edge locks a shard folder against a second process while its WAL is open, and even a
WAL-less shard rewrites files on load, so readers never open the writer's working shard.
Instead the writer publishes:

    <root>/published/<collection>/<gen:010d>/   a sealed read-only copy of the shard, whose
                                                files the writer has not changed since the
                                                previous generation are hard links to it
    <root>/published/<collection>/CURRENT       {"gen": n}, replaced atomically (tmp + os.replace)
    <root>/published/<collection>/<gen>.lock    readers hold a shared flock while they use <gen>

A reader stats CURRENT on every call (cheap) and switches when it changes. The writer deletes a
generation only when it can take an exclusive flock on its lock file, i.e. when no reader holds
it. flock is released by the kernel when a reader dies, so crashed readers never pin old data.
This module knows nothing about Qdrant: it moves folders and files.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from engine.jsonfile import atomic_write_json, read_json
from engine.store.checks import check_current

log = logging.getLogger(__name__)

CURRENT = "CURRENT"


def sparse_copy(src: str, dst: str) -> str:
    """Copy a file keeping its holes: Edge preallocates sparse mmap files (1 MB flag and
    tracker files per index), which a plain copy would fill with zeros (10x the disk)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError:                  # ENXIO: only a hole remains
                break
            hole = os.lseek(fi.fileno(), data, os.SEEK_HOLE)
            fi.seek(data)
            fo.seek(data)
            left = hole - data
            while left:
                chunk = fi.read(min(left, 1 << 22))
                fo.write(chunk)
                left -= len(chunk)
            pos = hole
        fo.truncate(size)
    shutil.copystat(src, dst)
    return dst


def gen_dir(pub: Path, gen: int) -> Path:
    return pub / f"{gen:010d}"


def current_generation(pub: Path) -> int | None:
    """The generation CURRENT points at, or None when nothing is published."""
    data = read_json(pub / CURRENT)
    return None if data is None else check_current(data, pub / CURRENT)


def stamp(path: Path) -> tuple[int, int, int] | None:
    """A cheap change detector for a small file that is only ever replaced (inode changes)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# Files written less than this long before a publication may still change within the same
# mtime tick (ext4 stamps with a coarse clock): they are copied again next time ("racily
# clean", as git calls it), never linked.
RACY_NS = 2_000_000_000
SOURCES = "sources.json"        # per generation: the writer's file stats it was made from


def _file_stat(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _fill(src: Path, dst: Path, prev: Path | None, linkable: Callable[[str], bool],
          ignore: set[str]) -> tuple[dict, int, int]:
    """Fill the new generation ``dst`` from the writer's folder ``src``: a file the writer has
    not touched since the previous generation was made from it, and that nothing will ever
    write into (``linkable``), is hard-linked from that generation; every other file is
    copied. Returns ({relpath: stat}, bytes linked, bytes copied).

    Why this is safe: published generations never share an inode with the writer's working
    files, so the writer's in-place (mmap) writes never reach a reader. Two generations share
    an inode only for a file whose writer-side stat (inode, size, mtime, ctime) is unchanged
    since it was published and was not racily new then; mmap writes after the flush that
    precedes every publication fault a clean page and update mtime."""
    old = read_json(prev / SOURCES, {}) if prev is not None else {}
    old_files, old_t = old.get("files", {}), int(old.get("published_ns", 0))
    stats: dict[str, list[int]] = {}
    linked = copied = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        dirnames[:] = [d for d in dirnames if d not in ignore]
        os.makedirs(os.path.join(dst, rel_dir), exist_ok=True)
        for name in filenames:
            if name in ignore:
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = stats[rel] = _file_stat(os.path.join(dirpath, name))
            target = os.path.join(dst, rel)
            if (prev is not None and linkable(rel) and old_files.get(rel) == st
                    and st[2] < old_t - RACY_NS and os.path.exists(prev / rel)):
                os.link(prev / rel, target)
                linked += st[1]
            else:
                sparse_copy(os.path.join(dirpath, name), target)
                copied += st[1]
    return stats, linked, copied


def publish(src: Path, pub: Path, prepare: Callable[[Path], None],
            linkable: Callable[[str], bool] = lambda rel: False,
            ignore: tuple[str, ...] = ()) -> int:
    """Make the (flushed) folder ``src`` the next generation and point CURRENT at it.

    Files of ``src`` unchanged since the current generation was made, and ``linkable`` (a
    relative path nothing will write into again: neither the writer in place nor
    ``prepare`` nor a reader), are hard links to that generation's; the rest are copied
    (see _fill). ``prepare(tmp_dir)`` turns the new folder into something readers can share
    (the Edge backend switches its WAL off and seals it by loading it once). Names in
    ``ignore`` are left out. Old generations that no reader holds are pruned afterwards.
    """
    pub.mkdir(parents=True, exist_ok=True)
    last = current_generation(pub)
    existing = [int(p.name) for p in pub.iterdir() if p.is_dir() and p.name.isdigit()]
    gen = max([last or 0, *existing]) + 1
    for debris in pub.glob(".*.tmp"):    # an earlier publish that died half-way
        shutil.rmtree(debris, ignore_errors=True)
    tmp = pub / f".{gen:010d}.tmp"
    started = time.time_ns()
    prev = gen_dir(pub, last) if last is not None and gen_dir(pub, last).is_dir() else None
    files, linked, copied = _fill(src, tmp, prev, linkable, set(ignore))
    prepare(tmp)
    atomic_write_json(tmp / SOURCES, {"published_ns": started, "files": files})
    os.replace(tmp, gen_dir(pub, gen))
    atomic_write_json(pub / CURRENT, {"gen": gen})
    prune(pub, keep=gen)
    log.info("published %s generation %d: %.1f MB linked, %.1f MB copied", pub.name, gen,
             linked / 1e6, copied / 1e6)
    return gen


def prune(pub: Path, keep: int | None) -> list[int]:
    """Delete every generation except ``keep`` that no reader holds; returns those removed."""
    removed = []
    if not pub.is_dir():
        return removed
    for p in sorted(pub.iterdir()):
        if not (p.is_dir() and p.name.isdigit()) or int(p.name) == keep:
            continue
        gen = int(p.name)
        lock = pub / f"{gen:010d}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue                     # a reader still uses it; the next publish retries
        try:
            shutil.rmtree(p, ignore_errors=True)
            os.unlink(lock)
            removed.append(gen)
        finally:
            os.close(fd)
    _drop_stray_locks(pub)
    return removed


def _drop_stray_locks(pub: Path) -> None:
    """A reader that lost the race with prune leaves a lock file whose generation is gone."""
    for lock in pub.glob("*.lock"):
        if gen_dir(pub, int(lock.stem)).is_dir():
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(lock)
        except (BlockingIOError, FileNotFoundError):
            pass
        finally:
            os.close(fd)


class GenerationLease:
    """A reader's shared hold on one generation (released on close or process death)."""

    def __init__(self, pub: Path, gen: int):
        self.gen = gen
        self.path = gen_dir(pub, gen)
        self._fd: int | None = None
        try:
            self._fd = os.open(pub / f"{gen:010d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno != errno.EROFS:
                raise
            # A store shipped on read-only media: no writer can prune it, so no lease is
            # needed (and none can be written).
            log.debug("%s is on a read-only filesystem: reading without a lease", pub)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        if not self.path.is_dir():       # pruned between reading CURRENT and locking
            self.close()
            raise FileNotFoundError(self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
