"""One constructor for every backend, as qdrant-client does: a folder (Qdrant Edge), a URL
(a Qdrant server or cluster) or memory (qdrant-client's in-process mode, for tests)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from engine.errors import StoreError
from engine.store.types import CollectionOptions, VectorStore

_SERVER_KWARGS = {"timeout", "retries", "backoff", "prefer_grpc"}


def open_store(path: str | os.PathLike | None = None, url: str | None = None,
               memory: bool = False, api_key: str | None = None, read_only: bool = False,
               options: CollectionOptions | dict[str, Any] | None = None) -> VectorStore:
    """Open a vector store.

    Parameters
    ----------
    path : folder of an embedded Qdrant Edge store (created when missing, unless read_only).
    url : http(s) URL of a Qdrant server/cluster; ``":memory:"`` means memory=True.
    memory : qdrant-client's in-process brute-force mode (tests, small data).
    api_key : server API key; defaults to the QDRANT_API_KEY environment variable.
    read_only : refuse writes. For a path: open the latest published generation, which any
        number of processes may do while one writer process updates the store.
    options : a CollectionOptions (kept as ``store.default_options`` for callers that create
        collections), or a dict of server connection settings (``timeout``, ``retries``,
        ``backoff``, ``prefer_grpc``) optionally with ``collection``: CollectionOptions.

    Exactly one of path, url, memory must be given.
    """
    if url == ":memory:":
        url, memory = None, True
    chosen = [n for n, v in (("path", path), ("url", url), ("memory", memory)) if v]
    if len(chosen) != 1:
        raise StoreError("open_store needs exactly one of path=, url=, memory=True "
                         f"(got {chosen or 'none'})")
    defaults, conn = _split_options(options)
    if path is not None:
        if api_key is not None or conn:
            raise StoreError("api_key and connection options apply to a server URL, "
                             "not to an embedded store path")
        from engine.store.edge import EdgeStore
        store: Any = EdgeStore(path, read_only=read_only)
    else:
        from engine.store.server import ServerStore
        if memory:
            if api_key is not None:
                raise StoreError("api_key makes no sense for an in-memory store")
            store = ServerStore(location=":memory:", read_only=read_only, **conn)
        else:
            store = ServerStore(url=url, api_key=api_key, read_only=read_only, **conn)
    store.default_options = defaults
    return store


def _split_options(options: CollectionOptions | dict[str, Any] | None
                   ) -> tuple[CollectionOptions, dict[str, Any]]:
    if options is None:
        return CollectionOptions(), {}
    if isinstance(options, CollectionOptions):
        return options, {}
    if not isinstance(options, dict):
        raise StoreError(f"options must be CollectionOptions or a dict, not {type(options)}")
    conn = dict(options)
    defaults = conn.pop("collection", CollectionOptions())
    unknown = set(conn) - _SERVER_KWARGS
    if unknown:
        raise StoreError(f"unknown store options {sorted(unknown)}; "
                         f"known: {sorted(_SERVER_KWARGS | {'collection'})}")
    return replace(defaults), conn
