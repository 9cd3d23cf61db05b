"""``mmer spot {casme3,video}``: spot micro-expressions and write a MEGC prediction CSV."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mmer.commands._output import print_json

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spot", help="spot micro-expressions in a dataset or a video file")
    kinds = parser.add_subparsers(dest="spot", metavar="SOURCE", required=True)

    casme = kinds.add_parser("casme3", help="a CAS(ME)^3-layout folder (real or synthetic)")
    casme.add_argument("root", type=Path, help="dataset root")
    casme.add_argument("--subjects", nargs="+", help="only these subjects")
    casme.add_argument("--videos", nargs="+", help="only these videos")
    _common(casme)
    casme.set_defaults(func=_spot_casme3)

    video = kinds.add_parser("video", help="a video file decoded with OpenCV")
    video.add_argument("file", type=Path, help="video file (mp4, avi, mkv, ...)")
    video.add_argument("--subject", help="subject column of the CSV (default: file stem)")
    video.add_argument("--fps", type=float, help="capture frame rate, when the container's is wrong or missing "
                       "(needed for GIFs, whose frame delay is a display rate; CASME II and SAMM: 200, SMIC: 100)")
    _common(video)
    video.set_defaults(func=_spot_video)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="prediction CSV to write")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write a PNG timeline per video here")
    parser.add_argument("--p", type=float, help="adaptive threshold fraction p (default 0.3)")
    parser.add_argument("--min-score", type=float, help="absolute apex score floor (default 5)")
    parser.add_argument("--no-macro", action="store_true", help="look for micro-expressions only")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _config(args: argparse.Namespace, fps: float):
    from mmer.spotting import SpotterConfig

    options = {"fps": fps, "macro": not args.no_macro}
    if args.p is not None:
        options["p"] = args.p
    if args.min_score is not None:
        options["min_score"] = args.min_score
    return SpotterConfig(**options)


def _report(args: argparse.Namespace, results: list, n_rows: int) -> int:
    summary = {
        "out": str(args.out),
        "videos": len(results),
        "candidates": n_rows,
        "me": sum(r.summary()["me"] for r in results),
        "mae": sum(r.summary()["mae"] for r in results),
        "per_video": [r.summary() for r in results],
    }
    for r in results:
        for note in r.notes:
            print(f"{r.subject}/{r.video}: {note}", file=sys.stderr)
    print(f"wrote {n_rows} candidate(s) from {len(results)} video(s) to {args.out}", file=sys.stderr)
    if args.json:
        print_json(summary)
    return 0


def _plot(args: argparse.Namespace, result, truth) -> None:
    if args.plot is None:
        return
    from mmer.spotting._plot import plot_timeline

    path = plot_timeline(args.plot / f"{result.subject}_{result.video}.png", result.signal, result.candidates,
                         truth, title=f"{result.subject}/{result.video}")
    logger.info("timeline written to %s", path)


def _spot_casme3(args: argparse.Namespace) -> int:
    from mmer.replay import open_dataset
    from mmer.spotting import spot_recording, to_predictions, write_predictions

    if not args.root.exists():
        raise FileNotFoundError(f"dataset root not found: {args.root}")
    dataset = open_dataset("casme3", args.root, subjects=args.subjects, videos=args.videos)
    refs = dataset.refs
    if not refs:
        raise ValueError(f"{args.root}: no videos found (subjects={args.subjects}, videos={args.videos})")
    results, rows = [], []
    for ref in refs:
        recording = ref.load()
        track = recording.frames.get("rgb")
        rate = float(getattr(track.spec, "rate", 0.0) or 30.0) if track is not None else 30.0
        result = spot_recording(recording, config=_config(args, rate))
        results.append(result)
        rows.extend(to_predictions(result))
        _plot(args, result, recording.events)
    n = write_predictions(args.out, rows)
    return _report(args, results, n)


def _spot_video(args: argparse.Namespace) -> int:
    import cv2

    from mmer.spotting import spot_video, to_predictions, write_predictions

    if not args.file.is_file():
        raise FileNotFoundError(f"video not found: {args.file}")
    if args.fps is not None and not 0 < args.fps <= 1000:
        raise ValueError(f"--fps must be in (0, 1000], got {args.fps}")
    if args.fps is None and args.file.suffix.lower() == ".gif":
        # Every window of the spotter is set in seconds: a wrong rate stretches or squeezes them all.
        raise ValueError(f"{args.file}: a GIF's frame delay is a display rate, not the capture rate; "
                         "pass --fps (for example 200 for CASME II or SAMM clips, 100 for SMIC)")
    cap = cv2.VideoCapture(str(args.file))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    cap.release()
    config = _config(args, args.fps if args.fps is not None else fps if 0 < fps <= 1000 else 30.0)
    result = spot_video(args.file, config=config, subject=args.subject)
    n = write_predictions(args.out, to_predictions(result))
    _plot(args, result, ())
    if not args.json:
        print(json.dumps(result.summary()["face"]), file=sys.stderr)
    return _report(args, [result], n)
