"""qdrant-client backend: retries with backoff on transient errors then a clear StoreError,
no silent partial writes, API key from the environment, read-only guard. The retry tests use
a real refused connection on loopback and injected failures; a live server is optional."""

from __future__ import annotations

import os
import socket

import httpx
import numpy as np
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from engine.errors import StoreError
from engine.store import open_store
from engine.store.server import ServerStore
from tests.engine.store.conftest import INDEXES, VECTORS, make_points


def flaky(fn, failures):
    """Wrap fn so that it raises each of ``failures`` once, in order, then works."""
    calls = []

    def wrapped(*a, **k):
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return fn(*a, **k)
    return wrapped, calls


@pytest.fixture
def mem():
    s = ServerStore(location=":memory:", retries=3, backoff=0.001)
    s.create_collection("c", VECTORS, INDEXES)
    s.upsert("c", make_points(600, seed=21))
    yield s
    s.close()


def test_transient_errors_are_retried(mem):
    refused = ResponseHandlingException(httpx.ConnectError("refused"))
    busy = UnexpectedResponse(503, "Service Unavailable", b"", httpx.Headers())
    mem.client.count, calls = flaky(mem.client.count, [refused, busy])
    assert mem.count("c") == 600 and len(calls) == 3


def test_persistent_transient_error_becomes_store_error(mem):
    timeout = ResponseHandlingException(httpx.ReadTimeout("slow"))
    mem.client.count, calls = flaky(mem.client.count, [timeout] * 10)
    with pytest.raises(StoreError, match="ReadTimeout|ResponseHandling"):
        mem.count("c")
    assert len(calls) == 4                       # first try + 3 retries


def test_permanent_errors_are_not_retried(mem):
    bad = UnexpectedResponse(400, "Bad Request", b"{}", httpx.Headers())
    mem.client.count, calls = flaky(mem.client.count, [bad] * 10)
    with pytest.raises(StoreError):
        mem.count("c")
    assert len(calls) == 1


def test_failed_batch_upsert_says_how_much_was_written(mem):
    down = ResponseHandlingException(httpx.ConnectError("down"))
    original = mem.client.upsert
    calls = []

    def upsert(*a, **k):                         # second batch fails for good
        calls.append(1)
        if len(calls) >= 2:
            raise down
        return original(*a, **k)
    mem.client.upsert = upsert
    with pytest.raises(StoreError, match="256 of 600 points were written"):
        mem.upsert("c", make_points(600, seed=22, start=10_000))


def test_refused_connection_on_loopback_gives_store_error():
    with socket.socket() as sock:                # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = ServerStore(url=f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        s.list_collections()
    s.close()


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    s = open_store(url="https://qdrant.example:6333")          # no connection is made yet
    assert s.client._client._api_key == "from-env" and s.client._client._https
    s.close()
    s = open_store(url="https://qdrant.example:6333", api_key="explicit")
    assert s.client._client._api_key == "explicit"
    s.close()


def test_read_only_refuses_writes():
    s = open_store(memory=True, read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        s.create_collection("c", VECTORS, INDEXES)
    s.close()


def test_collection_options_reach_search(mem):
    """Search-time options are read back from the collection's metadata."""
    assert mem._opts("c").search_ef == 128
    s = ServerStore(location=":memory:")
    from engine.store import CollectionOptions
    s.create_collection("q", VECTORS, INDEXES, CollectionOptions(search_ef=40,
                                                               quantization="int8"))
    s._options.clear()
    assert s._opts("q").search_ef == 40 and s._opts("q").quantization == "int8"
    s.close()


@pytest.mark.qdrant_server
def test_live_server_roundtrip():
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL not set")
    s = open_store(url=url)
    name = "specclip_test_roundtrip"
    if name in s.list_collections():
        s.delete_collection(name)
    s.create_collection(name, VECTORS, INDEXES)
    pts = make_points(300, seed=23)
    s.upsert(name, pts)
    hits = s.search(name, "shared", np.ones(16), 5)
    assert len(hits) == 5 and s.count(name) == 300
    s.delete_collection(name)
    s.close()


def test_scale_options_reach_the_server():
    """Every CollectionOption is handed to Qdrant (captured at the client boundary)."""
    from engine.store import CollectionOptions
    s = ServerStore(location=":memory:")
    seen = {}
    original = s.client.create_collection

    def capture(name, **kwargs):
        seen.update(kwargs)
        return original(name, **kwargs)
    s.client.create_collection = capture
    opts = CollectionOptions(hnsw_m=32, hnsw_ef_construct=200, quantization="int8",
                             on_disk=True, shard_number=6, replication_factor=2,
                             write_consistency_factor=2, indexing_threshold=20_000)
    s.create_collection("c", VECTORS, INDEXES, opts)
    assert (seen["shard_number"], seen["replication_factor"],
            seen["write_consistency_factor"]) == (6, 2, 2)
    assert seen["hnsw_config"].m == 32 and seen["hnsw_config"].ef_construct == 200
    assert seen["quantization_config"].scalar.type.value == "int8"
    assert all(v.on_disk for v in seen["vectors_config"].values())
    # 20k points x 16 float32 dims (largest vector) = 1250 KB, Qdrant's unit
    assert seen["optimizers_config"].indexing_threshold == 1250
    s.close()
