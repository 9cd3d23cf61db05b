"""``mmer bench synth``: writer throughput and live synthetic camera CPU cost.

* ``seconds_per_minute``: wall-clock seconds to write one minute of 640x480 30 fps RGB (JPG) +
  16-bit depth (PNG) + 4 physiology channels in the CAS(ME)^3 Part A layout (target <= 30 s on
  2 cores), measured on ``--seconds`` of video and scaled to a minute.
* ``camera_cpu_pct``: CPU time of the whole process while a real-time
  :class:`~mmer.sensors.synthetic.SyntheticCamera` renders and publishes RGB + depth at 30 fps,
  as a percentage of one core (target <= 50 %). Generating a segment (timeline and physiology)
  happens once per segment; ``camera_cpu_pct_with_generation`` adds it, amortised.

With ``--coupling``, also measures how much emotion information each modality carries on
synthetic expressions (5-fold CV over all 7 classes, random forest): physiology features alone
(EDA rise, heart-rate change, breathing slowdown, PPG amplitude), the ground-truth AU codes alone,
and both. These are upper bounds for what a model can extract, and what fusion can add.

Uses the face ``45-m7-di-ph.jpg`` (packaged face if absent; a development face of the registry) and
seed 1000. Rendering includes the realism knobs (Student-t noise, lighting drift, per-frame JPEG).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

NAME = "synth"
HELP = "synthetic writer throughput (s per minute of video) and live synthetic camera CPU"

_HELD_OUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces" / "45-m7-di-ph.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="video seconds to write (default 60)")
    parser.add_argument("--camera-seconds", type=float, default=15.0, help="live camera run length (default 15)")
    parser.add_argument("--workers", type=int, default=2, help="writer threads (default 2)")
    parser.add_argument("--face", help="face photo (default: 45-m7-di-ph.jpg)")
    parser.add_argument("--seed", type=int, default=1000, help="seed (default 1000)")
    parser.add_argument("--coupling", action="store_true",
                        help="also measure emotion information in physiology vs AU codes (about a minute)")
    parser.add_argument("--coupling-sessions", type=int, default=40, help="90-s sessions for --coupling (40)")


def _face(args) -> str:
    from mmer.synth import default_face_path

    if args.face:
        return args.face
    return str(_HELD_OUT if _HELD_OUT.is_file() else default_face_path())


def _write(args, face) -> dict:
    from mmer.synth import write_casme3

    tmp = Path(tempfile.mkdtemp(prefix="mmer-bench-synth-"))
    proc = psutil.Process()
    try:
        c0 = proc.cpu_times()
        t = time.perf_counter()
        summary = write_casme3(tmp / "set", part="A", subjects=1, videos=1, seconds=args.seconds, seed=args.seed,
                               faces=[face], workers=args.workers, progress=False)
        wall = time.perf_counter() - t
        c1 = proc.cpu_times()
        size = sum(p.stat().st_size for p in (tmp / "set").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "seconds_per_minute": wall / args.seconds * 60.0,
        "write_wall_s": wall,
        # CPU seconds per minute of video: on an otherwise idle 2-core machine the wall time is
        # about half of this (the writer keeps 2 threads busy).
        "write_cpu_s_per_minute": ((c1.user - c0.user) + (c1.system - c0.system)) / args.seconds * 60.0,
        "write_frames": summary["frames"],
        "write_mb_per_minute": size / 1e6 / args.seconds * 60.0,
    }


def _camera(args, face) -> dict:
    from mmer.clock import local_clock
    from mmer.sensors.synthetic import SyntheticCamera
    from mmer.synth import SyntheticLab

    segment = max(60.0, args.camera_seconds + 5)
    lab = SyntheticLab(face=face, seed=args.seed, segment=segment, prefetch=False, epoch=None)
    t = time.perf_counter()
    lab.segment(0)  # one segment covers the run; its generation is timed separately
    build = time.perf_counter() - t
    cam = SyntheticCamera(lab=lab, seed=args.seed, source_id=f"mmer-bench-synth-{args.seed}",
                          seconds=args.camera_seconds)
    proc = psutil.Process()
    cam.start()
    c0 = proc.cpu_times()
    t0 = local_clock()
    cam.wait(args.camera_seconds + 30)
    elapsed = local_clock() - t0
    c1 = proc.cpu_times()
    cam.stop()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    pct = 100.0 * cpu / elapsed
    return {
        "camera_cpu_pct": pct,
        "camera_cpu_pct_with_generation": pct + 100.0 * build / segment,
        "segment_build_s": build,
        "segment_s": segment,
        "camera_fps": cam.health.frames / elapsed,
        "camera_frames": cam.health.frames,
        "camera_frames_dropped": cam.health.frames_dropped,
    }


def _event_features(session, e) -> list[float] | None:
    """Physiology around one expression: EDA rise, HR change, breathing slowdown, PPG amplitude."""
    import neurokit2 as nk

    t, r = session.physio_times, session.physio_rate
    t0 = e.onset / session.fps
    if t0 < 4 or t0 > t[-1] - 6:
        return None
    eda, rsp, ppg = session.physio["eda"], session.physio["rsp"], session.physio["ppg"]
    peaks = nk.ecg_peaks(session.physio["ecg"], sampling_rate=int(r))[1]["ECG_R_Peaks"]
    pt = t[peaks]
    ihr, pt = 60.0 / np.diff(pt), pt[1:]
    before, after = ihr[(pt >= t0 - 3) & (pt < t0)], ihr[(pt >= t0 + 1.5) & (pt < t0 + 6)]
    slope = np.abs(np.gradient(rsp)) * r
    return [
        eda[(t >= t0 + 1) & (t < t0 + 5)].max() - eda[(t >= t0 - 1) & (t < t0)].mean(),
        (after.mean() if len(after) else 0.0) - (before.mean() if len(before) else 0.0),
        slope[(t > t0 + 0.5) & (t < t0 + 2.5)].mean() / max(slope[(t > t0 - 4) & (t < t0)].mean(), 1e-6),
        np.ptp(ppg[(t > t0 + 2) & (t < t0 + 5)]) / max(np.ptp(ppg[(t > t0 - 3) & (t < t0)]), 1e-6),
        float(e.kind == "mae"),
    ]


def _coupling(args, face_path) -> dict:
    import warnings

    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.metrics import f1_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
    except ImportError:
        raise ValueError("--coupling needs scikit-learn (pip install scikit-learn)") from None
    from mmer.synth import EMOTIONS, SynthConfig, generate_session, load_face
    from mmer.synth._config import parse_aus

    face = load_face(face_path, size=(160, 120))
    cfg = SynthConfig(me_per_min=4, mae_per_min=4, emotions={e: 1.0 for e in EMOTIONS})
    phys, aus, labels = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(args.coupling_sessions):
            s = generate_session(face, seconds=90, size=(160, 120), seed=args.seed + k, config=cfg)
            for e in s.timeline.expressions:
                feats = _event_features(s, e)
                if feats is None:
                    continue
                codes = np.zeros(50)
                codes[[au for au, _ in parse_aus(e.au_text)]] = 1
                phys.append(feats)
                aus.append(codes)
                labels.append(e.emotion)
    x_p, x_a, y = np.array(phys), np.array(aus), np.array(labels)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    out = {"coupling_events": len(y), "coupling_chance_uar": 1.0 / len(EMOTIONS)}
    for name, x in (("physio", x_p), ("aus", x_a), ("aus_physio", np.hstack([x_a, x_p]))):
        pred = cross_val_predict(RandomForestClassifier(300, min_samples_leaf=3, random_state=0), x, y, cv=cv)
        out[f"coupling_uf1_{name}"] = float(f1_score(y, pred, average="macro"))
    return out


def _render(face) -> dict:
    from mmer.synth import generate_session

    s = generate_session(face, seconds=2.0, seed=1000)
    times = {"rgb": [], "depth": []}
    for pos in range(60):
        for name in times:
            t = time.perf_counter()
            getattr(s, name)(pos)
            times[name].append((time.perf_counter() - t) * 1000)
    return {f"render_{k}_ms_p50": float(np.median(v)) for k, v in times.items()}


def run(args: argparse.Namespace) -> dict:
    """Run both measurements once and return the JSON dict."""
    from mmer.synth import load_face

    if args.seconds <= 0 or args.camera_seconds <= 0 or args.workers < 1:
        raise ValueError("--seconds and --camera-seconds must be > 0 and --workers >= 1")
    face_path = _face(args)
    face = load_face(face_path)
    result = {"face": Path(face_path).name, "cpu_count": psutil.cpu_count(), "seed": args.seed}
    result |= _render(face)
    result |= _write(args, face)
    result |= _camera(args, face_path)
    if args.coupling:
        result |= _coupling(args, face_path)
    result["load_avg_1m"] = psutil.getloadavg()[0]
    return result
