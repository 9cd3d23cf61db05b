"""``mmer dashboard``: watch a running LSL session in the browser (read-only)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a live web page with every stream's health, the face, physiology and decisions",
        description="Attach read-only to the LSL session (one that mmer did not start included) and serve a "
        "page on 127.0.0.1 by default. The URL, with its access token, is printed on stderr. Another "
        "interface needs an explicit --listen HOST:PORT.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                        help="where to serve (default 127.0.0.1:8765; port 0 picks a free one)")
    parser.add_argument("--streams", metavar="PREDICATE",
                        help="LSL XPath predicate choosing the streams, e.g. \"starts-with(name,'mmer.')\" (default: all)")
    parser.add_argument("--session-id", help="LSL SessionID of the session to watch (as in the session YAML)")
    parser.add_argument("--recording", type=Path, metavar="DIR", help="show this recording folder's size and free disk")
    parser.add_argument("--stall-after", type=float, default=2.0, help="seconds without samples before a stream "
                        "shows as stalled (default 2)")
    parser.add_argument("--video-fps", type=float, default=4.0, help="video frames per second on the page (default 4)")
    parser.add_argument("--no-face", action="store_true", help="do not look for the face in the video")
    parser.add_argument("--exit-with", type=int, metavar="PID", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.dashboard.server import parse_listen

    host, port = parse_listen(args.listen)
    if args.stall_after <= 0:
        raise ValueError(f"--stall-after must be > 0, got {args.stall_after}")
    if not 0 < args.video_fps <= 30:
        raise ValueError(f"--video-fps must be in (0, 30], got {args.video_fps}")
    if any(importlib.util.find_spec(name) is None for name in ("starlette", "uvicorn")):
        raise ValueError("the dashboard needs its extra: pip install 'mmer[dashboard]'")
    if args.session_id:
        from mmer.streams import configure_lsl

        configure_lsl(args.session_id)
    from mmer.dashboard.server import serve

    return serve(host=host, port=port, predicate=args.streams, recording=args.recording,
                 stall_after=args.stall_after, video_fps=args.video_fps, face=not args.no_face,
                 exit_with=args.exit_with)
