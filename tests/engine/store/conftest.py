"""Shared fixtures for the store tests: a deterministic random corpus shaped like ours
(LAMOST points carry "shared" + "lamost", XP points "shared" + "gaia_xp") and one store per
backend."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from engine.store import CollectionOptions, Point, VectorSpec, open_store

DIMS = {"shared": 16, "lamost": 8, "gaia_xp": 12}
VECTORS = [VectorSpec(name, dim) for name, dim in DIMS.items()]
INDEXES = {"survey": "keyword", "obj_class": "keyword", "snr": "float", "label_teff": "float",
           "source_index": "integer", "anomaly": "float", "has_label": "bool"}
CLASSES = ("STAR", "GALAXY", "QSO")


def make_points(n: int, seed: int = 0, start: int = 0) -> list[Point]:
    """n points, half LAMOST half XP, with payload values drawn so that ties are rare
    (floats) except where a test wants them (obj_class, has_label)."""
    rng = np.random.default_rng(seed)
    points = []
    for i in range(start, start + n):
        survey = "lamost" if i % 2 == 0 else "gaia_xp"
        vectors = {"shared": rng.normal(size=DIMS["shared"]).astype(np.float32),
                   survey: rng.normal(size=DIMS[survey]).astype(np.float32)}
        payload = {"survey": survey, "obj_class": CLASSES[int(rng.integers(3))],
                   "snr": float(rng.uniform(0, 100)), "label_teff": float(rng.uniform(3500, 8000)),
                   "source_index": i, "anomaly": float(rng.random()),
                   "has_label": bool(rng.random() < 0.3), "object_id": f"obj{i}"}
        points.append(Point(str(uuid.UUID(int=i + 1)), vectors, payload))
    return points


def make_store(kind: str, tmp_path, name: str = "store"):
    if kind == "edge":
        return open_store(path=tmp_path / name)
    return open_store(memory=True)


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    s.create_collection("c", VECTORS, INDEXES, CollectionOptions())
    yield s
    s.close()
