"""app.reranking: marks move their shared-space neighbours, and nothing else."""

from __future__ import annotations

import math

import pytest

from app.reranking import LABEL_WEIGHTS, rank_scores, rerank


def ids(ranked):
    return [r.id for r in ranked]


def test_no_marks_keeps_the_original_order():
    out = rerank(["a", "b", "c", "d"], {}, {})
    assert ids(out) == ["a", "b", "c", "d"]
    assert [r.score for r in out] == rank_scores(4) == [1.0, 0.75, 0.5, 0.25]


def test_neighbours_of_boring_move_down_and_of_interesting_move_up():
    candidates = ["a", "b", "c", "d", "e"]
    marks = {"x": "boring", "y": "interesting"}      # marked points outside the list count too
    neighbours = {"x": [("a", 0.95), ("b", 0.9)], "y": [("e", 0.9)]}
    out = rerank(candidates, marks, neighbours, strength=2.0)
    order = ids(out)
    assert order == ["e", "c", "d", "a", "b"]         # e was last; a, b were first
    assert order.index("a") > order.index("c") and order.index("b") > order.index("d")
    a = next(r for r in out if r.id == "a")
    assert a.marked_by == ("x",)
    assert math.isclose(a.pull, -0.95) and math.isclose(a.score, 1.0 * math.exp(-1.9))
    # at strength 1 the same evidence is too weak to lift e above c (0.2 e^0.9 < 0.6)
    assert ids(rerank(candidates, marks, neighbours, strength=1.0))[0] == "c"


def test_strength_zero_is_the_original_order_and_negative_is_refused():
    marks, nbrs = {"x": "artefact"}, {"x": [("a", 1.0)]}
    assert ids(rerank(["a", "b"], marks, nbrs, strength=0.0)) == ["a", "b"]
    assert ids(rerank(["a", "b"], marks, nbrs, strength=2.0)) == ["b", "a"]
    with pytest.raises(ValueError):
        rerank(["a"], marks, nbrs, strength=-1)


def test_marked_candidates_go_last_in_their_original_order():
    out = rerank(["a", "b", "c", "d"], {"a": "interesting", "c": "boring"}, {})
    assert ids(out) == ["b", "d", "a", "c"]


def test_known_pulls_less_than_boring_and_pull_is_a_mean():
    assert abs(LABEL_WEIGHTS["known"]) < abs(LABEL_WEIGHTS["boring"])
    marks = {"x": "known", "y": "boring", "z": "interesting"}
    nbrs = {"x": [("a", 1.0)], "y": [("b", 1.0)], "z": [("c", 0.8)], }
    out = {r.id: r for r in rerank(["a", "b", "c"], marks, nbrs)}
    assert out["b"].pull < out["a"].pull < 0 < out["c"].pull
    # two marks on one candidate: the mean of their pulls, so still within [-1, 1]
    two = {r.id: r for r in rerank(["a"], {"x": "boring", "y": "interesting"},
                                   {"x": [("a", 1.0)], "y": [("a", 0.5)]})}
    assert math.isclose(two["a"].pull, (-1.0 + 0.5) / 2)


def test_dissimilar_neighbours_and_self_are_ignored():
    marks = {"a": "boring"}
    nbrs = {"a": [("a", 1.0), ("b", 0.1), ("c", -0.5)]}
    out = {r.id: r for r in rerank(["a", "b", "c"], marks, nbrs, min_similarity=0.2)}
    assert out["b"].pull == 0.0 and out["c"].pull == 0.0


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="unknown mark label"):
        rerank(["a"], {"a": "weird"}, {})
