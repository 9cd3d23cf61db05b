"""One stream inside the alignment buffer: a bounded ring of raw timestamps and values.

Timestamps are kept *raw* (as the source stamped them) with the bookkeeping needed to turn them
into aligned times when a window is cut: the segment they belong to (segments break at clock resets
and long gaps), their slot on the segment's regular sampling grid (for dejittering), and the clock
epoch of the segment. Corrections therefore improve as more clock measurements arrive, and nothing
that was received is rewritten.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from mmer.fusion._clock import ClockModel

log = logging.getLogger(__name__)

_UNRESOLVED = -1


_BOOTSTRAP = 512


class _Segment:
    """A run of samples on one continuous source clock, with an online line fit raw = a + b*slot."""

    __slots__ = ("epoch", "raw0", "period", "n", "sx", "sy", "sxx", "sxy", "first_slot", "last_slot", "a", "b", "bad")

    def __init__(self, raw0: float, period: float, epoch: int) -> None:
        self.epoch = epoch
        self.raw0 = raw0
        self.period = period
        self.bad = 0
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = 0.0
        self.first_slot = np.inf
        self.last_slot = -np.inf
        self.a = 0.0
        self.b = self.period

    @property
    def missing(self) -> int:
        """Grid slots inside the segment that never arrived (drops)."""
        return 0 if self.n == 0 else int(self.last_slot - self.first_slot + 1 - self.n)

    def _monotonic(self, slots: np.ndarray) -> np.ndarray:
        prev = np.maximum.accumulate(np.concatenate(([self.last_slot], slots)))[:-1]
        slots[~(slots > prev)] = np.nan
        return slots

    def _fit(self, slots: np.ndarray, raw: np.ndarray) -> None:
        ok = np.isfinite(slots)
        self.bad += int(slots.size - ok.sum())
        if not ok.any():
            return
        x = slots[ok]
        y = raw[ok] - self.raw0
        self.n += x.size
        self.sx += float(x.sum())
        self.sy += float(y.sum())
        self.sxx += float(x @ x)
        self.sxy += float(x @ y)
        self.first_slot = min(self.first_slot, float(x[0]))
        self.last_slot = float(x[-1])
        det = self.n * self.sxx - self.sx * self.sx
        if self.n >= 8 and det > 0:
            b = (self.n * self.sxy - self.sx * self.sy) / det
            # Only accept a fitted period near the nominal one; otherwise the stream is not
            # regular enough to dejitter and the nominal grid is kept.
            if abs(b - self.period) < 0.01 * self.period:
                self.b = b
                self.a = (self.sy - self.b * self.sx) / self.n
        elif self.n < 8:
            self.a = (self.sy - self.b * self.sx) / self.n

    def assign(self, raw: np.ndarray) -> np.ndarray:
        """Grid slot of each new stamp (NaN where it runs backwards), and update the fit."""
        slots = self._monotonic(np.rint((raw - self.raw0 - self.a) / self.b))
        self._fit(slots, raw)
        return slots

    def reslot(self, raw: np.ndarray) -> np.ndarray:
        """Re-assign every slot of a young segment from scratch.

        The first stamps of a segment are too few to place the grid when jitter approaches half
        a period; the grid phase is estimated from all stamps so far (circular mean), then fitted.
        """
        rel = raw - self.raw0
        phase = np.angle(np.exp(2j * np.pi * rel / self.period).mean()) * self.period / (2 * np.pi)
        self._clear()
        self.bad = 0
        self.a = phase
        slots = np.rint((rel - phase) / self.period)
        self._fit(self._monotonic(slots.copy()), raw)
        self._clear_keep_line()
        slots = self._monotonic(np.rint((raw - self.raw0 - self.a) / self.b))
        self.bad = 0
        self._fit(slots, raw)
        return slots

    def _clear_keep_line(self) -> None:
        a, b = self.a, self.b
        self._clear()
        self.a, self.b = a, b

    def grid(self, slots: np.ndarray) -> np.ndarray:
        return self.raw0 + self.a + self.b * slots


class Track:
    """Ring buffer of one stream (samples ``(n, ch)`` or frames as object references)."""

    def __init__(
        self,
        key: str,
        *,
        kind: str,
        rate: float,
        n_channels: int,
        labels: list[str],
        seconds: float,
        clock: ClockModel,
        dejitter: bool,
        reset_threshold: float,
        stype: str = "",
        spec=None,
    ) -> None:
        self.key = key
        self.kind = kind
        self.rate = float(rate)
        self.n_channels = n_channels
        self.labels = labels
        self.stype = stype
        self.spec = spec
        self.clock = clock
        self.dejitter = dejitter and rate > 0
        self.reset_threshold = reset_threshold
        nominal = rate if rate > 0 else (30.0 if kind == "frames" else 100.0)
        self.capacity = max(16, int(np.ceil(seconds * nominal * 1.1)) + 8)
        self.period = 1.0 / nominal
        self.gap_threshold = max(0.5, 20 * self.period)
        if kind == "frames":
            self.values = np.empty(self.capacity, dtype=object)
            self.index = np.zeros(self.capacity, dtype=np.int64)
        else:
            self.values = np.zeros((self.capacity, n_channels), dtype=np.float64)
            self.index = None
        self.raw = np.zeros(self.capacity, dtype=np.float64)
        self.slot = np.full(self.capacity, np.nan)
        self.seg = np.zeros(self.capacity, dtype=np.int64)
        self.head = 0  # next write position
        self.count = 0
        self.segments: dict[int, _Segment] = {}
        self.seg_id = -1
        self.last_raw: float | None = None
        self.last_index: int | None = None
        self.last_arrival = time.monotonic()
        self.stalled = False
        self._pruned_missing = 0
        self._pruned_bad = 0
        self._plain_bad = 0
        self._index_gaps = 0
        self._warned_bad = 0
        self.counters = {
            "received": 0,
            "evicted": 0,
            "dropped": 0,
            "nans": 0,
            "data_resets": 0,
            "gaps": 0,
            "stalls": 0,
            "recoveries": 0,
            "rejected": 0,
        }

    # -- ingest ---------------------------------------------------------------------------------
    def _new_segment(self, raw0: float, reset: bool) -> None:
        if reset and self.clock.measured:
            prev_epoch = self.segments[self.seg_id].epoch if self.seg_id in self.segments else 0
            epoch = self.clock.current if self.clock.current > prev_epoch else _UNRESOLVED
        else:
            epoch = self.clock.current
        self.seg_id += 1
        self.segments[self.seg_id] = _Segment(raw0, self.period, epoch)

    def resolve_epoch(self, epoch: int) -> None:
        """A new clock epoch arrived: segments waiting since a data reset adopt it."""
        for seg in self.segments.values():
            if seg.epoch == _UNRESOLVED:
                seg.epoch = epoch

    def _split(self, raw: np.ndarray) -> list[tuple[int, int, str]]:
        prev = self.last_raw
        d = np.diff(raw, prepend=raw[0] if prev is None else prev)
        cuts = []
        for i in np.flatnonzero((d < -self.reset_threshold) | (d > self.gap_threshold)):
            cuts.append((int(i), "reset" if d[i] < 0 else "gap"))
        if prev is None:
            cuts.insert(0, (0, "start"))
        pieces = []
        bounds = [c[0] for c in cuts]
        if not bounds or bounds[0] != 0:
            pieces.append((0, bounds[0] if bounds else raw.size, "continue"))
        for j, (start, why) in enumerate(cuts):
            stop = bounds[j + 1] if j + 1 < len(bounds) else raw.size
            pieces.append((start, stop, why))
        return pieces

    def ingest(self, values, raw: np.ndarray, index: np.ndarray | None = None) -> None:
        """Append a chunk (``values`` aligned with ``raw``; ``index`` for frames)."""
        n = raw.size
        if n == 0:
            return
        now = time.monotonic()
        if self.stalled:
            self.stalled = False
            self.counters["recoveries"] += 1
            log.warning("stream %s recovered after %.1f s without data", self.key, now - self.last_arrival)
        self.last_arrival = now
        slots = np.full(n, np.nan)
        segs = np.empty(n, dtype=np.int64)
        for start, stop, why in self._split(raw):
            if why != "continue":
                if why == "reset":
                    self.counters["data_resets"] += 1
                    log.warning(
                        "stream %s: timestamps jumped back %.3f s (source clock reset); new segment",
                        self.key,
                        (self.last_raw if start == 0 else raw[start - 1]) - raw[start],
                    )
                elif why == "gap":
                    self.counters["gaps"] += 1
                    log.info("stream %s: %.3f s gap in timestamps; new segment", self.key,
                             raw[start] - (self.last_raw if start == 0 else raw[start - 1]))
                self._new_segment(float(raw[start]), why == "reset")
            seg = self.segments[self.seg_id]
            piece = raw[start:stop]
            if self.dejitter:
                slots[start:stop] = seg.assign(piece)
            else:
                ref = self.last_raw if why == "continue" and self.last_raw is not None else piece[0]
                bad = int((np.diff(np.concatenate(([ref], piece))) < 0).sum())
                if bad:
                    self._plain_bad += bad
                    log.warning("stream %s: %d non-monotonic timestamps kept", self.key, bad)
            segs[start:stop] = self.seg_id
            self.last_raw = float(piece[-1])
        if index is not None:
            idx = np.asarray(index, dtype=np.int64)
            steps = np.diff(idx if self.last_index is None else np.concatenate(([self.last_index], idx)))
            self._index_gaps += int(np.maximum(steps - 1, 0).sum())
            self.last_index = int(idx[-1])
        self._write(values, raw, slots, segs, index)
        self.counters["received"] += n
        if self.dejitter:
            seg = self.segments[self.seg_id]
            if seg.n < _BOOTSTRAP:
                pos = self.order()
                pos = pos[self.seg[pos] == self.seg_id]
                self.slot[pos] = seg.reslot(self.raw[pos])
            if seg.bad > self._warned_bad:
                log.warning("stream %s: non-monotonic timestamps kept, not dejittered (%d in this segment)",
                            self.key, seg.bad)
                self._warned_bad = seg.bad * 2

    def _write(self, values, raw, slots, segs, index) -> None:
        n = raw.size
        cap = self.capacity
        if n > cap:  # keep the newest; older ones count as evicted
            self.counters["evicted"] += n - cap
            values, raw, slots, segs = values[-cap:], raw[-cap:], slots[-cap:], segs[-cap:]
            index = None if index is None else index[-cap:]
            n = cap
        overflow = max(0, self.count + n - cap)
        self.counters["evicted"] += overflow
        # At most two contiguous slices (before and after the wrap): plain copies, no index arrays.
        first = min(n, cap - self.head)
        parts = ((slice(self.head, self.head + first), slice(0, first)), (slice(0, n - first), slice(first, n)))
        for dst, src in parts:
            if dst.stop <= dst.start:
                continue
            if self.kind == "frames":
                self.values[dst] = None  # release evicted frames even if the assignment below fails
                for p, v in zip(range(dst.start, dst.stop), values[src]):
                    self.values[p] = v
                self.index[dst] = index[src]
            else:
                self.values[dst] = values[src]
            self.raw[dst] = raw[src]
            self.slot[dst] = slots[src]
            self.seg[dst] = segs[src]
        self.head = (self.head + n) % cap
        self.count = min(cap, self.count + n)
        self._prune_segments()

    def _prune_segments(self) -> None:
        if len(self.segments) > 1:
            oldest = int(self.seg[(self.head - self.count) % self.capacity])
            for sid in [s for s in self.segments if s < oldest]:
                gone = self.segments.pop(sid)
                self._pruned_missing += gone.missing
                self._pruned_bad += gone.bad

    def stats(self) -> dict:
        """Counters, with drops and non-monotonic stamps derived from the sampling grid."""
        out = dict(self.counters)
        if self.kind == "frames":
            out["dropped"] = self._index_gaps
        elif self.dejitter:
            out["dropped"] = self._pruned_missing + sum(s.missing for s in self.segments.values())
        out["non_monotonic"] = self._plain_bad + self._pruned_bad + sum(s.bad for s in self.segments.values())
        return out

    # -- read -----------------------------------------------------------------------------------
    def order(self) -> np.ndarray:
        """Ring positions from oldest to newest."""
        return (self.head - self.count + np.arange(self.count)) % self.capacity

    def aligned(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned local times at ring positions, and a mask of those whose clock is known."""
        raw = self.raw[pos]
        slots = self.slot[pos]
        segs = self.seg[pos]
        out = raw.copy()
        known = np.ones(pos.size, dtype=bool)
        for sid in np.unique(segs):
            seg = self.segments.get(int(sid))
            m = segs == sid
            if seg is None or seg.epoch == _UNRESOLVED:
                known[m] = False
                continue
            base = raw[m]
            if self.dejitter:
                s = slots[m]
                fin = np.isfinite(s)
                base = np.where(fin, seg.grid(np.where(fin, s, 0.0)), base)
            out[m] = base + self.clock.offset(seg.epoch, base)
        return out, known

    def watermark(self) -> float | None:
        """Aligned time of the newest sample whose clock is known, or None."""
        if self.count == 0:
            return None
        last = (self.head - 1) % self.capacity
        seg = self.segments.get(int(self.seg[last]))
        if seg is None or seg.epoch == _UNRESOLVED:
            return None
        raw = self.raw[last]
        return float(raw + self.clock.offset(seg.epoch, raw))

    @property
    def pending_clock(self) -> bool:
        """True while samples wait for a clock measurement after a reset."""
        return any(s.epoch == _UNRESOLVED for s in self.segments.values())
