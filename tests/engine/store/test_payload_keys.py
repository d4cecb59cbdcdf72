"""search(payload_keys=...): only the asked keys come back, on both backends, with the same
hits as a full-payload search; and hits own their payloads (the Edge backend no longer copies
them, so a caller's edit must not leak into the next answer)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.store import CollectionOptions, Filter, Match, Point
from tests.engine.store.conftest import INDEXES, VECTORS, make_points, make_store

KEYS = ("survey", "snr", "snr_bands", "label_teff")


def _points(n: int = 200) -> list[Point]:
    """conftest's points plus a nested dict, and label_teff left out of every third point."""
    out = []
    for j, p in enumerate(make_points(n, seed=41)):
        payload = dict(p.payload, snr_bands={"g": p.payload["snr"] / 2, "r": float(j)})
        if j % 3 == 0:
            del payload["label_teff"]
        out.append(Point(p.id, p.vectors, payload))
    return out


def _close(a, b) -> bool:
    """Equal payloads, floats to 1e-12 relative: Edge's stored floats can differ from the
    Python value in the last bit (it parses them back from JSON text)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return isinstance(b, float) and b == pytest.approx(a, rel=1e-12)
    return a == b


@pytest.fixture(params=["edge", "memory"])
def filled(request, tmp_path):
    s = make_store(request.param, tmp_path)
    s.create_collection("c", VECTORS, INDEXES, CollectionOptions())
    s.upsert("c", _points())
    yield s
    s.close()


@pytest.mark.parametrize("flt", [None, Filter(must=(Match("survey", "lamost"),))])
def test_payload_keys_returns_only_those_keys(filled, flt):
    q = np.random.default_rng(42).normal(size=16)
    full = filled.search("c", "shared", q, 20, filter=flt)
    some = filled.search("c", "shared", q, 20, filter=flt, payload_keys=list(KEYS))
    assert [h.id for h in some] == [h.id for h in full]
    np.testing.assert_allclose([h.score for h in some], [h.score for h in full], atol=1e-6)
    assert any("label_teff" not in h.payload for h in some)     # the case below is exercised
    for f, s in zip(full, some, strict=True):
        assert len(f.payload) > len(KEYS)
        assert s.payload == {k: f.payload[k] for k in KEYS if k in f.payload}
        assert set(s.payload["snr_bands"]) == {"g", "r"}      # nested dicts come whole


def test_payload_keys_empty_none_and_vectors(filled):
    q = np.random.default_rng(43).normal(size=16)
    hits = filled.search("c", "shared", q, 5, payload_keys=[], with_vectors=True)
    assert len(hits) == 5 and all(h.payload == {} for h in hits)
    assert all(h.vectors is not None and h.vectors["shared"].shape == (16,) for h in hits)
    one = filled.search("c", "shared", q, 5, payload_keys=("survey",))
    assert [set(h.payload) for h in one] == [{"survey"}] * 5
    assert all(h.vectors is None for h in one)
    with pytest.raises(TypeError, match="not one string"):
        filled.search("c", "shared", q, 5, payload_keys="survey")


def test_hits_own_their_payloads(filled):
    q = np.random.default_rng(44).normal(size=16)
    first = filled.search("c", "shared", q, 3)
    expected = {h.id: (h.payload["survey"], dict(h.payload["snr_bands"])) for h in first}
    for h in first:
        h.payload["survey"] = "edited"
        h.payload["snr_bands"]["g"] = -1.0
    again = filled.search("c", "shared", q, 3)
    assert {h.id: (h.payload["survey"], h.payload["snr_bands"]) for h in again} == expected


def test_both_backends_agree_on_selected_payloads(tmp_path):
    stores = [make_store("edge", tmp_path), make_store("memory", tmp_path)]
    for s in stores:
        s.create_collection("c", VECTORS, INDEXES, CollectionOptions())
        s.upsert("c", _points())
    rng = np.random.default_rng(45)
    for _ in range(5):
        q = rng.normal(size=16)
        edge, mem = (s.search("c", "shared", q, 10, payload_keys=KEYS) for s in stores)
        assert [h.id for h in edge] == [h.id for h in mem]
        for a, b in zip(edge, mem, strict=True):
            assert _close(a.payload, b.payload), (a.payload, b.payload)
    for s in stores:
        s.close()
