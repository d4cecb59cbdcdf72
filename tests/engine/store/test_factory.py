"""open_store: one constructor, refusing contradictory arguments."""

from __future__ import annotations

import pytest

from engine.errors import StoreError
from engine.store import CollectionOptions, open_store


@pytest.mark.parametrize("kwargs", [
    {},
    {"path": "x", "url": "http://localhost:6333"},
    {"path": "x", "memory": True},
    {"url": "http://localhost:6333", "memory": True},
    {"url": ":memory:", "path": "x"},
])
def test_exactly_one_location(kwargs):
    with pytest.raises(StoreError, match="exactly one"):
        open_store(**kwargs)


def test_backends_and_modes(tmp_path):
    for kwargs, mode in (({"path": tmp_path / "s"}, "edge"), ({"memory": True}, "memory"),
                         ({"url": ":memory:"}, "memory")):
        s = open_store(**kwargs)
        assert s.mode == mode and s.list_collections() == []
        s.close()


def test_server_only_arguments_are_refused_for_a_path(tmp_path):
    with pytest.raises(StoreError, match="api_key"):
        open_store(path=tmp_path / "s", api_key="k")
    with pytest.raises(StoreError, match="api_key"):
        open_store(path=tmp_path / "s", options={"timeout": 3})
    with pytest.raises(StoreError, match="in-memory"):
        open_store(memory=True, api_key="k")


def test_options(tmp_path):
    opts = CollectionOptions(quantization="int8")
    s = open_store(path=tmp_path / "s", options=opts)
    assert s.default_options == opts
    s.close()
    s = open_store(memory=True, options={"retries": 1, "collection": opts})
    assert s.default_options == opts and s.retries == 1
    s.close()
    with pytest.raises(StoreError, match="unknown store options"):
        open_store(memory=True, options={"retry": 1})
