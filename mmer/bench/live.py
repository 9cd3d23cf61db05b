"""``mmer bench live``: end-to-end latency, loss and memory of the live pipeline on synthetic sensors.

Streams RGB (640x480 at 30 fps by default), depth and four 200 Hz physiology channels from the
synthetic sensors over real LSL + ZeroMQ through the full pipeline (spotter, early and late
decisions, events outlet). Benchmarks use held-out data: the face ``45-m7-di-ph.jpg`` from the
shared data folder (or ``astronaut`` when it is absent) and seeds >= 1000.

Targets: early decision <= 200 ms p95 after the ME's last frame; late decision <= 1 s after its
physiology window closes; zero physiology samples lost; < 0.1 % frames dropped; RSS flat after
warm-up. ``latency_ms.early`` covers every candidate; ``early_me`` only those the spotter typed
as MEs (the target's wording), ``early_mae`` the macro-expressions, which the spotter can only
close on its longer macro scale. Both are reported, with a ``targets_met`` entry each. These are
measured from the last frame the spotter gave the candidate; ``early_me_from_true_offset``
measures the MEs that matched a true ME from that ME's true last frame instead, so an offset
placed too early cannot flatter the figure.

The sensors run in a child process, as separate sensor apps would; the pipeline process is the
one under test.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

import numpy as np

from mmer.bench._rss import RssSampler

NAME = "live"
HELP = "live pipeline latency, loss and memory on synthetic RGB-D + physiology sensors"

_FPS = 30.0
_HELD_OUT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces" / "45-m7-di-ph.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of streaming (default 60)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    parser.add_argument("--seed", type=int, default=1000, help="synthetic lab seed, >= 1000 (held out)")
    parser.add_argument("--checkpoint", default="demo", help="model checkpoint (default: the packaged demo)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before RSS is taken as the baseline")
    parser.add_argument("--dashboard", nargs="?", const="off-on", choices=["off-on", "on-off"],
                        help="run twice, without and with the dashboard (in this order; on-off reverses it), "
                        "and compare (mmer.dashboard.cost)")


def run(args: argparse.Namespace) -> dict:
    if args.dashboard:
        from mmer.dashboard.cost import paired_runs

        return paired_runs(args, _run_once)
    return _run_once(args)


def _run_once(args: argparse.Namespace, *, session: str | None = None, consumers=(), on_score=None) -> dict:
    from mmer.config import parse_config
    from mmer.live._quiet import NativeChatterFilter
    from mmer.live.demo import LSL_WARNINGS_ONLY
    from mmer.live.pipeline import LivePipeline
    from mmer.live.report import match_truth
    from mmer.streams import configure_lsl

    if args.seed < 1000:
        raise ValueError(f"benchmarks use held-out seeds >= 1000, got {args.seed}")
    if args.seconds <= args.warmup:
        raise ValueError(f"--seconds ({args.seconds}) must exceed --warmup ({args.warmup})")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {args.size!r}") from None
    face = str(_HELD_OUT) if _HELD_OUT.is_file() else "astronaut"
    configure_lsl(session or f"mmer-bench-live-{uuid.uuid4().hex[:8]}", extra_lines=LSL_WARNINGS_ONLY)
    opts = {"seed": args.seed, "width": width, "height": height, "face": face, "epoch": None, "wait_for_consumers": 60.0}
    config = parse_config({
        "sensors": [{"adapter": "synthetic-camera", "options": {**opts, "fps": _FPS, "depth": True}},
                    {"adapter": "synthetic-physio", "options": opts}],
        "sensor_process": True,
        "model": {"checkpoint": args.checkpoint},
        "outputs": {"status": False},
    }, source="bench live")
    pipeline = LivePipeline(config, consumers=list(consumers), on_score=on_score)
    with NativeChatterFilter():
        pipeline.start()
        t_start = time.monotonic()
        with RssSampler(interval=1.0) as rss:
            summary = pipeline.run(duration=args.seconds)
    wall = time.monotonic() - t_start
    pts = np.asarray([p for p in rss.samples if p[0] >= args.warmup], dtype=float)
    growth = None
    if len(pts) >= 5:
        growth = float(np.polyfit(pts[:, 0] / 60.0, pts[:, 1], 1)[0])
    lat = summary["latency_ms"]
    truth = pipeline.truth()
    spotting = match_truth(pipeline.decisions, truth)
    lat["early_me_from_true_offset"] = _from_true_offset(pipeline.decisions, truth, spotting["pairs"], fps=_FPS)
    targets = {
        "early_p95_le_200ms": _le(lat["early"]["p95"], 200.0),
        "early_me_p95_le_200ms": _le(lat["early_me"]["p95"], 200.0),
        "late_p95_le_1000ms": _le(lat["late"]["p95"], 1000.0),
        "physio_lost_zero": summary["physio_lost"] == 0,
        "frames_dropped_lt_0.1pct": summary["frames_dropped_pct"] < 0.1,
        # A slope fitted to less than ten minutes is the allocator's sawtooth more than a trend
        # (60 s runs measured -6 to +26 MB/min; 600 s runs +1.2 and +1.4): judged on 10-minute runs.
        "rss_flat_lt_5mb_per_min": None if growth is None or args.seconds < 600 else growth < 5.0,
    }
    return {
        "events": summary["events"],
        "candidates": summary["candidates"],
        "latency_ms": lat,
        "physio_lost": summary["physio_lost"],
        "frames_dropped_pct": summary["frames_dropped_pct"],
        "frames_received": summary["frames_received"],
        "frames_dropped": summary["frames_dropped"],
        "frames_dropped_by_source": summary["frames_dropped_by_source"],
        "spot_dropped": summary["spot_dropped"],
        "physio_received": summary["physio_received"],
        "physio_before_connect": summary["physio_before_connect"],
        "late_incomplete": summary["late_incomplete"],
        "spotting": {k: v for k, v in spotting.items() if k != "pairs"},
        "spotter_ms_per_frame": summary["spotter_ms_per_frame"],
        "latency_stages_early": summary["latency_detail"]["early"].get("stages", {}),
        "latency_stages_early_me": summary["latency_detail"].get("early_me", {}).get("stages", {}),
        "rss_mb": {"after_warmup": float(pts[0, 1]) if len(pts) else None,
                   "end": float(pts[-1, 1]) if len(pts) else None,
                   "growth_mb_per_min": growth},
        "targets_met": targets,
        "seconds": args.seconds,
        "wall_s": wall,
        "size": [width, height],
        "seed": args.seed,
        "face": Path(face).name,
        "model": summary["model"],
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "errors": summary["errors"],
    }


def _from_true_offset(decisions, truth: list[dict], pairs: dict[int, int], *, fps: float) -> dict:
    """Early ME decisions matched to a true ME (``pairs``: candidate id -> truth position, from
    :func:`~mmer.live.report.match_truth`), timed from the capture of its true last frame (the
    candidate's own last frame moved by the difference in frames; the camera is frame-locked)."""
    from mmer.live.latency import percentiles

    values = [
        (d.t_published - d.t_offset - (int(truth[pairs[d.candidate_id]]["offset"]) - d.offset) / fps) * 1000.0
        for d in decisions
        if d.stage == "early" and d.kind == "me" and d.candidate_id in pairs
    ]
    return percentiles(values, qs=(50, 95))


def _le(value, bound: float):
    return None if value is None else value <= bound
