"""``mmer bench spot``: MEGC F1, the cost of each rejection rule, and per-stage cost of the spotter.

**The frozen set** (the default): the 12 identities of the face registry's ``frozen`` split (three
real talking-face frames and nine morphs of them; no source image is shared with development),
one 60 s session each, seeds ``FROZEN_SEED + i``. No spotter setting may be chosen on it: it is
measured once per release and reported as such; ``"frozen": true`` in the result says that the
run used the set exactly as released. ``--me-overlap`` changes only the generator's share of MEs
placed during a distractor. ``--set dev`` draws development sessions instead (the 22 ``dev``
identities, seeds below ``FROZEN_SEED``), for sweeps and development tables.

**Rule cost** (``--rule-cost``): every session is also run with each rejection rule switched off
(``SpotterConfig.rules``), on the same frames. Per rule: ME recall with and without it on the
MEs that overlap the rule's distractor (from the ground truth's ``overlap`` list), the true
positives it loses and the false positives it removes over all candidates, and whether it earns
more than it costs.

Timings cover only the spotter (face, align, flow, signal, peaks), not the rendering of the
synthetic frames, and only the run with every rule on. By default the process is pinned to one CPU
and OpenCV runs single-threaded. ``ms_per_frame`` is CPU time (``time.process_time``), which other
load on a shared machine does not inflate; ``wall_ms_per_frame`` is the wall time of ``push`` beside
it, with the load average. The same run times DIS, Farneback and TV-L1 (CPU time) on the spotter's
own crop pairs. ``emission_delay`` gives, per kind, how many frames (and ms) after a candidate's
offset frame the ``push`` that emitted it came.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from tqdm import tqdm

NAME = "spot"
HELP = "spotting F1 (ME/MaE/overall), rule cost and per-stage ms per frame on the frozen synthetic set"

#: First seed of the frozen set; development seeds stay below it.
FROZEN_SEED = 50000
FROZEN_SECONDS = 60.0
_TARGETS = {"default": {"me_f1": 0.85, "overall_f1": 0.80}, "overlap": {"me_f1": 0.75, "overall_f1": 0.75}}
_TARGET_MS = 8.0
# The live pipeline's early decision must follow an ME's offset within 120 ms (95th percentile).
_TARGET_DELAY_MS = 120.0
#: The distractor (ground-truth ``overlap`` kinds, or ``dynamics`` names) each rule is there for.
RULE_DISTRACTORS = {
    "head_motion": ("head_motion",),
    "speech": ("speech",),
    "ramp": ("mae_beside", "mae_inside"),
    "oscillation": ("speech", "two_phase"),
    "blink": ("blink",),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="which", choices=["frozen", "dev"], default="frozen",
                        help="frozen benchmark set (default) or development sessions")
    parser.add_argument("--me-overlap", type=float,
                        help="share of MEs placed during a distractor (generator default 0.35)")
    parser.add_argument("--sessions", type=int, help="sessions (default: one per identity of the set)")
    parser.add_argument("--seconds", type=float, help=f"length of each session (default {FROZEN_SECONDS:g} s)")
    parser.add_argument("--seed", type=int, default=0, help=f"--set dev: first seed (0..{FROZEN_SEED - 1}, default 0)")
    parser.add_argument("--rule-cost", action="store_true", help="also run with each rejection rule off")
    parser.add_argument("--spotter", action="append", default=[], metavar="KEY=VALUE",
                        help="--set dev: a SpotterConfig field to change (repeatable), for sweeps")
    parser.add_argument("--tvl1-pairs", type=int, default=10, help="crop pairs timed with TV-L1 and Farneback")
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one CPU")


def _time_flow(crops: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    from mmer.features.flow import optical_flow

    out = {}
    for method in ("dis", "farneback", "tvl1"):
        times = []
        for a, b in crops:
            t0 = time.process_time()
            optical_flow(a, b, method=method)
            times.append(time.process_time() - t0)
        out[method] = 1000.0 * float(np.median(times)) if times else None
    return out


def _delay_stats(rows: list[tuple[int | None, float | None]]) -> dict:
    """p50/p95/max of the emission delay (frames and ms from a candidate's offset frame to the frame
    whose push emitted it); candidates that only ``flush()`` returned are counted apart."""
    from mmer.live.latency import percentiles

    live = [(f, m) for f, m in rows if f is not None]
    out = {"n": len(live), "at_flush": len(rows) - len(live)}
    for unit, values in (("frames", [f for f, _ in live]), ("ms", [m for _, m in live])):
        stats = percentiles(values, qs=(50, 95))
        out.update({f"{unit}_p50": stats["p50"], f"{unit}_p95": stats["p95"], f"{unit}_max": stats["max"]})
    return out


def bench_sessions(which: str, *, sessions: int | None = None, seed: int = 0) -> list[tuple[str, int]]:
    """``(face name, seed)`` of each session of a set: one per identity, cycling when more are asked.

    The frozen set's seeds are fixed; a development set's start at ``seed`` and must stay below
    :data:`FROZEN_SEED`.
    """
    from mmer.synth import face_registry

    faces = [spec.name for spec in face_registry(which)]
    n = len(faces) if sessions is None else sessions
    if n < 1:
        raise ValueError(f"--sessions must be >= 1, got {n}")
    if which == "frozen":
        if seed:
            raise ValueError("the frozen set's seeds are fixed; --seed is for --set dev")
        first = FROZEN_SEED
    else:
        if not 0 <= seed or seed + n > FROZEN_SEED:
            raise ValueError(f"--seed {seed}: development seeds must lie within 0..{FROZEN_SEED - 1}")
        first = seed
    return [(faces[i % len(faces)], first + i) for i in range(n)]


def spotter_overrides(items: list[str]) -> dict:
    """``["min_score=3.5", "macro=false"]`` as SpotterConfig keyword arguments (typed like the field)."""
    import dataclasses

    from mmer.spotting import SpotterConfig

    types = {f.name: type(getattr(SpotterConfig(), f.name)) for f in dataclasses.fields(SpotterConfig)}
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in types or key in ("fps", "rules"):
            raise ValueError(f"--spotter {item!r}: expected KEY=VALUE with KEY a SpotterConfig field")
        kind = int if types[key] is type(None) else types[key]  # k: None means "from fps"
        try:
            out[key] = text.lower() in ("1", "true", "yes") if kind is bool else kind(text)
        except ValueError:
            raise ValueError(f"--spotter {item!r}: {text!r} is not a {kind.__name__}") from None
    return out


def _truth_tags(session) -> dict[tuple[str, str, int, int], set[str]]:
    """Each true ME's overlap kinds and dynamics, keyed like a MEGC match's truth interval."""
    out = {}
    for e in session.timeline.expressions:
        if e.kind == "me":
            key = (session.subject, session.video, session.first_index + e.onset, session.first_index + e.offset)
            out[key] = {*e.overlaps, *e.dynamics}
    return out


def _recall_on(scores: dict, tags: dict, wanted: tuple[str, ...] | None) -> tuple[int, int]:
    """(found, total) of the true MEs carrying any of ``wanted`` (all MEs when None; untagged with ())."""
    found = {(m["subject"], m["video"], m["truth"][0], m["truth"][1]) for m in scores["matches"] if m["type"] == "me"}
    keys = [k for k, t in tags.items() if (wanted is None or (t & set(wanted)) or (not wanted and not t))]
    return sum(k in found for k in keys), len(keys)


def _rule_cost(scores: dict, tags: dict) -> dict:
    """What each rule costs (recall on the MEs that meet its distractor, TPs lost) and earns (FPs removed)."""
    on = scores["all"]
    out = {}
    for rule, kinds in RULE_DISTRACTORS.items():
        off = scores[f"{rule}_off"]
        hit_on, n = _recall_on(on, tags, kinds)
        hit_off, _ = _recall_on(off, tags, kinds)
        tp_lost = {k: off[k]["tp"] - on[k]["tp"] for k in ("me", "mae")}
        fp_removed = {k: off[k]["fp"] - on[k]["fp"] for k in ("me", "mae")}
        out[rule] = {
            "distractor": list(kinds),
            "mes_meeting_it": n,
            "me_recall_on": hit_on / n if n else None,
            "me_recall_off": hit_off / n if n else None,
            "me_recall_cost": (hit_off - hit_on) / n if n else None,
            "tp_lost": tp_lost,
            "fp_removed": fp_removed,
            "me_f1": {"on": on["me"]["f1"], "off": off["me"]["f1"]},
            "overall_f1": {"on": on["overall"]["f1"], "off": off["overall"]["f1"]},
            "earns_more_than_it_costs": sum(fp_removed.values()) > sum(tp_lost.values()),
        }
    return out


def run(args: argparse.Namespace) -> dict:
    import contextlib

    import cv2

    from mmer.spotting import RULES, Spotter, SpotResult, SpotterConfig, spotting_scores, to_predictions
    from mmer.synth import SynthConfig, generate_session, load_registered

    seconds = FROZEN_SECONDS if args.seconds is None else args.seconds
    if seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    if args.me_overlap is not None and not 0 <= args.me_overlap <= 1:
        raise ValueError(f"--me-overlap must lie within [0, 1], got {args.me_overlap}")
    plan = bench_sessions(args.which, sessions=args.sessions, seed=args.seed)
    overrides = spotter_overrides(args.spotter)
    if overrides and args.which == "frozen":
        raise ValueError("--spotter is for --set dev: no spotter setting may be chosen on the frozen set")
    synth_config = SynthConfig() if args.me_overlap is None else SynthConfig(me_overlap=args.me_overlap)
    variants: dict[str, tuple[str, ...]] = {"all": RULES}
    if args.rule_cost:
        variants.update({f"{rule}_off": tuple(r for r in RULES if r != rule) for rule in RULES})
    one_core = not args.all_cores and hasattr(os, "sched_setaffinity")
    previous_affinity = os.sched_getaffinity(0) if one_core else None
    if one_core:
        os.sched_setaffinity(0, {min(previous_affinity)})
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        predictions: dict[str, list] = {name: [] for name in variants}
        truth, sessions = [], []
        tags: dict[tuple[str, str, int, int], set[str]] = {}
        delays: list[tuple[str, int | None, float | None]] = []
        totals: dict[str, float] = {}
        frames = 0
        wall = 0.0
        # Crop pairs for the flow-cost comparison, spread evenly over all sessions.
        stride = max(1, int(len(plan) * seconds * 30) // max(args.tvl1_pairs, 1))
        crop_pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for face_name, seed in plan:
            face = load_registered(face_name)
            session = generate_session(face, seconds=seconds, seed=seed, config=synth_config,
                                       subject=f"bench{seed}", video="a", min_me=3)
            recording = session.to_recording()
            found: dict[str, list] = {name: [] for name in variants}
            with contextlib.ExitStack() as stack:
                spotters = {name: stack.enter_context(Spotter(config=SpotterConfig(fps=session.fps, rules=rules,
                                                                                   **overrides),
                                                              clock=time.process_time))
                            for name, rules in variants.items()}
                main = spotters["all"]
                bar = tqdm(recording.iter_frames(), total=session.n_frames, desc=f"bench spot {seed}", unit="frame",
                           file=sys.stderr, leave=False)
                for index, t, frame in bar:
                    t0 = time.perf_counter()
                    emitted = main.push(index, t, frame)
                    wall += time.perf_counter() - t0
                    found["all"].extend(emitted)
                    # Rounded to the microsecond: 6 frames at 30 fps must read 200 ms, not 200.0000000003.
                    delays.extend((c.kind, index - c.offset, round(1000.0 * (t - c.t_offset), 3)) for c in emitted)
                    if len(crop_pairs) < args.tvl1_pairs and (frames + main.frames) % stride == stride // 2:
                        pair = main.crop_pair()
                        if pair is not None:
                            crop_pairs.append(pair)
                    for name, spotter in spotters.items():
                        if name != "all":
                            found[name].extend(spotter.push(index, t, frame))
                rest = main.flush()
                delays.extend((c.kind, None, None) for c in rest)
                for name, spotter in spotters.items():
                    found[name].extend(rest if name == "all" else spotter.flush())
                    result = SpotResult(recording.subject, recording.video, found[name], {},
                                        spotter.tracker.stats.as_dict(), dict(spotter.rejected),
                                        spotter.ms_per_frame(), spotter.frames)
                    predictions[name].extend(to_predictions(result))
                for stage, sec in main.timings.items():
                    totals[stage] = totals.get(stage, 0.0) + sec
                frames += main.frames
            truth.extend(recording.events)
            tags.update(_truth_tags(session))
            own = spotting_scores(predictions["all"], recording.events, videos=[(recording.subject, recording.video)])
            sessions.append({"face": face_name, "seed": seed, "frames": main.frames,
                             "me_truth": sum(e.kind.value == "me" for e in recording.events),
                             "mae_truth": sum(e.kind.value == "mae" for e in recording.events),
                             "candidates": len(found["all"]), "rejected": dict(main.rejected),
                             "face_found": main.tracker.stats.as_dict()["with_landmarks"],
                             "me_f1": own["me"]["f1"], "overall_f1": own["overall"]["f1"]})
        scores = {name: spotting_scores(preds, truth) for name, preds in predictions.items()}
        stages = {name: 1000.0 * sec / max(frames, 1) for name, sec in totals.items()}
        ms = {"total": sum(stages.values()), **stages}
        flow_ms = _time_flow(crop_pairs)
    finally:
        cv2.setNumThreads(previous_threads)
        if one_core:
            os.sched_setaffinity(0, previous_affinity)
    main_scores = scores["all"]
    emission = {kind: _delay_stats([(f, m) for k, f, m in delays if k == kind]) for kind in ("me", "mae")}
    tvl1_total = ms["total"] - ms["flow"] + flow_ms["tvl1"] if flow_ms.get("tvl1") is not None else None
    by_face = [s["me_f1"] for s in sessions]
    by_overlap = {}
    for kind in ("none", "blink", "speech", "head_motion", "mae_beside", "mae_inside", "two_phase",
                 "partial_return", "asymmetric_aus"):
        hit, n = _recall_on(main_scores, tags, () if kind == "none" else (kind,))
        by_overlap[kind] = {"n": n, "recall": hit / n if n else None}
    targets = _TARGETS["overlap" if (args.me_overlap or 0.0) >= 0.5 else "default"]
    as_released = args.which == "frozen" and args.sessions is None and args.seconds is None
    out = {
        "set": args.which,
        "frozen": as_released,
        "generator": {"me_overlap": synth_config.me_overlap},
        "spotter": overrides,
        "f1": {k: main_scores[k]["f1"] for k in ("me", "mae", "overall")},
        "me_f1_by_face": {"mean": float(np.mean(by_face)), "sd": float(np.std(by_face, ddof=1)) if len(by_face) > 1
                          else 0.0, "min": float(np.min(by_face)), "faces": len(by_face)},
        "me_recall_by_tag": by_overlap,
        "ms_per_frame": ms,
        "wall_ms_per_frame": 1000.0 * wall / max(frames, 1),
        "load_average": list(os.getloadavg()),
        "counts": {k: {c: main_scores[k][c] for c in ("tp", "fp", "fn", "precision", "recall")}
                   for k in ("me", "mae", "overall")},
        "flow_ms_per_pair": flow_ms,
        "ms_per_frame_if_tvl1_per_frame": tvl1_total,
        "frames": frames,
        "frame_size": [640, 480],
        "crop_size": SpotterConfig().crop_size,
        "one_core": one_core,
        "sessions": sessions,
        "emission_delay": emission,
        "targets": {**targets, "ms_per_frame": _TARGET_MS, "me_delay_p95_ms": _TARGET_DELAY_MS},
        "meets": {"me_f1": main_scores["me"]["f1"] >= targets["me_f1"],
                  "overall_f1": main_scores["overall"]["f1"] >= targets["overall_f1"],
                  "ms_per_frame": ms["total"] <= _TARGET_MS,
                  "me_delay_p95_ms": emission["me"]["ms_p95"] is not None
                  and emission["me"]["ms_p95"] <= _TARGET_DELAY_MS},
    }
    if args.rule_cost:
        out["rule_cost"] = _rule_cost(scores, tags)
    return out
