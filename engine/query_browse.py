"""The query API's browsing side (mixed into engine.query.Engine): what the store holds,
counted cheaply (counts, facets and ordered look-ups, never a scan), random points and the
points of the map."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from engine import payload as P
from engine.errors import NotFoundError
from engine.query_types import SearchHit, build_filter
from engine.records import SURVEYS


class BrowseMixin:
    """Needs ``store``, ``collection``, ``store_location``, ``embedder`` and
    ``index_model_version`` (engine.query.Engine)."""

    def random_point(self, survey: str | None = None, seed: int | None = None) -> SearchHit:
        """Some indexed spectrum: the neighbour of a random direction in the shared space."""
        rng = np.random.default_rng(seed)
        dim = self.shared_dim()
        vec = rng.normal(size=dim).astype(np.float32)
        flt = build_filter(None, survey)
        hits = self.store.search(self.collection, P.VECTOR_SHARED, vec / np.linalg.norm(vec), 1,
                                 filter=flt)
        if not hits:
            raise NotFoundError("the store is empty")
        return SearchHit.from_hit(hits[0])

    def shared_dim(self) -> int:
        any_hit = next(iter(self.store.scroll(self.collection, with_vectors=True, batch_size=1)),
                       None)
        if any_hit is None:
            raise NotFoundError("the store is empty")
        return int(len(any_hit.vectors[P.VECTOR_SHARED]))

    def map_points(self, limit: int = 50_000, survey: str | None = None
                   ) -> tuple[list[str], np.ndarray, list[dict]]:
        """Ids, shared vectors and payloads of up to `limit` points (for the 2-D map)."""
        ids, vecs, payloads = [], [], []
        for h in self.store.scroll(self.collection, filter=build_filter(None, survey),
                                   with_vectors=True):
            ids.append(h.id)
            vecs.append(h.vectors[P.VECTOR_SHARED])
            payloads.append(h.payload)
            if len(ids) >= limit:
                break
        return ids, np.asarray(vecs, dtype=np.float32).reshape(len(ids), -1), payloads

    def stats(self) -> dict[str, Any]:
        """What is indexed, by what model, in what kind of store, and whether it answers.

        Counts come from the store's count and facet calls on indexed fields, so this stays
        cheap at any size (it used to scroll every point)."""
        out: dict[str, Any] = {"store_mode": getattr(self.store, "mode", "?"),
                               "store": self.store_location, "collection": self.collection}
        try:
            resolved = self.store.resolve(self.collection)
            out["resolved_collection"] = resolved
            if resolved is None:  # nothing indexed yet: no collection behind the alias
                out.update(total=0, by_survey={}, by_release={}, model_versions=[],
                           healthy=True)
                return out
            by_survey = {s: n for s, n in self.store.facet(self.collection, P.SURVEY).items()
                         if n}
            by_release: dict[str, int] = {}
            for survey, n in by_survey.items():
                releases = self.store.facet(self.collection, P.DATA_RELEASE,
                                            build_filter(None, survey))
                by_release.update({f"{survey}/{r}": c for r, c in releases.items()})
                if n > sum(releases.values()):   # points without a data release
                    by_release[f"{survey}/?"] = n - sum(releases.values())
            version = self.index_model_version()
            out.update(total=self.store.count(self.collection), by_survey=by_survey,
                       by_release=by_release, model_versions=[version] if version else [],
                       healthy=True)
        except Exception as exc:  # Status must render even when the store is down
            out.update(healthy=False, error=f"{type(exc).__name__}: {exc}")
        return out

    def surveys_held(self) -> list[str]:
        """The instruments that have at least one indexed spectrum, in SURVEYS order."""
        if self.store.resolve(self.collection) is None:
            return []
        return [s for s in SURVEYS
                if self.store.count(self.collection, build_filter(None, s)) > 0]

    def value_range(self, key: str, survey: str | None = None
                    ) -> tuple[float, float] | None:
        """(min, max) of a numeric payload field with a payload index, or None when no
        point has it: two ordered look-ups, not a scan."""
        if self.store.resolve(self.collection) is None:
            return None
        flt = build_filter(None, survey)
        lo = self.store.order_by(self.collection, key, 1, False, flt)
        hi = self.store.order_by(self.collection, key, 1, True, flt)
        if not lo or not hi:
            return None
        return float(lo[0].score), float(hi[0].score)

    def points(self, ids: Sequence[str]) -> list[SearchHit]:
        """The stored points with these ids (those that exist), score 0."""
        return [SearchHit.from_hit(h) for h in self.store.retrieve(self.collection,
                                                                  [str(i) for i in ids])]

    def model_card(self) -> dict[str, Any]:
        """The bundle's card, metrics and version (for the Status page)."""
        bundle = self.embedder.bundle
        return {"version": self.embedder.version, "card": dict(getattr(bundle, "card", {}) or {}),
                "metrics": dict(getattr(bundle, "metrics", {}) or {})}
