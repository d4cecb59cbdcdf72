"""One translation of the backend-neutral Filter into a backend's own filter types. Each
backend supplies the six constructors (its FilterBuilder); the walk over the filter tree,
and the rules both backends share, live here once."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from engine.errors import StoreError
from engine.store import checks
from engine.store.types import Filter, GeoRadius, HasId, Match, MatchAny, Range


class FilterBuilder(Protocol):
    """A backend's constructors for the pieces of a filter."""

    def match(self, key: str, value: Any) -> Any: ...
    def match_any(self, key: str, values: list) -> Any: ...
    def range(self, key: str, gte: float | None, lte: float | None) -> Any: ...
    def geo_radius(self, key: str, lon: float, lat: float, radius_m: float) -> Any: ...
    def has_id(self, ids: Sequence[str]) -> Any: ...
    def filter(self, must: list | None, must_not: list | None, should: list | None) -> Any: ...


def translate(f: Filter | None, build: FilterBuilder) -> Any:
    """``f`` in the backend's types (None stays None)."""
    if f is None:
        return None
    return build.filter([_condition(c, build) for c in f.must] or None,
                        [_condition(c, build) for c in f.must_not] or None,
                        [_condition(c, build) for c in f.should] or None)


def _condition(c: Any, build: FilterBuilder) -> Any:
    if isinstance(c, Filter):
        return translate(c, build)
    if isinstance(c, Match):
        return build.match(c.key, c.value)
    if isinstance(c, MatchAny):
        values = list(c.values)
        if any(isinstance(v, bool) for v in values):   # Qdrant's MatchAny takes str/int only
            return build.filter(None, None, [build.match(c.key, v) for v in values])
        return build.match_any(c.key, values)
    if isinstance(c, Range):
        checks.check_range_bound(c.key, c.gte)
        checks.check_range_bound(c.key, c.lte)
        return build.range(c.key, c.gte, c.lte)
    if isinstance(c, GeoRadius):
        return build.geo_radius(c.key, c.lon, c.lat, c.radius_m)
    if isinstance(c, HasId):
        return build.has_id(list(c.ids))
    raise StoreError(f"unknown filter condition {c!r}")
