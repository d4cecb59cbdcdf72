"""Stable point ids and content hashes (LangChain `index()` style).

The id says *which spectrum* (survey + object id + data release), so re-indexing the same
spectrum always lands on the same point (a second row with the same three in one run is
counted as a duplicate, not stored twice); the content hash says *what it contains*, so an
unchanged spectrum is skipped and a changed one is updated in place.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np

from engine.records import SpectrumRecord

# A fixed namespace for this project's uuid5 ids. Never change it: every stored id depends on it.
POINT_NAMESPACE = uuid.UUID("6f0c1c52-5d0b-4f43-9c39-5e7b0d2b8a11")


def point_id(record: SpectrumRecord) -> str:
    """uuid5 of survey + object id + data release. The row is not part of it: the same
    spectrum served in another file or row is the same point."""
    key = f"{record.survey}|{record.object_id}|{record.data_release}"
    return str(uuid.uuid5(POINT_NAMESPACE, key))


def _array_digest(h: "hashlib._Hash", arr: np.ndarray | None) -> None:
    if arr is None:
        h.update(b"none")
        return
    a = np.ascontiguousarray(arr)
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())


def content_hash(record: SpectrumRecord) -> str:
    """sha256 over the spectrum's pixels and the metadata that reaches the payload."""
    h = hashlib.sha256()
    for arr in (record.wavelength, record.flux, record.ivar, record.mask, record.norm_flux):
        _array_digest(h, arr)
    meta = {
        "ra": record.ra, "dec": record.dec, "gaia": record.gaia_source_id,
        "class": record.obj_class, "subclass": record.subclass, "z": record.z,
        "snr": record.snr, "labels": record.labels, "label_errors": record.label_errors,
        "label_source": record.label_source, "offset": record.pixel_offset,
        "path": record.source_path, "row": record.source_index,
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]
