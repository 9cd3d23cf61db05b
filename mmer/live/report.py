"""Session reports: decisions beside ground truth, ``events.csv``, ``summary.json`` and a timeline PNG."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmer.commands._output import to_jsonable
from mmer.live.events import Decision

__all__ = ["match_truth", "write_report", "format_table"]

log = logging.getLogger(__name__)


def match_truth(decisions: Sequence[Decision], truth: Sequence[dict], *, threshold: float = 0.5) -> dict:
    """Match candidates to true intervals one-to-one by frame IoU (MEGC rule), per kind.

    Returns ``{"pairs": {candidate_id: truth_position}, "tp", "fp", "fn", "precision", "recall",
    "f1"}``; blinks in the truth are not targets.
    """
    from mmer.spotting.megc import match_intervals

    cands = {}
    for d in decisions:
        cands.setdefault(d.candidate_id, d)
    targets = [(i, t) for i, t in enumerate(truth) if t.get("kind") in ("me", "mae")]
    pairs: dict[int, int] = {}
    for kind in ("me", "mae"):
        pred = [(cid, d) for cid, d in cands.items() if d.kind == kind]
        true = [(i, t) for i, t in targets if t["kind"] == kind]
        for p, q, _ in match_intervals([(d.onset, d.offset) for _, d in pred],
                                       [(int(t["onset"]), int(t["offset"])) for _, t in true], threshold=threshold):
            pairs[pred[p][0]] = true[q][0]
    tp = len(pairs)
    fp = len(cands) - tp
    fn = len(targets) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pairs": pairs, "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "threshold": threshold, "rule": "one-to-one, IoU >= threshold over inclusive frame sets, per type"}


def _protocol(labels: str | None):
    if not labels:
        return None
    from mmer.replay.labels import get_protocol

    try:
        return get_protocol(labels)
    except ValueError:
        log.warning("unknown label protocol %r; truth classes are not mapped", labels)
        return None


def _class_of(protocol, truth_row: dict) -> str | None:
    key = "objective_class" if protocol is not None and protocol.name == "objective" else "emotion"
    if protocol is None or not truth_row.get(key):
        return None
    try:
        return protocol.map(truth_row[key])
    except ValueError:
        return None


def format_table(decisions: Sequence[Decision], truth: Sequence[dict], matches: dict, *, labels: str | None = None) -> str:
    """Plain-text table: each true ME/macro with the candidate matched to it, then the unmatched."""
    protocol = _protocol(labels)
    by_cid: dict[int, dict[str, Decision]] = {}
    for d in decisions:
        by_cid.setdefault(d.candidate_id, {})[d.stage] = d
    lines = [f"{'truth':<38} | {'detected':<22} | {'early':<16} | {'late':<16} | latency ms (early/late)"]
    lines.append("-" * len(lines[0]))
    inverse = {v: k for k, v in matches["pairs"].items()}

    def stage(d: Decision | None) -> str:
        return "-" if d is None else f"{d.label} {d.probabilities[d.label]:.2f}"

    def lat(d: Decision | None) -> str:
        return "-" if d is None or d.latency_ms != d.latency_ms else f"{d.latency_ms:.0f}"

    for i, t in enumerate(truth):
        if t.get("kind") not in ("me", "mae"):
            continue
        cls = _class_of(protocol, t)
        what = f"{t['kind']} {t['onset']}-{t['offset']} {t.get('emotion') or ''}" + (f" ({cls})" if cls else "")
        cid = inverse.get(i)
        if cid is None:
            lines.append(f"{what:<38} | {'missed':<22} | {'':<16} | {'':<16} |")
            continue
        st = by_cid[cid]
        d = st.get("early") or st.get("late")
        det = f"#{cid} {d.kind} {d.onset}-{d.offset}"
        lines.append(f"{what:<38} | {det:<22} | {stage(st.get('early')):<16} | {stage(st.get('late')):<16} | "
                     f"{lat(st.get('early'))}/{lat(st.get('late'))}")
    for cid, st in sorted(by_cid.items()):
        if cid in matches["pairs"]:
            continue
        d = st.get("early") or st.get("late")
        det = f"#{cid} {d.kind} {d.onset}-{d.offset}"
        lines.append(f"{'(no true event: false positive)':<38} | {det:<22} | {stage(st.get('early')):<16} | "
                     f"{stage(st.get('late')):<16} | {lat(st.get('early'))}/{lat(st.get('late'))}")
    return "\n".join(lines)


def _write_events_csv(path: Path, decisions: Sequence[Decision], truth: Sequence[dict], matches: dict,
                      class_names: Sequence[str], t0: float, protocol) -> None:
    cols = ["candidate_id", "stage", "kind", "onset", "apex", "offset", "t_onset_s", "t_offset_s", "label",
            *[f"p_{c}" for c in class_names], "modalities", "missing", "latency_ms", "score", "model_id",
            "truth_kind", "truth_onset", "truth_apex", "truth_offset", "truth_emotion", "truth_class"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for d in decisions:
            ti = matches["pairs"].get(d.candidate_id)
            t = truth[ti] if ti is not None else {}
            writer.writerow([
                d.candidate_id, d.stage, d.kind, d.onset, d.apex, d.offset, f"{d.t_onset - t0:.4f}",
                f"{d.t_offset - t0:.4f}", d.label, *[f"{d.probabilities.get(c, float('nan')):.4f}" for c in class_names],
                "+".join(d.modalities), "+".join(d.missing), f"{d.latency_ms:.2f}", f"{d.score:.3f}", d.model_id,
                t.get("kind", ""), t.get("onset", ""), t.get("apex", ""), t.get("offset", ""), t.get("emotion", "") or "",
                _class_of(protocol, t) or "" if t else "",
            ])


def _plot(path: Path, *, signals: dict[str, tuple[np.ndarray, np.ndarray]], score: dict[str, list],
          decisions: Sequence[Decision], truth: Sequence[dict], t0: float, fps: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + len(signals)
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.0 + 1.6 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    ax = axes[0]
    for kind, pts in score.items():
        if pts:
            arr = np.asarray([(p[1], p[2]) for p in pts], dtype=float)
            ax.plot(arr[:, 0] - t0, arr[:, 1], lw=0.8, label=f"spotter score ({kind})")
    ax.set_ylabel("score")
    first_frame = min((int(t["frame"]) - (float(t["t_marker"]) - t0) * fps) for t in truth) if truth else None
    for t in truth:
        if t.get("kind") not in ("me", "mae") or first_frame is None:
            continue
        a = (int(t["onset"]) - first_frame) / fps
        b = (int(t["offset"]) - first_frame + 1) / fps
        for axis in axes:
            axis.axvspan(a, b, color="tab:green" if t["kind"] == "me" else "tab:olive", alpha=0.25, lw=0)
    seen = set()
    for d in decisions:
        if d.candidate_id in seen:
            continue
        seen.add(d.candidate_id)
        for axis in axes:
            axis.axvspan(d.t_onset - t0, d.t_offset - t0, ymin=0.85, ymax=1.0, color="tab:red", alpha=0.8, lw=0)
        ax.annotate(d.label, (d.t_onset - t0, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="tab:red",
                    va="bottom")
    ax.legend(loc="upper left", fontsize=7)
    for axis, (name, (ts, xs)) in zip(axes[1:], signals.items(), strict=True):
        if len(ts):
            axis.plot(ts - t0, xs, lw=0.6)
        axis.set_ylabel(name)
    axes[-1].set_xlabel("seconds (LSL clock, from the first frame)")
    axes[0].set_title("mmer live: true events (green ME, olive macro) and detections (red bars, early label)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out: Path,
    *,
    summary: dict,
    decisions: Sequence[Decision],
    truth: Sequence[dict],
    class_names: Sequence[str],
    labels: str | None,
    t0: float,
    fps: float,
    signals: dict[str, tuple[np.ndarray, np.ndarray]],
    score: dict[str, list],
) -> tuple[dict, dict]:
    """Write ``events.csv``, ``summary.json`` and ``timeline.png`` to ``out``.

    Returns the full summary (with spotting scores against the truth) and the candidate-to-truth
    matches.
    """
    out.mkdir(parents=True, exist_ok=True)
    protocol = _protocol(labels)
    matches = match_truth(decisions, truth)
    _write_events_csv(out / "events.csv", decisions, truth, matches, class_names, t0, protocol)
    agree = {"early": [0, 0], "late": [0, 0]}
    for d in decisions:
        ti = matches["pairs"].get(d.candidate_id)
        cls = _class_of(protocol, truth[ti]) if ti is not None else None
        if cls is not None:
            agree[d.stage][0] += int(d.label == cls)
            agree[d.stage][1] += 1
    full = dict(summary)
    full["spotting"] = {k: v for k, v in matches.items() if k != "pairs"}
    full["truth_events"] = sum(1 for t in truth if t.get("kind") in ("me", "mae"))
    full["recognition_on_matched"] = {
        stage: {"correct": c, "n": n, "accuracy": (c / n if n else None)} for stage, (c, n) in agree.items()
    }
    (out / "summary.json").write_text(json.dumps(to_jsonable(full), indent=2), encoding="utf-8")
    try:
        _plot(out / "timeline.png", signals=signals, score=score, decisions=decisions, truth=truth, t0=t0, fps=fps)
    except (ValueError, RuntimeError) as err:
        log.error("timeline plot failed: %s", err)
    return full, matches
