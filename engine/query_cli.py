"""`specclip query` and `specclip outliers`: the query API for scripts, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from engine import payload as P
from engine.collection import DEFAULT_ALIAS
from engine.cli_args import (declination, field_list, field_name, finite_float, positive_float,
                             positive_int, store_name)
from engine.errors import SpecClipError

CONE_RADIUS_DEG = 2.0 / 3600


def _add_store_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="embedded store folder (Qdrant Edge)")
    where.add_argument("--url", help="Qdrant server/cluster URL (API key from QDRANT_API_KEY)")
    p.add_argument("--bundle", help="model bundle (default: the shipped small model)")
    p.add_argument("--collection", default=DEFAULT_ALIAS, type=store_name,
                   help="collection or alias to query (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON (the default for scripts)")


def register_query(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("query", help="nearest neighbours of a star, a file or a position")
    _add_store_args(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--obsid", help="LAMOST obsid")
    q.add_argument("--source-id", help="Gaia DR3/EDR3 source_id")
    q.add_argument("--file", help="a LAMOST FITS or Gaia XP file (first spectrum is used)")
    q.add_argument("--ra", type=finite_float, help="cone search centre RA (deg); needs --dec")
    p.add_argument("--dec", type=declination, help="cone search centre Dec (deg); with --ra")
    p.add_argument("--radius", type=positive_float, default=None,
                   help="cone radius (deg; default 2 arcsec); with --ra")
    p.add_argument("--target", choices=["lamost", "gaia_xp", "any"], default="any")
    p.add_argument("-k", type=positive_int, default=10)
    p.add_argument("--space", choices=["auto", "spectrum", "own", "shared"], default="auto",
                   help="auto: spectrum PCA within one instrument, shared CLIP space across")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE",
                   help="payload filter, e.g. label_teff=4000:6000 or obj_class=STAR")
    p.add_argument("--fields", metavar="KEY,KEY,...", type=field_list,
                   help="payload fields to return per hit (default: all); survey and "
                        "object_id are always there")
    p.set_defaults(func=run_query)


def register_outliers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("outliers", help="the most anomalous spectra of a survey")
    _add_store_args(p)
    p.add_argument("--survey", choices=["lamost", "gaia_xp", "any"], default="lamost")
    p.add_argument("-k", type=positive_int, default=20)
    p.add_argument("--score", choices=list(P.ANOMALY_SCORES), default=P.ANOMALY)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE")
    p.set_defaults(func=run_outliers)


def parse_filters(items: list[str]) -> dict:
    """KEY=LO:HI (either end may be empty) or KEY=VALUE; ends must be finite numbers."""
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            field_name(key)
        except argparse.ArgumentTypeError:
            raise SpecClipError(f"--filter {item!r}: expected KEY=LO:HI or KEY=VALUE with a "
                                "payload field as KEY (e.g. label_teff=4000:6000)") from None
        if not eq:
            raise SpecClipError(f"--filter {item!r}: no '=' (KEY=LO:HI or KEY=VALUE)")
        if ":" in value:
            lo, hi = value.split(":", 1)
            try:
                out[key] = (finite_float(lo) if lo else None, finite_float(hi) if hi else None)
            except argparse.ArgumentTypeError as e:
                raise SpecClipError(f"--filter {item!r}: {e}") from None
        else:
            out[key] = value
    return out


def _open(args):
    from engine.query import Engine

    return Engine.open(store_path=args.store, url=args.url, bundle_path=args.bundle,
                       collection=args.collection)


def _check_cone_args(args: argparse.Namespace) -> None:
    if args.ra is None and (args.dec is not None or args.radius is not None):
        raise SpecClipError("--dec and --radius go with --ra (a cone search)")
    if args.ra is not None and args.dec is None:
        raise SpecClipError("--ra needs --dec")
    if args.radius is None:
        args.radius = CONE_RADIUS_DEG


def _check_bundle(engine, args: argparse.Namespace) -> None:
    """A --bundle named with a lookup by id would otherwise go unused: check that it is the
    model the index was built with."""
    if args.bundle:
        engine.check_model_matches_index()


def run_query(args: argparse.Namespace) -> int:
    from engine import readers

    _check_cone_args(args)
    engine = _open(args)
    try:
        _check_bundle(engine, args)
        filters = parse_filters(args.filter)
        if args.ra is not None:
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
        hits = engine.search(query, target=args.target, k=args.k, filters=filters,
                             space=args.space, payload_keys=args.fields)
        json.dump([h.to_dict() for h in hits], sys.stdout, indent=1, default=str)
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
        _check_bundle(engine, args)
        hits = engine.outliers(None if args.survey == "any" else args.survey, k=args.k,
                               filters=parse_filters(args.filter), score=args.score)
        json.dump([h.to_dict() for h in hits], sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    finally:
        engine.close()
