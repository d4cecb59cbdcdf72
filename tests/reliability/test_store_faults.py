"""A store that goes away mid-run: retries, then a clear StoreError; never a silent partial
index (the alias is not switched and the bookkeeping is not written, so the next run
finishes the job exactly)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from engine import payload as P
from engine.errors import StoreError
from engine.store import Point, VectorSpec, open_store
from engine.store.server import ServerStore
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


class ClosingPort:
    """A loopback port that accepts connections and closes them at once (a server that
    died behind a load balancer); counts the attempts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def closing_port():
    port = ClosingPort()
    yield port
    port.close()


def test_server_that_drops_connections_gives_retries_then_store_error(closing_port):
    store = ServerStore(url=f"http://127.0.0.1:{closing_port.port}", retries=2, backoff=0.01,
                        timeout=2)
    try:
        with pytest.raises(StoreError) as err:
            store.list_collections()
    finally:
        store.client.close()
    assert closing_port.accepted >= 3            # the first try and two retries
    assert str(closing_port.port) in str(err.value) or "127.0.0.1" in str(err.value) \
        or "connect" in str(err.value).lower() or "disconnect" in str(err.value).lower()


def test_refused_port_gives_store_error_not_a_raw_exception():
    with socket.socket() as s:                   # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ServerStore(url=f"http://127.0.0.1:{port}", retries=1, backoff=0.01, timeout=2)
    try:
        with pytest.raises(StoreError):
            store.upsert("spectra", [Point("00000000-0000-0000-0000-000000000001",
                                           {"shared": np.ones(4, np.float32)}, {})])
    finally:
        store.client.close()


class DyingStore:
    """A real store that goes away after `ok_upserts` upserts: every later call raises the
    StoreError the backends raise when their server is gone."""

    def __init__(self, store, ok_upserts: int):
        self._store, self._left = store, ok_upserts
        self.dead = False

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr) or name in ("close",):
            return attr

        def call(*a, **k):
            if name == "upsert":
                if self._left == 0:
                    self.dead = True
                self._left -= 1
            if self.dead:
                raise StoreError(f"{name}: connection refused (server gone)")
            return attr(*a, **k)
        return call


def test_store_dying_mid_sync_fails_loudly_and_resume_is_exact(tmp_path):
    folder = tmp_path / "spectra"
    folder.mkdir()
    n = 16
    for i in range(n):
        write_lamost_file(str(folder / f"spec-{8000 + i}.fits"), 8000 + i, seed=i)
    state = str(tmp_path / "state.json")
    base = open_store(path=tmp_path / "store")
    dying = DyingStore(base, ok_upserts=2)
    with pytest.raises(StoreError, match="server gone"):
        Syncer(store=dying, embedder=ProjectionEmbedder(), state_path=state,
               batch_size=4).run(parse_sources([str(folder)]))
    # Not silently half-done: no alias points at the partial collection.
    assert base.resolve("spectra") is None
    report = Syncer(store=base, embedder=ProjectionEmbedder(), state_path=state,
                    batch_size=4).run(parse_sources([str(folder)]))
    assert report.added + report.skipped == n and report.skipped > 0
    ids = [h.payload[P.OBJECT_ID] for h in base.scroll("spectra")]
    assert sorted(ids) == sorted(str(8000 + i) for i in range(n))
    base.close()


def test_edge_store_refuses_a_second_writer(tmp_path):
    """The embedded store is single-writer: a second writer gets a clear StoreError."""
    a = open_store(path=tmp_path / "s")
    a.create_collection("c", [VectorSpec("shared", 4)], {})
    try:
        with pytest.raises(StoreError, match="another process"):
            open_store(path=tmp_path / "s")
    finally:
        a.close()
