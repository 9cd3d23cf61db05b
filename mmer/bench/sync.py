"""``mmer bench sync``: alignment error of buffer windows against known ground truth.

Two simulated sources feed an :class:`~mmer.fusion.AlignmentBuffer` through its in-process API,
faster than real time and deterministically (seeded): a physiology host (EDA/ECG/PPG/RSP at
200 Hz) and a camera host (30 fps). Their clocks disagree with the local one by a constant offset
(250 ms and -120 ms), drift (50 ppm and -30 ppm); every stamp carries +-2 ms uniform jitter; 1 % of
samples and frames never arrive; halfway through, the physiology host's clock is reset (jumps back
1000 s). Clock offsets reach the buffer as periodic ``time_correction``-like measurements with
+-0.1 ms noise, like an LSL inlet's. Every sample's value is its ground-truth index, so each
sample in every window can be checked against the moment it was really taken.

Reported: ``error_ms`` (p50/p99/max of |aligned - true| over every sample and frame in every
window), the same for raw stamps (what no correction would give), window-membership errors,
and injected versus counted drops and resets.
"""

from __future__ import annotations

import argparse

import numpy as np

from mmer.fusion import AlignmentBuffer
from mmer.streams import StreamType, physio_spec, video_spec

NAME = "sync"
HELP = "alignment error after injecting offset, drift, jitter, drops and a clock reset"

_PHYSIO = (StreamType.EDA, StreamType.ECG, StreamType.PPG, StreamType.RSP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated session length")
    parser.add_argument("--rate", type=float, default=200.0, help="physiology rate in Hz")
    parser.add_argument("--fps", type=float, default=30.0, help="video rate")
    parser.add_argument("--offset-ms", type=float, default=250.0, help="physiology host clock offset")
    parser.add_argument("--drift-ppm", type=float, default=50.0, help="physiology host clock drift")
    parser.add_argument("--jitter-ms", type=float, default=2.0, help="uniform +- timestamp jitter")
    parser.add_argument("--drop", type=float, default=0.01, help="fraction of samples/frames lost")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between clock measurements")
    parser.add_argument("--window", type=float, default=1.0, help="window length in seconds")
    parser.add_argument("--seed", type=int, default=1000)


class _Source:
    """A host clock: remote = local * (1 + drift) + offset, with a reset at ``reset_at``."""

    def __init__(self, offset: float, drift: float, reset_at: float | None, reset_jump: float) -> None:
        self.offset, self.drift, self.reset_at, self.jump = offset, drift, reset_at, reset_jump

    def remote(self, t_local):
        t = np.asarray(t_local, dtype=np.float64)
        r = t + self.drift * t + self.offset
        if self.reset_at is not None:
            r = np.where(t >= self.reset_at, r - self.jump, r)
        return r

    def correction(self, t_local: float) -> float:
        """What ``time_correction()`` measures at local time ``t_local``: local - remote."""
        return float(t_local - self.remote(t_local))


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    duration = float(args.seconds)
    jitter = args.jitter_ms / 1000.0
    t_start = 1000.0  # local clock origin of the simulation
    physio_src = _Source(args.offset_ms / 1000.0, args.drift_ppm * 1e-6, t_start + duration / 2, 1000.0)
    camera_src = _Source(-0.120, -30e-6, None, 0.0)

    buf = AlignmentBuffer(seconds=duration + 10, frame_seconds=duration + 10, stall_timeout=1e9,
                          clock_refresh=args.refresh)
    keys: dict = {}
    for kind in _PHYSIO:  # one host: the four streams share the first one's clock model
        keys[kind] = buf.add_stream(
            physio_spec(kind, rate=args.rate, source_id=f"bench-{kind.value}"), clock=keys.get(_PHYSIO[0])
        )
    first = keys[_PHYSIO[0]]
    cam = buf.add_stream(
        video_spec(StreamType.VIDEO_RGB, width=4, height=4, fps=args.fps, endpoint="", source_id="bench-cam")
    )

    n_s = int(duration * args.rate)
    t_true = {k: t_start + np.arange(n_s) / args.rate + rng.uniform(0, 1 / args.rate) for k in _PHYSIO}
    n_f = int(duration * args.fps)
    f_true = t_start + np.arange(n_f) / args.fps + 0.003
    kept = {k: rng.random(n_s) >= args.drop for k in _PHYSIO}
    f_kept = rng.random(n_f) >= args.drop
    stamps = {k: physio_src.remote(t_true[k]) + rng.uniform(-jitter, jitter, n_s) for k in _PHYSIO}
    f_stamps = camera_src.remote(f_true) + rng.uniform(-jitter, jitter, n_f)
    frame = np.zeros((4, 4, 3), np.uint8)

    step = 0.05  # ingest chunks of 50 ms, like a device app
    next_meas = t_start
    after_reset = False
    windows, errors, raw_errors, membership = 0, [], [], 0
    next_win = t_start + 3.0
    t = t_start
    while t < t_start + duration:
        t_next = t + step
        if t >= next_meas:
            noise = rng.uniform(-1e-4, 1e-4, 2)
            buf.set_clock_offset(first, physio_src.correction(t) + noise[0], at=t)
            buf.set_clock_offset(cam, camera_src.correction(t) + noise[1], at=t)
            reset_seen = physio_src.reset_at is not None and t >= physio_src.reset_at
            # An LSL worker re-measures at once after a data reset, then settles back.
            next_meas = t + (0.2 if reset_seen and not after_reset else args.refresh)
            after_reset = reset_seen
        for k in _PHYSIO:
            sel = (t_true[k] >= t) & (t_true[k] < t_next) & kept[k]
            idx = np.flatnonzero(sel)
            if idx.size:
                buf.push_samples(keys[k], idx.astype(np.float64), stamps[k][idx])
        for i in np.flatnonzero((f_true >= t) & (f_true < t_next) & f_kept):
            buf.push_frame(cam, int(i), float(f_stamps[i]), frame)
        t = t_next
        # Cut windows that ended at least 1 s ago (the clock fit then has measurements after them).
        while next_win + args.window + 1.0 <= t:
            w0, w1 = next_win, next_win + args.window
            win = buf.window(w0, w1, resample_hz=50.0, timeout=0)
            windows += 1
            for k in _PHYSIO:
                part = win.signals[keys[k]]
                idx = part.data[:, 0].astype(np.int64)
                errors.append(part.timestamps - t_true[k][idx])
                raw_errors.append(part.raw_timestamps - t_true[k][idx])
                truth_in = np.flatnonzero((t_true[k] >= w0) & (t_true[k] <= w1) & kept[k])
                membership += len(set(truth_in.tolist()) ^ set(idx.tolist()))
            fw = win.frames[cam]
            errors.append(fw.timestamps - f_true[fw.indices])
            raw_errors.append(fw.raw_timestamps - f_true[fw.indices])
            truth_in = np.flatnonzero((f_true >= w0) & (f_true <= w1) & f_kept)
            membership += len(set(truth_in.tolist()) ^ set(fw.indices.tolist()))
            next_win += args.window

    err = np.abs(np.concatenate(errors)) * 1000.0
    raw = np.abs(np.concatenate(raw_errors)) * 1000.0
    stats = buf.stats()["streams"]
    injected_drops = int(sum((~kept[k]).sum() for k in _PHYSIO) + (~f_kept).sum())
    counted_drops = int(sum(stats[keys[k]]["dropped"] for k in _PHYSIO) + stats[cam]["dropped"])
    return {
        "error_ms": {
            "p50": float(np.percentile(err, 50)),
            "p99": float(np.percentile(err, 99)),
            "max": float(err.max()),
        },
        "uncorrected_error_ms": {"p50": float(np.percentile(raw, 50)), "p99": float(np.percentile(raw, 99))},
        "windows": windows,
        "samples_checked": int(err.size),
        "membership_errors": membership,
        "drops_injected": injected_drops,
        "drops_counted": counted_drops,
        "clock_resets_detected": int(stats[first]["clock_resets"]),
        "data_resets_detected": int(stats[first]["data_resets"]),
        "settings": {
            "seconds": duration,
            "offset_ms": args.offset_ms,
            "drift_ppm": args.drift_ppm,
            "jitter_ms": args.jitter_ms,
            "drop": args.drop,
            "refresh_s": args.refresh,
            "seed": args.seed,
        },
    }
