"""`specclip train` and `specclip evaluate` (registered through entry points, see pyproject)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from engine.cli_args import positive_int

log = logging.getLogger(__name__)


def _add_log_file(path: str | None) -> None:
    if path:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.run_jobs import planned_jobs
    from training.train import train

    _add_log_file(args.log)
    cfg = load_config(args.config)
    if args.workers > 1 and len(planned_jobs(cfg)) == 1:
        raise ValueError(f"--workers {args.workers}: config {cfg.name!r} trains a single run, "
                         "so there is nothing to train side by side")
    version = train(cfg, args.out, data_root=args.data, pairs_csv=args.pairs,
                    checkpoints=args.checkpoints, workers=args.workers)
    print(f"bundle {version} written to {args.out}")
    return 0


def register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a SpecCLIP bundle (pretrain -> heads -> align; config "
                      "align.features says the order)",
        description="Train end to end on the shared data and write a bundle folder. "
                    "Reproduce the shipped one with `make bundle` (this command, then "
                    "fit-reference, the cross-rank fit and evaluate --into-bundle)")
    p.add_argument("--config", default="small", help="small, paper, or a JSON file")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    p.add_argument("--pairs", default=None,
                   help="real cross-match CSV (obsid, source_id) to add to label-matched pairs")
    p.add_argument("--checkpoints", default=None, help="folder for per-stage checkpoints")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="train N of a config's independent runs and paths at a time, each "
                        "in its own process (the same networks as one at a time; with "
                        "train.threads 1, use up to the number of cores). Default 1")
    p.add_argument("--log", default=None, help="also log to this file")
    p.set_defaults(func=_train)


def _evaluate(args: argparse.Namespace) -> int:
    from engine.bundle import DEFAULT_BUNDLE
    from training.evaluate import evaluate

    _add_log_file(args.log)
    metrics = evaluate(args.bundle, args.lamost, args.lamost_labels, args.out,
                       data_root=args.data, all_lamost=args.all_lamost, plots=not args.no_plots)
    if args.into_bundle:
        from training.card import write_card

        bundle = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
        shutil.copyfile(args.out, bundle / "metrics.json")
        write_card(bundle)  # the card's numbers come from these metrics
    keys = ("lamost_params", "xp_params")
    print(json.dumps({k: metrics[k] for k in keys}, indent=1))
    return 0


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a bundle on real LAMOST/XP data against an in-run baseline")
    p.add_argument("--bundle", default=None, help="bundle folder (default: the shipped small)")
    p.add_argument("--lamost", required=True, help="folder of LAMOST LRS FITS files")
    p.add_argument("--lamost-labels", required=True,
                   help="labels CSV like lamost_dr10/labels.csv (obsid, filename, teff, ...)")
    p.add_argument("--out", required=True, help="metrics JSON to write (plots beside it)")
    p.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    p.add_argument("--all-lamost", action="store_true",
                   help="score every LAMOST spectrum, not only the obsid-hash test split "
                        "(the baseline is then fitted without the scored rows)")
    p.add_argument("--into-bundle", action="store_true",
                   help="also copy the metrics into the bundle's metrics.json and "
                        "regenerate its card from them")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--log", default=None, help="also log to this file")
    p.set_defaults(func=_evaluate)


def register_fit_reference(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit-reference", help="fit a bundle's scoring reference (anomaly percentiles, OOD)",
        description="Embed the bundle's training stars (never the test splits), keep a "
                    "reference part and score a validation part against it: writes "
                    "reference.safetensors + reference.json into the bundle. Re-run after "
                    "every new bundle; then `specclip rescore` existing stores.")
    p.add_argument("--bundle", help="bundle folder (default: the shipped small model)")
    p.add_argument("--data", help="shared data folder (default ../shared/data)")
    p.set_defaults(func=run_fit_reference)


def run_fit_reference(args: argparse.Namespace) -> int:
    from training.reference_fit import fit_reference

    ref = fit_reference(args.bundle, args.data)
    print(json.dumps({"bundle_version": ref.bundle_version,
                      **{s: {"ood_threshold": r.ood_threshold, "n_reference": len(r.shared)}
                         for s, r in ref.surveys.items()}}))
    return 0
