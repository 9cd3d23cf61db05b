"""Clock-offset model of one remote source: ``local = remote + offset(remote)``.

``time_correction()`` measurements are fitted with a line per *epoch* (offset and drift), so that
drift between two refreshes is extrapolated instead of showing up as steps. A measurement that
departs from the current fit by more than ``reset_threshold`` starts a new epoch: the source clock
was reset (its host restarted, or its LSL runtime did).
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

log = logging.getLogger(__name__)


class _Epoch:
    __slots__ = ("points", "c0", "c1", "r0")

    def __init__(self, maxlen: int) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=maxlen)
        self.c0 = 0.0
        self.c1 = 0.0
        self.r0 = 0.0

    def add(self, remote: float, offset: float) -> None:
        self.points.append((remote, offset))
        r = np.array([p[0] for p in self.points])
        o = np.array([p[1] for p in self.points])
        self.r0 = float(r[-1])
        # A slope needs a few points over a real time span; until then, hold the mean offset.
        if len(r) >= 4 and r[-1] - r[0] > 1.0:
            slope, icpt = np.polyfit(r - self.r0, o, 1)
            self.c0, self.c1 = float(icpt), float(slope)
        else:
            self.c0, self.c1 = float(o.mean()), 0.0

    def __call__(self, remote):
        return self.c0 + self.c1 * (np.asarray(remote, dtype=np.float64) - self.r0)


class ClockModel:
    """Offset epochs of one source; epoch 0 starts at offset 0 (a local source)."""

    def __init__(self, *, reset_threshold: float, maxlen: int = 30) -> None:
        self.reset_threshold = reset_threshold
        self._maxlen = maxlen
        self.epochs: list[_Epoch] = [_Epoch(maxlen)]
        self.measured = False
        self.resets = 0
        self.last_offset = 0.0

    @property
    def current(self) -> int:
        """Index of the newest epoch."""
        return len(self.epochs) - 1

    def measure(self, offset: float, local_time: float) -> bool:
        """Add one measurement taken at ``local_time``; return True if it started a new epoch."""
        remote = local_time - offset
        epoch = self.epochs[-1]
        new = False
        if self.measured and abs(offset - float(epoch(remote))) > self.reset_threshold:
            self.resets += 1
            log.warning(
                "clock reset: offset moved by %.1f ms; starting clock epoch %d",
                1000 * (offset - float(epoch(remote))),
                len(self.epochs),
            )
            epoch = _Epoch(self._maxlen)
            self.epochs.append(epoch)
            new = True
        epoch.add(remote, offset)
        self.measured = True
        self.last_offset = offset
        return new

    def offset(self, epoch: int, remote):
        """Offset to add to ``remote`` timestamps recorded in ``epoch``."""
        return self.epochs[epoch](remote)
