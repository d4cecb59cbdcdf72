"""Model definitions (importable without training code)."""

from engine.models.config import ModelConfig, config_from_dict, config_to_dict
from engine.models.specclip import LAMOST_LABELS, XP_LABELS, SpecClipModel

__all__ = ["ModelConfig", "SpecClipModel", "config_from_dict", "config_to_dict",
           "LAMOST_LABELS", "XP_LABELS"]
