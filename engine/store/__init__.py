"""The vector store: backend-neutral types and one constructor, ``open_store``."""

from engine.store.factory import open_store
from engine.store.types import (
    CollectionOptions,
    Filter,
    GeoRadius,
    HasId,
    Hit,
    Match,
    MatchAny,
    Point,
    Range,
    VectorSpec,
    VectorStore,
)

__all__ = ["open_store", "CollectionOptions", "Filter", "GeoRadius", "HasId", "Hit", "Match",
           "MatchAny", "Point", "Range", "VectorSpec", "VectorStore"]
