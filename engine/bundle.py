"""Model bundles: one folder that rebuilds a trained model exactly.

Layout:
    config.json         the resolved ModelConfig (rebuilds the architecture)
    weights.safetensors the state dict (safetensors: no pickle, nothing executes on load)
    norms.json          input/label normalisation statistics (also in the weights as buffers)
    card.md             the model card (human-readable)
    card.json           the card's structured facts (dims, data, splits, limits)
    metrics.json        evaluation results (`specclip evaluate` rewrites it)
    provenance.json     data files, counts, splits, code version, timings
    spectral.safetensors optional PCA bases of the model inputs (engine/spectral.py)
    rv_templates.safetensors optional LAMOST radial-velocity templates (engine/rv.py)
    VERSION             version id = sha256(weights + canonical config JSON + spectral
                        [+ rv templates])[:16]

`load_bundle` refuses a bundle whose config and weights disagree (missing or unexpected
tensors, shape mismatches) or whose VERSION does not match its content, with a BundleError.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.errors import BundleError
from engine.models.config import ModelConfig, config_from_dict, config_to_dict
from engine.models.specclip import SpecClipModel
from engine.rv import RV_FILE, load_templates
from engine.spectral import bases_digest, load_bases

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "bundles" / "small"
REQUIRED = ("config.json", "weights.safetensors", "norms.json", "card.md", "provenance.json")


@dataclass
class Bundle:
    path: Path
    config: ModelConfig
    model: SpecClipModel
    version: str
    norms: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    spectral: dict[str, Any] = field(default_factory=dict)   # survey -> SpectralBasis
    rv: Any = None                                           # engine.rv.RvTemplates or None


# Config keys added after bundles were shipped, whose default leaves a model as it was: they
# are hashed only when set, so a retrain of an older config keeps that bundle's version id.
HASHED_ONLY_WHEN_SET = {("heads", "lamost_params_steps"): 0, ("heads", "xp_params_hidden"): [],
                        ("heads", "lamost_runs_labels"): [], ("heads", "xp_params_members"): 1}


def _canonical(cfg_dict: dict) -> bytes:
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg_dict.items()}
    for (section, key), default in HASHED_ONLY_WHEN_SET.items():
        if isinstance(d.get(section), dict) and d[section].get(key, default) == default:
            d[section].pop(key, None)
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def version_id(weights_bytes: bytes, cfg_dict: dict, extra: bytes = b"") -> str:
    """Content hash of weights + config (+ the spectral bases' digest, when the bundle has
    them): equal ids mean the same vectors for the same spectrum."""
    return hashlib.sha256(weights_bytes + _canonical(cfg_dict) + extra).hexdigest()[:16]


def extras_digest(bundle_dir: str | Path) -> bytes:
    """Digest of the bundle's files beside the weights that change its outputs (the spectral
    bases; the RV templates, when it has them: bundles without keep their version id)."""
    rv = Path(bundle_dir) / RV_FILE
    extra = hashlib.sha256(rv.read_bytes()).digest() if rv.exists() else b""
    return bases_digest(bundle_dir) + extra


def restamp_version(out: str | Path) -> str:
    """Recompute and write VERSION (and card.json's copy) after adding a file to a bundle."""
    out = Path(out)
    old = (out / "VERSION").read_text().strip() if (out / "VERSION").exists() else None
    cfg_dict = _read_json(out / "config.json")
    version = version_id((out / "weights.safetensors").read_bytes(), cfg_dict,
                         extras_digest(out))
    (out / "VERSION").write_text(version + "\n")
    if (out / "card.json").exists():
        _write_json(out / "card.json", {**_read_json(out / "card.json"), "version": version})
    if old and (out / "card.md").exists():
        card_md = out / "card.md"
        card_md.write_text(card_md.read_text().replace(old, version))
    return version


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_bundle(out: str | Path, model: SpecClipModel, norms: dict, provenance: dict,
                card_md: str, card: dict, metrics: dict | None = None) -> str:
    """Write a bundle folder; returns its version id."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_dict = config_to_dict(model.cfg)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "weights.safetensors"), metadata={"format": "pt"})
    version = version_id((out / "weights.safetensors").read_bytes(), cfg_dict)
    _write_json(out / "config.json", cfg_dict)
    _write_json(out / "norms.json", norms)
    _write_json(out / "provenance.json", provenance)
    _write_json(out / "card.json", {**card, "version": version})
    _write_json(out / "metrics.json", metrics or {})
    (out / "card.md").write_text(card_md.replace("{VERSION}", version))
    (out / "VERSION").write_text(version + "\n")
    log.info("bundle %s written to %s", version, out)
    return version


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from exc


# Buffers added after bundles were shipped, whose defaults leave a model unchanged (the
# stack's sigma power 0 and reference 1: engine/models/stacking.py).
ADDED_LATER = ("stack.sigma_power", "stack.sigma_ref")


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise BundleError listing every missing/unexpected tensor and shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: config {tuple(expected[k].shape)} vs weights {tuple(state[k].shape)}"
              for k in sorted(set(expected) & set(state)) if expected[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise BundleError(f"{where}: config and weights disagree: " + "; ".join(parts))


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Load a bundle folder (None = the shipped engine/bundles/small) onto the CPU, eval mode."""
    path = Path(path) if path is not None else DEFAULT_BUNDLE
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle folder")
    absent = [n for n in REQUIRED if not (path / n).exists()]
    if absent:
        raise BundleError(f"{path}: incomplete bundle, missing {absent}")
    cfg_dict = _read_json(path / "config.json")
    try:
        cfg = config_from_dict(cfg_dict)
        model = SpecClipModel(cfg)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}/config.json: invalid config ({exc})") from exc
    weights = path / "weights.safetensors"
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise BundleError(f"{weights}: unreadable weights ({exc})") from exc
    for key in ADDED_LATER:   # at their identity default: the bundle behaves as it did
        if key in model.state_dict() and key not in state:
            state[key] = model.state_dict()[key]
    check_state(model, state, str(path))
    model.load_state_dict(state)
    model.eval()
    # the config as stored: a config field added later (at its default) must not change
    # the version id of a bundle written before it existed
    version = version_id(weights.read_bytes(), cfg_dict, extras_digest(path))
    stored = (path / "VERSION").read_text().strip() if (path / "VERSION").exists() else version
    if stored != version:
        raise BundleError(f"{path}: VERSION {stored} does not match its content ({version})")
    card = _read_json(path / "card.json") if (path / "card.json").exists() else {}
    card["markdown"] = (path / "card.md").read_text()
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    return Bundle(path, cfg, model, version, _read_json(path / "norms.json"), card, metrics,
                  _read_json(path / "provenance.json"), load_bases(path), load_templates(path))
