"""Checks of query arguments before they reach a store: a NaN position or a negative k is
the caller's mistake, said in the caller's terms (ValueError), not a Rust panic or an
OverflowError from a binding."""

from __future__ import annotations

import math
from typing import Any


def check_k(k: Any, what: str = "k") -> int:
    """A positive number of results."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{what} must be a positive integer, not {k!r}")
    return k


def check_cone(ra: Any, dec: Any, radius_arcsec: Any, k: Any) -> None:
    """A cone: finite RA and Dec in degrees, Dec within [-90, 90], a finite positive radius
    in arcsec, and k None (every spectrum in the cone) or a positive integer."""
    for name, value, unit in (("ra", ra, "degrees"), ("dec", dec, "degrees"),
                              ("radius", radius_arcsec, "arcsec")):
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"cone {name} must be a finite number of {unit}, not {value!r}")
    if not -90.0 <= float(dec) <= 90.0:
        raise ValueError(f"cone dec must lie in [-90, 90], not {dec!r}")
    if float(radius_arcsec) <= 0:
        raise ValueError(f"cone radius must be positive, not {radius_arcsec!r}")
    if k is not None:
        check_k(k)


def check_sigma_weight(sigma_weight: Any, cross_rank: bool) -> None:
    """None (the bundle's setting) or a finite weight >= 0, and only with the cross-instrument
    ranking that reads it."""
    if sigma_weight is None:
        return
    try:
        ok = not isinstance(sigma_weight, bool) and math.isfinite(float(sigma_weight)) \
            and float(sigma_weight) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"sigma_weight must be a finite number >= 0 (or None for the "
                         f"bundle's setting), not {sigma_weight!r}")
    if not cross_rank:
        raise ValueError("sigma_weight is a weight of the cross-instrument ranking: it has no "
                         "effect with cross_rank off")
