"""``mmer bench transport``: frame latency over ZeroMQ and over LSL, at 640x480 and 1280x720.

A sender in this process publishes BGR frames at a steady rate, each stamped with
``local_clock()`` just before it is handed to the transport; a receiver in a separate process
(spawned, so no GIL is shared) takes ``local_clock()`` when the frame is fully in its memory.
Latency = receive time - send stamp (one host, one clock). Both paths are measured in the same
run: ZeroMQ multipart (:class:`~mmer.transport.FramePublisher`) and one LSL ``int8`` sample per
frame through pylsl's numpy path. The first ``--warmup`` frames are discarded.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid

import numpy as np

NAME = "transport"
HELP = "frame latency p50/p95/p99 over ZeroMQ and LSL at 640x480 and 1280x720"

_SIZES = {"640x480": (480, 640), "1280x720": (720, 1280)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=150, help="frames per transport and size")
    parser.add_argument("--fps", type=float, default=30.0, help="send rate")
    parser.add_argument("--warmup", type=int, default=10, help="frames discarded at the start")
    parser.add_argument("--sizes", nargs="+", default=list(_SIZES), choices=list(_SIZES))


def _receive(kind: str, address: str, n: int, shape: tuple, conn) -> None:
    """Receiver process: report one latency per frame (seconds), or the error."""
    import pylsl

    from mmer.clock import local_clock
    from mmer.transport import FrameSubscriber

    try:
        lat = []
        if kind == "zmq":
            sub = FrameSubscriber(address)
            conn.send("ready")
            while len(lat) < n:
                frame = sub.recv(timeout=10.0)
                if frame is None:
                    break
                lat.append(local_clock() - frame.timestamp)
            sub.close()
        else:
            found = pylsl.resolve_byprop("source_id", address, 1, 10.0)
            inlet = pylsl.StreamInlet(found[0], max_buflen=5)
            inlet.open_stream(10.0)
            dest = np.empty((1, int(np.prod(shape))), dtype=np.int8)
            conn.send("ready")
            while len(lat) < n:
                _, ts = inlet.pull_chunk(timeout=10.0, max_samples=1, dest_obj=dest, as_numpy=True)
                if len(ts) == 0:
                    break
                lat.append(local_clock() - ts[0])
            inlet.close_stream()
        conn.send(np.asarray(lat))
    except Exception as err:  # noqa: BLE001 - report to the parent instead of dying silently
        conn.send(f"error: {err!r}")


def _measure(kind: str, hw: tuple, args: argparse.Namespace) -> dict:
    import pylsl

    from mmer.clock import local_clock, sleep_until
    from mmer.transport import FramePublisher

    h, w = hw
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    if kind == "zmq":
        pub = FramePublisher()
        address = pub.endpoint
    else:
        address = f"bench-lsl-{uuid.uuid4().hex[:8]}"
        info = pylsl.StreamInfo(f"bench.{w}x{h}", "VideoRGB", h * w * 3, args.fps, pylsl.cf_int8, address)
        outlet = pylsl.StreamOutlet(info, 0, 2)
    proc = ctx.Process(target=_receive, args=(kind, address, args.frames, (h, w, 3), child), daemon=True)
    proc.start()
    try:
        if not parent.poll(30) or parent.recv() != "ready":
            raise RuntimeError(f"{kind} receiver did not start")
        if kind == "zmq":
            pub.wait_for_subscribers(10.0)
        else:
            outlet.wait_for_consumers(10.0)
        time.sleep(0.2)
        t_next = local_clock()
        for i in range(args.frames):
            sleep_until(t_next)
            frame = frames[i % len(frames)]
            if kind == "zmq":
                pub.send("bench", i, local_clock(), frame)
            else:
                outlet.push_chunk(frame.reshape(1, -1).view(np.int8), local_clock())
            t_next += 1.0 / args.fps
        if not parent.poll(30):
            raise RuntimeError(f"{kind} receiver returned nothing")
        lat = parent.recv()
        if isinstance(lat, str):
            raise RuntimeError(f"{kind} receiver failed: {lat}")
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
        if kind == "zmq":
            pub.close()
        else:
            del outlet
    ms = np.asarray(lat[args.warmup :]) * 1000.0
    if ms.size == 0:
        raise RuntimeError(f"{kind}: no frames received after warm-up")
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "received": int(len(lat)),
        "sent": int(args.frames),
    }


def run(args: argparse.Namespace) -> dict:
    if args.frames <= args.warmup:
        raise ValueError(f"--frames ({args.frames}) must exceed --warmup ({args.warmup})")
    out: dict = {"zmq": {}, "lsl": {}}
    for size in args.sizes:
        for kind in ("zmq", "lsl"):
            out[kind][size] = _measure(kind, _SIZES[size], args)
    out["settings"] = {"frames": args.frames, "fps": args.fps, "warmup": args.warmup}
    return out
