"""`specclip query` and `specclip outliers`: the query API for scripts, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from engine import payload as P
from engine.collection import DEFAULT_ALIAS
from engine.errors import SpecClipError


def _add_store_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="embedded store folder (Qdrant Edge)")
    where.add_argument("--url", help="Qdrant server/cluster URL (API key from QDRANT_API_KEY)")
    p.add_argument("--bundle", help="model bundle (default: the shipped small model)")
    p.add_argument("--collection", default=DEFAULT_ALIAS)
    p.add_argument("--json", action="store_true", help="print JSON (the default for scripts)")


def register_query(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("query", help="nearest neighbours of a star, a file or a position")
    _add_store_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--obsid", help="LAMOST obsid")
    q.add_argument("--source-id", help="Gaia DR3/EDR3 source_id")
    q.add_argument("--file", help="a LAMOST FITS or Gaia XP file (first spectrum is used)")
    q.add_argument("--ra", type=float, help="cone search centre RA (deg); needs --dec")
    p.add_argument("--dec", type=float)
    p.add_argument("--radius", type=float, default=2.0 / 3600, help="cone radius (deg)")
    p.add_argument("--target", choices=["lamost", "gaia_xp", "any"], default="any")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--space", choices=["auto", "spectrum", "own", "shared"], default="auto",
                   help="auto: spectrum PCA within one instrument, shared CLIP space across")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE",
                   help="payload filter, e.g. label_teff=4000:6000 or obj_class=STAR")
    p.add_argument("--quality-cut", choices=["auto", "on", "off"], default="auto",
                   help="leave out spectra flagged low_quality (low SNR or mostly masked; "
                        "noisy spectra crowd cross-instrument results). auto: only among the "
                        "other instrument's hits")
    p.add_argument("--grouped", action="store_true",
                   help="with --target any: {\"lamost\": [...], \"gaia_xp\": [...]}, each "
                        "instrument searched in its own space, instead of one interleaved list")
    p.add_argument("--with-query", action="store_true",
                   help="print {\"query\": flags, \"hits\": [...]}; flags: ood, "
                        "low_quality and their reasons for the query spectrum")
    p.add_argument("--fields", metavar="KEY,KEY,...",
                   help="payload fields to return per hit (default: all); survey and "
                        "object_id are always there")
    p.set_defaults(func=run_query)


def register_outliers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("outliers", help="the most anomalous spectra of a survey")
    _add_store_args(p)
    p.add_argument("--survey", choices=["lamost", "gaia_xp", "any"], default="lamost")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--score", choices=list(P.ANOMALY_SCORES), default=P.ANOMALY)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE")
    p.set_defaults(func=run_outliers)


def parse_filters(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        if ":" in value:
            lo, hi = value.split(":", 1)
            out[key] = (float(lo) if lo else None, float(hi) if hi else None)
        else:
            out[key] = value
    return out


def _open(args):
    from engine.query import Engine

    return Engine.open(store_path=args.store, url=args.url, bundle_path=args.bundle,
                       collection=args.collection)


def run_query(args: argparse.Namespace) -> int:
    from engine import readers

    engine = _open(args)
    try:
        filters = parse_filters(args.filter)
        if args.ra is not None:
            if args.dec is None:
                raise SpecClipError("--ra needs --dec")
            found = engine.cone(args.ra, args.dec, args.radius, k=1,
                                survey=None if args.target == "any" else None)
            if not found:
                raise SpecClipError(f"nothing indexed within {args.radius} deg of "
                                    f"({args.ra}, {args.dec})")
            query = found[0].id
        elif args.file:
            query = readers.read(args.file)[0]
        elif args.obsid:
            query = ("obsid", args.obsid)
        else:
            query = ("source_id", args.source_id)
        fields = [f.strip() for f in args.fields.split(",") if f.strip()] \
            if args.fields else None
        cut = {"auto": None, "on": True, "off": False}[args.quality_cut]
        if args.grouped:
            if args.target != "any":
                raise SpecClipError("--grouped needs --target any")
            groups = engine.search_by_instrument(query, k=args.k, filters=filters,
                                                 payload_keys=fields, quality_cut=cut)
            out: object = {s: [h.to_dict() for h in hs] for s, hs in groups.items()}
        else:
            hits = engine.search(query, target=args.target, k=args.k, filters=filters,
                                 space=args.space, payload_keys=fields, quality_cut=cut)
            out = [h.to_dict() for h in hits]
        if args.with_query:
            out = {"query": engine.flags(query), "hits": out}
        json.dump(out, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    except (SpecClipError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    finally:
        engine.close()


def run_outliers(args: argparse.Namespace) -> int:
    engine = _open(args)
    try:
        hits = engine.outliers(None if args.survey == "any" else args.survey, k=args.k,
                               filters=parse_filters(args.filter), score=args.score)
        json.dump([h.to_dict() for h in hits], sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    finally:
        engine.close()
