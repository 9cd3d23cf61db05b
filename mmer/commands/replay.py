"""``mmer replay {casme3,4dme,xdf} PATH``: publish a recorded dataset as live LSL + ZeroMQ streams."""

from __future__ import annotations

import argparse
import json
import logging

from mmer.commands._output import print_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a dataset as live streams",
        description="Publish each recording as the streams live sensors publish (same names, types, "
        "metadata, LSL clock). Real-time pacing by default; --lockstep for offline evaluation.",
    )
    parser.add_argument("kind", choices=["casme3", "4dme", "xdf"], help="dataset reader")
    parser.add_argument("path", help="dataset folder or .xdf file")
    parser.add_argument("--subjects", nargs="+", metavar="S", help="only these subjects (1, spNO.1, sub01)")
    parser.add_argument("--videos", nargs="+", metavar="V", help="only these videos (letters for Part A, partC)")
    parser.add_argument("--part", choices=["A", "C"], help="casme3: one part only")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="wall-clock pacing, 1.0 = real time (default)")
    pace.add_argument("--lockstep", action="store_true", help="advance only when every consumer acknowledges")
    parser.add_argument("--consumers", type=int, default=1, help="lockstep: consumers to wait for (default 1)")
    parser.add_argument("--window", type=int, default=1, help="lockstep: steps the player may run ahead of acks (default 1)")
    parser.add_argument("--session-id", help="LSL SessionID (default: LSL's own 'default' session)")
    parser.add_argument("--loop", action="store_true", help="start again after the last recording")
    parser.add_argument("--truth-markers", action="store_true", help="publish ground truth on mmer.truth")
    parser.add_argument("--wait-consumers", action="store_true", help="hold the start until every outlet has a consumer")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for consumers/acks (default 60)")
    parser.add_argument("--prefix", default="", help="prefix for stream names and source ids")
    parser.add_argument("--salvage", action="store_true", help="xdf: read the intact chunks of a damaged file")
    parser.add_argument("--json", action="store_true", help="print the replay summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from mmer.replay import Player, open_dataset
    from mmer.streams import configure_lsl

    if args.session_id or "LSLAPICFG" not in os.environ:
        # Also widens liblsl's port range, so all replayed outlets stay resolvable on this host.
        configure_lsl(args.session_id or "default")

    if args.speed <= 0:
        raise ValueError(f"--speed must be > 0, got {args.speed}")
    options = {}
    if args.part:
        if args.kind != "casme3":
            raise ValueError("--part applies to casme3 only")
        options["part"] = args.part
    if args.salvage:
        if args.kind != "xdf":
            raise ValueError("--salvage applies to xdf only")
        options["salvage"] = True
    dataset = open_dataset(args.kind, args.path, subjects=args.subjects, videos=args.videos, **options)
    if not len(dataset):
        raise ValueError(f"{args.path}: no recording with media to replay (annotations only?); try `mmer inspect`")
    player = Player(
        dataset,
        speed=args.speed,
        lockstep=args.lockstep,
        consumers=args.consumers,
        loop=args.loop,
        truth_markers=args.truth_markers,
        wait_consumers=args.wait_consumers,
        consumer_timeout=args.timeout,
        prefix=args.prefix,
        window=args.window,
        progress=not args.json,
    )
    if args.lockstep:
        print(f"lockstep endpoint: {player.lockstep_endpoint}", flush=True)
    try:
        stats = player.run()
    except KeyboardInterrupt:
        player.stop()
        stats = player.stats
        log.warning("replay interrupted; outlets closed")
    summary = stats.as_dict()
    if player.server is not None:
        summary["lockstep_rejected"] = player.server.rejected
        summary["lockstep_dropped"] = player.server.dropped
    if args.json:
        print_json(summary)
    else:
        print(json.dumps(summary, indent=2))
    return 0
