"""``mmer stream ADAPTER``: run one sensor adapter until Ctrl-C (or ``--seconds``)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time

from mmer.commands._output import print_json
from mmer.sensors import ADAPTERS, SensorError, create_sensor
from mmer.streams import configure_lsl

log = logging.getLogger(__name__)

# Command-line option -> adapter keyword; only options the user gave are passed on.
_OPTIONS = ("source", "name", "source_id", "width", "height", "fps", "rate", "endpoint", "stream", "stream_type",
            "serial", "prefix")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream",
        help="run one sensor adapter until Ctrl-C",
        description="Publish one sensor's streams on LSL (and ZeroMQ for pixels) until Ctrl-C.",
    )
    parser.add_argument("adapter", choices=sorted(ADAPTERS), help="adapter name (see `mmer sensors list`)")
    parser.add_argument("--source", help="camera: device index, video file or URL")
    parser.add_argument("--name", help="LSL stream name")
    parser.add_argument("--source-id", dest="source_id", help="LSL source id")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--fps", type=float)
    parser.add_argument("--rate", type=float, help="sampling rate for synthetic physiology")
    parser.add_argument("--endpoint", help="ZeroMQ bind address for pixels (default loopback, free port)")
    parser.add_argument("--stream", help="lsl-physio: device stream name")
    parser.add_argument("--stream-type", dest="stream_type", help="lsl-physio: device stream type")
    parser.add_argument("--serial", help="realsense: device serial number")
    parser.add_argument("--prefix", help="lsl-physio/realsense: prefix of the published names")
    parser.add_argument("--map", action="append", default=[], metavar="KIND=CHANNEL",
                        help="lsl-physio: map a modality to a channel label or index (repeatable)")
    parser.add_argument("--loop", action="store_true", help="camera: loop a video file")
    parser.add_argument("--fast", action="store_true", help="camera: do not pace a file at its frame rate")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other adapter keyword (VALUE parsed as JSON when it can be)")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds instead of Ctrl-C")
    parser.add_argument("--session-id", help="LSL SessionID, so that only peers with the same id see the streams")
    parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines on stderr")
    parser.add_argument("--json", action="store_true", help="print the final health counters as JSON")
    parser.set_defaults(func=_stream)


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{flag} expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(args: argparse.Namespace) -> dict:
    opts = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    if args.map:
        opts["mapping"] = dict(_pair(m, "--map") for m in args.map)
    if args.loop:
        opts["loop"] = True
    if args.fast:
        opts["realtime"] = False
    for item in args.set:
        key, value = _pair(item, "--set")
        opts[key] = _value(value)
    return opts


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stream(args: argparse.Namespace) -> int:
    # Ctrl-C and a plain `kill` both stop the sensor cleanly, even when the shell started this
    # process with SIGINT ignored (background jobs).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.session_id:
        configure_lsl(args.session_id)
    sensor = create_sensor(args.adapter, **_options(args))
    # Threads started now (the acquisition thread, FFmpeg's decoder threads) inherit a mask that
    # keeps the signals away from them; only this thread handles Ctrl-C. An interrupted decoder
    # thread can otherwise corrupt a frame or abort inside libavcodec.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        sensor.start()
    except SensorError as err:
        print(f"mmer stream: error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    for spec in sensor.specs:
        where = spec.extra.get("zmq/endpoint", "")
        print(f"publishing {spec.name} ({spec.type.value}, source_id={spec.source_id}"
              f"{', pixels on ' + where if where else ''})", file=sys.stderr)
    t_end = None if args.seconds is None else time.monotonic() + args.seconds
    next_status = time.monotonic() + args.status_every
    try:
        while sensor.running:
            if t_end is not None and time.monotonic() >= t_end:
                break
            # Sleep rather than join: a join interrupted by Ctrl-C can make the later join in
            # stop() return before the thread has ended (seen here with CPython 3.11).
            time.sleep(0.2)
            if time.monotonic() >= next_status:
                print(f"{args.adapter}: {sensor.health.as_dict()}", file=sys.stderr)
                next_status += args.status_every
    except KeyboardInterrupt:
        print("stopping (interrupted)", file=sys.stderr)
    finally:
        sensor.stop()
    health = sensor.health.as_dict()
    if args.json:
        print_json({"adapter": args.adapter, "health": health})
    else:
        print(f"{args.adapter} stopped: {health}", file=sys.stderr)
    return 0
