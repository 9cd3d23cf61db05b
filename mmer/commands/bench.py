"""``mmer bench NAME``: run one benchmark and print its JSON result."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

from mmer import bench
from mmer.commands._output import print_json, to_jsonable


def _benchmarks() -> dict:
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{bench.__name__}.{info.name}")
        found[module.NAME] = module
    return found


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print JSON")
    names = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, module in sorted(_benchmarks().items()):
        sub = names.add_parser(name, help=module.HELP)
        sub.add_argument("--json", action="store_true", help="print only the JSON result")
        module.add_arguments(sub)
        sub.set_defaults(func=_runner(module))


def _runner(module):
    def run(args: argparse.Namespace) -> int:
        result = module.run(args)
        if not args.json:
            print(json.dumps(to_jsonable(result), indent=2))
        print_json(result)
        return 0

    return run
