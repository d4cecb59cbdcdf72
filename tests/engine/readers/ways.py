"""The four ways a reader test reads a file (specutils' rule): by name (`format=`), detected
from a path, detected from a binary file object, detected from an open HDUList (FITS only;
a gzipped file is inflated first, as astropy opens no gzip from memory). Each detected way
also checks that detection picks `reader`."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

from astropy.io import fits

from engine import readers

WAYS = ("direct", "auto", "fileobj", "hdulist")


def read_way(path: Path, way: str, reader: str, options: dict | None = None) -> list:
    if way == "direct":
        return readers.read(str(path), format=reader, options=options)
    if way == "auto":
        assert readers.identify_format(str(path)).name == reader
        return readers.read(str(path), options=options)
    raw = path.read_bytes()
    if way == "fileobj":
        assert readers.identify_format(io.BytesIO(raw), path=path.name).name == reader
        return readers.read(io.BytesIO(raw), path=path.name, options=options)
    if way != "hdulist":
        raise ValueError(f"no such way {way!r}; ways: {WAYS}")
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    with fits.open(io.BytesIO(raw)) as hdul:
        assert readers.identify_format(hdul, path=path.name).name == reader
        return readers.read(hdul, path=path.name, options=options)
