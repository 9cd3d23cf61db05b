"""An endless synthetic session shared by the live synthetic sensors.

The live sensors (:mod:`mmer.sensors.synthetic`) cut an unbounded stream out of consecutive
generator segments. Camera and physiology built with the same face, seed and config in one
process share one :class:`SyntheticLab`, hence one start time and one ground truth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mmer.synth._config import SynthConfig
from mmer.synth._face import Face, default_face_path, load_face
from mmer.synth._session import SyntheticSession, generate_session

__all__ = ["SyntheticLab", "shared_lab"]

_REGISTRY: dict[tuple, SyntheticLab] = {}
_REGISTRY_LOCK = threading.Lock()


class SyntheticLab:
    """Consecutive synthetic segments on one time base (``t0`` on the LSL clock).

    Parameters
    ----------
    face : Face, path or "astronaut", optional
        Subject; the packaged face when omitted.
    seed : int
        Segment ``k`` is drawn with the seed ``(seed, k)``.
    config : SynthConfig, optional
        Generator knobs.
    fps, size, physio_rate : float, (int, int), float
        Video and physiology formats.
    segment : float
        Seconds per generated segment.
    prefetch : bool
        Let :meth:`prepare` build upcoming segments in a background thread.
    epoch : float or None
        LSL time of global frame 0 and sample 0. The default 0.0 is the LSL clock's own zero, so
        separate processes on one host (``mmer stream synthetic-camera`` and
        ``mmer stream synthetic-physio``) play the same segments at the same instants and share
        ground truth. ``None`` starts at frame 0 when the first sensor starts.
    """

    def __init__(
        self,
        *,
        face: Face | str | Path | None = None,
        seed: int = 0,
        config: SynthConfig | None = None,
        fps: float = 30.0,
        size: tuple[int, int] = (640, 480),
        physio_rate: float = 200.0,
        segment: float = 60.0,
        prefetch: bool = True,
        epoch: float | None = 0.0,
    ) -> None:
        if segment < 2.0:
            raise ValueError(f"segment must be >= 2 s, got {segment}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.face = face if isinstance(face, Face) else load_face(face or default_face_path(), size=size)
        self.seed = int(seed)
        self.config = config or SynthConfig()
        self.fps = float(fps)
        self.size = tuple(size)
        self.physio_rate = float(physio_rate)
        self.frames_per_segment = int(round(segment * fps))
        self.segment_seconds = self.frames_per_segment / self.fps
        self.samples_per_segment = int(round(self.segment_seconds * physio_rate))
        self._cache: OrderedDict[int, SyntheticSession] = OrderedDict()
        self._pending: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._t0: float | None = None if epoch is None else float(epoch)
        self.prefetch = prefetch

    def position(self, rate: float) -> int:
        """Index (at ``rate``) that is due now on the anchored clock; 0 before anchoring."""
        from mmer.clock import local_clock

        if self._t0 is None:
            return 0
        return max(0, int(np.ceil((local_clock() - self._t0) * rate)))

    def anchor(self, t: float) -> float:
        """Fix the shared start time (first caller wins) and return it."""
        with self._lock:
            if self._t0 is None:
                self._t0 = float(t)
            return self._t0

    @property
    def t0(self) -> float | None:
        """LSL time of global frame 0 and sample 0, once anchored."""
        return self._t0

    def _build(self, k: int) -> SyntheticSession:
        seed = int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0] & 0x7FFFFFFF)
        return generate_session(
            self.face, seconds=self.segment_seconds, fps=self.fps, size=self.size, seed=seed,
            config=self.config, subject="live", video=f"seg{k}", first_index=k * self.frames_per_segment,
            physio_rate=self.physio_rate,
        )

    def segment(self, k: int) -> SyntheticSession:
        """Segment ``k``, built on first use (see :meth:`prepare` to build ahead)."""
        return self._get(k)

    def prepare(self, k: int) -> None:
        """Build segment ``k`` in a background thread (players call it half-way through ``k - 1``)."""
        if self.prefetch:
            self._prefetch(k)

    def _get(self, k: int) -> SyntheticSession:
        with self._lock:
            session = self._cache.get(k)
        if session is not None:
            return session
        with self._build_lock:  # one build at a time: camera and physiology never duplicate work
            with self._lock:
                session = self._cache.get(k)
            if session is None:
                session = self._build(k)
                with self._lock:
                    self._cache[k] = session
                    while len(self._cache) > 3:
                        self._cache.popitem(last=False)
        return session

    def _prefetch(self, k: int) -> None:
        with self._lock:
            if k in self._cache or (k in self._pending and self._pending[k].is_alive()):
                return
            thread = threading.Thread(target=self._get, args=(k,), name=f"mmer-synth-seg{k}", daemon=True)
            self._pending = {k: thread}
        thread.start()


def shared_lab(
    *,
    face: Face | str | Path | None = None,
    seed: int = 0,
    config: SynthConfig | None = None,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    physio_rate: float = 200.0,
    segment: float = 60.0,
    epoch: float | None = 0.0,
) -> SyntheticLab:
    """The process-wide lab for these arguments, so camera and physiology share ground truth."""
    config = config or SynthConfig()
    key = (str(face) if not isinstance(face, Face) else id(face), seed, repr(config.as_dict()), fps, tuple(size),
           physio_rate, segment, epoch)
    with _REGISTRY_LOCK:
        lab = _REGISTRY.get(key)
        if lab is None:
            lab = SyntheticLab(face=face, seed=seed, config=config, fps=fps, size=size,
                               physio_rate=physio_rate, segment=segment, epoch=epoch)
            _REGISTRY[key] = lab
        return lab
