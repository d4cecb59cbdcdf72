"""Argument types for the `specclip` subcommands: a value argparse refuses here is a one-line
usage error (exit 2) instead of a traceback or a silent no-op further in (`-k -1` printed
`[]`, `-k -5` raised OverflowError in the store binding, `--batch-size 0` a
ZeroDivisionError)."""

from __future__ import annotations

import argparse
import math

from engine.store.checks import FIELD_RE as _FIELD
from engine.store.checks import NAME_RE as _NAME


def _int_at_least(text: str, minimum: int, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {words}, not {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "0 or more")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def declination(text: str) -> float:
    value = finite_float(text)
    if not -90.0 <= value <= 90.0:
        raise argparse.ArgumentTypeError(f"must lie in [-90, 90], not {value}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, not {value}")
    return value


def field_name(text: str) -> str:
    """One payload field name (letters, digits, '_')."""
    if not _FIELD.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a payload field name")
    return text


def field_list(text: str) -> list[str]:
    """KEY,KEY,...: payload field names (never paths or selectors)."""
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise argparse.ArgumentTypeError("give at least one field name")
    bad = [f for f in fields if not _FIELD.fullmatch(f)]
    if bad:
        raise argparse.ArgumentTypeError(f"not payload field names: {bad} (letters, digits, "
                                         "'_'; e.g. label_teff,snr)")
    return fields


def store_name(text: str) -> str:
    """A collection or alias name (never a path)."""
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a collection/alias name: use 1-128 "
                                         "letters, digits, '_' or '-'")
    return text
