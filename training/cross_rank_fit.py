"""Choose the cross-instrument ranking settings (engine/cross_rank.py) on the validation split
and write them into a bundle's cross_rank.json.

    python -m training.cross_rank_fit --bundle engine/bundles/small

Queries: the LAMOST validation stars with Teff, logg and [Fe/H] (crc32(obsid) % 10 == 1);
pool: the Gaia XP library's train + validation stars (the test split is not read). For each
setting of the grid the robust sigma of (query label - neighbour label) over the top 10 is
measured; the setting with the lowest mean ratio to the predicted-label baseline (neighbours
nearest in the model's predicted labels, as in `specclip evaluate`) over Teff, logg and
[Fe/H] is kept. The other direction is chosen the same way on its own queries (Gaia XP
validation stars with 3 labels searched among the labelled LAMOST train + validation
spectra) and written as `to_lamost`. The grids, the baselines and the shared-space-only
rankings are written beside them.
"""

from __future__ import annotations

import argparse
import itertools
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
SIGMA_WEIGHTS = (1.0, 0.0)   # the candidates' own sigmas counted, or left out


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
    idx, _ = order(q_lab, p_lab[cand], p_sig[cand], cos[cand], settings.cosine_weight,
                   settings.sigma_weight)
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


def choose(qb: EmbeddingBatch, q_labels: np.ndarray, pb: EmbeddingBatch,
           pool_labels: np.ndarray) -> tuple[CrossRank, dict]:
    """The grid setting of lowest mean ratio of top-10 scatter to the predicted-label
    baseline, with the baseline, the shared-space-only ranking and the whole grid."""
    qp = np.stack([qb.params[n] for n in COMMON_LABELS], 1)
    pp = np.stack([pb.params[n] for n in COMMON_LABELS], 1)
    baseline = scatter(M.label_neighbours(qp, pp, K), q_labels, pool_labels)
    shared = scatter(M.top_k(qb.shared, pb.shared, K), q_labels, pool_labels)
    grid, best = {}, (np.inf, CrossRank(), {})
    for m, w, sw in itertools.product(CANDIDATES, COSINE_WEIGHTS, SIGMA_WEIGHTS):
        s = CrossRank(candidates=m, cosine_weight=w, sigma_weight=sw)
        sc = scatter(cross_neighbours(qb, pb, s), q_labels, pool_labels)
        ratio = float(np.mean([sc[n] / baseline[n] for n in COMMON_LABELS]))
        key = f"candidates={m},cosine_weight={w:g}" + ("" if sw == 1 else
                                                         f",sigma_weight={sw:g}")
        grid[key] = {**{n: round(v, 4) for n, v in sc.items()},
                     "mean_ratio_to_baseline": round(ratio, 4)}
        log.info("cross rank %s -> %s: %s", qb.survey, pb.survey, grid[key])
        if ratio < best[0]:
            best = (ratio, s, sc)
    return best[1], {"search": {n: round(v, 4) for n, v in best[2].items()},
                     "predicted_label_baseline": {n: round(v, 4) for n, v in baseline.items()},
                     "shared_space_only": {n: round(v, 4) for n, v in shared.items()},
                     "grid": grid}


def fit(bundle: str | None) -> tuple[CrossRank, CrossRank, dict]:
    """(settings towards Gaia XP, settings towards LAMOST, report), each direction chosen on
    its own validation queries."""
    root = D.default_data_root()
    emb = Embedder(bundle)
    train, lam_val, _ = D.load_lamost_split(root, LAMOST_LABELS)
    lam = lam_val.subset(lam_val.labelled(3))
    xp_pool = D.concat_sets([D.load_xp("train", XP_LABELS, data_root=root),
                             D.load_xp("val", XP_LABELS, data_root=root)])
    lb = emb.embed_arrays(lam.survey, lam.flux, lam.weight, lam.scale)
    xpb = emb.embed_arrays(xp_pool.survey, xp_pool.flux, xp_pool.weight, xp_pool.scale)
    to_xp, rep = choose(lb, lam.labels, xpb, xp_pool.labels)
    # towards LAMOST: XP validation stars with 3 labels among the labelled LAMOST train +
    # validation spectra
    lam_pool = D.concat_sets([train.subset(train.labelled(3)), lam])
    xp = D.load_xp("val", XP_LABELS, data_root=root)
    xp = xp.subset(xp.labelled(3))
    to_lamost, back = choose(emb.embed_arrays(xp.survey, xp.flux, xp.weight, xp.scale),
                             xp.labels, emb.embed_arrays(lam_pool.survey, lam_pool.flux,
                                                         lam_pool.weight, lam_pool.scale),
                             lam_pool.labels)
    report = {"chosen_on": "each direction on its own validation queries: LAMOST validation "
                           "stars with 3 labels (crc32(obsid) % 10 == 1) searched among the "
                           "XP train + validation stars (these settings), and Gaia XP "
                           "validation stars with 3 labels searched among the labelled "
                           "LAMOST train + validation spectra (to_lamost); lowest mean ratio "
                           "of top-10 robust sigma to the predicted-label baseline",
              "n_queries": len(lam), "xp_pool": len(xp_pool), "k": K,
              "validation_predicted_label_baseline": rep["predicted_label_baseline"],
              "validation_shared_space_only": rep["shared_space_only"],
              "validation_grid": rep["grid"],
              "validation_xp_to_lamost": {**{k: back[k] for k in (
                  "search", "shared_space_only", "predicted_label_baseline")},
                  "n_queries": len(xp), "lamost_pool": len(lam_pool),
                  "grid": back["grid"]}}
    return to_xp, to_lamost, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from engine.bundle import DEFAULT_BUNDLE

    to_xp, to_lamost, report = fit(args.bundle)
    path = save_cross_rank(Path(args.bundle or DEFAULT_BUNDLE), to_xp, report, to_lamost)
    log.info("chose %s towards Gaia XP and %s towards LAMOST; written to %s", to_xp,
             to_lamost, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
