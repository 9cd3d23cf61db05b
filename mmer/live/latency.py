"""Latency instrumentation: per-stage timestamps for each decision, percentiles at the end.

Stages, in order: ``capture`` (source timestamp of the frame or window that completed the
candidate), ``transport`` (frame received from ZeroMQ), ``buffer`` (stored in the alignment
buffer), ``closed`` (capture of the later frame whose arrival let the spotter close the
candidate: ``buffer->closed`` is the wait for the spotter's confirmation frames, ``closed->spot``
their transport, queueing and spotting), ``spot`` (candidate closed by the spotter), ``features``
(model input built), ``model`` (probabilities out), ``publish`` (marker pushed). All on the LSL clock. For a late decision the
reference is the end of the physiological window instead of a frame capture; stages that do not
apply are left out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

__all__ = ["LatencyTracker", "STAGES", "percentiles"]

STAGES = ("capture", "transport", "buffer", "closed", "spot", "features", "model", "publish")


def percentiles(values_ms, qs=(50, 95, 99)) -> dict:
    """``{"p50": ..., "p95": ..., "p99": ..., "max": ..., "n": ...}`` in ms (``None`` if empty)."""
    arr = np.asarray(list(values_ms), dtype=float)
    arr = arr[np.isfinite(arr)]
    out: dict = {f"p{q}": (float(np.percentile(arr, q)) if arr.size else None) for q in qs}
    out["max"] = float(arr.max()) if arr.size else None
    out["n"] = int(arr.size)
    return out


class LatencyTracker:
    """Collect stage timestamps per decision and summarise them as percentiles.

    Thread safe; memory grows with the number of decisions (a few per minute), not with frames.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[dict[str, float]]] = {}

    def record(self, kind: str, stamps: Mapping[str, float]) -> float:
        """Store one decision's stamps under ``kind`` (``early``/``late``); return end-to-end ms.

        The end-to-end latency is ``publish`` minus the earliest stage given.
        """
        unknown = set(stamps) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown latency stage(s) {sorted(unknown)}; allowed: {STAGES}")
        if "publish" not in stamps:
            raise ValueError("a latency record needs a 'publish' stamp")
        clean = {s: float(stamps[s]) for s in STAGES if s in stamps}
        with self._lock:
            self._records.setdefault(kind, []).append(clean)
        return (clean["publish"] - next(iter(clean.values()))) * 1000.0

    def count(self, kind: str) -> int:
        """Number of records of ``kind``."""
        with self._lock:
            return len(self._records.get(kind, ()))

    def summary(self) -> dict:
        """Per kind: end-to-end percentiles plus the time spent between consecutive stages."""
        with self._lock:
            records = {k: list(v) for k, v in self._records.items()}
        out = {}
        for kind in sorted(set(records) | {"early", "late"}):
            recs = records.get(kind, [])
            total = [(r["publish"] - next(iter(r.values()))) * 1000.0 for r in recs]
            stages: dict[str, list[float]] = {}
            for r in recs:
                names = list(r)
                for a, b in zip(names, names[1:], strict=False):
                    stages.setdefault(f"{a}->{b}", []).append((r[b] - r[a]) * 1000.0)
            entry = percentiles(total)
            entry["stages"] = {k: percentiles(v, qs=(50, 95)) for k, v in stages.items()}
            out[kind] = entry
        return out
