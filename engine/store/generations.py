"""Immutable published generations of an embedded store: how one writer process and any
number of reader processes share a folder.

Qdrant Edge locks a shard folder against a second process while its WAL is open, and even a
WAL-less shard rewrites files on load, so readers never open the writer's working shard.
Instead the writer publishes:

    <root>/published/<collection>/<gen:010d>/   a sealed read-only copy of the shard, whose
                                                write-once files the writer has not changed
                                                since the previous generation are hard links
                                                to it, and whose units (segments) the writer
                                                has not changed are hard links, file by
                                                file, to it as prepared
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
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from engine.jsonfile import atomic_write_json, read_json
from engine.store.checks import check_current
from engine.store.fs_probes import mapped_holes_take_space, mmap_writes_stamp_mtime

log = logging.getLogger(__name__)

CURRENT = "CURRENT"


def _regions(fi: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """The data of an open file as (offset, chunk), holes left out."""
    size = os.fstat(fi.fileno()).st_size
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
        except OSError:                  # ENXIO: only a hole remains
            break
        hole = os.lseek(fi.fileno(), data, os.SEEK_HOLE)
        fi.seek(data)
        at = data
        while at < hole:
            chunk = fi.read(min(hole - at, 1 << 22))
            if not chunk:
                break
            yield at, chunk
            at += len(chunk)
        pos = hole


def _feed(digest: Any, at: int, chunk: bytes) -> None:
    digest.update(at.to_bytes(8, "little"))
    digest.update(chunk)


def sparse_copy(src: str, dst: str, digest: Any = None) -> str:
    """Copy a file keeping its holes: Edge preallocates sparse mmap files (1 MB flag and
    tracker files per index), which a plain copy would fill with zeros (10x the disk).
    ``digest`` (a hashlib object), when given, is fed what content_digest feeds it."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        for at, chunk in _regions(fi):
            fo.seek(at)
            fo.write(chunk)
            if digest is not None:
                _feed(digest, at, chunk)
        fo.truncate(size)
        if digest is not None:
            digest.update(size.to_bytes(8, "little"))
    shutil.copystat(src, dst)
    return dst


def content_digest(path: str) -> str:
    """A digest of a file's content (its data regions and where they lie): equal digests
    mean equal files. Edge rewrites a few small files of every segment on every flush
    without changing them (segment.json, the payload storage's tracker): a changed stat
    with an unchanged digest does not make a segment new. A JSON file is digested as the
    data it holds (segment.json's maps come out in another order from each process)."""
    d = hashlib.blake2b(digest_size=16)
    if path.endswith(".json"):       # compared as data: Edge writes maps in random order
        try:
            with open(path, "rb") as fj:
                d.update(b"json:" + json.dumps(json.load(fj), sort_keys=True).encode())
            return d.hexdigest()
        except ValueError:
            d = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fi:
        for at, chunk in _regions(fi):
            _feed(d, at, chunk)
        d.update(os.fstat(fi.fileno()).st_size.to_bytes(8, "little"))
    return d.hexdigest()


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


def _unchanged(rel: str, st: list[int], old: dict, prev: Path | None,
               stat_trusted: bool = True) -> bool:
    """Whether the writer's file ``rel`` (stat ``st``) is as it was when the previous
    generation was made from it, and was not racily new then. Never, where the filesystem
    does not stamp writes through memory maps (``stat_trusted``: fs_probes)."""
    return (stat_trusted and prev is not None and old.get("files", {}).get(rel) == st
            and st[2] < int(old.get("published_ns", 0)) - RACY_NS)


def _group(rels: Any, unit: Callable[[str], str | None]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rel in rels:
        u = unit(rel)
        if u is not None:
            out.setdefault(u, set()).add(rel)
    return out


def _clean_units(src: Path, stats: dict[str, list[int]], old: dict, prev: Path | None,
                 unit: Callable[[str], str | None], linkable: Callable[[str], bool],
                 stat_trusted: bool = True) -> set[str]:
    """The units (e.g. the segments of a shard) that may be taken whole from the previous
    generation, already prepared, because that generation still has every file its
    preparation left in them and the writer holds in them either
    - what it held when that generation was made: the same files, each with the same stat
      (racy rule) or content digest (Edge rewrites a few files of every segment on every
      flush without changing them), or
    - what that preparation left: the same files, with its content digests (a writer that
      reopened the shard has replayed the segment's journals, as sealing did)."""
    if prev is None or "prepared" not in old:    # nothing to reuse, or made before units
        return set()
    now, was, done = (_group(x, unit) for x in (stats, old["files"], old["prepared"]))
    digests, sealed = old.get("digests", {}), old.get("prepared_digests", {})
    cache: dict[str, str] = {}

    def digest_is(rel: str, table: dict) -> bool:
        if rel not in table:
            return False
        if rel not in cache:
            cache[rel] = content_digest(os.path.join(src, rel))
        return cache[rel] == table[rel]

    clean = set()
    for u, rels in now.items():
        if u not in done or any(not os.path.exists(prev / rel) for rel in done[u]):
            continue
        # the cheap stat test first, so that a new segment costs no reading
        if rels == was.get(u) and all(_unchanged(rel, stats[rel], old, prev, stat_trusted)
                                      or digest_is(rel, digests) for rel in rels):
            clean.add(u)
        elif rels == done[u] and all(
                (_unchanged(rel, stats[rel], old, prev, stat_trusted)
                 or digest_is(rel, digests))
                if linkable(rel) else digest_is(rel, sealed) for rel in rels):
            clean.add(u)
    return clean


def prepared_digests(dst: Path, units: set[str], old: dict, clean: set[str],
                     unit: Callable[[str], str | None],
                     linkable: Callable[[str], bool]) -> dict[str, str]:
    """Content digests of the prepared files of a new generation that are not write-once:
    those of ``units`` (just prepared) are read, those of ``clean`` carried over."""
    out = {rel: d for rel, d in old.get("prepared_digests", {}).items() if unit(rel) in clean}
    for u in units:
        for rel in _listing(dst / u):
            rel = os.path.normpath(os.path.join(u, rel))
            if not linkable(rel):
                out[rel] = content_digest(os.path.join(dst, rel))
    return out


def _fill(src: Path, dst: Path, prev: Path | None, linkable: Callable[[str], bool],
          ignore: set[str], unit: Callable[[str], str | None], started: int,
          stat_trusted: bool = True, reserve: Callable[[int], None] | None = None
          ) -> tuple[dict, dict, set[str], set[str], int, int]:
    """Fill the new generation ``dst`` from the writer's folder ``src``. A unit the writer
    has not changed since the previous generation (see _clean_units) is taken from that
    generation as it was prepared, every file of it hard-linked. Elsewhere, a write-once
    file the writer has not touched since the previous generation is hard-linked from it,
    and every other file is copied from ``src``. ``reserve(bytes)`` is called with
    space_needed before anything is written, and may raise to refuse the publication.
    Returns ({relpath: stat}, {relpath: digest of what was copied from src, for files of
    units that are not write-once or are racily new}, the units still to prepare, the
    units taken from the previous generation, bytes linked, bytes copied).

    Why this is safe: published generations never share an inode with the writer's working
    files, so the writer's in-place (mmap) writes never reach a reader. Two generations share
    an inode only for a file whose writer-side stat (inode, size, mtime, ctime) is unchanged
    since it was published and was not racily new then (mmap writes after the flush that
    precedes every publication fault a clean page and update mtime; where the filesystem
    does not do that, ``stat_trusted`` is False and no stat counts as unchanged), or for
    any file of a unit taken whole from the previous generation: nothing writes into a
    prepared unit but its readers, and what they write must leave every byte as it was or
    replace the file by rename (a new inode), which publish() requires of ``prepare``'s
    units."""
    old = read_json(prev / SOURCES, {}) if prev is not None else {}
    stats: dict[str, list[int]] = {}
    dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in ignore]
        dirs.append(os.path.relpath(dirpath, src))
        for name in filenames:
            if name not in ignore:
                rel = os.path.normpath(os.path.join(dirs[-1], name))
                stats[rel] = _file_stat(os.path.join(dirpath, name))
    clean = _clean_units(src, stats, old, prev, unit, linkable, stat_trusted)
    todo = {u for u in (unit(rel) for rel in stats) if u is not None} - clean
    digests = {rel: d for rel, d in old.get("digests", {}).items()
               if unit(rel) in clean and rel in stats}
    linked = copied = 0

    def put(origin: Path, rel: str, link: bool) -> None:
        nonlocal linked, copied
        target = os.path.join(dst, rel)
        if link:
            os.link(os.path.join(origin, rel), target)
            linked += os.stat(target).st_size
            return
        # digested: what may change in place, and write-once files too new to trust
        # their stat (racy; Edge's optimize has just written them)
        wanted = origin is src and unit(rel) is not None \
            and (not linkable(rel) or stats[rel][2] >= started - RACY_NS)
        digest = hashlib.blake2b(digest_size=16) \
            if wanted and not rel.endswith(".json") else None
        sparse_copy(os.path.join(origin, rel), target, digest)
        if digest is not None:
            digests[rel] = digest.hexdigest()
        elif wanted:
            digests[rel] = content_digest(target)
        copied += os.stat(target).st_size

    # what goes where, decided before anything is written, so that ``reserve`` can refuse
    # a publication that would not fit
    make = [d for d in dirs if unit(os.path.join(d, "-")) not in clean]
    plan: list[tuple[Path, str, bool]] = []
    for u in sorted(clean):             # shared whole with the previous generation
        assert prev is not None
        for dirpath, _, filenames in os.walk(prev / u):
            make.append(os.path.relpath(dirpath, prev))
            plan += [(prev, os.path.normpath(os.path.join(make[-1], name)), True)
                     for name in filenames]
    for rel, st in stats.items():
        if unit(rel) not in clean:
            link = (linkable(rel) and _unchanged(rel, st, old, prev, stat_trusted)
                    and os.path.exists(os.path.join(prev, rel)))     # prev: not None here
            plan.append((prev if link else src, rel, link))   # type: ignore[arg-type]
    if reserve is not None:
        reserve(space_needed(plan, todo, unit, mapped_holes_take_space(src)))
    for rel_dir in make:
        os.makedirs(os.path.join(dst, rel_dir), exist_ok=True)
    for origin, rel, link in plan:
        put(origin, rel, link)
    return stats, digests, todo, clean, linked, copied


def space_needed(plan: list[tuple[Path, str, bool]], todo: set[str],
                 unit: Callable[[str], str | None], holes_fill: bool) -> int:
    """Bytes a publication may take: what the copied files occupy (linked files take
    nothing), plus, where reading a hole through a memory map allocates it (``holes_fill``,
    tmpfs: fs_probes), the holes of every file of a unit to prepare (Edge's seal load
    touches its preallocated sparse files through mmap)."""
    need = 0
    for origin, rel, link in plan:
        st = os.stat(os.path.join(origin, rel))
        held = st.st_blocks * 512
        if not link:
            need += held
        if holes_fill and unit(rel) in todo:
            need += max(0, st.st_size - held)
    return need


def _listing(folder: Path) -> list[str]:
    """Every file under ``folder``, as relative paths."""
    return sorted(os.path.normpath(os.path.relpath(os.path.join(d, f), folder))
                  for d, _, files in os.walk(folder) for f in files)


def publish(src: Path, pub: Path, prepare: Callable[[Path, set[str]], None],
            linkable: Callable[[str], bool] = lambda rel: False,
            ignore: tuple[str, ...] = (),
            unit: Callable[[str], str | None] = lambda rel: None,
            reserve: Callable[[int], None] | None = None) -> int:
    """Make the (flushed) folder ``src`` the next generation and point CURRENT at it.

    Files of ``src`` unchanged since the current generation was made (by their stat, on a
    filesystem that stamps writes through memory maps: fs_probes), and
    ``linkable`` (a relative path nothing will write into again: neither the writer in place
    nor ``prepare`` nor a reader), are hard links to that generation's; the rest are copied.
    ``unit(relpath)`` names the folder a file belongs to when that folder is prepared as a
    whole (the Edge backend: a segment); a unit the writer has not touched since the current
    generation is taken from it as it was prepared (see _fill). ``prepare(tmp_dir, units)``
    turns the new folder into something readers can share, given the units that still need
    it (the Edge backend switches the WAL off and seals those segments by loading them
    once). A prepared unit is shared by hard links with every later generation until the
    writer changes it, so a reader may write into a prepared unit only bytes it already
    holds, or replace a file by rename (tests/engine/store/test_publish.py holds Edge to
    that). Names in ``ignore`` are left out. ``reserve(bytes)`` gets what the publication
    may take on disk (space_needed) before anything is written, and may raise to refuse it.
    Old generations that no reader holds are pruned afterwards.
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
    files, digests, todo, clean, linked, copied = _fill(
        src, tmp, prev, linkable, set(ignore), unit, started,
        stat_trusted=prev is None or mmap_writes_stamp_mtime(src), reserve=reserve)
    prepare(tmp, todo)
    prepared = [rel for rel in _listing(tmp) if unit(rel) is not None]
    old = read_json(prev / SOURCES, {}) if prev is not None else {}
    atomic_write_json(tmp / SOURCES, {
        "published_ns": started, "files": files, "digests": digests, "prepared": prepared,
        "prepared_digests": prepared_digests(tmp, todo, old, clean, unit, linkable)})
    os.replace(tmp, gen_dir(pub, gen))
    atomic_write_json(pub / CURRENT, {"gen": gen})
    prune(pub, keep=gen)
    log.info("published %s generation %d: %.1f MB linked, %.1f MB copied, %d of %d units "
             "prepared", pub.name, gen, linked / 1e6, copied / 1e6, len(todo),
             len({unit(rel) for rel in prepared}))
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
