"""The Qdrant collection layout for spectra, and model-versioned naming.

Queries go through an alias (default `spectra`); each model version gets its own collection
`spectra__<version>`, built completely before the alias switches to it, so a query never
sees a half-built index and a new model never mixes with the old one's vectors.
"""

from __future__ import annotations

import re

from engine import payload as P
from engine.records import SURVEY_LAMOST, SURVEY_XP
from engine.store.types import CollectionOptions, VectorSpec, VectorStore

DEFAULT_ALIAS = "spectra"

# One search thread per query: on the embedded store the app and CLI issue one query at a time
# and a thread hand-off costs more than it saves (measured at 100k x 32-d: p50 0.43 -> 0.32 ms).
# A server ignores it and uses its own per-request parallelism.
DEFAULT_OPTIONS = CollectionOptions(search_threads=1)


def versioned_name(alias: str, model_version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", model_version)
    return f"{alias}__{safe}"


def vector_specs(shared_dim: int, own_dims: dict[str, int],
                 spectrum_dims: dict[str, int | None] | None = None) -> list[VectorSpec]:
    specs = [VectorSpec(P.VECTOR_SHARED, shared_dim)]
    for survey in (SURVEY_LAMOST, SURVEY_XP):
        specs.append(VectorSpec(P.VECTOR_OWN[survey], own_dims[survey]))
    for survey, dim in (spectrum_dims or {}).items():
        if dim:
            specs.append(VectorSpec(P.VECTOR_SPECTRUM[survey], dim))
    return specs


def ensure_collection(store: VectorStore, name: str, shared_dim: int, own_dims: dict[str, int],
                      options: CollectionOptions | None = None,
                      spectrum_dims: dict[str, int | None] | None = None) -> bool:
    """Create the collection with its vectors and payload indexes if missing.

    Returns True when it was created now.
    """
    if name in store.list_collections():
        return False
    store.create_collection(name, vector_specs(shared_dim, own_dims, spectrum_dims),
                            dict(P.PAYLOAD_INDEXES),
                            options or CollectionOptions())
    return True
