"""What queries return and take: a search hit, and the payload filter users write as a dict.
Shared by the query API's modules (engine/query.py re-exports both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from engine import payload as P
from engine.records import SpectrumRecord
from engine.store.types import Filter, Hit, Match, MatchAny, Range

# a spectrum in hand, a point id, ("obsid", x) or ("source_id", x)
Query = Union[SpectrumRecord, str, tuple]


@dataclass(frozen=True)
class SearchHit:
    id: str
    survey: str
    object_id: str
    score: float
    payload: dict
    space: str = ""                      # the named vector a search compared (neighbours)
    similarity_percentile: float | None = None   # engine/similarity.py
    separation_arcsec: float | None = None     # cone-search hits: distance from the centre
    # cross-instrument hits ordered by predicted parameters (engine/cross_rank.py): the
    # distance they were ordered by (None: shared-space order, or no predicted parameters)
    rank_distance: float | None = None

    @classmethod
    def from_hit(cls, hit: Hit, space: str = "") -> "SearchHit":
        return cls(hit.id, hit.payload.get(P.SURVEY, ""), str(hit.payload.get(P.OBJECT_ID, "")),
                   float(hit.score), dict(hit.payload), space)

    def to_dict(self) -> dict:
        out = {"id": self.id, "survey": self.survey, "object_id": self.object_id,
               "score": self.score, "payload": self.payload}
        if self.space:
            out["space"] = self.space
            out["similarity_percentile"] = self.similarity_percentile
        if self.separation_arcsec is not None:
            out["separation_arcsec"] = self.separation_arcsec
        if self.rank_distance is not None:
            out["rank_distance"] = self.rank_distance
        return out


@dataclass(frozen=True)
class ResolvedQuery:
    """A query turned into what a search needs: its instrument, its named vectors, its point
    id when it is indexed (so it is left out of its own hits), and its predicted
    (teff, logg, feh) where known."""
    survey: str
    vectors: dict
    point_id: str | None
    labels: dict


def _with_identity(keys: Sequence[str] | None) -> list[str] | None:
    """The asked payload keys plus the two every SearchHit is named by."""
    if keys is None:
        return None
    return list(dict.fromkeys([P.SURVEY, P.OBJECT_ID, *keys]))


def build_filter(filters: dict[str, Any] | None, survey: str | None = None) -> Filter | None:
    """{"label_teff": (4000, 6000), "obj_class": "STAR", "subclass": ["G2", "G5"]} -> Filter.

    A tuple (lo, hi) is a range (either end may be None); a list is "any of"; anything else
    must match exactly.
    """
    must: list = []
    if survey and survey != "any":
        must.append(Match(P.SURVEY, survey))
    for key, value in (filters or {}).items():
        if value is None:
            continue
        if isinstance(value, tuple):
            lo, hi = value
            if lo is not None or hi is not None:
                must.append(Range(key, gte=lo, lte=hi))
        elif isinstance(value, (list, set, frozenset)):
            must.append(MatchAny(key, tuple(value)))
        else:
            must.append(Match(key, value))
    return Filter(must=tuple(must)) if must else None
