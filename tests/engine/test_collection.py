"""One collection spec for every indexer path and backend: created once, then checked; an
existing collection with other vectors or dims is refused by Edge and by qdrant-client."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine import payload as P
from engine.collection import collection_spec, ensure_collection
from engine.errors import StoreError
from engine.store import VectorSpec, open_store
from tests.indexer.doubles import ProjectionEmbedder


class WithSpectra(ProjectionEmbedder):
    def spectral_dim(self, survey: str) -> int | None:
        return 6 if survey == "lamost" else None


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = open_store(path=tmp_path / "s") if request.param == "edge" else open_store(memory=True)
    yield s
    s.close()


def test_spec_has_every_vector_of_the_embedder():
    names = {v.name: v.dim for v in collection_spec(WithSpectra()).vectors}
    assert names == {P.VECTOR_SHARED: 16, P.VECTOR_OWN["lamost"]: 8, P.VECTOR_OWN["gaia_xp"]: 8,
                     P.VECTOR_SPECTRUM["lamost"]: 6}
    assert dict(collection_spec(WithSpectra()).payload_indexes) == P.PAYLOAD_INDEXES


def test_same_spec_is_accepted_another_is_refused(store):
    spec = collection_spec(WithSpectra())
    ensure_collection(store, "c", spec)
    ensure_collection(store, "c", spec)                      # checked, unchanged
    other = replace(spec, vectors=spec.vectors[:-1])         # without the spectrum vectors
    with pytest.raises(StoreError, match="another spec"):
        ensure_collection(store, "c", other)
    wider = replace(spec, vectors=(VectorSpec(P.VECTOR_SHARED, 32),) + spec.vectors[1:])
    with pytest.raises(StoreError, match="another spec"):
        ensure_collection(store, "c", wider)
