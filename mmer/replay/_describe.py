"""``describe``: the report behind ``mmer inspect`` (summary + per-recording durations and rates)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from tqdm import tqdm

from mmer.dataset import Recording

__all__ = ["describe"]


def _stream_row(name: str, track) -> dict:
    ts = np.asarray(track.timestamps, dtype=np.float64)
    span = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    return {
        "name": track.spec.name,
        "track": name,
        "type": getattr(track.spec, "lsl_type", "") or track.spec.type.value,
        "count": int(len(ts)),
        "nominal_rate": float(track.spec.rate),
        "measured_rate": float((len(ts) - 1) / span) if span > 0 else 0.0,
        "start_s": float(ts[0]) if len(ts) else None,
        "end_s": float(ts[-1]) if len(ts) else None,
    }


def _recording_row(rec: Recording) -> dict:
    streams = [_stream_row(n, t) for n, t in rec.frames.items()] + [_stream_row(n, t) for n, t in rec.samples.items()]
    return {"subject": rec.subject, "video": rec.video, "duration_s": rec.duration, "streams": streams}


def describe(dataset, *, progress: bool = False) -> dict:
    """Summary of a dataset plus, for every recording with media, its duration and stream rates.

    Recordings are opened one at a time (frames stay on disk), so this is cheap even for a full
    release. Defects found while opening recordings (XDF damage, clock jumps) are appended to the
    dataset's own list, so the report has every defect exactly once.
    """
    report = dataset.summary()
    refs = getattr(dataset, "refs", [])
    if not refs:
        return report
    seen = {tuple(sorted(d.items())) for d in map(_key, report["defects"])}
    rows = []
    # Datasets without an annotation file (XDF recordings) carry their events in the recordings.
    from_recordings = not dataset.events
    for ref in tqdm(refs, desc="inspect", unit="rec", disable=not progress or len(refs) < 2):
        rec = ref.load()
        rows.append(_recording_row(rec))
        if from_recordings:
            for event in rec.events:
                report["events"][event.kind.value] += 1
        for d in rec.defects:
            item = d.as_dict()
            if tuple(sorted(_key(item).items())) not in seen:
                seen.add(tuple(sorted(_key(item).items())))
                report["defects"].append(item)
    report["recordings"] = rows
    report["duration_s"] = float(sum(r["duration_s"] for r in rows))
    report["defect_counts"] = dict(sorted(Counter(d["kind"] for d in report["defects"]).items()))
    defects = report.pop("defects")
    report["defects"] = defects
    return report


def _key(item: dict) -> dict:
    return {k: item.get(k) for k in ("kind", "subject", "video", "row", "action", "detail", "file")}
