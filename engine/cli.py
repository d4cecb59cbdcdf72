"""The `specclip` console command.

Subcommands are discovered through the `specclip.commands` entry-point group (see
pyproject.toml) so that this module never imports indexer/, training/ or app/: each package
registers its own subcommands. A registrar is `register(subparsers) -> None`; it adds a
parser whose `func(args) -> int` runs the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from importlib.metadata import entry_points

from engine.errors import SpecClipError

log = logging.getLogger(__name__)

# Shown in --help in this order; anything else registered comes after.
COMMAND_ORDER = ("ingest", "index", "query", "outliers", "train", "evaluate", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specclip",
        description=(
            "Cross-instrument stellar-spectrum search (LAMOST LRS x Gaia XP).\n"
            "Typical session:  specclip ingest DATA... --out cat.parquet  ->  "
            "specclip index --store var/store DATA...  ->  specclip query --store var/store "
            "--obsid 123 --target gaia_xp -k 10 --json  ->  specclip app --store var/store"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = {ep.name: ep for ep in entry_points(group="specclip.commands")}
    names = [n for n in COMMAND_ORDER if n in found] + sorted(set(found) - set(COMMAND_ORDER))
    for name in names:
        try:
            found[name].load()(sub)
        except ImportError as exc:  # a missing optional dependency must not hide the others
            _register_unavailable(sub, name, exc)
    return parser


def _register_unavailable(sub: argparse._SubParsersAction, name: str, exc: ImportError) -> None:
    """Keep a subcommand whose module cannot be imported visible: --help lists it with the
    reason, and running it says why it is unavailable (exit 1) instead of "invalid choice"."""
    reason = f"{type(exc).__name__}: {exc}"
    # No prefix characters: every argument given ("--out x" included) is taken as is, so
    # the command reaches the explanation instead of an "unrecognized arguments" error.
    p = sub.add_parser(name, help=f"(unavailable: {reason})", add_help=False,
                       prefix_chars="\0")
    p.add_argument("rest", nargs="*")

    def unavailable(args: argparse.Namespace) -> int:
        raise SpecClipError(f"`specclip {name}` is unavailable: its module could not be "
                            f"imported ({reason}); install what it needs and try again")
    p.set_defaults(func=unavailable)


def _report(args: argparse.Namespace, exc: BaseException) -> int:
    """One line on stderr, a traceback only with -v. The line is a JSON object wherever the
    command's output is JSON: with --json, or for a command that has --json when stdout is
    a pipe or a file (query and outliers then print JSON, engine/query_cli.py wants_json)."""
    if isinstance(exc, (SpecClipError, OSError, ValueError)):
        message = str(exc) or type(exc).__name__
    else:  # a bug: say so, and how to see where
        message = (f"internal error {type(exc).__name__}: {exc} (run with -v for the "
                   "traceback, and please report it)")
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False) or (hasattr(args, "json") and not sys.stdout.isatty()):
        print(json.dumps({"error": message, "type": type(exc).__name__}), file=sys.stderr)
    else:
        print(f"specclip {getattr(args, 'command', '')}: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `specclip query ... | head`: the reader left; no traceback, and no second error
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes a message
        return _report(args, exc)


if __name__ == "__main__":
    sys.exit(main())
