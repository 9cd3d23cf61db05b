"""Multimodal windows cut by :class:`~mmer.fusion.AlignmentBuffer`.

A :class:`Window` covers ``[t0, t1]`` on the local LSL clock. Video streams come as
:class:`FrameWindow` (the received frames themselves, not copies), physiology as
:class:`SignalWindow` with the original samples and, when asked, the same channels resampled onto
a regular grid. A stream that could not deliver is listed in :attr:`Window.missing` with the
reason; a window is never silently incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Window", "FrameWindow", "SignalWindow", "resample_signal"]


@dataclass
class FrameWindow:
    """Frames of one video stream inside a window.

    Attributes
    ----------
    frames : list of numpy.ndarray
        The frames as received (read-only references, not copies).
    timestamps : numpy.ndarray
        Aligned capture times (local LSL clock, clock-corrected and dejittered).
    raw_timestamps : numpy.ndarray
        Capture times exactly as the source stamped them.
    indices : numpy.ndarray
        Source frame indices.
    stype : str
        ``VideoRGB`` or ``VideoDepth``.
    """

    frames: list
    timestamps: np.ndarray
    raw_timestamps: np.ndarray
    indices: np.ndarray
    stype: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    def stack(self) -> np.ndarray:
        """All frames as one ``(n, ...)`` array (this copies)."""
        return np.stack(self.frames) if self.frames else np.empty((0,))


@dataclass
class SignalWindow:
    """Samples of one physiological stream inside a window.

    Attributes
    ----------
    data : numpy.ndarray, shape (n, n_channels)
        Original samples (NaNs kept as they arrived).
    timestamps : numpy.ndarray
        Aligned sample times (local LSL clock).
    raw_timestamps : numpy.ndarray
        Sample times as the source stamped them.
    labels : list of str
        Channel labels.
    rate : float
        Nominal rate of the stream.
    resampled : numpy.ndarray or None, shape (m, n_channels)
        Linear interpolation onto :attr:`resampled_times`; NaN where the stream has no samples
        within two periods (no extrapolation across gaps or beyond the data).
    resampled_times : numpy.ndarray or None
        The regular grid ``t0 + k / resample_hz``.
    stype : str
        ``EDA``, ``ECG``, ``PPG``, ``RSP`` (or another numeric type).
    """

    data: np.ndarray
    timestamps: np.ndarray
    raw_timestamps: np.ndarray
    labels: list
    rate: float
    resampled: np.ndarray | None = None
    resampled_times: np.ndarray | None = None
    stype: str = ""

    def __len__(self) -> int:
        return self.data.shape[0]


@dataclass
class Window:
    """A multimodal window ``[t0, t1]``.

    Attributes
    ----------
    t0, t1 : float
        Bounds on the local LSL clock (inclusive).
    frames : dict of str to FrameWindow
        Video streams by buffer key.
    signals : dict of str to SignalWindow
        Numeric sample streams by buffer key.
    missing : dict of str to str
        Streams that did not reach ``t1`` and why (``"no data"``, ``"stalled"``, ``"timeout"``,
        ``"clock reset pending"``).
    """

    t0: float
    t1: float
    frames: dict = field(default_factory=dict)
    signals: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every requested stream delivered data past ``t1``."""
        return not self.missing

    def by_type(self, stype: str) -> FrameWindow | SignalWindow | None:
        """First stream of a type (``"EDA"``, ``"VideoRGB"``...), or None."""
        for part in (*self.frames.values(), *self.signals.values()):
            if part.stype == str(getattr(stype, "value", stype)):
                return part
        return None


def resample_signal(
    timestamps: np.ndarray, data: np.ndarray, grid: np.ndarray, *, max_gap: float
) -> np.ndarray:
    """Linearly interpolate ``data`` (n, ch) at ``grid``; NaN away from samples.

    Grid points farther than ``max_gap`` seconds from the nearest sample on either side, or
    outside the sampled span, are NaN: a resampled signal never invents data across a hole.
    NaN input samples are skipped per channel.
    """
    out = np.full((grid.size, data.shape[1]), np.nan)
    if timestamps.size == 0 or grid.size == 0:
        return out
    for c in range(data.shape[1]):
        ok = np.isfinite(data[:, c])
        t, y = timestamps[ok], data[ok, c]
        if t.size == 0:
            continue
        vals = np.interp(grid, t, y, left=np.nan, right=np.nan)
        right = np.searchsorted(t, grid, side="left").clip(0, t.size - 1)
        left = (np.searchsorted(t, grid, side="right") - 1).clip(0, t.size - 1)
        far = (t[right] - t[left]) > max_gap
        vals[far] = np.nan
        out[:, c] = vals
    return out
