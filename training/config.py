"""Load a training config by name (training/configs/NAME.json) or by path."""

from __future__ import annotations

import json
from pathlib import Path

from engine.models.config import ModelConfig, config_from_dict

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_config(name_or_path: str | Path) -> ModelConfig:
    """`small`, `paper`, or a JSON file in the same layout."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise FileNotFoundError(f"no config {name_or_path!r} (looked for {path})")
    return config_from_dict(json.loads(path.read_text()))
