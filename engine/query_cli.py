"""`specclip query` and `specclip outliers`: the query API for scripts, JSON on stdout."""

from __future__ import annotations

import argparse
import dataclasses
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
    p = subparsers.add_parser(
        "query", help="spectra like a star's or a file's, or every spectrum at a sky position",
        description="Two kinds of query. --obsid, --source-id or --file: the spectra most like "
                    "that spectrum (nearest neighbours in embedding space). --ra/--dec: a cone "
                    "search, every indexed spectrum of either instrument within --radius "
                    "arcsec of the position, nearest first, each hit with its separation_arcsec.")
    _add_store_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--obsid", help="LAMOST obsid")
    q.add_argument("--source-id", help="Gaia DR3/EDR3 source_id")
    q.add_argument("--file", help="a LAMOST FITS or Gaia XP file (first spectrum is used)")
    q.add_argument("--ra", type=float,
                   help="cone search: centre RA in degrees (ICRS); needs --dec")
    p.add_argument("--dec", type=float, help="cone search: centre Dec in degrees")
    p.add_argument("--radius", type=float, default=3.0,
                   help="cone search radius in arcsec (default 3)")
    p.add_argument("--target", choices=["lamost", "gaia_xp", "any"], default="any",
                   help="which instrument's spectra to return")
    p.add_argument("-k", type=int, default=None,
                   help="number of hits (default 10; a cone search returns every spectrum in "
                        "the cone unless -k is given)")
    p.add_argument("--space", choices=["auto", "spectrum", "own", "shared"], default="auto",
                   help="auto: spectrum PCA within one instrument, shared CLIP space across "
                        "(similarity searches only)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE",
                   help="payload filter, e.g. label_teff=4000:6000 or obj_class=STAR")
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
        fields = [f.strip() for f in args.fields.split(",") if f.strip()] \
            if args.fields else None
        if args.ra is not None:
            hits = _cone(engine, args, filters, fields)
        else:
            if args.dec is not None:
                raise SpecClipError("--dec goes with --ra (a cone search)")
            if args.file:
                query = readers.read(args.file)[0]
            elif args.obsid:
                query = ("obsid", args.obsid)
            else:
                query = ("source_id", args.source_id)
            hits = engine.search(query, target=args.target, k=10 if args.k is None else args.k,
                                 filters=filters, space=args.space, payload_keys=fields)
        json.dump([h.to_dict() for h in hits], sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    except (SpecClipError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    finally:
        engine.close()


def _cone(engine, args: argparse.Namespace, filters: dict, fields: list[str] | None) -> list:
    """Every spectrum within --radius arcsec of (--ra, --dec): a position search."""
    if args.dec is None:
        raise SpecClipError("--ra needs --dec")
    if args.space != "auto":
        raise SpecClipError("--space applies to similarity searches, not to a cone search")
    hits = engine.cone_search(args.ra, args.dec, args.radius,
                              survey=None if args.target == "any" else args.target, k=args.k,
                              filters=filters)
    if fields is not None:
        keep = {P.SURVEY, P.OBJECT_ID, P.RA, P.DEC, *fields}
        hits = [dataclasses.replace(h, payload={k: v for k, v in h.payload.items() if k in keep})
                for h in hits]
    return hits


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
