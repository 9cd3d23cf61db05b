"""``mmer synth``: synthetic CAS(ME)^3 sets and ME preview strips."""

from __future__ import annotations

import argparse
import logging
import sys

from mmer.commands._output import print_json

log = logging.getLogger(__name__)


def _pair(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI numbers, got {text!r}") from None
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
    return parts[0], parts[1]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def _add_knobs(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("generator knobs (defaults mimic CAS(ME)^3)")
    g.add_argument("--me-per-min", type=float, help="micro-expressions per minute (default 3)")
    g.add_argument("--mae-per-min", type=float, help="macro-expressions per minute (default 5)")
    g.add_argument("--me-amplitude", type=_pair, metavar="LO,HI", help="ME apex displacement, px at 640x480")
    g.add_argument("--mae-amplitude", type=_pair, metavar="LO,HI", help="macro apex displacement, px")
    g.add_argument("--blink-interval", type=_pair, metavar="LO,HI", help="seconds between blinks (2,10)")
    g.add_argument("--emotions", help="comma-separated classes to draw (happy,disgust,surprise,fear,anger,sad,others)")
    g.add_argument("--noise", type=float, dest="noise_sigma", help="sensor noise, grey levels (default 2)")
    g.add_argument("--jpeg-quality", type=int, help="JPEG quality of colour frames (default 90)")
    g.add_argument("--me-overlap", type=float, metavar="F",
                   help="share of MEs (0..1) placed during a blink, speech, a head jerk, or beside or inside a "
                        "macro-expression; ground_truth.json names it per ME (default 0.35)")
    g.add_argument("--physio-coupling", type=float,
                   help="scale of the event-locked physiological responses, which carry the emotion: "
                        "0 = physiology holds no emotion information, 1 = default")
    g.add_argument("--no-distractors", action="store_true",
                   help="no head motion, speech, flicker, lighting drift, physiology artifacts or MEs placed "
                        "during a distractor (easy mode)")


def _config(args: argparse.Namespace):
    from mmer.synth import SynthConfig

    changes = {}
    for name in ("me_per_min", "mae_per_min", "me_amplitude", "mae_amplitude", "blink_interval",
                 "noise_sigma", "jpeg_quality", "me_overlap",
                 "physio_coupling"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.emotions:
        changes["emotions"] = {e.strip().lower(): 1.0 for e in args.emotions.split(",") if e.strip()}
    if args.no_distractors:
        if changes.get("me_overlap"):
            raise ValueError("--me-overlap needs distractors; drop --no-distractors")
        changes.update(head_drift_px=0.0, head_jerk_per_min=0.0, speech_per_min=0.0, flicker=0.0,
                       motion_artifacts=False, electrode_drop=0.0, me_overlap=0.0, lighting_drift=0.0)
    return SynthConfig(**changes)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("synth", help="write synthetic CAS(ME)^3 sets and ME preview strips")
    sub = parser.add_subparsers(dest="synth_command", metavar="WHAT", required=True)

    c = sub.add_parser("casme3", help="write a synthetic set in the CAS(ME)^3 Part A or Part C layout")
    c.add_argument("out", help="output folder (must be empty unless --overwrite)")
    c.add_argument("--part", type=str.upper, choices=["A", "C"], default="A", help="layout (default A)")
    c.add_argument("--subjects", type=int, default=2, help="number of subjects (default 2)")
    c.add_argument("--videos", type=int, default=2, help="videos per subject, Part A (default 2)")
    c.add_argument("--seconds", type=float, default=10.0, help="seconds per video (default 10)")
    c.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    c.add_argument("--faces", help="folder of face photos, one photo, 'astronaut', or registry:dev / "
                                   "registry:frozen (default: registry:dev, 22 identities)")
    c.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    c.add_argument("--size", type=_size, default=(640, 480), help="frame size WxH (default 640x480)")
    c.add_argument("--no-depth", action="store_true", help="skip depth frames")
    c.add_argument("--no-physio", action="store_true", help="Part A: skip the extra physio.txt per video")
    c.add_argument("--workers", type=int, default=2, help="render/encode threads (default 2)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    c.add_argument("--defects", action="store_true",
                   help="Part A: plant the official defects (a damaged JPG and a missing frame per video, "
                        "'Others' once), listed in ground_truth.json")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    _add_knobs(c)
    c.set_defaults(func=_casme3)

    p = sub.add_parser("preview", help="PNG strip of one synthetic ME with an amplified difference row")
    p.add_argument("out", help="PNG path to write")
    p.add_argument("--face", help="face photo or 'astronaut' (default: the packaged face)")
    p.add_argument("--emotion", default="surprise", help="emotion of the ME (default surprise)")
    p.add_argument("--amplitude", type=float, default=1.5, help="apex displacement in px (default 1.5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--gain", type=float, default=12.0, help="difference amplification (default 12)")
    p.add_argument("--json", action="store_true", help="print the ME's truth row as one JSON line")
    p.set_defaults(func=_preview)

    g = sub.add_parser("physio", help="PNG of a session's physiology with its facial events marked")
    g.add_argument("out", help="PNG path to write")
    g.add_argument("--face", help="face photo or 'astronaut' (default: the packaged face)")
    g.add_argument("--seconds", type=float, default=60.0, help="session length (default 60)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_knobs(g)
    g.set_defaults(func=_physio)


def _casme3(args: argparse.Namespace) -> int:
    from mmer.synth import write_casme3

    for name in ("subjects", "videos", "workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seconds <= 0 or args.seed < 0:
        raise ValueError(f"--seconds must be > 0 and --seed >= 0, got {args.seconds} and {args.seed}")
    summary = write_casme3(
        args.out, part=args.part.upper(), subjects=args.subjects, videos=args.videos, seconds=args.seconds,
        seed=args.seed, faces=args.faces, fps=args.fps, size=args.size, config=_config(args),
        depth=not args.no_depth, physio=not args.no_physio, overwrite=args.overwrite, defects=args.defects,
        workers=args.workers,
        progress=sys.stderr.isatty(),
    )
    if args.json:
        print_json(summary)
    else:
        ev = summary["events"]
        print(f"wrote {summary['path']}: Part {summary['part']}, {summary['subjects']} subjects, "
              f"{summary['videos']} videos, {summary['frames']} frames, {ev['me']} MEs, {ev['mae']} macro, "
              f"{ev['blink']} blinks")
    return 0


def _physio(args: argparse.Namespace) -> int:
    from mmer.synth import default_face_path, generate_session, load_face, plot_physio

    if args.seconds <= 0 or args.seed < 0:
        raise ValueError(f"--seconds must be > 0 and --seed >= 0, got {args.seconds} and {args.seed}")
    config = _config(args)
    face = load_face(args.face or default_face_path(), size=(160, 120))
    session = generate_session(face, seconds=args.seconds, size=(160, 120), seed=args.seed, config=config)
    path = plot_physio(args.out, session)
    n = {k: sum(e.kind == k for e in session.timeline.expressions) for k in ("me", "mae")}
    print(f"wrote {path}: {n['me']} MEs, {n['mae']} macro-expressions, {len(session.artifacts)} artifacts")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from mmer.synth import default_face_path, render_preview

    row = render_preview(args.out, args.face or default_face_path(), emotion=args.emotion.lower(),
                         seed=args.seed, amplitude=args.amplitude, gain=args.gain)
    if args.json:
        print_json(row)
    else:
        print(f"wrote {row['path']}: {row['emotion']} ME, AU {row['aus']}, frames {row['onset']}-{row['offset']}")
    return 0
