"""Publishing a collection of the embedded store: turn the writer's flushed working shard
into an immutable generation that reader processes load (generations.py moves the folders;
this module knows what Edge needs for a shard to be shared)."""

from __future__ import annotations

from pathlib import Path

import qdrant_edge as qe

from engine.jsonfile import atomic_write_json, read_json
from engine.store import generations as gens
from engine.store.edge_types import edge_errors


def seal(path: Path) -> None:
    """Make a raw shard copy shareable by many reader processes: switch its WAL off (Edge
    refuses to change that through EdgeConfig on load, so the persisted config is edited),
    then load it once so that Edge replays its journals here rather than in a reader."""
    cfg_path = path / "edge_config.json"
    cfg = read_json(cfg_path)
    cfg["wal_enabled"] = False
    atomic_write_json(cfg_path, cfg)
    with edge_errors(f"sealing {path}"):
        qe.EdgeShard.load(str(path)).close()


def publish_shard(shard: object, collection_dir: Path, published_dir: Path) -> int:
    """Flush the writer's ``shard`` (open on ``collection_dir/shard``) and publish it as the
    next generation under ``published_dir``; returns the generation number."""
    with edge_errors(f"flush {collection_dir.name}"):
        shard.flush()   # type: ignore[attr-defined]
    return gens.publish(collection_dir, published_dir, prepare=lambda tmp: seal(tmp / "shard"))
