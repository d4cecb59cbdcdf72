"""training/cross_rank_fit.py: the array version of a cross-instrument search agrees with
engine/cross_rank.py, and a counterpart's rank is where a search puts it."""

from __future__ import annotations

import numpy as np

from engine.cross_rank import CrossRank
from engine.inference import EmbeddingBatch
from training.cross_rank_fit import cross_neighbours, rank_in_search


def batch(shared, teff, logg, feh, sigma=0.01, valid=None) -> EmbeddingBatch:
    n = len(teff)
    shared = np.asarray(shared, np.float32)
    shared /= np.linalg.norm(shared, axis=1, keepdims=True)
    par = {"teff": np.asarray(teff, float), "logg": np.asarray(logg, float),
           "feh": np.asarray(feh, float)}
    sig = {k: np.full(n, sigma * (v.mean() if k == "teff" else 1.0)) for k, v in par.items()}
    return EmbeddingBatch("gaia_xp", shared, np.zeros((n, 2), np.float32), par, sig,
                          np.zeros(n), np.zeros((n, 3)),
                          np.ones(n, bool) if valid is None else np.asarray(valid, bool))


def test_candidates_come_from_the_shared_space_and_labels_order_them():
    rng = np.random.default_rng(0)
    pool_vec = rng.normal(size=(50, 4))
    q_vec = pool_vec[:1] + 0.01                                # pool row 0 is the nearest
    teff = np.full(50, 4000.0)
    teff[7] = 5800.0                                           # the right star, row 7
    pool = batch(pool_vec, teff, np.full(50, 2.0), np.zeros(50))
    q = batch(q_vec, [5800.0], [2.0], [0.0])
    cos = (pool.shared @ q.shared[0])
    cand = int((cos > cos[7]).sum()) + 1                       # row 7's shared-space rank
    got = cross_neighbours(q, pool, CrossRank(candidates=cand, cosine_weight=1.0), 3)
    assert got[0, 0] == 7
    assert rank_in_search(q, 0, pool, 7, CrossRank(candidates=cand, cosine_weight=1.0)) == 1
    # outside the candidates it keeps its shared-space rank and cannot be found first
    few = CrossRank(candidates=max(1, cand - 1), cosine_weight=1.0)
    assert cross_neighbours(q, pool, few, 3)[0, 0] != 7
    assert rank_in_search(q, 0, pool, 7, few) == cand


def test_invalid_pool_rows_are_never_returned_and_batches_concatenate():
    a = batch(np.eye(3), [5000.0] * 3, [4.0] * 3, [0.0] * 3, valid=[False, True, True])
    b = batch(np.eye(3), [5000.0] * 3, [4.0] * 3, [0.0] * 3)
    both = EmbeddingBatch.concat([a, b])
    assert both.subset(np.array([3, 1])).shared.tolist() == both.shared[[3, 1]].tolist()
    assert len(both) == 6 and both.params["teff"].shape == (6,)
    q = batch([[1.0, 0.0, 0.0]], [5000.0], [4.0], [0.0])
    got = cross_neighbours(q, both, CrossRank(candidates=6, cosine_weight=10.0), 5)
    assert 0 not in got[0] and got[0, 0] == 3
