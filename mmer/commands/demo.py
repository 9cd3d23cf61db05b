"""``mmer demo``: synthetic sensors -> live pipeline -> ME events, next to the ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmer.commands._output import print_json

_KEYS = ("events", "candidates", "latency_ms", "physio_lost", "frames_dropped_pct")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on synthetic sensors and compare with the ground truth",
        description="Synthetic RGB-D camera and physiology stream over real LSL and ZeroMQ through the "
        "live pipeline with the packaged demo checkpoint. Prints decisions next to the truth and the "
        "latency percentiles, and writes events.csv, summary.json and timeline.png to --out.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of streaming (default 60)")
    parser.add_argument("--out", type=Path, default=Path("mmer-demo"), help="report folder (default ./mmer-demo)")
    parser.add_argument("--seed", type=int, default=2024, help="synthetic lab seed (default 2024)")
    parser.add_argument("--size", default="640x480", help="camera frame size WxH (default 640x480)")
    parser.add_argument("--checkpoint", default="demo", help="model checkpoint (default: the packaged demo)")
    parser.add_argument("--record", action="store_true", help="also record the session to OUT/recording")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.commands.live import install_sigterm
    from mmer.live._quiet import NativeChatterFilter
    from mmer.live.demo import run_demo

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {args.size!r}") from None
    install_sigterm()
    with NativeChatterFilter():
        full, table = run_demo(seconds=args.seconds, out=args.out, seed=args.seed, width=width, height=height,
                               checkpoint=args.checkpoint, record=args.record, status="auto")
    lat = full["latency_ms"]

    def ms(entry):
        return "/".join("-" if entry.get(k) is None else f"{entry[k]:.0f}" for k in ("p50", "p95"))

    spot = full["spotting"]
    lines = [
        table,
        "",
        f"candidates {full['candidates']}, decisions {full['events']}; spotting vs truth: TP {spot['tp']} "
        f"FP {spot['fp']} FN {spot['fn']} (F1 {spot['f1']:.2f}, IoU >= 0.5)",
        f"latency ms p50/p95: early {ms(lat['early'])} from the candidate's last frame (MEs {ms(lat['early_me'])}, "
        f"macros {ms(lat['early_mae'])}), {ms(lat['early_from_closing_frame'])} from the frame that closed it; "
        f"late {ms(lat['late'])} from the end of the physiology window",
        f"physio samples lost {full['physio_lost']}, frames dropped {full['frames_dropped_pct']:.2f}%",
        f"report: {args.out}/events.csv, summary.json, timeline.png",
    ]
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json({k: full[k] for k in _KEYS} | {k: v for k, v in full.items() if k not in _KEYS and k != "streams"})
    return 0 if not full["errors"] else 1
