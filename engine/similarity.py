"""Similarities on a scale that reads the same in every space.

A raw cosine says little on its own: same-instrument XP neighbours all score ~0.9999 in the
spectrum space, cross-instrument ones ~0.6 in the shared space. So each hit also gets its
percentile among that space's *typical* neighbour similarities: the top-10 similarities of
up to `SAMPLE` indexed spectra of the query's instrument to the hit's instrument, in the same
named space. 0.5 = as alike as a typical 10-nearest neighbour there; 0.99 = closer than
99 % of them. Measured once per (space, query instrument, hit instrument) and engine.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine import payload as P
from engine.store.types import Filter, Match

log = logging.getLogger(__name__)

SAMPLE = 200
K = 10


class SimilarityScale:
    def __init__(self, engine: Any):
        self.engine = engine
        self._typical: dict[tuple[str, str, str], np.ndarray] = {}

    def percentile(self, space: str, query_survey: str, hit_survey: str,
                   score: float) -> float | None:
        key = (space, query_survey, hit_survey)
        if key not in self._typical:
            self._typical[key] = self.typical(*key)
        typical = self._typical[key]
        if not len(typical):
            return None
        return float(np.searchsorted(typical, score, side="right") / len(typical))

    def typical(self, space: str, query_survey: str, hit_survey: str) -> np.ndarray:
        """Sorted top-K neighbour similarities of sampled `query_survey` spectra."""
        store, coll = self.engine.store, self.engine.collection
        sims: list[float] = []
        sampled = 0
        for h in store.scroll(coll, filter=Filter(must=(Match(P.SURVEY, query_survey),)),
                              with_vectors=True, batch_size=SAMPLE):
            vec = (h.vectors or {}).get(space)
            if vec is None:
                continue
            found = store.search(coll, space, vec, K + 1,
                                 filter=Filter(must=(Match(P.SURVEY, hit_survey),)),
                                 payload_keys=[])
            sims.extend([f.score for f in found if f.id != h.id][:K])   # no self: K + 1
            sampled += 1
            if sampled >= SAMPLE:
                break
        log.debug("similarity scale %s %s->%s from %d spectra", space, query_survey,
                  hit_survey, sampled)
        return np.sort(np.asarray(sims, float))


# Below this percentile a hit is less alike than nearly every spectrum's typical 10 nearest
# neighbours in that space: a group of only such hits holds nothing of the query's kind.
UNLIKE_PERCENTILE = 0.05
UNLIKE_NOTE = ("none of these is as alike as a typical near neighbour in this space (all "
               "below its 5th percentile): the store may hold no spectrum of this kind there")


def all_unlike(percentiles) -> bool:
    """True when every hit has a similarity percentile and all are below UNLIKE_PERCENTILE."""
    every = list(percentiles)
    return bool(every) and None not in every and max(every) < UNLIKE_PERCENTILE
