"""The ``mmer`` command line.

Each subcommand lives in its own module under :mod:`mmer.commands` and exposes
``register(subparsers)``; this file only discovers and dispatches them, so adding a command never
touches a shared file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from mmer import commands
from mmer.commands._output import print_json
from mmer.errors import EXIT_USAGE, MmerError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="mmer",
        description="Multimodal micro-expression streaming, spotting and recognition.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (MmerError, FileNotFoundError, ValueError, TimeoutError) as err:
        # Boundary errors carry a message that names the file, field, value or the peer that did
        # not answer in time; no traceback. A --json run still ends with one JSON line.
        print(f"mmer {args.command}: error: {err}", file=sys.stderr)
        if getattr(args, "json", False):
            print_json({"error": str(err), "exit_code": EXIT_USAGE})
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
