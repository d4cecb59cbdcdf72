"""Opening FITS input uniformly: a path, a binary file object, or an already open HDUList.

Why not just `fits.open(path)`: astropy gunzips paths but not file objects (an uploaded
`.fits.gz` arrives as BytesIO), some LAMOST archives name gzipped files `.fits`, and
astropy reports truncation as a *warning* and a lazy failure later. Here we read the bytes
once, gunzip by magic number, open from memory and turn astropy's truncation/verification
warnings into a `SpectrumReadError` that names the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zlib
from typing import Any, Iterator

from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from engine.errors import SpectrumReadError
from engine.readers import guards

GZIP_MAGIC = guards.GZIP_MAGIC
FITS_MAGIC = b"SIMPLE  ="
FITS_BLOCK = 2880


def read_bytes(source: Any, path: str, max_bytes: int | None = None) -> bytes:
    """All bytes of a path (regular files only) or binary file object, gunzipped if they are
    gzip data. `max_bytes` bounds both the raw and the inflated size (a reader that knows its
    instrument's file size passes it); without it, gzip inflation is still bounded
    (`guards.inflated_limit`)."""
    data = guards.read_all(source, path, max_bytes)
    if not data:
        raise SpectrumReadError(path, "file is empty (0 bytes)")
    if data[:2] == GZIP_MAGIC:
        data = guards.gunzip(data, path, max_bytes)
        if not data:
            raise SpectrumReadError(path, "gzip archive holds an empty file")
    return data


def head_bytes(source: Any, n: int = 6 * FITS_BLOCK) -> bytes:
    """The first `n` (decompressed) bytes of a path or file object, without consuming a file
    object (it is rewound). For `identify` functions: may raise, callers catch."""
    if isinstance(source, (str, os.PathLike)):
        with guards.open_regular(source) as fh:
            raw = fh.read(n)
    else:
        pos = source.tell()
        raw = source.read(n)
        source.seek(pos)
    if raw[:2] == GZIP_MAGIC:
        # A partial gzip stream: decompress what is there, ignoring the missing tail.
        raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, n)
    return raw[:n]


def rewind(source: Any) -> None:
    """Put a file object back at its start (after a probe read it); paths and HDULists have
    no position. A source that cannot seek is left where it is."""
    if hasattr(source, "seek"):
        try:
            source.seek(0)
        except Exception:
            pass


def is_fits_head(head: bytes) -> bool:
    return head.startswith(FITS_MAGIC)


@contextlib.contextmanager
def open_fits(source: Any, path: str, max_bytes: int | None = None
              ) -> Iterator[fits.HDUList]:
    """Yield an HDUList for a path, a file object or an HDUList (yielded as is, not closed).

    Raises SpectrumReadError for empty, non-FITS, truncated or corrupt input. Warnings that
    astropy emits for truncated files become errors inside the block, so data access on a
    cut file fails here rather than returning garbage.
    """
    if isinstance(source, fits.HDUList):
        yield source
        return
    data = read_bytes(source, path, max_bytes)
    if not is_fits_head(data):
        raise SpectrumReadError(path, "not a FITS file (no SIMPLE card at the start)")
    if len(data) % FITS_BLOCK:
        raise SpectrumReadError(path, f"truncated FITS file: {len(data)} bytes is not a "
                                      f"multiple of the {FITS_BLOCK}-byte FITS block")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AstropyUserWarning)
        warnings.simplefilter("error", VerifyWarning)
        try:
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
        except (OSError, ValueError, AstropyUserWarning, VerifyWarning, VerifyError) as exc:
            raise SpectrumReadError(path, f"corrupt or truncated FITS file ({exc})") from exc
        try:
            yield hdul
        except (AstropyUserWarning, VerifyWarning, VerifyError) as exc:
            # A corrupt header card or a cut data unit surfaces only when it is accessed.
            raise SpectrumReadError(path, f"corrupt or truncated FITS file ({exc})") from exc
        finally:
            hdul.close()
