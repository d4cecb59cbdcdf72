"""Two bundles' parameters on one survey's validation split (LAMOST: crc32(obsid) % 10 ==
1; Gaia XP library: crc32(apogee_id) % 10 == 1), side by side, with paired 95 % intervals of
the difference (training/bootstrap.py). For ship decisions between a shipped bundle and a
candidate: it reads validation only, never a test split.

    python -m benchmarks.compare_validation OLD_BUNDLE NEW_BUNDLE [--survey gaia_xp]
        [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.models.specclip import LAMOST_LABELS, XP_LABELS
from engine.records import SURVEY_LAMOST, SURVEY_XP
from training import data as D
from training.bootstrap import paired_sigma_difference
from training.metrics import robust_sigma

log = logging.getLogger(__name__)


def validation_set(survey: str, data_root=None) -> tuple[D.SpectraSet, tuple[str, ...], str]:
    root = data_root or D.default_data_root()
    if survey == SURVEY_LAMOST:
        _, val, _ = D.load_lamost_split(root, LAMOST_LABELS)
        return val, LAMOST_LABELS, "LAMOST validation (crc32(obsid) % 10 == 1)"
    return (D.load_xp("val", XP_LABELS, data_root=root), XP_LABELS,
            "Gaia XP library validation (crc32(apogee_id) % 10 == 1)")


def compare(old_dir: str, new_dir: str, survey: str = SURVEY_LAMOST, data_root=None) -> dict:
    """{label: {old, new, ci95 of new - old, n, coverage_1sigma}} on `survey`'s validation
    split."""
    val, labels, split = validation_set(survey, data_root)
    params = {}
    for key, path in (("old", old_dir), ("new", new_dir)):
        bundle = load_bundle(path)
        out = Embedder(bundle).embed_arrays(survey, val.flux, val.weight, val.scale)
        params[key] = {k: np.asarray(out.params[k], float) for k in labels}
        params[key + "_sigma"] = {k: np.asarray(out.sigmas[k], float) for k in labels}
        params[key + "_version"] = bundle.version
    report: dict = {"split": split, "old": params["old_version"], "new": params["new_version"]}
    for j, k in enumerate(labels):
        truth = val.labels[:, j]
        e_new, e_old = params["new"][k] - truth, params["old"][k] - truth
        diff = paired_sigma_difference(e_new, e_old)
        report[k] = {"old": round(robust_sigma(e_old), 4), "new": round(robust_sigma(e_new), 4),
                     "ci95_new_minus_old": [round(x, 4) for x in diff["ci95"]],
                     "n": int(np.isfinite(e_new).sum()),
                     # share within 1 sigma (Gaussian 0.683): the sigmas' calibration
                     "coverage_1sigma": {
                         key: round(float(np.mean(np.abs(e[np.isfinite(e)]) <= params[
                             key + "_sigma"][k][np.isfinite(e)])), 3)
                         for key, e in (("old", e_old), ("new", e_new))}}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="bundle folder (e.g. engine/bundles/small)")
    p.add_argument("new", help="candidate bundle folder")
    p.add_argument("--survey", choices=(SURVEY_LAMOST, SURVEY_XP), default=SURVEY_LAMOST,
                   help="whose validation split and parameters (default lamost)")
    p.add_argument("--out", default=None, help="also write the report to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = compare(args.old, args.new, args.survey)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
