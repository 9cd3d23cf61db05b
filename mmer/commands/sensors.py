"""``mmer sensors list``: the sensor adapters and the LSL streams visible from here."""

from __future__ import annotations

import argparse

import pylsl

from mmer.commands._output import print_json
from mmer.sensors import list_adapters


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sensors", help="list sensor adapters and visible LSL streams")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="list adapters and visible LSL streams")
    lst.add_argument("--timeout", type=float, default=1.0, help="seconds to look for LSL streams")
    lst.add_argument("--json", action="store_true", help="print one JSON object")
    lst.set_defaults(func=_list)


def _streams(timeout: float) -> list[dict]:
    rows = []
    for info in pylsl.resolve_streams(wait_time=timeout):
        rows.append(
            {
                "name": info.name(),
                "type": info.type(),
                "channels": info.channel_count(),
                "rate": info.nominal_srate(),
                "source_id": info.source_id(),
                "host": info.hostname(),
            }
        )
    return sorted(rows, key=lambda r: (r["type"], r["name"]))


def _list(args: argparse.Namespace) -> int:
    if args.timeout < 0:
        raise ValueError(f"--timeout must be >= 0, got {args.timeout}")
    adapters = list_adapters()
    streams = _streams(args.timeout)
    if args.json:
        print_json({"adapters": adapters, "streams": streams})
        return 0
    print("Adapters (mmer stream NAME):")
    for row in adapters:
        state = "ok" if row["available"] else f"unavailable: {row['reason']}"
        print(f"  {row['name']:<18} {state}")
        if row["summary"]:
            print(f"  {'':<18} {row['summary']}")
    print(f"LSL streams visible within {args.timeout:g} s: {len(streams)}")
    for s in streams:
        print(f"  {s['name']:<24} {s['type']:<11} {s['channels']:>3} ch {s['rate']:>8g} Hz  "
              f"source_id={s['source_id']}  host={s['host']}")
    return 0
