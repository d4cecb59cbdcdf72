"""`specclip app`: start the Streamlit app on a store (embedded folder or server URL)."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from app.upload import MAX_UPLOAD_MB
from engine.cli_args import port

log = logging.getLogger(__name__)

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "app", help="open the search app in the browser (Streamlit)",
        description="Start the Streamlit app: search, outlier hunting, map and status "
                    "over an indexed store.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", default=os.environ.get("SPECCLIP_STORE"),
                       help="embedded store folder (default: $SPECCLIP_STORE)")
    where.add_argument("--url", default=os.environ.get("SPECCLIP_URL"),
                       help="Qdrant server/cluster URL (default: $SPECCLIP_URL)")
    p.add_argument("--bundle", default=os.environ.get("SPECCLIP_BUNDLE"),
                   help="model bundle folder (default: the shipped small model)")
    p.add_argument("--port", type=port, default=8501)
    p.add_argument("--address", default="127.0.0.1",
                   help="interface to listen on (0.0.0.0 to serve other machines)")
    p.set_defaults(func=run)


def build_command(args: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line for these arguments."""
    cmd = [sys.executable, "-m", "streamlit", "run", MAIN,
           "--server.port", str(args.port), "--server.address", args.address,
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer",
           "--server.maxUploadSize", str(MAX_UPLOAD_MB), "--"]
    if args.store:
        cmd += ["--store", os.path.abspath(args.store)]
    elif args.url:
        cmd += ["--url", args.url]
    if args.bundle:
        cmd += ["--bundle", os.path.abspath(args.bundle)]
    return cmd


def run(args: argparse.Namespace) -> int:
    if not (args.store or args.url):
        log.error("give --store DIR or --url URL (or set SPECCLIP_STORE / SPECCLIP_URL)")
        return 2
    if args.store and args.url:  # one from the environment, one from the command line
        log.error("give either a store folder or a server URL, not both")
        return 2
    if args.store and not os.path.isfile(os.path.join(args.store, "store.json")):
        log.error("%s: no embedded store here (store.json missing): index it first "
                  "(specclip index --store %s SOURCES)", args.store, args.store)
        return 2
    cmd = build_command(args)
    log.info("starting: %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, check=False).returncode
    except KeyboardInterrupt:
        return 130
