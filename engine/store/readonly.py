"""Reading a store shipped on read-only media (a DVD image, a read-only bind mount, a
container layer mounted ro).

Qdrant Edge 0.9 opens a segment's mmap storage read-write even to query it, and fails with
EROFS on a read-only filesystem. A reader there copies the generation it uses into a private
temporary folder (holes kept: a copy costs the data, not the sparse preallocations) and opens
that; the copy is removed when the reader switches generation or closes. Nothing is ever
written to the read-only store, and no lease file is needed: no writer can prune it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from engine.store import generations as gens

log = logging.getLogger(__name__)


def on_read_only_media(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies on a filesystem mounted read-only (true even for root, for whom
    file permissions never stop a write)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class LocalCopy:
    """A private, writable copy of a published shard folder; ``close()`` removes it."""

    def __init__(self, shard: Path):
        self.folder = Path(tempfile.mkdtemp(prefix="specclip-ro-"))
        self.path = self.folder / "shard"
        try:
            shutil.copytree(shard, self.path, copy_function=gens.sparse_copy)
            for root, _, files in os.walk(self.path):   # media files may be mode 0444
                for name in files:
                    p = os.path.join(root, name)
                    os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
        except BaseException:
            self.close()
            raise
        log.info("store on read-only media: reading a copy of %s in %s", shard, self.folder)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
