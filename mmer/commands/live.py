"""``mmer live``: run a lab session from a validated YAML file."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from mmer.commands._output import print_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "live",
        help="run a live session: sensors -> spotting -> ME events on LSL (+ recording)",
        description="Run a live session from a session YAML (see --example-config). Decisions go out "
        "on the LSL marker stream mmer.events; Ctrl-C or SIGTERM stops cleanly.",
    )
    parser.add_argument("--config", type=Path, help="session YAML file")
    parser.add_argument("--example-config", action="store_true", help="print a commented example config and exit")
    parser.add_argument("--record", type=Path, metavar="DIR", help="record the session to DIR (overrides the config)")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (overrides duration_s)")
    parser.add_argument("--status", choices=["auto", "on", "off"], help="terminal status view (overrides the config)")
    parser.add_argument("--json", action="store_true", help="print the run summary as one JSON line at the end")
    parser.add_argument("--dashboard", nargs="?", const="127.0.0.1:8765", metavar="HOST:PORT",
                        help="serve the live dashboard (default 127.0.0.1:8765; its URL is printed on stderr)")
    parser.set_defaults(func=run)


def install_sigterm() -> None:
    """SIGTERM stops as cleanly as Ctrl-C; a second signal waits, a third forces the stop."""
    from mmer.live.signals import install_stop_signals

    install_stop_signals()


def run(args: argparse.Namespace) -> int:
    from mmer.config import example_config, load_config
    from mmer.live._quiet import NativeChatterFilter

    if args.example_config:
        sys.stdout.write(example_config())
        return 0
    if args.config is None:
        raise ValueError("give --config FILE (or --example-config to print one)")
    if args.seconds is not None and args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    if args.dashboard is not None:
        from mmer.dashboard.server import parse_listen

        parse_listen(args.dashboard)
    config = load_config(args.config)
    if args.status:
        status = {"on": True, "off": False}.get(args.status, "auto")
        config = config.model_copy(update={"outputs": config.outputs.model_copy(update={"status": status})})
    with NativeChatterFilter():
        summary = run_session(config, record=args.record, seconds=args.seconds, dashboard=args.dashboard)
    _print_summary(summary)
    if args.json:
        print_json(summary)
    return 0 if not summary["errors"] else 1


def recording_errors(summary: dict) -> list[str]:
    """The recording's failure as summary errors (empty when it stopped as asked)."""
    rec = summary.get("recording")
    if rec is None or rec.get("stop_reason") == "stopped":
        return []
    return [f"recording {rec['dir']}: {rec.get('stop_reason') or 'not finished'}"]


def run_session(config, *, record: Path | None = None, seconds: float | None = None, sources=None,
                dashboard: str | None = None) -> dict:
    """Configure LSL, build the pipeline (with the config's replay source, if any) and run it.

    ``dashboard`` (``HOST:PORT``) starts the dashboard in a child process once the pipeline
    runs, and puts the spotter's score on LSL for it.
    """
    from mmer.live._sources import ReplaySource
    from mmer.live.pipeline import LivePipeline
    from mmer.live.recorder import RecorderError
    from mmer.streams import configure_lsl

    if config.session_id:
        configure_lsl(config.session_id)
    sources = list(sources or [])
    replay = None
    if config.replay is not None:
        replay = ReplaySource(config.replay, decisions=config.outputs.events_stream)
        sources.append(replay)
    install_sigterm()
    consumers, tap = [], None
    if dashboard is not None:
        from mmer.dashboard import DashboardProcess, ScoreTap

        consumers.append(DashboardProcess(dashboard, recording=record or config.recording.dir))
        tap = ScoreTap()
    pipeline = LivePipeline(config, sources=sources, record_dir=record, consumers=consumers, on_score=tap)
    # Ctrl-C or SIGTERM while the pipeline starts is held until it has started (every step has a
    # timeout) and then stops it cleanly: a start torn down half way could leave inlets waiting on
    # streams that its own cleanup removed, and the recording would end as "start failed".
    interrupted = threading.Event()
    held = {sig: signal.signal(sig, lambda *_: interrupted.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipeline.start()
    except RecorderError as err:
        raise ValueError(str(err)) from None
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    if interrupted.is_set():
        log.warning("interrupted while starting: stopping cleanly")
    until = replay.finished if replay is not None and not config.replay.loop else None
    summary = pipeline.run(duration=seconds, until=until, stop=interrupted)
    summary["errors"] = [*summary["errors"], *recording_errors(summary)]
    return summary


def _print_summary(summary: dict) -> None:
    lat = summary["latency_ms"]

    def ms(entry, key):
        value = entry.get(key)
        return "-" if value is None else f"{value:.0f}"

    print(
        f"{summary['candidates']} candidates, {summary['events']} decisions; latency ms early p50/p95 "
        f"{ms(lat['early'], 'p50')}/{ms(lat['early'], 'p95')}, late {ms(lat['late'], 'p50')}/{ms(lat['late'], 'p95')}; "
        f"physio lost {summary['physio_lost']}, frames dropped {summary['frames_dropped_pct']:.2f}%",
        file=sys.stderr,
    )
    if summary.get("recording"):
        print(f"recording: {summary['recording']['dir']} ({summary['recording']['stop_reason']})", file=sys.stderr)
    for err in summary["errors"]:
        print(f"error: {err}", file=sys.stderr)
