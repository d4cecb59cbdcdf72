"""Publishing a collection of the embedded store: turn the writer's flushed working shard
into an immutable generation that reader processes load (generations.py moves the folders;
this module knows what Edge needs for a shard to be shared)."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator

import qdrant_edge as qe

from engine.jsonfile import atomic_write_json, read_json
from engine.store import checks
from engine.store import generations as gens
from engine.store.edge_types import edge_errors
from engine.store.fs_probes import mapped_holes_take_space

log = logging.getLogger(__name__)


def seal(path: Path, segments: Collection[str] | None = None) -> None:
    """Make a raw shard copy shareable by many reader processes: switch its WAL off (Edge
    refuses to change that through EdgeConfig on load, so the persisted config is edited),
    then load it once so that Edge replays its journals here rather than in a reader.

    ``segments`` (relative paths shard/segments/<id>, see segment_of) limits the load to
    those segments: the others were taken, sealed, from the previous generation. They are
    moved into a scratch shard beside ``path`` (same config), loaded there and moved back,
    so the cost follows what changed, not the size of the shard. None: load it all.
    The load maps the segments' storages instead of reading them whole (_mapped_lazily):
    it only has to replay their journals.

    What this no longer checks: loading the whole new generation also proved that Edge can
    open it, at O(N) (1.9-2.1 s at 100k points). A segment taken from the previous
    generation is checked by stat only (generations._clean_units): every file its seal left
    is still there, and the writer's copy of each of its files has the stat, or the content
    digest, recorded when that generation was made. That covers a pruned generation, a
    segment folder emptied by hand, and any write by the writer; it does not cover bytes
    changed in place in the published copy (disk corruption, a hand edit), which nothing
    re-reads before a reader loads them, as for the hard-linked files before. A reader that
    cannot load a generation raises StoreError; opening the store for writing republishes one
    whose config or segments folder is gone (checks.generation_problem)."""
    cfg_path = path / "edge_config.json"
    cfg = read_json(cfg_path)
    cfg["wal_enabled"] = False
    atomic_write_json(cfg_path, cfg)
    present = sorted(p.name for p in (path / "segments").iterdir()) \
        if (path / "segments").is_dir() else []
    names = present if segments is None else \
        sorted({Path(s).name for s in segments} & set(present))
    if names == present:
        with edge_errors(f"sealing {path}"), _mapped_lazily(path / "segments", names):
            qe.EdgeShard.load(str(path)).close()
        return
    if not names:
        log.debug("sealing %s: no segment changed", path)
        return
    scratch = path.parent / f".{path.name}.sealing"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "segments").mkdir(parents=True)
    shutil.copy2(cfg_path, scratch / "edge_config.json")
    for name in names:
        os.rename(path / "segments" / name, scratch / "segments" / name)
    with edge_errors(f"sealing {len(names)} of {len(present)} segments of {path}"), \
            _mapped_lazily(scratch / "segments", names):
        qe.EdgeShard.load(str(scratch)).close()
    for name in names:
        os.rename(scratch / "segments" / name, path / "segments" / name)
    # anything else Edge made there (an empty appendable segment) is not part of the shard
    shutil.rmtree(scratch)


# A seal's load is there to replay the segments' journals, and reads no vector or payload.
# Edge populates (MADV_POPULATE_READ: reads whole into the page cache) the files of storages
# placed "in RAM" at load, and an appendable segment preallocates them sparse: at 1M points,
# sealing the near-empty appendable segment zero-filled 316 MiB of page cache (5 x 32 MiB of
# vector chunks, the payload pages), 0.5-1.0 s of a 1-file add in the writer process. The
# same files in the on-disk placement are mapped, not read (the file formats are the same;
# only the mapping differs). So seal() loads them with these placements and then puts the
# segment's own config back; tests/engine/store/test_publish.py checks that this leaves
# every file as a plain load does (qdrant-edge-py 0.9.0).
_LAZY_VECTORS = {"InRamChunkedMmap": "ChunkedMmap", "InRamMmap": "Mmap"}
_LAZY_PAYLOAD = {"in_ram_mmap": "mmap"}


def _lazy_config(seg: dict) -> dict | None:
    """segment.json's data with lazily mapped placements; None when it has none to change
    or is not laid out as known (a newer Edge: then loaded as it is)."""
    out = copy.deepcopy(seg)
    try:
        cfg = out["config"]
        for v in cfg["vector_data"].values():
            v["storage_type"] = _LAZY_VECTORS.get(v["storage_type"], v["storage_type"])
            if v["index"]["type"] == "hnsw":
                v["index"]["options"]["on_disk"] = True   # the graph mapped, not read
        kind = cfg["payload_storage_type"]
        kind["type"] = _LAZY_PAYLOAD.get(kind["type"], kind["type"])
    except (KeyError, TypeError, AttributeError):
        return None
    return None if out == seg else out


def _restore_config(lazy: dict, own: dict, loaded: dict) -> dict:
    """``own`` with whatever the load changed besides the placements: normally nothing."""
    if loaded == lazy:
        return own
    out = copy.deepcopy(loaded)
    for name, v in out["config"]["vector_data"].items():
        mine = own["config"]["vector_data"].get(name, {})
        v["storage_type"] = mine.get("storage_type", v["storage_type"])
        v["index"] = mine.get("index", v["index"])
    out["config"]["payload_storage_type"] = own["config"]["payload_storage_type"]
    return out


@contextmanager
def _mapped_lazily(segments_dir: Path, names: Collection[str]) -> Iterator[None]:
    """Within: the segments ``names`` carry lazily mapped placements (see _LAZY_VECTORS);
    afterwards each segment.json holds its own again (the exact bytes when the load changed
    nothing else), replaced by rename as Edge replaces it."""
    saved: dict[Path, tuple[bytes, dict, dict]] = {}
    for name in names:
        f = segments_dir / name / "segment.json"
        try:
            raw = f.read_bytes()
            own = json.loads(raw)
        except (OSError, ValueError):
            continue                    # the load reports a segment it cannot read
        lazy = _lazy_config(own)
        if lazy is not None:
            _replace_bytes(f, json.dumps(lazy, separators=(",", ":")).encode())
            saved[f] = (raw, own, lazy)
    try:
        yield
    finally:
        for f, (raw, own, lazy) in saved.items():
            try:
                loaded = json.loads(f.read_bytes())
            except (OSError, ValueError):
                loaded = lazy
            back = _restore_config(lazy, own, loaded)
            _replace_bytes(f, raw if back == own else
                           json.dumps(back, separators=(",", ":")).encode())


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def segment_of(rel: str) -> str | None:
    """The segment folder (shard/segments/<id>) a file of a collection folder belongs to:
    publishing seals and reuses segments as wholes."""
    parts = rel.split("/")
    if len(parts) > 3 and parts[0] == "shard" and parts[1] == "segments":
        return "/".join(parts[:3])
    return None


def publish_shard(shard: object, collection_dir: Path, published_dir: Path,
                  payload_indexes: int) -> int:
    """Flush the writer's ``shard`` (open on ``collection_dir/shard``, a collection with
    that many payload indexes) and publish it as the next generation under
    ``published_dir``; returns the generation number. Refused (StoreError, nothing written)
    unless the filesystem has room for what the publication may take: the files it copies
    and, where reading a hole through a map allocates it (tmpfs), the holes sealing may
    fill (generations.space_needed) and an empty segment (checks.seal_scratch_bytes)."""
    with edge_errors(f"flush {collection_dir.name}"):
        shard.flush()   # type: ignore[attr-defined]
    # the scratch shard's empty segment takes room only where holes read through a map fill
    extra = checks.seal_scratch_bytes(payload_indexes) \
        if mapped_holes_take_space(collection_dir) else 0
    what = f"publish collection {collection_dir.name!r}"
    # The WAL is the writer's private journal (and holds its lock): readers never need it.
    return gens.publish(collection_dir, published_dir,
                        prepare=lambda tmp, todo: seal(tmp / "shard", todo),
                        linkable=linkable, ignore=("wal", "unpublished"), unit=segment_of,
                        reserve=lambda need: checks.check_free_space(published_dir,
                                                                     need + extra, what))


# Files of a segment that Edge does not rewrite, only appends to: vector data, HNSW links,
# the built payload indexes' data, point-id mappings, payload pages. Checked on
# qdrant-edge-py 0.9.0 (tests/engine/store/test_publish.py holds it to that): neither
# loading a shard (a reader, or seal()) nor the writer's later updates change them in place
# unless their stat changes (new points go to the appendable segment, whose chunks and
# pages grow in place through mmap, which gives them a new mtime; a deletion marks flags in
# small files; a payload change moves the point to the appendable segment). On a filesystem
# where mmap writes leave the mtime alone (tmpfs), no stat counts as unchanged
# (fs_probes.mmap_writes_stamp_mtime). Everything else (versions, deletion flags,
# trackers, journals, configs) of a segment the writer changed is copied from the writer's
# folder: the writer changes it in place.
#
# A segment the writer did not change since the previous generation is hard-linked from it
# whole, as that generation's seal left it (generations._fill), so it is neither copied nor
# loaded again (what that leaves unchecked: seal()). Sharing its mutable files is sound
# because a reader's load, the only thing that touches a published segment, writes into
# them only the bytes they hold (it opens the flag and tracker files read-write, truncates
# them to their size and maps them: their mtimes change, their bytes do not) and replaces
# the JSON files it rewrites (segment.json) by rename, which gives that generation a file
# of its own. Checked on qdrant-edge-py 0.9.0 by strace and byte digests;
# tests/engine/store/test_publish.py holds it to that. At 1M points in 5 segments, copying
# those files was ~1,840 files and 0.7-1.3 s of every publication.
_WRITE_ONCE = re.compile(
    r"(^|/)(matrix\.dat|chunk_\d+\.mmap|links[a-z_]*\.bin|graph\.bin|point_to_values\.bin"
    r"|values_to_points\.bin|data\.bin|id_tracker\.mappings|page_\d+\.dat)$")


def linkable(rel: str) -> bool:
    """May this file of a shard be shared between generations (see _WRITE_ONCE)?"""
    return rel.startswith("shard/segments/") and bool(_WRITE_ONCE.search(rel))


