"""Choose the cross-instrument ranking settings (engine/cross_rank.py) on the validation split
and write them into a bundle's cross_rank.json.

    python -m training.cross_rank_fit --bundle engine/bundles/small

Queries: the LAMOST validation stars with Teff, logg and [Fe/H] (crc32(obsid) % 10 == 1);
pool: the Gaia XP library's train + validation stars (the test split is not read). For each
setting of the grid the robust sigma of (query label - neighbour label) over the top 10 is
measured; the setting with the lowest mean ratio to the predicted-label baseline (neighbours
nearest in the model's predicted labels, as in `specclip evaluate`) over Teff, logg and
[Fe/H] is kept. The grid, the baseline and the shared-space-only ranking are written beside it,
and the chosen settings checked the other way round (XP validation stars searched among the
labelled LAMOST train + validation spectra; not used to choose).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from engine.cross_rank import CrossRank, label_space, order, save_cross_rank, sigma_space
from engine.inference import EmbeddingBatch, Embedder
from engine.models.specclip import COMMON_LABELS, LAMOST_LABELS, XP_LABELS
from training import data as D
from training import metrics as M

log = logging.getLogger(__name__)

K = 10
CANDIDATES = (200, 500, 1000, 2000)
COSINE_WEIGHTS = (0.0, 10.0, 20.0)


def labels_of(batch: EmbeddingBatch) -> tuple[np.ndarray, np.ndarray]:
    """(label-space predictions, label-space sigmas) of a batch, NaN where invalid."""
    p, s = batch.params, batch.sigmas
    lab = label_space(p["teff"], p["logg"], p["feh"])
    sig = sigma_space(p["teff"], s["teff"], s["logg"], s["feh"])
    bad = ~np.asarray(batch.valid, bool)
    lab[bad], sig[bad] = np.nan, np.nan
    return lab, sig


def searched(q_lab: np.ndarray, q_shared: np.ndarray, pool: EmbeddingBatch,
             p_lab: np.ndarray, p_sig: np.ndarray, settings: CrossRank
             ) -> tuple[np.ndarray, np.ndarray]:
    """For one query: (pool rows in the order a cross-instrument search returns its
    candidates, pool rows by shared-space cosine). What `Engine.search` does through the
    store, here on arrays."""
    cos = np.where(np.asarray(pool.valid, bool), pool.shared @ q_shared, -np.inf)
    by_cos = np.argsort(-cos, kind="stable")
    cand = by_cos[:settings.candidates]
    idx, _ = order(q_lab, p_lab[cand], p_sig[cand], cos[cand], settings.cosine_weight)
    return cand[idx], by_cos


def cross_neighbours(q: EmbeddingBatch, pool: EmbeddingBatch, settings: CrossRank,
                     k: int = K) -> np.ndarray:
    """[Q, k] pool rows a cross-instrument search returns for each query."""
    q_lab, _ = labels_of(q)
    p_lab, p_sig = labels_of(pool)
    return np.stack([searched(q_lab[i], q.shared[i], pool, p_lab, p_sig, settings)[0][:k]
                     for i in range(len(q_lab))]).astype(np.int64)


def rank_in_search(q: EmbeddingBatch, i: int, pool: EmbeddingBatch, target: int,
                   settings: CrossRank) -> int:
    """1-based position of pool row `target` in query i's cross-instrument results: its
    re-ranked position when it is among the candidates, else its shared-space rank (the
    results past the candidates are not re-ranked)."""
    q_lab, _ = labels_of(q)
    p_lab, p_sig = labels_of(pool)
    ranked, by_cos = searched(q_lab[i], q.shared[i], pool, p_lab, p_sig, settings)
    where = np.where(ranked == target)[0]
    return int(where[0] if len(where) else np.where(by_cos == target)[0][0]) + 1


def scatter(nn: np.ndarray, q_labels: np.ndarray, pool_labels: np.ndarray) -> dict:
    return {name: M.robust_sigma(q_labels[:, j][:, None] - pool_labels[nn, j])
            for j, name in enumerate(COMMON_LABELS)}


def fit(bundle: str | None) -> tuple[CrossRank, dict]:
    root = D.default_data_root()
    emb = Embedder(bundle)
    _, lam_val, _ = D.load_lamost_split(root, LAMOST_LABELS)
    lam = lam_val.subset(lam_val.labelled(3))
    pool = D.concat_sets([D.load_xp("train", XP_LABELS, data_root=root),
                          D.load_xp("val", XP_LABELS, data_root=root)])
    qb = emb.embed_arrays(lam.survey, lam.flux, lam.weight, lam.scale)
    pb = emb.embed_arrays(pool.survey, pool.flux, pool.weight, pool.scale)
    qp = np.stack([qb.params[n] for n in COMMON_LABELS], 1)
    pp = np.stack([pb.params[n] for n in COMMON_LABELS], 1)
    baseline = scatter(M.label_neighbours(qp, pp, K), lam.labels, pool.labels)
    shared = scatter(M.top_k(qb.shared, pb.shared, K), lam.labels, pool.labels)
    grid, best = {}, (np.inf, CrossRank())
    for m in CANDIDATES:
        for w in COSINE_WEIGHTS:
            s = CrossRank(candidates=m, cosine_weight=w)
            sc = scatter(cross_neighbours(qb, pb, s), lam.labels, pool.labels)
            ratio = float(np.mean([sc[n] / baseline[n] for n in COMMON_LABELS]))
            grid[f"candidates={m},cosine_weight={w:g}"] = {**{n: round(v, 4) for n, v in
                                                              sc.items()},
                                                           "mean_ratio_to_baseline":
                                                               round(ratio, 4)}
            log.info("cross rank %s: %s", s, grid[f"candidates={m},cosine_weight={w:g}"])
            if ratio < best[0]:
                best = (ratio, s)
    report = {"validation_xp_to_lamost": reverse_check(emb, root, best[1]),
              "chosen_on": "LAMOST validation stars with 3 labels (crc32(obsid) % 10 == 1) "
                           "searched among the XP train + validation stars; lowest mean "
                           "ratio of top-10 robust sigma to the predicted-label baseline",
              "n_queries": len(lam), "xp_pool": len(pool), "k": K,
              "validation_predicted_label_baseline": {n: round(v, 4) for n, v in
                                                      baseline.items()},
              "validation_shared_space_only": {n: round(v, 4) for n, v in shared.items()},
              "validation_grid": grid}
    return best[1], report


def reverse_check(emb: Embedder, root: Path, settings: CrossRank) -> dict:
    """The chosen settings the other way round (not used to choose them): Gaia XP validation
    stars with 3 labels searched among the labelled LAMOST train + validation spectra."""
    train, val, _ = D.load_lamost_split(root, LAMOST_LABELS)
    pool = D.concat_sets([train.subset(train.labelled(3)), val.subset(val.labelled(3))])
    xp = D.load_xp("val", XP_LABELS, data_root=root)
    xp = xp.subset(xp.labelled(3))
    qb = emb.embed_arrays(xp.survey, xp.flux, xp.weight, xp.scale)
    pb = emb.embed_arrays(pool.survey, pool.flux, pool.weight, pool.scale)
    qp = np.stack([qb.params[n] for n in COMMON_LABELS], 1)
    pp = np.stack([pb.params[n] for n in COMMON_LABELS], 1)
    rows = {"search": cross_neighbours(qb, pb, settings), "shared_space_only":
            M.top_k(qb.shared, pb.shared, K), "predicted_label_baseline":
            M.label_neighbours(qp, pp, K)}
    out = {name: {n: round(v, 4) for n, v in scatter(nn, xp.labels, pool.labels).items()}
           for name, nn in rows.items()}
    return {**out, "n_queries": len(xp), "lamost_pool": len(pool)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from engine.bundle import DEFAULT_BUNDLE

    settings, report = fit(args.bundle)
    path = save_cross_rank(Path(args.bundle or DEFAULT_BUNDLE), settings, report)
    log.info("chose %s; written to %s", settings, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
