"""The model card (training/card.py) says what its bundle is: the shipped bundle's card is
exactly what write_card writes from that bundle's config, provenance and metrics, so a change
to the card code that would reword a shipped card shows here."""

import shutil
from pathlib import Path

from training.card import write_card

SHIPPED = Path(__file__).resolve().parents[2] / "engine" / "bundles" / "small"


def test_the_shipped_card_is_regenerated_unchanged(tmp_path):
    copy = tmp_path / "small"
    shutil.copytree(SHIPPED, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    write_card(copy)
    for name in ("card.md", "card.json"):
        assert (copy / name).read_text() == (SHIPPED / name).read_text(), name
