"""Small JSON files that a concurrent reader may open at any moment: the store's markers,
the indexer's bookkeeping and its reports. The one writer of such files in the engine and
the indexer, and the one way numpy values in record metadata become JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StoreError


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for record metadata: numpy scalars and arrays as Python
    values, anything else as its string."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON so that a concurrent reader sees the old file or the new one, never half,
    and a crash leaves one of the two (fsync before the rename). Values JSON cannot take
    (numpy scalars, paths) are written as strings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The file's JSON, or ``default`` when it does not exist; StoreError when unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable metadata ({e})") from e
