"""Issue 11's outlier checks for one bundle in about two minutes, the scoring as shipped beside
a variant of it: check a candidate bundle or a scoring change before the slow real-data tests.

`python -m benchmarks.anomaly_checks [--bundle DIR] [--data ../shared/data] [--out FILE]`

Everything is scored in numpy exactly as a full scoring pass would (`benchmarks/anomaly_teff.py:
survey_scores`), each survey on its own. For each combination it reports:
- the DR7 plate indexed with the DR8 repeats and the real pairs (`tests/indexer/
  test_real_anomalies.py`): galaxies, and galaxies + unknowns, in the LAMOST top 20;
- each injection of the oddity corpus (`benchmarks/oddities.py`): how many background spectra
  rank above it, against 1 % of the background (`tests/indexer/test_oddity_corpus.py`);
- the temperature checks on the XP validation background, the whole XP library and the LAMOST
  DR10 spectra: Spearman(anomaly, Teff) and the XP top 100's share below 4000 K.

The combinations: `shipped` is `indexer.scoring.combine` (every part's upper tail);
`features_two_sided` also counts `anomaly_features`' lower tail (features stronger than the
model makes), which is how the OOD score takes it (engine/reference.py). That variant exists
here only, to measure it; it is not an option of the indexer.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.anomaly_teff import library_scores, survey_scores, teff_checks
from benchmarks.oddities import lamost_corpus, xp_corpus
from engine import payload as P
from engine import readers
from engine.bundle import load_bundle
from engine.inference import Embedder
from indexer.scoring import combine, percentile_rank

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)
ODD_CLASSES = ("GALAXY", "Unknown")


def combine_features_two_sided(scores: dict[str, np.ndarray]) -> np.ndarray:
    """`combine` (full pass) with `anomaly_features` counted in both tails: -log(2 min(p,
    1 - p + 1/n)), the same floor 0.5/n per tail."""
    one = {k: v for k, v in scores.items() if k != P.ANOMALY_FEATURES}
    total = combine(one, None) if one else np.zeros(len(next(iter(scores.values()))))
    v = scores.get(P.ANOMALY_FEATURES)
    if v is not None:
        n = max(1, int(np.isfinite(v).sum()))
        p = np.nan_to_num(percentile_rank(v), nan=0.5)        # missing counts as typical
        total += -np.log(np.clip(2 * np.minimum(p, 1 - p + 1.0 / n), 1.0 / n, 1.0))
    return total


COMBINATIONS = {"shipped": lambda s: combine(s, None),
                "features_two_sided": combine_features_two_sided}


def dr7_set(embedder: Embedder, data: Path) -> tuple[list, dict[str, np.ndarray]]:
    files = [f for sub in ("lamost_dr7", "lamost_dr8_repeats", "pairs_lamost_xp")
             for f in sorted(glob.glob(str(data / sub / "**" / "*.fits*"), recursive=True))]
    records, refused = readers.read_many(files)
    log.info("DR7 set: %d spectra read, %d files refused", len(records), len(refused))
    kept, _, scores = survey_scores(embedder, [r for r in records if r.survey == "lamost"],
                                    "lamost")
    return kept, scores


def dr7_counts(kept: list, anomaly: np.ndarray, data: Path) -> dict:
    top = set(np.argsort(-anomaly)[:20].tolist())
    dr7 = [i for i, r in enumerate(kept) if r.source_path.startswith(str(data / "lamost_dr7"))]
    galaxies = [i for i in dr7 if kept[i].obj_class == "GALAXY"]
    odd = [i for i in dr7 if kept[i].obj_class in ODD_CLASSES]
    return {"galaxies_top20": sum(i in top for i in galaxies), "galaxies": len(galaxies),
            "odd_top20": sum(i in top for i in odd), "odd": len(odd)}


def corpus_set(embedder: Embedder, survey: str, data: Path
               ) -> tuple[np.ndarray, list[str | None], dict[str, np.ndarray]]:
    """(background Teff, injection name or None per spectrum, scores)."""
    background, injections = lamost_corpus(data) if survey == "lamost" else xp_corpus()
    names = {r.object_id: k for k, r in injections.items()}
    kept, _, scores = survey_scores(embedder, background + list(injections.values()), survey)
    teff = np.array([r.labels.get("teff", np.nan) for r in kept], float)
    return teff, [names.get(r.object_id) for r in kept], scores


def corpus_ranks(anomaly: np.ndarray, names: list[str | None]) -> dict:
    inj = np.array([n is not None for n in names])
    bg = anomaly[~inj]
    above = {names[i]: int((bg > anomaly[i]).sum()) for i in np.where(inj)[0]}
    return {"background": int(len(bg)), "limit_1pct": 0.01 * len(bg), "above": above,
            "all_in_top_1pct": all(v < 0.01 * len(bg) for v in above.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=None, help="write the JSON here as well")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: no such folder (the shared real data)")
    embedder = Embedder(load_bundle(args.bundle) if args.bundle else load_bundle())
    dr7_kept, dr7_scores = dr7_set(embedder, data)
    corpora = {s: corpus_set(embedder, s, data) for s in ("lamost", "gaia_xp")}
    library = library_scores(embedder, data)
    result = {"bundle_version": embedder.version}
    for name, fn in COMBINATIONS.items():
        out = {"dr7": dr7_counts(dr7_kept, fn(dr7_scores), data)}
        for survey, (teff, names, scores) in corpora.items():
            anomaly = fn(scores)
            out[f"corpus_{survey}"] = corpus_ranks(anomaly, names)
            if survey == "gaia_xp":
                bg = np.array([n is None for n in names])
                out["xp_validation_teff"] = teff_checks(anomaly[bg], teff[bg], survey)
        for survey, (_, scores, teff) in library.items():
            out[f"library_{survey}_teff"] = teff_checks(fn(scores), teff, survey)
        result[name] = out
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
