"""``mmer bench replay``: lockstep throughput, memory on an 8-minute recording, real-time schedule error.

Inputs are generated in a temporary folder:

* a Part A set from the synthetic lab (``mmer.synth.write_casme3``: 640x480 JPG colour, 16-bit PNG
  depth, 200 Hz physiology) on the held-out face, replayed in lockstep to a consumer that receives
  every frame and sample over real LSL + ZeroMQ and acknowledges each step -> ``realtime_factor``;
  the same set replayed in real time -> ``schedule_error_ms_p99`` (push time minus scheduled time,
  every frame, physiology chunk and marker);
* the same Part A recording with its frames decoded in advance, replayed in lockstep ->
  ``realtime_factor_predecoded`` (the player and transports alone, without JPG/PNG decoding);
* an 8-minute Part C-layout recording (640x480 MP4 colour, PNG depth, physiology text with its
  ``5`` marker) replayed in lockstep while a thread samples this process's RSS ->
  ``peak_rss_mb``. Its depth folder holds one file per frame, hard links to 30 distinct images,
  so writing it takes seconds; the reader still opens and decodes every file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from mmer.bench._rss import RssSampler

NAME = "replay"
HELP = "replay throughput (lockstep), peak RSS on an 8-minute recording, real-time schedule error"

_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_HELD_OUT_FACE = _SHARED / "faces" / "45-m7-di-ph.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="Part A video length for the lockstep run")
    parser.add_argument("--realtime-seconds", type=float, default=10.0, help="length replayed in real time")
    parser.add_argument("--long-seconds", type=float, default=480.0, help="recording length for the memory run")
    parser.add_argument("--seed", type=int, default=1000, help="synthetic seed (>= 1000: held out)")
    parser.add_argument("--window", type=int, default=2, help="lockstep window (steps ahead of acks)")


def _names(prefix: str, recording) -> list[str]:
    tracks = [*recording.frames.values(), *recording.samples.values()]
    return [f"{prefix}{t.spec.name}" for t in tracks]


def _lockstep(dataset, prefix: str, window: int) -> dict:
    from mmer.replay import Player, ReplayConsumer

    first = dataset[0] if isinstance(dataset, list) else next(dataset.recordings())
    player = Player(dataset, lockstep=True, prefix=prefix, consumer_timeout=60, window=window)
    result: dict = {}

    def consume() -> None:
        with ReplayConsumer(_names(prefix, first), timeout=30, name="bench-null") as consumer:
            result["steps"] = consumer.run(timeout=60)
            result["frames"] = sum(consumer.frames_received.values())
            result["samples"] = sum(consumer.received.values())

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    cpu = time.process_time()
    stats = player.run()
    thread.join(60)
    cpu = time.process_time() - cpu
    # CPU seconds (player + consumer, all threads) per second of recording: what the replay costs,
    # independent of how busy the shared machine is.
    result["cpu_per_media_s"] = round(cpu / max(stats.media_seconds, 1e-9), 3)
    return {"stats": stats.as_dict(), **result}


_DRAIN = """
import sys, time
from mmer.replay import ReplayConsumer
with ReplayConsumer(sys.argv[2:], lockstep=False, timeout=30) as consumer:
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        consumer.drain(0.005)
"""


def _realtime(dataset, prefix: str, seconds: float) -> dict:
    """Real-time replay to a consumer in another process (as a live pipeline would be)."""
    from mmer.replay import Player

    first = next(dataset.recordings())
    player = Player(dataset, speed=1.0, prefix=prefix, wait_consumers=True, consumer_timeout=60)
    consumer = subprocess.Popen([sys.executable, "-c", _DRAIN, str(seconds + 20), *_names(prefix, first)])
    try:
        player.start()
        if not player.wait(seconds + 5):  # about `seconds` of replay after the consumer joined
            player.stop()
    finally:
        consumer.kill()
        consumer.wait()
    return player.stats.as_dict()


def _predecoded(dataset, frames_per_track: int = 30):
    """The first recording with its frame readers replaced by a cycle of already decoded frames.

    Replaying it measures the player, LSL, ZeroMQ and the lockstep protocol without JPG/PNG
    decoding, which on two cores is the dominant cost.
    """
    from mmer.dataset import FrameTrack

    rec = next(dataset.recordings())
    for name, track in rec.frames.items():
        cached = [track.read(i) for i in range(min(frames_per_track, len(track)))]
        rec.frames[name] = FrameTrack(track.spec, track.indices, track.timestamps,
                                      lambda pos, c=cached: c[pos % len(c)])
    return [rec]


def _write_long(root: Path, seconds: float, seed: int) -> None:
    """Part C layout: ``1/1.mp4`` colour, ``1/depth/<f>.png`` depth, ``1/1.txt`` physiology."""
    rng = np.random.default_rng(seed)
    sub = root / "1"
    (sub / "depth").mkdir(parents=True)
    n = int(round(seconds * 30))
    face = cv2.imread(str(_HELD_OUT_FACE)) if _HELD_OUT_FACE.is_file() else None
    base = cv2.resize(face, (640, 480)) if face is not None else rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(sub / "1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for f in range(n):
        writer.write(np.roll(base, (f % 7) - 3, axis=1))
    writer.release()
    yy, xx = np.mgrid[0:480, 0:640]
    bowl = 550 + ((xx - 320) ** 2 + (yy - 240) ** 2) / 600.0
    distinct = []
    for k in range(30):
        depth = (bowl + rng.normal(0, 2, bowl.shape) + 3 * np.sin(k / 5)).astype(np.uint16)
        path = sub / "depth" / f"_src{k}.png"
        cv2.imwrite(str(path), depth, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        distinct.append(path)
    for f in range(n):
        target = sub / "depth" / f"{f}.png"
        try:
            os.link(distinct[f % 30], target)
        except OSError:
            target.write_bytes(distinct[f % 30].read_bytes())
    for path in distinct:
        path.unlink()
    rate, pre = 200, 400
    m = int(seconds * rate) + pre
    t = np.arange(m) / rate
    marker = np.zeros(m, dtype=int)
    marker[pre] = 5
    table = np.column_stack([t / 60.0, np.sin(2 * np.pi * 1.2 * t), np.sin(2 * np.pi * 0.25 * t),
                             rng.normal(0, 0.1, m), 2 + 0.01 * t, marker, np.zeros(m)])
    np.savetxt(sub / "1.txt", table, fmt=["%.7f", "%.5f", "%.5f", "%.5f", "%.5f", "%d", "%d"], delimiter="\t")


def run(args: argparse.Namespace) -> dict:
    from mmer.replay import open_dataset
    from mmer.streams import configure_lsl

    if args.seconds <= 0 or args.long_seconds <= 0 or args.realtime_seconds <= 0:
        raise ValueError("durations must be > 0")
    configure_lsl(f"mmer-bench-replay-{os.getpid()}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mmer-bench-replay-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        _write_long(tmp / "long", args.long_seconds, args.seed)
        long_write_s = time.perf_counter() - t
        long_set = open_dataset("casme3", tmp / "long", part="C")
        with RssSampler(interval=0.05) as rss:
            long_run = _lockstep(long_set, "bench-long.", args.window)

        from mmer.synth import write_casme3

        t = time.perf_counter()
        write_casme3(tmp / "partA", part="A", subjects=1, videos=1, seconds=args.seconds, seed=args.seed,
                     faces=str(_HELD_OUT_FACE), progress=False)
        part_a_write_s = time.perf_counter() - t
        part_a = open_dataset("casme3", tmp / "partA", part="A")
        lock = _lockstep(part_a, "bench-lock.", args.window)
        transport = _lockstep(_predecoded(part_a), "bench-pre.", args.window)
        short = open_dataset("casme3", tmp / "partA", part="A")
        real = _realtime(short, "bench-rt.", args.realtime_seconds)
    return {
        "realtime_factor": lock["stats"]["realtime_factor"],
        "peak_rss_mb": round(rss.peak_mb, 1),
        "schedule_error_ms_p99": real.get("schedule_error_ms_p99"),
        "schedule_error_ms_p50": real.get("schedule_error_ms_p50"),
        "schedule_error_ms_max": real.get("schedule_error_ms_max"),
        "lockstep_window": args.window,
        "lockstep_seconds": lock["stats"]["media_seconds"],
        "lockstep_frames": lock["stats"]["frames"],
        "lockstep_frames_received": lock.get("frames"),
        "lockstep_samples_received": lock.get("samples"),
        "long_seconds": long_run["stats"]["media_seconds"],
        "long_realtime_factor": long_run["stats"]["realtime_factor"],
        "long_frames_received": long_run.get("frames"),
        "rss_at_start_mb": round(rss.start_mb, 1),
        "realtime_items": real.get("frames", 0) + real.get("samples", 0),
        "input_write_s": {"long": round(long_write_s, 1), "part_a": round(part_a_write_s, 1)},
        "realtime_factor_predecoded": transport["stats"]["realtime_factor"],
        "cpu_per_media_s": lock.get("cpu_per_media_s"),
        "cpu_per_media_s_predecoded": transport.get("cpu_per_media_s"),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
    }
