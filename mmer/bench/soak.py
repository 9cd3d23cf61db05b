"""``mmer bench soak``: a long run of a full sensor set through real LSL + ZeroMQ into the buffer.

A source process publishes RGB 640x480 @ 30 fps and depth 640x480 @ 30 fps (pixels on ZeroMQ,
timing on LSL) and EDA/ECG/PPG/RSP at 200 Hz (LSL numpy chunks). It uses the synthetic lab's adapters
(``mmer.sensors.synthetic``) when they are installed and accept that format, and otherwise a
built-in generator with the same stream layout. This process runs an
:class:`~mmer.fusion.AlignmentBuffer` on those streams, cuts a 2 s window every second as a live
pipeline would, and samples its own RSS.

Reported: ``physio_lost`` (samples pushed minus samples the buffer received, over all four
streams), ``frames_total`` (frames due from the cameras: published plus any the source skipped
because it ran late), ``frames_dropped`` (due but never received), ``frames_dropped_counted``
(gaps the buffer detected in frame indices, which sees both kinds, plus frames announced on LSL
whose pixels never arrived before the first or after the last received one), RSS after warm-up and at the
end, and windows that completed without a missing modality.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid

import numpy as np
import psutil
from tqdm import tqdm

NAME = "soak"
HELP = "long run: RGB+depth 640x480@30 and 4 physio @200 Hz through LSL+ZMQ into the buffer"

_KINDS = ("EDA", "ECG", "PPG", "RSP")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="run length")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="physiology rate")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before rss_mb_start is taken (default: 10%% of the run, 10 to 60 s)")
    parser.add_argument("--source", choices=("auto", "builtin", "synthetic"), default="auto",
                        help="who publishes: the synthetic lab's adapters, the built-in generator, or auto")


def _builtin(session: str, width: int, height: int, fps: float, rate: float, stop, conn) -> None:
    """Built-in publisher: same streams as the synthetic lab, content kept simple."""
    from mmer.clock import local_clock, sleep_until
    from mmer.streams import StreamType, physio_spec, video_spec
    from mmer.transport import FramePublisher, SampleOutlet, VideoOutlet

    pub = FramePublisher()
    rgb = VideoOutlet(video_spec(StreamType.VIDEO_RGB, width=width, height=height, fps=fps, endpoint=pub.endpoint,
                                 name="mmer.rgb", source_id=f"{session}-rgb"), publisher=pub)
    depth = VideoOutlet(video_spec(StreamType.VIDEO_DEPTH, width=width, height=height, fps=fps,
                                   endpoint=pub.endpoint, name="mmer.depth", source_id=f"{session}-depth"),
                        publisher=pub)
    physio = {k: SampleOutlet(physio_spec(k, rate=rate, source_id=f"{session}-{k.lower()}")) for k in _KINDS}
    rng = np.random.default_rng(1000)
    pool_rgb = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    pool_depth = [rng.integers(400, 1200, (height, width), dtype=np.uint16) for _ in range(8)]
    conn.send({"sources": [f"{session}-rgb", f"{session}-depth", *[f"{session}-{k.lower()}" for k in _KINDS]]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        rgb.wait_for_consumers(0.1) and depth.wait_for_consumers(0.1)
        and all(o.have_consumers() for o in physio.values())
    ):
        pass
    time.sleep(0.5)
    t0 = local_clock()
    frames = 0
    samples = 0
    while not stop.is_set():
        t = t0 + frames / fps
        sleep_until(t)
        rgb.push(pool_rgb[frames % 8], frames, t)
        depth.push(pool_depth[frames % 8], frames, t)
        frames += 1
        upto = int((local_clock() - t0) * rate)
        if upto > samples:
            n = upto - samples
            ts = t0 + (samples + np.arange(n)) / rate
            for k, outlet in physio.items():
                outlet.push_chunk(np.sin(2 * np.pi * ts / 5.0)[:, None] + 0.01 * len(k), ts)
            samples = upto
    conn.send({"frames_published": 2 * frames, "frames_skipped": 0, "samples_published": 4 * samples})
    for outlet in (rgb, depth, *physio.values()):
        outlet.close()
    pub.close()


def _synthetic(session: str, width: int, height: int, fps: float, rate: float, stop, conn) -> None:
    """Publisher built from the synthetic lab's adapters; reports what they pushed."""
    from mmer.sensors import create_sensor

    try:
        cam = create_sensor("synthetic-camera", width=width, height=height, fps=fps, depth=True, truth=False,
                            source_id=f"{session}-cam", wait_for_consumers=30.0)
        phys = create_sensor("synthetic-physio", rate=rate, source_id=f"{session}-physio", wait_for_consumers=30.0)
        cam.start()
        phys.start()
    except Exception as err:  # noqa: BLE001 - the parent falls back and says why
        conn.send({"error": repr(err)})
        return
    specs = [*cam.specs, *phys.specs]
    conn.send({"sources": [s.source_id for s in specs]})
    stop.wait()
    cam.stop()
    phys.stop()
    n_video = sum(1 for s in specs if s.is_video)
    n_physio = sum(1 for s in specs if s.is_physio)
    # The camera skips frames it is too late for (like a real one) and keeps its clock; each
    # skipped frame is missing from every video stream it publishes.
    conn.send({"frames_published": n_video * cam.health.frames, "frames_skipped": n_video * cam.health.frames_dropped,
               "samples_published": n_physio * phys.health.samples})


def run(args: argparse.Namespace) -> dict:
    from mmer.clock import local_clock
    from mmer.fusion import AlignmentBuffer

    seconds = args.minutes * 60.0
    if seconds <= 0:
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    warmup = args.warmup if args.warmup is not None else min(60.0, max(10.0, 0.1 * seconds))
    ctx = mp.get_context("spawn")
    session = f"soak-{uuid.uuid4().hex[:8]}"
    used = None
    notes = []
    for source in (("synthetic", "builtin") if args.source == "auto" else (args.source,)):
        stop = ctx.Event()
        parent, child = ctx.Pipe()
        target = _synthetic if source == "synthetic" else _builtin
        proc = ctx.Process(target=target, args=(session, args.width, args.height, args.fps, args.rate, stop, child),
                           daemon=True)
        proc.start()
        hello = parent.recv() if parent.poll(60) else {"error": "source did not start"}
        if "error" not in hello:
            used = source
            break
        notes.append(f"{source}: {hello['error']}")
        proc.join(5)
    if used is None:
        raise RuntimeError(f"no source could start: {notes}")

    me = psutil.Process()
    buf = AlignmentBuffer(seconds=30.0, frame_seconds=5.0, stall_timeout=2.0)
    # Connect the RGB stream last: a source that waits for its first RGB consumer then starts
    # with every other stream already subscribed.
    sources = sorted(hello["sources"], key=lambda sid: sid.endswith("-rgb"))
    keys = buf.connect(source_ids=sources, timeout=15)
    rss_start = None
    rss_max = 0.0
    windows = complete = 0
    missing: dict[str, int] = {}
    t_begin = time.monotonic()
    next_cut = t_begin + 3.0
    with tqdm(total=int(seconds), desc="soak", unit="s", leave=False) as bar:
        while (elapsed := time.monotonic() - t_begin) < seconds:
            time.sleep(0.25)
            bar.update(int(elapsed) - bar.n)
            rss = me.memory_info().rss / 2**20
            rss_max = max(rss_max, rss)
            if rss_start is None and elapsed >= warmup:
                rss_start = rss
            if time.monotonic() >= next_cut:
                now = local_clock()
                win = buf.window(now - 2.5, now - 0.5, timeout=1.0)
                windows += 1
                complete += int(win.complete)
                for key, why in win.missing.items():
                    missing[f"{key}: {why}"] = missing.get(f"{key}: {why}", 0) + 1
                next_cut += 1.0
    rss_end = me.memory_info().rss / 2**20
    during = buf.stats()["streams"]  # stalls while the sources ran (stopping them is not one)
    stop.set()
    report = parent.recv() if parent.poll(30) else {}
    proc.join(10)
    time.sleep(1.0)  # let the last chunks and frames arrive before counting
    buf.close()
    stats = buf.stats()["streams"]
    frame_keys = [k for k in keys if stats[k]["type"] in ("VideoRGB", "VideoDepth")]
    physio_keys = [k for k in keys if k not in frame_keys]
    received_frames = sum(stats[k]["received"] for k in frame_keys)
    received_samples = sum(stats[k]["received"] for k in physio_keys)
    frames_total = report.get("frames_published", 0) + report.get("frames_skipped", 0)
    samples_total = report.get("samples_published", 0)
    return {
        "physio_lost": int(samples_total - received_samples),
        "frames_dropped": int(frames_total - received_frames),
        "frames_total": int(frames_total),
        "rss_mb_start": float(rss_start if rss_start is not None else rss_end),
        "rss_mb_end": float(rss_end),
        "rss_mb_max": float(rss_max),
        "frames_dropped_counted": int(sum(stats[k]["dropped"] + stats[k].get("missed", 0) for k in frame_keys)),
        "frames_skipped_by_source": int(report.get("frames_skipped", 0)),
        "physio_samples": int(received_samples),
        "windows": windows,
        "windows_complete": complete,
        "windows_missing": missing,
        "source": used,
        "source_notes": notes,
        "streams": {k: {**{c: stats[k].get(c) for c in ("received", "dropped", "missed", "first_index", "gaps",
                                                       "non_monotonic") if c in stats[k]},
                        "stalls": during[k]["stalls"]}
                    for k in keys},
        "settings": {"minutes": args.minutes, "width": args.width, "height": args.height, "fps": args.fps,
                     "rate": args.rate, "warmup_s": warmup},
    }
