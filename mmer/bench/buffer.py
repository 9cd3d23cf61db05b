"""``mmer bench buffer``: physiology ingest throughput of three consumers on one LSL stream.

One sender process publishes a 4-channel physiology stream (ECG, PPG, RSP, EDA; nominal 200 Hz,
every sample with its own timestamp, numpy chunks) as fast as it can, so the consumer is the
bottleneck. Three consumers then take turns on that same live stream, each in a fresh process
and each keeping ``--seconds`` of history:

- ``mmer``: :class:`~mmer.fusion.AlignmentBuffer` (numpy ``dest_obj`` pulls into its rings);
- ``mne_lsl``: MNE-LSL's ``StreamLSL`` with its default 1 ms acquisition delay;
- ``pylsl_list``: pylsl ``pull_chunk`` returning Python lists, kept in a ``deque``;
- ``pylsl_numpy_bare`` (reference ceiling, not a buffer): numpy pulls that keep nothing, i.e.
  what liblsl itself delivers to one inlet on this machine.

Reported: samples ingested per second of wall time (after a warm-up), and per CPU second of
the consumer process; and, to separate the buffer's own cost from liblsl's, how fast
``AlignmentBuffer.push_samples`` ingests the same 4-channel chunks in process (no LSL).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
import uuid

import numpy as np

NAME = "buffer"
HELP = "physio throughput: mmer AlignmentBuffer vs MNE-LSL StreamLSL vs pylsl list path"

_CONSUMERS = ("mmer", "mne_lsl", "pylsl_list", "pylsl_numpy_bare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per consumer and round")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before counting starts")
    parser.add_argument("--rounds", type=int, default=3,
                        help="each consumer runs this many times, order rotated; medians are reported")
    parser.add_argument("--seconds", type=float, default=30.0, help="history kept by each consumer")
    parser.add_argument("--chunk", type=int, default=4096, help="samples per pushed chunk")


def _spec(source_id: str):
    from mmer.streams import Channel, StreamSpec, StreamType

    chans = tuple(Channel(k, u, k) for k, u in (("ECG", "millivolts"), ("PPG", "normalized"),
                                                  ("RSP", "normalized"), ("EDA", "microsiemens")))
    return StreamSpec(name=f"bench.physio.{source_id[-6:]}", type=StreamType.ECG, rate=200.0, channels=chans,
                      source_id=source_id)


def _send(source_id: str, chunk: int, stop, conn) -> None:
    """Sender process: push numpy chunks with per-sample stamps until told to stop."""
    from mmer.clock import local_clock
    from mmer.transport import SampleOutlet

    outlet = SampleOutlet(_spec(source_id))
    conn.send("ready")
    rng = np.random.default_rng(0)
    data = rng.standard_normal((chunk, 4)).astype(np.float32)
    t0 = local_clock()
    n = 0
    while not stop.is_set():
        if not outlet.have_consumers():
            time.sleep(0.01)
            continue
        outlet.push_chunk(data, t0 + (n + np.arange(chunk)) / 200.0)
        n += chunk
    conn.send(n)
    outlet.close()


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _consume(kind: str, source_id: str, duration: float, warmup: float, seconds: float, conn) -> None:
    """Consumer process: report (samples counted, wall seconds, cpu seconds) or the error."""
    import collections

    import pylsl

    try:
        if kind == "mmer":
            from mmer.fusion import AlignmentBuffer

            buf = AlignmentBuffer(seconds=seconds)
            (key,) = buf.connect(source_ids=[source_id], timeout=10)

            def count() -> int:
                return buf.stats()["streams"][key]["received"]

            def close() -> None:
                buf.close()

        elif kind == "mne_lsl":
            from mne_lsl.stream import StreamLSL

            stream = StreamLSL(bufsize=seconds, source_id=source_id).connect(acquisition_delay=0.001, timeout=10)

            def count() -> int:
                return stream.n_new_samples

            def close() -> None:
                stream.disconnect()

        else:
            info = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)[0]
            dest = np.empty((4096, 4), dtype=np.float32)
            inlet = pylsl.StreamInlet(info, max_buflen=360)
            inlet.open_stream(10.0)
            ring: collections.deque = collections.deque(maxlen=int(seconds * 200))
            total = [0]

            def count() -> int:
                return total[0]

            def close() -> None:
                inlet.close_stream()

        t_start = time.monotonic()
        marks = {}
        while True:
            now = time.monotonic()
            if "start" not in marks and now - t_start >= warmup:
                marks["start"] = (count(), now, _cpu())
            if now - t_start >= warmup + duration:
                marks["end"] = (count(), now, _cpu())
                break
            if kind == "pylsl_list":
                samples, ts = inlet.pull_chunk(timeout=0.02, max_samples=1024)
                ring.extend(zip(ts, samples))
                total[0] += len(ts)
            elif kind == "pylsl_numpy_bare":
                _, ts = inlet.pull_chunk(timeout=0.02, max_samples=4096, dest_obj=dest, as_numpy=True)
                total[0] += len(ts)
            else:
                time.sleep(0.02)
        close()
        (n0, t0, c0), (n1, t1, c1) = marks["start"], marks["end"]
        conn.send((n1 - n0, t1 - t0, c1 - c0))
    except Exception as err:  # noqa: BLE001 - report to the parent
        conn.send(f"error: {err!r}")
    conn.close()
    # The measurement is delivered; skip interpreter teardown. A child of this benchmark was once
    # seen dying with a fatal error during shutdown (after sending its result), which says nothing
    # about throughput but litters the output.
    os._exit(0)


def _ingest_only(seconds: float, chunk: int, history: float) -> float:
    """Samples per second that ``push_samples`` alone sustains for ``seconds`` (no transport)."""
    from mmer.fusion import AlignmentBuffer

    buf = AlignmentBuffer(seconds=history)
    key = buf.add_stream(_spec("bench-ingest-only"))
    data = np.random.default_rng(0).standard_normal((chunk, 4)).astype(np.float32)
    n = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        buf.push_samples(key, data, (n + np.arange(chunk)) / 200.0)
        n += chunk
    return n / elapsed


def run(args: argparse.Namespace) -> dict:
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        raise ValueError("--duration must be > 0, --warmup >= 0 and --rounds >= 1")
    ctx = mp.get_context("spawn")
    source_id = f"bench-buffer-{uuid.uuid4().hex[:8]}"
    stop = ctx.Event()
    s_parent, s_child = ctx.Pipe()
    sender = ctx.Process(target=_send, args=(source_id, args.chunk, stop, s_child), daemon=True)
    sender.start()
    results: dict = {}
    try:
        if not s_parent.poll(30) or s_parent.recv() != "ready":
            raise RuntimeError("sender did not start")
        for r in range(args.rounds):
            order = _CONSUMERS[r % len(_CONSUMERS):] + _CONSUMERS[: r % len(_CONSUMERS)]
            for kind in order:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_consume, args=(kind, source_id, args.duration, args.warmup,
                                                           args.seconds, child), daemon=True)
                proc.start()
                if not parent.poll(args.duration + args.warmup + 60):
                    proc.terminate()
                    raise RuntimeError(f"{kind} consumer returned nothing")
                res = parent.recv()
                proc.join(10)
                if isinstance(res, str):
                    raise RuntimeError(f"{kind} consumer failed: {res}")
                results.setdefault(kind, []).append(res)
    finally:
        stop.set()
        sent = s_parent.recv() if s_parent.poll(10) else None
        sender.join(5)
        if sender.is_alive():
            sender.terminate()
    rates = {k: [n / wall for n, wall, _ in runs] for k, runs in results.items()}
    per_cpu = {k: float(np.median([n / cpu for n, _, cpu in runs if cpu > 0])) for k, runs in results.items()}
    rate = {k: float(np.median(v)) for k, v in rates.items() if k != "pylsl_numpy_bare"}
    return {
        "samples_per_s": rate,
        "samples_per_cpu_s": per_cpu,
        "ratio_vs_mne_lsl": rate["mmer"] / rate["mne_lsl"] if rate["mne_lsl"] else None,
        "ratio_vs_pylsl_list": rate["mmer"] / rate["pylsl_list"] if rate["pylsl_list"] else None,
        "liblsl_ceiling_samples_per_s": float(np.median(rates["pylsl_numpy_bare"])),
        "mmer_ingest_only_samples_per_s": _ingest_only(1.0, args.chunk, args.seconds),
        "rounds": {k: [round(x) for x in v] for k, v in rates.items()},
        "samples_sent": sent,
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                     "history_s": args.seconds,
                     "channels": 4, "chunk": args.chunk},
    }
