"""``mmer evaluate recognition``: score a predictions CSV under the MEGC convention.

The CSV has a header with at least ``label`` and ``pred`` (class names; ``mmer train --out`` and
``mmer predict --out`` write ``subject,sample,label,pred[,fold],prob_<class>...``). Rows with an
empty ``label`` are unlabelled and not scored. UF1/UAR/accuracy are computed once over all rows
(pooled over folds).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mmer.commands._output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recognition", help="score a recognition predictions CSV (UF1, UAR, accuracy)",
                              description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help="CSV with label and pred columns")
    p.add_argument("--classes", help="comma-separated class list (default: the classes seen in label/pred, "
                   "in prob_<class> column order when present)")
    p.add_argument("--plot", help="write a confusion-matrix PNG here")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.models.metrics import plot_confusion, recognition_scores

    path = Path(args.predictions)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if not {"label", "pred"} <= set(fields):
            raise ValueError(f"{path}: header must contain 'label' and 'pred', got {fields}")
        rows = [(i, r) for i, r in enumerate(reader, start=2)]
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    else:
        classes = [f[5:] for f in fields if f.startswith("prob_")]
        seen = sorted({r["label"].strip() for _, r in rows if r["label"].strip()} | {r["pred"].strip() for _, r in rows})
        classes += [c for c in seen if c not in classes]
    index = {c: k for k, c in enumerate(classes)}
    y_true, y_pred, unlabelled = [], [], 0
    for line, r in rows:
        label, pred = (r["label"] or "").strip(), (r["pred"] or "").strip()
        if not label:
            unlabelled += 1
            continue
        for what, value in (("label", label), ("pred", pred)):
            if value not in index:
                raise ValueError(f"{path}: row {line}: {what} {value!r} is not one of the classes {classes}")
        y_true.append(index[label])
        y_pred.append(index[pred])
    if not y_true:
        raise ValueError(f"{path}: no labelled rows to score")
    scores = recognition_scores(y_true, y_pred, class_names=classes)
    if args.plot:
        plot_confusion(scores["confusion"], classes, args.plot, title=f"UF1={scores['uf1']:.3f}")
    result = {**scores, "classes": classes, "unlabelled": unlabelled, "file": str(path)}
    if not args.json:
        print(f"UF1 {scores['uf1']:.3f}  UAR {scores['uar']:.3f}  accuracy {scores['accuracy']:.3f}  "
              f"({scores['n_samples']} samples, {unlabelled} unlabelled)")
    print_json(result)
    return 0
