"""``mmer evaluate spotting``: MEGC scores of a prediction CSV against a dataset's annotations."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmer.commands._output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spotting",
        help="MEGC spotting scores (IoU >= 0.5, one-to-one, pooled) of a prediction CSV",
    )
    parser.add_argument("--pred", type=Path, required=True, help="prediction CSV (subject,video,onset,offset[,apex,score,type])")
    parser.add_argument("--truth", type=Path, required=True, help="CAS(ME)^3-layout dataset root (real or synthetic)")
    parser.add_argument("--subjects", nargs="+", help="score only these subjects")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU needed for a match (default 0.5)")
    parser.add_argument("--matches", action="store_true", help="include the matched pairs in the JSON")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from mmer.replay import open_dataset
    from mmer.spotting import read_predictions, spotting_scores

    if not 0 < args.iou <= 1:
        raise ValueError(f"--iou must be in (0, 1], got {args.iou}")
    predictions = read_predictions(args.pred)
    if not args.truth.exists():
        raise FileNotFoundError(f"ground-truth root not found: {args.truth}")
    dataset = open_dataset("casme3", args.truth, subjects=args.subjects)
    # Every annotated video of the selected subjects is scored: a video without predictions
    # counts its events as misses.
    known = {(e.subject, e.video) for e in dataset.events} | {(r.subject, r.video) for r in dataset.refs}
    unknown = sorted({(p.subject, p.video) for p in predictions} - known)
    if unknown and not args.subjects:
        print(f"warning: {len(unknown)} predicted video(s) are not in {args.truth} (first: "
              f"{unknown[0][0]}/{unknown[0][1]}); their rows count as false positives", file=sys.stderr)
    videos = known if args.subjects else None
    result = spotting_scores(predictions, dataset.events, threshold=args.iou, videos=videos)
    result["videos_not_in_truth"] = len(unknown)
    matches = result.pop("matches")
    if args.matches:
        result["matches"] = matches
    result["iou_threshold"] = args.iou
    result["matching"] = "one-to-one, maximum cardinality (Hungarian on M+IoU, M > any IoU total), per video and type, pooled"
    if not args.json:
        for kind in ("me", "mae", "overall"):
            r = result[kind]
            print(f"{kind:8s} TP {r['tp']:4d}  FP {r['fp']:4d}  FN {r['fn']:4d}  "
                  f"P {r['precision']:.3f}  R {r['recall']:.3f}  F1 {r['f1']:.3f}", file=sys.stderr)
        print(json.dumps({k: result[k] for k in ("me", "mae", "overall")}, indent=2), file=sys.stderr)
    print_json(result)
    return 0
