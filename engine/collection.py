"""The Qdrant collection layout for spectra, and model-versioned naming.

Queries go through an alias (default `spectra`); each model version gets its own collection
`spectra__<version>`, built completely before the alias switches to it, so a query never
sees a half-built index and a new model never mixes with the old one's vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine import payload as P
from engine.records import SURVEY_LAMOST, SURVEY_XP, SURVEYS
from engine.store.types import CollectionOptions, VectorSpec, VectorStore

DEFAULT_ALIAS = "spectra"

# One search thread per query: on the embedded store the app and CLI issue one query at a time
# and a thread hand-off costs more than it saves (measured at 100k x 32-d: p50 0.43 -> 0.32 ms).
# A server ignores it and uses its own per-request parallelism.
#
# Segments of at most 200,000 points: a write that touches points of an optimized segment
# (a deletion, a changed file, a batch of deferred score refreshes) seals that whole segment
# again when publishing (27.7 s for 10 points in one 1M-point segment), and Edge's optimizer
# may rebuild a whole segment when it merges. The cap bounds both; each query searches one
# more segment per 200k points (both costs: README "Segment size", benchmarks/segments.py).
DEFAULT_OPTIONS = CollectionOptions(search_threads=1, max_segment_points=200_000)


def versioned_name(alias: str, model_version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", model_version)
    return f"{alias}__{safe}"


@dataclass(frozen=True)
class CollectionSpec:
    """Everything a spectra collection is made of: named vectors with their dims, payload
    indexes, and options. Built by `collection_spec` only, for every indexer path."""

    vectors: tuple[VectorSpec, ...]
    payload_indexes: tuple[tuple[str, str], ...]
    options: CollectionOptions


def vector_specs(shared_dim: int, own_dims: dict[str, int],
                 spectrum_dims: dict[str, int | None] | None = None) -> list[VectorSpec]:
    specs = [VectorSpec(P.VECTOR_SHARED, shared_dim)]
    for survey in (SURVEY_LAMOST, SURVEY_XP):
        specs.append(VectorSpec(P.VECTOR_OWN[survey], own_dims[survey]))
    for survey, dim in (spectrum_dims or {}).items():
        if dim:
            specs.append(VectorSpec(P.VECTOR_SPECTRUM[survey], dim))
    return specs


def collection_spec(embedder: Any, options: CollectionOptions | None = None) -> CollectionSpec:
    """The collection an embedder's points go into: shared + own vectors, and the
    spectrum-space vectors when the bundle has spectral bases (an embedder without
    ``spectral_dim`` has none)."""
    spectral = getattr(embedder, "spectral_dim", lambda survey: None)
    vectors = vector_specs(embedder.shared_dim, {s: embedder.own_dim(s) for s in SURVEYS},
                           {s: spectral(s) for s in SURVEYS})
    return CollectionSpec(tuple(vectors), tuple(P.PAYLOAD_INDEXES.items()),
                          options if options is not None else DEFAULT_OPTIONS)


def ensure_collection(store: VectorStore, name: str, spec: CollectionSpec) -> None:
    """Create the collection, or check that the existing one has this spec: both backends
    refuse (StoreError) an existing collection whose vectors differ or whose payload index of
    a field is of another type, and add the payload indexes it lacks (a store built before an
    index existed, e.g. the geo index of sky positions)."""
    store.create_collection(name, list(spec.vectors), dict(spec.payload_indexes), spec.options)
