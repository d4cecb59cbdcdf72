"""`specclip query` and `specclip outliers`: a readable table on a terminal; JSON (a list of
hits with survey, object_id, score and payload) with --json or whenever stdout is not a
terminal, so scripts that pipe the output keep working."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from engine import hit_table
from engine import payload as P
from engine.collection import DEFAULT_ALIAS
from engine.cli_args import (declination, field_list, field_name, finite_float,
                             non_negative_float, positive_float, positive_int, store_name)
from engine.errors import SpecClipError
from engine.query import read_spectra
from engine.records import SpectrumRecord

CONE_RADIUS_ARCSEC = 3.0


def _add_store_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="embedded store folder (Qdrant Edge)")
    where.add_argument("--url", help="Qdrant server/cluster URL (API key from QDRANT_API_KEY)")
    p.add_argument("--bundle", help="model bundle (default: the shipped small model)")
    p.add_argument("--collection", default=DEFAULT_ALIAS, type=store_name,
                   help="collection or alias to query (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of a table (the default when stdout is piped)")


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
FILTER_HELP = ("payload filter, repeatable (all must hold): a range for numbers "
               "(label_teff=4000:6000, snr=30:), true/false for flags (low_quality=false, "
               "ood=true), text for the others (obj_class=STAR)")


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
    q.add_argument("--file", help="a spectrum file: LAMOST, Gaia XP, SDSS, or a generic "
                                  "table/image (first spectrum is used)")
    q.add_argument("--ra", type=finite_float,
                   help="cone search: centre RA in degrees (ICRS); needs --dec")
    add_reader_args(p)
    p.add_argument("--dec", type=declination, help="cone search: centre Dec in degrees")
    p.add_argument("--radius", type=positive_float, default=None,
                   help=f"cone search radius in arcsec (default {CONE_RADIUS_ARCSEC:g})")
    p.add_argument("--target", choices=["lamost", "gaia_xp", "any"], default="any",
                   help="which instrument's spectra to return (default any: both, a table "
                        "per instrument on a terminal; --grouped keeps them apart in JSON)")
    p.add_argument("-k", type=positive_int, default=None,
                   help="number of hits (default 10; a cone search returns every spectrum in "
                        "the cone unless -k is given)")
    p.add_argument("--space", choices=["auto", "spectrum", "own", "shared"], default="auto",
                   help="auto: spectrum PCA within one instrument, shared CLIP space across "
                        "(similarity searches only)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE",
                   help=FILTER_HELP)
    p.add_argument("--quality-cut", choices=["auto", "on", "off"], default="auto",
                   help="leave out spectra flagged low_quality (low SNR or mostly masked; "
                        "noisy spectra crowd cross-instrument results). auto: only among the "
                        "other instrument's hits")
    p.add_argument("--cross-rank", choices=["on", "off"], default="on",
                   help="on: the other instrument's hits are its nearest in the shared space "
                        "re-ordered by the model's predicted Teff, logg, [Fe/H] (and their "
                        "sigmas, in the direction where validation chose that; each hit gets "
                        "rank_distance; README \"Cross-instrument ranking\"); off: "
                        "shared-space order")
    p.add_argument("--sigma-weight", type=non_negative_float, default=None, metavar="W",
                   help="with --cross-rank on: weight of the other instrument's hits' own "
                        "parameter sigmas in their ranking (0: not counted; 1: a hit the model "
                        "is unsure of counts as farther away, pushing noisy spectra down). "
                        "Default: the bundle's setting, chosen on validation per direction")
    p.add_argument("--grouped", action="store_true",
                   help="with --target any: {\"lamost\": [...], \"gaia_xp\": [...]}, each "
                        "instrument searched in its own space, instead of one interleaved list")
    p.add_argument("--with-query", action="store_true",
                   help="JSON: an object {query: {survey, object_id, predicted: {name: "
                        "[value, sigma]}, ood, low_quality and their reasons}, hits: [...]} "
                        "instead of the bare list of hits")
    p.add_argument("--fields", metavar="KEY,KEY,...", type=field_list,
                   help="payload fields to return per hit (default: all); survey and "
                        "object_id are always there")
    p.set_defaults(func=run_query)


def add_reader_args(p: argparse.ArgumentParser) -> None:
    """--format and the generic readers' options (engine/readers/generic.py)."""
    # Reader names are not listed as argparse choices: that would import the readers (and
    # astropy) for every specclip command. An unknown name is refused with the known ones.
    p.add_argument("--format", metavar="NAME",
                   help="reader to use instead of detection (lamost-lrs, sdss-spec, "
                        "text-table, fits-table, fits-wcs-1d, fits-rows, gaia-xp-...)")
    p.add_argument("--wavelength-unit", metavar="UNIT",
                   help="generic readers: wavelength unit when the file does not say "
                        "(Angstrom, nm, um)")
    p.add_argument("--medium", choices=["air", "vacuum"],
                   help="generic readers: air or vacuum wavelengths when the file does not say")
    p.add_argument("--uncertainty", choices=["ivar", "error"],
                   help="generic readers: what an unnamed third column/row holds")


def reader_options(args: argparse.Namespace) -> dict:
    """The generic readers' options given on the command line (None = not given)."""
    return {"unit": args.wavelength_unit, "medium": args.medium,
            "uncertainty": args.uncertainty}


def register_outliers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "outliers", help="the most anomalous spectra of a survey",
        description="The spectra of highest anomaly score, most anomalous first (README "
                    "'Outliers'). Low-quality spectra carry a flag, not a high score; "
                    "--filter low_quality=false leaves them out.")
    _add_store_args(p)
    p.add_argument("--survey", choices=["lamost", "gaia_xp", "any"], default="lamost",
                   help="whose spectra (default lamost)")
    p.add_argument("-k", type=positive_int, default=20, help="how many (default 20)")
    p.add_argument("--score", choices=list(P.ANOMALY_SCORES), default=P.ANOMALY,
                   help="order by this score (default anomaly, the combination of the "
                        "survey's own scores; anomaly_redshift is LAMOST's only, "
                        "anomaly_peak Gaia XP's, anomaly_translation only stars with both "
                        "spectra)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=LO:HI|VALUE",
                   help=FILTER_HELP)
    p.set_defaults(func=run_outliers)


def parse_filters(items: list[str]) -> dict:
    """KEY=LO:HI (either end may be empty) or KEY=VALUE, KEY a payload field with a payload
    index (engine/payload.py PAYLOAD_INDEXES) or one of UNINDEXED_FILTER_FIELDS (sigmas,
    redshift, OOD and neighbour distances: scanned, so slow on large stores). Values take
    the field's type: true/false (also 1/0, yes/no) for flags such as `ood` and
    `low_quality`, an integer for `gaia_source_id`, a range LO:HI for a number field (its
    ends finite and in order), text for the others."""
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
        kind = P.PAYLOAD_INDEXES.get(key) or P.UNINDEXED_FILTER_FIELDS.get(key)
        if kind is None or kind == "geo":
            known = ", ".join(k for k, t in {**P.PAYLOAD_INDEXES,
                                             **P.UNINDEXED_FILTER_FIELDS}.items() if t != "geo")
            raise SpecClipError(f"--filter {item!r}: {key!r} is not a filterable field "
                                f"(one of: {known}; sky positions: --ra/--dec/--radius)")
        if ":" in value and kind in ("float", "integer"):     # text may hold ':' itself
            lo, hi = value.split(":", 1)
            try:
                ends = (finite_float(lo) if lo else None, finite_float(hi) if hi else None)
            except argparse.ArgumentTypeError as e:
                raise SpecClipError(f"--filter {item!r}: {e}") from None
            if None not in ends and ends[0] > ends[1]:
                raise SpecClipError(f"--filter {item!r}: the low end is above the high end")
            out[key] = ends
        elif kind == "bool":
            if value.lower() not in _TRUE + _FALSE:
                raise SpecClipError(f"--filter {item!r}: {key} is true or false")
            out[key] = value.lower() in _TRUE
        elif kind == "float":
            raise SpecClipError(f"--filter {item!r}: {key} takes a range LO:HI (either end "
                                f"may be empty, e.g. {key}={value}:)")
        elif kind == "integer":
            try:
                out[key] = int(value)
            except ValueError:
                raise SpecClipError(f"--filter {item!r}: {key} takes an integer") from None
        else:
            out[key] = value
    return out


def _open(args):
    from engine.query import Engine

    return Engine.open(store_path=args.store, url=args.url, bundle_path=args.bundle,
                       collection=args.collection)


def wants_json(args: argparse.Namespace, stream=None) -> bool:
    """JSON when asked, or when the output goes to a pipe or a file (scripts)."""
    stream = sys.stdout if stream is None else stream
    return bool(args.json) or not stream.isatty()


def _query_summary(engine, query) -> dict:
    """The query's identity, its own predicted parameters and its flags (ood, low_quality
    and their reasons), all of the one spectrum the parameters come from (for a Gaia
    source with both spectra: the one `engine.flags` and `query_parameters` pick)."""
    flags = engine.flags(query)
    if isinstance(query, SpectrumRecord):
        survey, object_id = query.survey, query.object_id
    else:
        hit = engine.points([flags["id"]])[0]
        survey, object_id = hit.survey, hit.object_id
    return {"survey": survey, "object_id": object_id,
            "predicted": {k: list(v) for k, v in engine.query_parameters(query).items()},
            **flags}


def _print_hits(args, hits, summary: dict | None, score_name: str = "similarity") -> None:
    if wants_json(args):
        items = [h.to_dict() for h in hits]
        out = {"query": summary, "hits": items} if summary is not None else items
        json.dump(out, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return
    if summary is not None:
        name = hit_table.SURVEY_NAMES.get(summary["survey"], summary["survey"])
        params = {k: tuple(v) for k, v in summary["predicted"].items()}
        print(f"query: {name} {summary['object_id']}  predicted "
              f"{hit_table.parameters_line(params)}")
        for line in hit_table.flags_lines(summary):
            print(line)
    print(hit_table.grouped_tables(hits, score_name))


def _check_cone_args(args: argparse.Namespace) -> None:
    if args.ra is None and (args.dec is not None or args.radius is not None):
        raise SpecClipError("--dec and --radius go with --ra (a cone search)")
    if args.ra is not None and args.dec is None:
        raise SpecClipError("--ra needs --dec")
    if args.radius is None:
        args.radius = CONE_RADIUS_ARCSEC


def _check_bundle(engine, args: argparse.Namespace) -> None:
    """A --bundle named with a lookup by id would otherwise go unused: check that it is the
    model the index was built with."""
    if args.bundle:
        engine.check_model_matches_index()


def run_query(args: argparse.Namespace) -> int:
    given = [flag for flag, value in (("--format", args.format),
                                      ("--wavelength-unit", args.wavelength_unit),
                                      ("--medium", args.medium),
                                      ("--uncertainty", args.uncertainty)) if value]
    if given and not args.file:
        verb = "applies" if len(given) == 1 else "apply"
        raise SpecClipError(f"{', '.join(given)} {verb} only to --file")
    _check_cone_args(args)
    engine = _open(args)
    try:
        _check_bundle(engine, args)
        filters = parse_filters(args.filter)
        fields = args.fields
        if args.ra is not None:
            for flag, used in (("--grouped", args.grouped), ("--with-query", args.with_query),
                               ("--quality-cut", args.quality_cut != "auto"),
                               ("--cross-rank", args.cross_rank != "on"),
                               ("--sigma-weight", args.sigma_weight is not None)):
                if used:
                    raise SpecClipError(f"{flag} applies to similarity searches, not to a "
                                        "cone search")
            _print_hits(args, _cone(engine, args, filters, fields), None,
                        score_name="separation (arcsec)")
            return 0
        if args.file:
            query = read_spectra(args.file, format=args.format,
                                 options=reader_options(args))[0]
        elif args.obsid:
            query = ("obsid", args.obsid)
        else:
            query = ("source_id", args.source_id)
        k = 10 if args.k is None else args.k
        cut = {"auto": None, "on": True, "off": False}[args.quality_cut]
        cross = args.cross_rank == "on"
        groups = None
        if args.grouped:
            if args.target != "any":
                raise SpecClipError("--grouped needs --target any")
            groups = engine.search_by_instrument(query, k=k, filters=filters,
                                                 payload_keys=fields, quality_cut=cut,
                                                 cross_rank=cross,
                                                 sigma_weight=args.sigma_weight)
            hits = [h for hs in groups.values() for h in hs]
        else:
            hits = engine.search(query, target=args.target, k=k, filters=filters,
                                 space=args.space, payload_keys=fields, quality_cut=cut,
                                 cross_rank=cross, sigma_weight=args.sigma_weight)
        # the table always shows the query's predictions; JSON only when asked, so the
        # bare list that scripts read stays as it was
        summary = _query_summary(engine, query) \
            if args.with_query or not wants_json(args) else None
        if groups is not None and wants_json(args):
            out: object = {s: [h.to_dict() for h in hs] for s, hs in groups.items()}
            if args.with_query:
                out = {"query": summary, "hits": out}
            json.dump(out, sys.stdout, indent=1, default=str)
            sys.stdout.write("\n")
        else:
            _print_hits(args, hits, summary)
        return 0
    finally:   # errors reach engine/cli.py: one line, JSON with --json, -v's traceback
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
        _check_bundle(engine, args)
        only = {P.ANOMALY_REDSHIFT: "lamost", P.ANOMALY_PEAK: "gaia_xp"}.get(args.score)
        if only and args.survey not in (only, "any"):
            raise SpecClipError(f"--score {args.score} is scored for {only} spectra only, "
                                f"not {args.survey}")
        hits = engine.outliers(None if args.survey == "any" else args.survey, k=args.k,
                               filters=parse_filters(args.filter), score=args.score)
        _print_hits(args, hits, None, score_name=args.score)
        return 0
    finally:
        engine.close()
