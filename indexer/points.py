"""Turn records and their embeddings into store points (vectors + payload)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from engine import payload as P
from engine.positions import sky_point
from engine.records import LABEL_NAMES, SpectrumRecord
from engine.store.types import Hit, Point


def _clean(value: Any) -> Any:
    """JSON/Qdrant-safe scalars: NaN/inf become None, numpy scalars become Python ones."""
    if value is None:
        return None
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def record_payload(record: SpectrumRecord, source_root: str, chash: str,
                   model_version: str) -> dict[str, Any]:
    """The payload a point carries about its spectrum (identifiers, labels, provenance)."""
    payload: dict[str, Any] = {
        P.SURVEY: record.survey,
        P.OBJECT_ID: str(record.object_id),
        P.GAIA_SOURCE_ID: _clean(record.gaia_source_id),
        P.RA: _clean(record.ra),
        P.DEC: _clean(record.dec),
        P.DATA_RELEASE: record.data_release or "",
        P.SNR: _clean(record.headline_snr),
        P.OBJ_CLASS: record.obj_class,
        P.SUBCLASS: record.subclass,
        P.Z: _clean(record.z),
        P.LABEL_SOURCE: record.label_source,
        # absolute, so the payload names the file whatever folder the query runs from
        P.SOURCE_PATH: os.path.abspath(record.source_path) if record.source_path else "",
        P.SOURCE_INDEX: int(record.source_index),
        P.SOURCE_ROOT: source_root,
        P.CONTENT_HASH: chash,
        P.MODEL_VERSION: model_version,
        P.SNR_BANDS: {k: _clean(v) for k, v in record.snr.items()},
    }
    if payload.get(P.RA) is not None and payload.get(P.DEC) is not None:
        payload[P.SKY] = sky_point(payload[P.RA], payload[P.DEC])
    for name in LABEL_NAMES:
        payload[P.label_key(name)] = _clean(record.labels.get(name))
        payload[f"label_{name}_err"] = _clean(record.label_errors.get(name))
    for key in ("apogee_id", "designation", "lmjd", "planid", "spid", "fiberid"):
        if key in record.meta:
            payload[key] = _clean(record.meta[key])
    return {k: v for k, v in payload.items() if v is not None}


def build_points(records: Sequence[SpectrumRecord], batch: Any, ids: Sequence[str],
                 hashes: Sequence[str], source_root: str, model_version: str,
                 embedder: Any = None) -> list[Point]:
    """Points for the records whose embedding is valid (`batch` is an EmbeddingBatch).

    With the `embedder`, the per-spectrum scores (reconstruction chi^2, OOD, quality) are
    added now and the point is flagged `scores_pending` until `indexer.scoring` writes the
    scores that need other points (neighbours, the cross-instrument counterpart).
    """
    own_name = P.VECTOR_OWN[batch.survey]
    points = []
    for i, record in enumerate(records):
        if not bool(batch.valid[i]):
            continue
        payload = record_payload(record, source_root, hashes[i], model_version)
        for name, values in batch.params.items():
            payload[P.pred_key(name)] = _clean(values[i])
            payload[P.sigma_key(name)] = _clean(batch.sigmas[name][i])
        payload[P.ANOMALY_RECON] = _clean(batch.recon_error[i])
        if getattr(batch, "continuum", None) is not None:
            payload[P.CONTINUUM] = str(batch.continuum[i])
        vectors = {
            P.VECTOR_SHARED: np.asarray(batch.shared[i], dtype=np.float32),
            own_name: np.asarray(batch.own[i], dtype=np.float32),
        }
        if getattr(batch, "spectral", None) is not None:
            vectors[P.VECTOR_SPECTRUM[batch.survey]] = np.asarray(batch.spectral[i], np.float32)
        points.append(Point(id=ids[i], vectors=vectors, payload=payload))
    if embedder is not None:
        from indexer.scoring import embed_time_payload

        embed_time_payload(points, records, batch, embedder)
    else:
        for p in points:
            p.payload[P.SCORES_PENDING] = True
    return points


def with_spectrum_refs(points: Sequence[Point], ref: str, rows: dict[str, int]) -> list[Point]:
    """The points, each naming its row of the archive file `ref` (engine/spectrum_archive.py)."""
    return [Point(p.id, p.vectors, {**p.payload, P.SPECTRUM_FILE: ref,
                                    P.SPECTRUM_ROW: int(rows[p.id])}) for p in points]


def stored_hash(hit: Hit) -> str | None:
    """The content hash a stored point is up to date with, or None when it must be written
    again: a point without a stored spectrum (indexed before the store kept spectra) is
    re-embedded once, so that every point can be shown without its source file."""
    if P.SPECTRUM_FILE not in hit.payload:
        return None
    return hit.payload.get(P.CONTENT_HASH)
