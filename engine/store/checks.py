"""Checks at the embedded store's boundary: what the files and the callers hand it is
validated here before it can become a path, a Rust panic or a half-written generation.

- Collection and alias names are names, never paths: ``aliases.json`` saying
  ``{"spectra": "../../victim"}`` once made a sync delete a folder outside the store.
- Store files of the wrong shape (valid JSON, wrong type) are a StoreError naming the file
  and what to do, not an AttributeError from deep inside.
- A published generation whose ``segments/`` went missing reads as an empty collection
  unless someone looks: readers refuse it, the writer republishes it.
- Qdrant Edge preallocates sparse files and writes into them through mmap; on a full tmpfs
  that is a SIGBUS that kills the process, not an ENOSPC. Free space is checked first.
- NaN reaches Edge's Rust code as a panic (pyo3's PanicException is a BaseException).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.errors import StoreError

# Letters, digits, "_" and "-" (what engine.collection.versioned_name produces), at most 128.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Payload keys: identifiers (every key in engine.payload is one). Edge reads "a.b" or "a[]"
# as a path into nested payloads, and "../x" fails inside the binding.
FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# Edge preallocates its files and fills them through mmap. Measured with qdrant-edge 0.9 on a
# tmpfs (which, unlike ext4, allocates the preallocations at once): creating a collection took
# 36 MiB with one vector and one payload index, 89 MiB with the spectra layout as it was then
# (5 vectors, 25 indexes; 35 now); on ext4 the same collection took 0.5 MiB. Publishing takes
# the files it copies and, on a filesystem like tmpfs, the holes that sealing fills in the
# segments it seals (generations.space_needed, fs_probes). Every write is checked against its
# estimate plus this margin.
MARGIN_BYTES = 16 * 1024 * 1024
CREATE_BYTES = 40 * 1024 * 1024
CREATE_BYTES_PER_INDEX = 5 * 1024 * 1024 // 2
PAYLOAD_BYTES_PER_POINT = 2048      # a spectrum's payload is ~0.75 KB; WAL + segment copy


def check_name(name: Any, what: str = "collection") -> str:
    """``name`` if it is a valid collection or alias name; StoreError otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise StoreError(f"invalid {what} name {name!r}: use 1-128 letters, digits, '_' or "
                         "'-' (starting with a letter or digit); names are never paths")
    return name


def check_aliases(data: Any, path: Path) -> dict[str, str]:
    """The content of aliases.json: {alias: collection}, both valid names."""
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object {{alias: collection}}, found "
                         f"{type(data).__name__}; fix or delete the file (the next "
                         "`specclip index` sets the alias again)")
    for alias, target in data.items():
        try:
            check_name(alias, "alias")
            check_name(target, "collection")
        except StoreError as e:
            raise StoreError(f"{path}: {e}; fix or delete the file (the next `specclip "
                             "index` sets the alias again)") from None
    return data


def check_object(data: Any, path: Path, fix: str) -> dict:
    """A JSON object from a store file, or a StoreError saying which file and what to do."""
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object, found {type(data).__name__}; {fix}")
    return data


def check_current(data: Any, path: Path) -> int:
    """The generation number in a CURRENT file ({"gen": n})."""
    gen = data.get("gen") if isinstance(data, dict) else None
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 1:
        raise StoreError(f"{path}: expected {{\"gen\": <generation number>}}, found "
                         f"{data!r}; run `specclip index` on this store to republish")
    return gen


def generation_problem(shard: Path) -> str | None:
    """Why a published shard folder cannot be what was published, or None when it looks
    whole (its config and its segments folder are there)."""
    if not (shard / "edge_config.json").is_file():
        return f"{shard / 'edge_config.json'} is missing"
    if not (shard / "segments").is_dir():
        return f"{shard / 'segments'} is missing"
    return None


def allocated_bytes(folder: Path, skip: Sequence[str] = ("wal",)) -> int:
    """Disk space the files under ``folder`` occupy (holes of sparse files excluded): what a
    sparse copy of it writes."""
    total = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def create_bytes(payload_indexes: int) -> int:
    """What creating a collection with that many payload indexes may take (see above)."""
    return CREATE_BYTES + CREATE_BYTES_PER_INDEX * payload_indexes


def seal_scratch_bytes(payload_indexes: int) -> int:
    """What sealing may take beyond the new generation's files (generations.space_needed
    counts those): sealing some of a shard's segments loads them in a scratch shard, where
    Edge makes an empty appendable segment unless one of them is appendable, as large as a
    new collection's."""
    return create_bytes(payload_indexes)


def batch_bytes(points: Sequence[Any]) -> int:
    """A generous estimate of what upserting ``points`` writes (WAL and segment both)."""
    vectors = sum(np.asarray(v).size * 4 for p in points for v in p.vectors.values())
    return 2 * (vectors + PAYLOAD_BYTES_PER_POINT * len(points))


def check_free_space(folder: Path, need: int, what: str) -> None:
    """StoreError unless the filesystem holding ``folder`` has ``need`` bytes free (plus a
    margin)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + MARGIN_BYTES:
        raise StoreError(f"{what}: {free / 2**20:.0f} MiB free on the filesystem of {probe}, "
                         f"{(need + MARGIN_BYTES) / 2**20:.0f} MiB needed; free some space "
                         "and run again (nothing was written)")


def check_k(k: Any, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise StoreError(f"{what} must be a positive integer, not {k!r}")
    return int(k)


def check_vector(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise StoreError("the query vector must be one row of finite numbers "
                         f"(shape {v.shape}, finite: {bool(np.isfinite(v).all())})")
    return v


def check_payload_keys(keys: Sequence[str] | None) -> None:
    for key in keys or ():
        if not isinstance(key, str) or not FIELD_RE.fullmatch(key):
            raise StoreError(f"invalid payload field {key!r}: payload fields are names "
                             "like label_teff (letters, digits, '_')")


def check_range_bound(key: str, value: Any) -> None:
    """A range end must be a finite number or None (NaN makes Edge panic)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise StoreError(f"range filter on {key!r}: {value!r} is not a number")
    if not math.isfinite(float(value)):
        raise StoreError(f"range filter on {key!r}: {value!r} is not a finite number")


def is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException (a Rust panic inside the binding): a BaseException subclass
    with no importable home, so it is recognised by name."""
    return type(exc).__name__ == "PanicException"
