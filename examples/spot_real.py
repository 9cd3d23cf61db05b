"""The spotter on real faces: the tables and plots of docs/spotting-real.md.

Plays the five real ME clips of ``../shared/data/me-clips`` (padded with 1.5 s of their first and
last frame, on a 320 px canvas, at their native 100/200 fps) and the six talking videos of
``../shared/data/video/talking`` through the spotter, first with every rejection rule, then with
each rule turned off in turn. Prints one JSON line per configuration and writes two timelines.

    python examples/spot_real.py [--data ../shared/data] [--plots docs/img]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from mmer.dataset import Event, EventKind
from mmer.spotting import RULES, SpotterConfig, interval_iou, match_intervals, spot_frames, spot_video
from mmer.spotting._plot import plot_timeline
from mmer.spotting.clips import padded_clip, read_clip

CLIPS = {"018_3_1": 200, "022_3_3": 200, "s3_po_05": 100, "sub17_EP01_13": 200, "sub19_EP01_01f": 200}
ANNOTATIONS = Path(__file__).resolve().parents[1] / "tests" / "data" / "talking_macro.json"


def clips(data: Path, rules: tuple[str, ...], plots: Path | None) -> dict:
    """Per clip: its interval in the padded stream, the candidates (kind, onset, offset, IoU) and
    the rejections; ``found`` counts clips with a candidate at IoU >= 0.5 (``found_me``: typed ME)."""
    out, found, found_me = {}, 0, 0
    for name, fps in CLIPS.items():
        frames, truth = padded_clip(read_clip(data / "me-clips" / f"{name}.gif"), fps)
        result = spot_frames(((i, i / fps, f) for i, f in enumerate(frames)), subject=name, video=name,
                             config=SpotterConfig(fps=fps, rules=rules), progress=False)
        cands = [(c.kind, c.onset, c.offset, round(interval_iou((c.onset, c.offset), truth), 2))
                 for c in result.candidates]
        hit = [c for c in cands if c[3] >= 0.5]
        found += bool(hit)
        found_me += any(c[0] == "me" for c in hit)
        out[name] = {"truth": list(truth), "candidates": cands,
                     "rejected": {k: v for k, v in result.rejected.items() if v}}
        if plots is not None and name == "s3_po_05":
            event = Event(name, name, truth[0], truth[1], None, EventKind.ME)
            plot_timeline(plots / "spot_real_s3_po_05.png", result.signal, result.candidates, [event],
                          title=f"{name} (SMIC, 100 fps, padded 1.5 s)")
    return {"found": found, "found_me": found_me, "clips": out}


def talking(data: Path, rules: tuple[str, ...], plots: Path | None) -> dict:
    """ME candidates per minute (all false alarms: no ME is annotated) and the annotated obvious
    macro-expressions matched at IoU >= 0.5 by macro candidates."""
    videos = json.loads(ANNOTATIONS.read_text())["videos"]
    out, minutes, me, matched, annotated = {}, 0.0, 0, 0, 0
    for name, entry in videos.items():
        path = data / "video" / "talking" / f"{name}.mp4"
        fps = float(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS))
        result = spot_video(path, config=SpotterConfig(fps=fps, rules=rules), progress=False)
        truth = [(m["onset"], m["offset"]) for m in entry["macro"]]
        pairs = match_intervals([(c.onset, c.offset) for c in result.candidates if c.kind == "mae"], truth)
        minutes += result.frames / fps / 60.0
        me += sum(c.kind == "me" for c in result.candidates)
        matched += len(pairs)
        annotated += len(truth)
        out[name] = {"seconds": round(result.frames / fps, 1), "me": sum(c.kind == "me" for c in result.candidates),
                     "mae": sum(c.kind == "mae" for c in result.candidates), "mae_matched": len(pairs),
                     "annotated": len(truth), "rejected": {k: v for k, v in result.rejected.items() if v}}
        if plots is not None and name == "d9":
            events = [Event(name, name, a, b, None, EventKind.MAE) for a, b in truth]
            plot_timeline(plots / "spot_real_d9.png", result.signal, result.candidates, events,
                          title="d9 (talking, 30 fps; bottom band: annotated macro-expressions)")
    return {"me_per_min": round(me / minutes, 2), "minutes": round(minutes, 2), "mae_found": matched,
            "mae_annotated": annotated, "videos": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--plots", type=Path, help="write the two timelines here (docs/img)")
    parser.add_argument("--only", choices=("clips", "talking"), help="one half only")
    args = parser.parse_args()
    for off in (None, *RULES):
        rules = tuple(r for r in RULES if r != off)
        plots = args.plots if off is None else None
        row = {"rule_off": off}
        if args.only != "talking":
            row["clips"] = clips(args.data, rules, plots)
        if args.only != "clips":
            row["talking"] = talking(args.data, rules, plots)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
