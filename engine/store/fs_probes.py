"""What the filesystem under a store does with files mapped into memory.

Qdrant Edge keeps a segment in sparse, preallocated files that it reads and writes through
mmap. Two things the embedded store relies on depend on the filesystem, not on Edge:

- whether a write through a mapping gives the file a new mtime (ext4, xfs and btrfs do, when
  the write faults a page that msync cleaned; tmpfs never does). Publishing links a file
  from the previous generation when the writer's stat of it is unchanged
  (generations._unchanged); that is sound only where writes change the stat.
- whether reading a hole through a mapping allocates it (tmpfs does; ext4 leaves the hole).
  Sealing a segment reads its preallocated files whole, so on tmpfs a publication takes
  their apparent size, on ext4 little more than what it copies (checks, space_needed).

Each is probed once per filesystem (st_dev) and process with a scratch file in the folder
asked about: 20 ms on ext4 for the first, up to 220 ms where it has to wait out a coarse
clock; under 1 ms for the second.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

PREFIX = ".mmap-probe-"

_STAMPS: dict[int, bool] = {}
_HOLES: dict[int, bool] = {}


def mmap_writes_stamp_mtime(folder: Path) -> bool:
    """Whether the filesystem holding ``folder`` gives a file a new mtime when a page that
    msync cleaned is written again through a shared mapping: what lets a writer-side stat
    stand for "not written since". Measured before this check: on tmpfs (/dev/shm) the
    writer's second publication linked an appendable segment's payload pages, which Edge had
    appended to in place with the stat unchanged, from the previous generation, and sealing
    failed on the stale copy ("Failed to decompress LZ4 value"), at every later publication
    too."""
    dev = os.stat(folder).st_dev
    if dev not in _STAMPS:
        _STAMPS[dev] = _probe(folder, _writes_stamp)
        if not _STAMPS[dev]:
            log.warning("the filesystem of %s does not record writes through memory maps in "
                        "a file's mtime (tmpfs does not): publications there copy every file "
                        "of the segments the writer holds instead of linking the unchanged "
                        "ones", folder)
    return _STAMPS[dev]


def mapped_holes_take_space(folder: Path) -> bool:
    """Whether reading a hole of a sparse file through a shared mapping allocates it on the
    filesystem holding ``folder`` (tmpfs: yes; ext4: no)."""
    dev = os.stat(folder).st_dev
    if dev not in _HOLES:
        _HOLES[dev] = _probe(folder, _holes_fill)
    return _HOLES[dev]


def _probe(folder: Path, check: Callable[[int], bool]) -> bool:
    for stale in Path(folder).glob(PREFIX + "*"):     # left by a process killed mid-probe
        stale.unlink(missing_ok=True)
    fd, path = tempfile.mkstemp(prefix=PREFIX, dir=folder)
    try:
        return check(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def _writes_stamp(fd: int) -> bool:
    os.write(fd, b"\0" * mmap.PAGESIZE)
    with mmap.mmap(fd, mmap.PAGESIZE) as m:
        m.flush()                                # msync: the page is clean again
        before = os.fstat(fd).st_mtime_ns
        for wait in (0.02, 0.2):                 # past the clock tick of coarse timestamps
            time.sleep(wait)
            m[0] = (m[0] + 1) % 256
            m.flush()
            if os.fstat(fd).st_mtime_ns != before:
                return True
    return False


def _holes_fill(fd: int, pages: int = 16) -> bool:
    os.ftruncate(fd, pages * mmap.PAGESIZE)      # all hole
    with mmap.mmap(fd, pages * mmap.PAGESIZE) as m:
        sum(m[i * mmap.PAGESIZE] for i in range(pages))
    return os.fstat(fd).st_blocks > 0
