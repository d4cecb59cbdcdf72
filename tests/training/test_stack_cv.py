"""training.stack_cv: the out-of-fold stack reads, for each row, a head that never saw it.
Synthetic heads that memorise their own rows (exact there, noisy elsewhere) make the
in-sample stack trust the head and the out-of-fold stack learn to rely on the spectrum: a
mix-up of which head predicts which row would make the two alike."""

from itertools import combinations

import numpy as np

from training import data as D
from training import stack_cv as S
from training.train import LAMOST_LABELS


def _world(n=400, pixels=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(4500, 7000, n), rng.uniform(3.5, 4.7, n),
                              rng.uniform(-1.0, 0.3, n), rng.normal(0, 30, n)])
    basis = rng.normal(size=(3, pixels))
    z = (labels[:, :3] - labels[:, :3].mean(0)) / labels[:, :3].std(0)
    flux = 1.0 + 0.05 * z @ basis + 0.002 * rng.normal(size=(n, pixels))
    ids = [str(100000 + i) for i in range(n)]
    train = D.SpectraSet("lamost", flux.astype(np.float32), np.ones_like(flux, np.float32),
                         np.zeros(n, np.float32), labels, ids, np.full(n, 50.0))
    folds = np.array([S.fold_of(i) for i in ids])
    preds = {}
    for excluded in [(k,) for k in range(S.K_FOLDS)] + list(combinations(range(S.K_FOLDS), 2)):
        seen = ~np.isin(folds, excluded)
        noisy = labels * (1 + 0.08 * rng.normal(size=labels.shape))
        preds[excluded] = np.where(seen[:, None], labels, noisy)
    return train, folds, preds


def test_the_out_of_fold_stack_does_not_trust_a_memorising_head():
    train, folds, preds = _world()
    assert set(folds) == set(range(S.K_FOLDS))
    rows = train.labelled(3)
    out = S.analyse(train, folds, rows, preds, n_components=10)
    summary = S.summarise(out["oof"], out["truth"], rows)
    best = summary["best"]
    for label in ("logg", "feh"):
        in_sample = best["stack_in_sample"][label]["robust_sigma"]
        crossed = best["stack_out_of_fold"][label]["robust_sigma"]
        head = best["head"][label]["robust_sigma"]
        assert crossed < 0.5 * in_sample, (label, crossed, in_sample)
        assert crossed < 0.5 * head
        diff = summary["comparisons"]["stack_out_of_fold - stack_in_sample"][label]
        assert diff["ci95"][1] < 0
    # every row is scored once, by the fold that held it out
    assert summary["n_rows"] == len(rows)
    assert np.isfinite(out["oof"]["head"][rows]).all()
    assert LAMOST_LABELS[:3] == S.LABELS
