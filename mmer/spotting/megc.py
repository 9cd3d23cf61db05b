"""MEGC spotting evaluation: IoU over inclusive frame sets, one-to-one matching, pooled counts.

Protocol (the MEGC 2019-2023 spotting challenges, as DESIGN.md states it):

- a prediction and a ground-truth interval *can* match when ``IoU >= 0.5``, IoU taken over the
  inclusive frame sets ``[onset, offset]``;
- matching is **one-to-one** within each video and expression type: a maximum-cardinality
  assignment (Hungarian algorithm on weights ``M + IoU`` with ``M`` larger than any total IoU
  the video can reach, so that the number of matches comes first and total IoU breaks ties). A ground truth hit by two predictions yields one TP and one FP;
- predictions labelled ``me`` are scored against ME ground truth, ``mae`` against macro-expression
  ground truth; blinks in the ground truth are not scored;
- TP, FP and FN are pooled over all videos, then ``precision = TP / (TP + FP)``,
  ``recall = TP / (TP + FN)``, ``F1 = 2 TP / (2 TP + FP + FN)`` (0 when the denominator is 0);
  ``overall`` pools both types.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from mmer.dataset import Event, EventKind

__all__ = [
    "PREDICTION_COLUMNS",
    "Prediction",
    "interval_iou",
    "match_intervals",
    "spotting_scores",
    "read_predictions",
    "write_predictions",
]

PREDICTION_COLUMNS = ("subject", "video", "onset", "offset", "apex", "score", "type")
_TYPES = {"me": "me", "micro": "me", "mae": "mae", "macro": "mae", "ma": "mae"}


@dataclass(frozen=True)
class Prediction:
    """One row of a prediction CSV (frame indices inclusive)."""

    subject: str
    video: str
    onset: int
    offset: int
    apex: int | None = None
    score: float | None = None
    kind: str = "me"


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame intervals ``(onset, offset)``.

    >>> interval_iou((10, 19), (15, 24))   # 5 shared frames of 15
    0.3333333333333333
    """
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


def match_intervals(
    predicted: Sequence[tuple[int, int]],
    truth: Sequence[tuple[int, int]],
    *,
    threshold: float = 0.5,
) -> list[tuple[int, int, float]]:
    """One-to-one matches between predicted and true intervals of one video and type.

    Returns ``(pred_position, truth_position, iou)`` for each match: the largest possible set of
    pairs with ``IoU >= threshold`` in which no interval is used twice, the highest total IoU among
    those.
    """
    if not predicted or not truth:
        return []
    iou = np.array([[interval_iou(p, g) for g in truth] for p in predicted])
    eligible = iou >= threshold - 1e-12
    if not eligible.any():
        return []
    # Big-M weights: one more pair is worth ``M`` and a whole matching's IoU is at most
    # ``min(n_pred, n_truth) < M``, so no IoU total can pay for a lost pair (with ``1 + IoU`` a
    # chain of near-exact pairs outweighs one more pair at IoU ~0.54).
    big_m = min(iou.shape) + 1.0
    weight = np.where(eligible, big_m + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if eligible[r, c]]


def _ratios(tp: int, fp: int, fn: int) -> dict:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def spotting_scores(
    predictions: Iterable[Prediction],
    truth: Iterable[Event],
    *,
    threshold: float = 0.5,
    videos: Iterable[tuple[str, str]] | None = None,
) -> dict:
    """Pooled MEGC counts and ratios for ME, macro-expressions (``mae``) and ``overall``.

    Parameters
    ----------
    predictions : iterable of Prediction
    truth : iterable of Event
        Ground truth; ``EventKind.BLINK`` rows are ignored.
    threshold : float
        IoU needed for a match.
    videos : iterable of (subject, video), optional
        Restrict scoring to these videos (for example the subjects a run covered); predictions
        and truth of other videos are ignored. All videos by default.

    Returns
    -------
    dict
        ``{"me": {tp, fp, fn, precision, recall, f1}, "mae": {...}, "overall": {...},
        "matches": [...]}``; ``matches`` lists each TP as a dict.
    """
    keep = None if videos is None else {(str(s), str(v)) for s, v in videos}
    groups: dict[tuple[str, str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for p in predictions:
        key = (str(p.subject), str(p.video))
        if keep is None or key in keep:
            groups[(*key, p.kind)][0].append(p)
    for e in truth:
        if e.kind == EventKind.BLINK:
            continue
        key = (str(e.subject), str(e.video))
        if keep is None or key in keep:
            groups[(*key, "me" if e.kind == EventKind.ME else "mae")][1].append(e)
    counts = {"me": [0, 0, 0], "mae": [0, 0, 0]}
    matches = []
    for (subject, video, kind), (preds, gts) in sorted(groups.items()):
        pairs = match_intervals([(p.onset, p.offset) for p in preds], [(g.onset, g.offset) for g in gts],
                                threshold=threshold)
        c = counts[kind]
        c[0] += len(pairs)
        c[1] += len(preds) - len(pairs)
        c[2] += len(gts) - len(pairs)
        for pi, gi, iou in pairs:
            matches.append({"subject": subject, "video": video, "type": kind,
                            "pred": [preds[pi].onset, preds[pi].offset],
                            "truth": [gts[gi].onset, gts[gi].offset], "iou": round(iou, 4)})
    total = [counts["me"][i] + counts["mae"][i] for i in range(3)]
    return {
        "me": _ratios(*counts["me"]),
        "mae": _ratios(*counts["mae"]),
        "overall": _ratios(*total),
        "matches": matches,
    }


def _parse_type(text: str, n_frames: int, me_max_frames: int, where: str) -> str:
    text = text.strip().lower()
    if not text:
        return "me" if n_frames <= me_max_frames else "mae"
    if text not in _TYPES:
        raise ValueError(f"{where}: type must be me or mae, got {text!r}")
    return _TYPES[text]


def read_predictions(path: str | Path, *, me_max_frames: int = 16) -> list[Prediction]:
    """Read a prediction CSV (``subject,video,onset,offset[,apex,score,type]``).

    Rows without a type are typed by length (``me`` up to ``me_max_frames`` frames, 0.5 s at
    30 fps). Raises ValueError naming the file, row and field for malformed rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    out = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PREDICTION_COLUMNS[:4] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; need {','.join(PREDICTION_COLUMNS)}")
        for row_no, row in enumerate(reader, start=2):
            where = f"{path} row {row_no}"
            try:
                onset, offset = int(float(row["onset"])), int(float(row["offset"]))
            except (TypeError, ValueError):
                raise ValueError(f"{where}: onset/offset must be integers, got {row['onset']!r}, {row['offset']!r}") from None
            if offset < onset:
                raise ValueError(f"{where}: offset {offset} is before onset {onset}")
            apex = row.get("apex") or ""
            score = row.get("score") or ""
            try:
                apex_v = int(float(apex)) if apex.strip() else None
                score_v = float(score) if score.strip() else None
            except ValueError:
                raise ValueError(f"{where}: apex/score must be numbers, got {apex!r}, {score!r}") from None
            kind = _parse_type(row.get("type") or "", offset - onset + 1, me_max_frames, where)
            subject, video = (row["subject"] or "").strip(), (row["video"] or "").strip()
            if not subject or not video:
                raise ValueError(f"{where}: subject and video must not be empty")
            out.append(Prediction(subject, video, onset, offset, apex_v, score_v, kind))
    return out


def write_predictions(path: str | Path, rows: Iterable[Prediction]) -> int:
    """Write predictions as a MEGC CSV; return the number of rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICTION_COLUMNS)
        for p in rows:
            writer.writerow([p.subject, p.video, p.onset, p.offset, "" if p.apex is None else p.apex,
                             "" if p.score is None else f"{p.score:.4f}", p.kind])
            n += 1
    return n
