"""Re-rank outlier candidates from the marks of a hunting session.

An outlier list is long and most of its top is dull for the same few reasons (a bad fibre, a
known class of object). When the user marks a candidate, its neighbours (as a search finds
them: the spectrum space within its instrument, the shared space across) are probably the same
kind of thing, whichever instrument observed them, so:

- neighbours of candidates marked "boring" or "artefact" (and, more gently, "known") move down;
- neighbours of candidates marked "interesting" move up.

This is a pure function of the ranked list, the marks and the neighbour lists of the marked
points (each neighbour with its cosine similarity), so it is easy to test and cheap to rerun.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

LABELS = ("interesting", "artefact", "known", "boring")

# Signed pull of each mark on its neighbours: + raises them, - lowers them. "known" pulls down
# less: a known class is not wrong, only not new.
LABEL_WEIGHTS: dict[str, float] = {"interesting": 1.0, "artefact": -1.0, "known": -0.5,
                                   "boring": -1.0}


@dataclass(frozen=True)
class Ranked:
    """One candidate after re-ranking.

    base: its rank score before re-ranking (1 = top of the original list, towards 0 = bottom);
    pull: the signed evidence from marked neighbours, in [-1, 1];
    score: base * exp(strength * pull), what the new order sorts by.
    """

    id: str
    base: float
    pull: float
    score: float
    marked_by: tuple[str, ...]          # ids of the marked points that pulled on it


def rank_scores(n: int) -> list[float]:
    """Scores 1, (n-1)/n, ..., 1/n for an already-ordered list of n candidates.

    Ranks, not the raw anomaly values, so that the re-ranking means the same for every
    anomaly score whatever its scale.
    """
    return [(n - i) / n for i in range(n)]


def rerank(candidates: Sequence[str], marks: Mapping[str, str],
           neighbours: Mapping[str, Sequence[tuple[str, float]]],
           strength: float = 1.0, min_similarity: float = 0.0) -> list[Ranked]:
    """Re-order `candidates` (ids, best first) by evidence from marked neighbours.

    Parameters
    ----------
    candidates : candidate ids in their original order (highest anomaly first).
    marks : id -> one of LABELS, for the points the user has marked.
    neighbours : marked id -> [(neighbour id, cosine similarity in [-1, 1]), ...] in the
        space each was found in. Marked ids missing here pull on nothing.
    strength : how far marks may move a candidate; 0 keeps the original order.
    min_similarity : neighbours less similar than this are ignored.

    Returns
    -------
    Ranked entries: unmarked candidates sorted by the new score (ties keep the original order),
    then the marked candidates in their original order (they have been judged already).
    """
    if strength < 0:
        raise ValueError("strength must be >= 0")
    unknown = {label for label in marks.values() if label not in LABEL_WEIGHTS}
    if unknown:
        raise ValueError(f"unknown mark label(s) {sorted(unknown)}; use one of {LABELS}")
    evidence: dict[str, list[tuple[float, str]]] = {}
    for marked_id, label in marks.items():
        weight = LABEL_WEIGHTS[label]
        for nid, sim in neighbours.get(marked_id, ()):
            if nid == marked_id or sim < min_similarity:
                continue
            evidence.setdefault(nid, []).append((weight * max(0.0, float(sim)), marked_id))
    base = rank_scores(len(candidates))
    ranked: list[tuple[float, int, Ranked]] = []
    judged: list[Ranked] = []
    for i, cid in enumerate(candidates):
        pulls = evidence.get(cid, [])
        # Mean pull keeps the result in [-1, 1] however many marked neighbours a point has;
        # a tanh of the sum would let one loud cluster swamp everything else.
        pull = sum(p for p, _ in pulls) / len(pulls) if pulls else 0.0
        entry = Ranked(cid, base[i], pull, base[i] * math.exp(strength * pull),
                       tuple(m for _, m in pulls))
        if cid in marks:
            judged.append(entry)
        else:
            ranked.append((-entry.score, i, entry))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in ranked] + judged
