"""One synthetic session: lazily rendered RGB and depth, physiology, and exact ground truth."""

from __future__ import annotations

import json
import threading
import weakref
from pathlib import Path

import cv2
import numpy as np

from mmer.dataset import Event, EventKind, FrameTrack, Recording, SampleTrack
from mmer.streams import StreamType, markers_spec, physio_spec, video_spec
from mmer.synth._aus import BLINK_AU, AUField, au_field
from mmer.synth._config import SynthConfig
from mmer.synth._face import Face, load_face
from mmer.synth._physio import simulate_physio
from mmer.synth._timeline import Expression, Timeline, plan_timeline

__all__ = ["SyntheticSession", "generate_session"]

_N_NOISE = 16  # noise frames per bank: enough to look random, ~50 MB at 640x480
_FACE_WIDTH_MM = 140.0  # bizygomatic breadth of an adult face
# Upper-lid travel of a full blink, in eye openings (landmarks sit on the lid, above the lash line).
_BLINK_TRAVEL = 1.3


class _FaceAssets:
    """Per-face precomputation shared by every session of that face (fields, depth, noise)."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self._fields: dict[tuple[int, str], AUField] = {}
        self._lock = threading.Lock()
        w, h = face.size
        self.grid_x, self.grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        lm = face.landmarks
        self.eye_open = float(
            (np.linalg.norm(lm[159, :2] - lm[145, :2]) + np.linalg.norm(lm[386, :2] - lm[374, :2])) / 2
        )
        self.centre = lm[[10, 152], :2].mean(axis=0)
        self.mm_per_px = _FACE_WIDTH_MM / float(np.linalg.norm(lm[234, :2] - lm[454, :2]))
        self._depth: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def field(self, au: int, side: str) -> AUField:
        key = (au, side)
        with self._lock:
            if key not in self._fields:
                self._fields[key] = au_field(self.face, au, side)
            return self._fields[key]

    def combined_peak(self, aus: list[tuple[int, str, float]]) -> float:
        """Peak displacement (px) of a weighted AU combination at unit amplitude."""
        fields = [(self.field(au, side), w) for au, side, w in aus]
        y0 = min(f.y0 for f, _ in fields)
        x0 = min(f.x0 for f, _ in fields)
        y1 = max(f.y0 + f.shape[0] for f, _ in fields)
        x1 = max(f.x0 + f.shape[1] for f, _ in fields)
        dx = np.zeros((y1 - y0, x1 - x0), np.float32)
        dy = np.zeros_like(dx)
        for f, w in fields:
            h, wd = f.shape
            dx[f.y0 - y0 : f.y0 - y0 + h, f.x0 - x0 : f.x0 - x0 + wd] += w * f.dx
            dy[f.y0 - y0 : f.y0 - y0 + h, f.x0 - x0 : f.x0 - x0 + wd] += w * f.dy
        return float(np.hypot(dx, dy).max()) or 1.0

    def depth_base(self, distance: float) -> tuple[np.ndarray, np.ndarray]:
        """Base depth (float32 mm, 0 = hole) and the face mask, for a nose-tip ``distance``."""
        with self._lock:
            if distance not in self._depth:
                self._depth[distance] = self._render_depth(distance)
            return self._depth[distance]

    def _render_depth(self, distance: float) -> tuple[np.ndarray, np.ndarray]:
        from scipy.interpolate import LinearNDInterpolator

        face = self.face
        w, h = face.size
        lm = face.landmarks.astype(np.float64)
        z_mm = (lm[:, 2] - lm[1, 2]) * self.mm_per_px + distance
        interp = LinearNDInterpolator(lm[:, :2], z_mm)
        # Interpolate only inside the landmarks' bounding box; everything outside is off the mesh.
        x0, y0 = np.clip(np.floor(lm[:, :2].min(axis=0)).astype(int), 0, None)
        x1, y1 = np.ceil(lm[:, :2].max(axis=0)).astype(int) + 1
        depth = np.full((h, w), np.nan, np.float32)
        depth[y0:y1, x0:x1] = interp(self.grid_x[y0:y1, x0:x1], self.grid_y[y0:y1, x0:x1])
        inside = np.isfinite(depth)
        # Outside the mesh: continue from the nearest mesh-edge depth, curving away (the rest of
        # the head), then a wall behind the subject.
        outside = (~inside).astype(np.uint8)
        dist, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        seeds = np.zeros(int(labels.max()) + 1, np.float32)
        seeds[labels[inside]] = depth[inside]
        fw = float(np.linalg.norm(lm[234, :2] - lm[454, :2]))
        fh = float(np.linalg.norm(lm[10, :2] - lm[152, :2]))
        cx, cy = self.centre
        r2 = ((self.grid_x - cx) / (0.72 * fw)) ** 2 + ((self.grid_y - cy + 0.05 * fh) / (0.8 * fh)) ** 2
        head = seeds[labels] + 0.004 * dist**2 * self.mm_per_px
        wall = distance + 700.0 + 0.05 * (self.grid_y - h / 2)
        neck = (self.grid_y > cy + 0.45 * fh) & (np.abs(self.grid_x - cx) < 0.4 * fw)
        outer = np.where((r2 < 1.0) | neck, head, wall).astype(np.float32)
        depth = np.where(inside, depth, outer)
        # Flying pixels at depth discontinuities read zero on consumer RGB-D cameras.
        gx = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
        edges = np.hypot(gx, gy) > 80.0
        edges = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        depth[edges] = 0.0
        return depth, inside


_ASSETS: weakref.WeakKeyDictionary[Face, _FaceAssets] = weakref.WeakKeyDictionary()
_ASSETS_LOCK = threading.Lock()
_NOISE: dict[tuple, tuple[list[np.ndarray], ...]] = {}


def _assets(face: Face) -> _FaceAssets:
    with _ASSETS_LOCK:
        if face not in _ASSETS:
            _ASSETS[face] = _FaceAssets(face)
        return _ASSETS[face]


def _noise_banks(w: int, h: int, sigma: float, hole_frac: float, df: float = 0.0):
    """Banks of precomputed noise (drawing fresh noise per frame costs ~10 ms).

    With ``df`` > 2 the colour noise is Student-t with that many degrees of freedom, scaled to
    standard deviation ``sigma``: most pixels as quiet as Gaussian noise, a few far off.
    """
    key = (w, h, sigma, hole_frac, df)
    with _ASSETS_LOCK:
        if key not in _NOISE:
            rng = np.random.default_rng(12345)
            pos, neg, dnoise, holes = [], [], [], []
            for _ in range(_N_NOISE):
                if sigma <= 0:
                    n = np.zeros((h, w, 3))
                elif df > 0:
                    n = rng.standard_t(df, (h, w, 3)) * (sigma * np.sqrt((df - 2.0) / df))
                else:
                    n = rng.normal(0, sigma, (h, w, 3))
                pos.append(np.clip(np.round(n), 0, 255).astype(np.uint8))
                neg.append(np.clip(np.round(-n), 0, 255).astype(np.uint8))
                # Depth noise is spatially correlated (stereo/structured-light matching works on
                # patches), which also keeps 16-bit PNGs small.
                field = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
                dnoise.append(field / max(float(field.std()), 1e-6))
                blobs = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
                thr = np.quantile(blobs, 1 - hole_frac) if hole_frac > 0 else np.inf
                holes.append(blobs > thr)
            _NOISE[key] = (pos, neg, dnoise, holes)
        return _NOISE[key]


class SyntheticSession:
    """A synthetic recording with exact ground truth (build it with :func:`generate_session`).

    Frames are rendered on demand and are a pure function of the seed and the frame position,
    so random access, re-rendering and multi-threaded writing all give identical pixels.

    Attributes
    ----------
    subject, video : str
        Names used in events and workbooks (``spNO.1``, ``a``).
    face : Face
        The subject photograph with its landmarks.
    config : SynthConfig
        Knobs used to draw this session.
    fps : float
        Frame rate.
    n_frames : int
        Number of frames.
    first_index : int
        Dataset frame index of position 0 (CAS(ME)^3 Part A JPGs start at 1).
    events : list of Event
        Micro-expressions, macro-expressions and blinks in dataset frame indices.
    physio_rate : float
        Physiology sampling rate (Hz).
    physio_times : ndarray
        Seconds relative to the first frame (negative during a pre-roll).
    physio : dict of str to ndarray
        ``ecg``, ``ppg``, ``rsp``, ``eda`` (float32).
    artifacts : list of dict
        Motion spikes and dropped-electrode segments in the physiology.
    """

    def __init__(
        self,
        *,
        face: Face,
        timeline: Timeline,
        config: SynthConfig,
        seed: int,
        subject: str,
        video: str,
        first_index: int,
        physio_rate: float,
        physio_times: np.ndarray,
        physio: dict[str, np.ndarray],
        artifacts: list[dict],
    ) -> None:
        self.face = face
        self.timeline = timeline
        self.config = config
        self.seed = seed
        self.subject = subject
        self.video = video
        self.first_index = first_index
        self.fps = timeline.fps
        self.n_frames = timeline.n_frames
        self.physio_rate = physio_rate
        self.physio_times = physio_times
        self.physio = physio
        self.artifacts = artifacts
        self._assets = _assets(face)
        self._blink_px = self._assets.eye_open * _BLINK_TRAVEL
        w, h = face.size
        self._banks = _noise_banks(w, h, config.noise_sigma, config.depth_holes, config.noise_df)
        # Left-right illumination gradient: -1 at the left edge, +1 at the right (per channel).
        self._ramp = np.repeat(np.linspace(-1.0, 1.0, w, dtype=np.float32), 3)[None, :]
        self._frame_seeds = np.random.default_rng([seed, 7919]).integers(0, 2**31 - 1, size=(self.n_frames, 4))
        self.events = self._events()

    # ------------------------------------------------------------------ ground truth
    def _events(self) -> list[Event]:
        out = []
        kinds = {"me": EventKind.ME, "mae": EventKind.MAE, "blink": EventKind.BLINK}
        for e in sorted([*self.timeline.expressions, *self.timeline.blinks], key=lambda e: (e.onset, e.kind)):
            out.append(
                Event(
                    subject=self.subject,
                    video=self.video,
                    onset=self.first_index + e.onset,
                    offset=self.first_index + e.offset,
                    apex=self.first_index + e.apex,
                    kind=kinds[e.kind],
                    emotion=e.emotion,
                    objective_class=e.objective_class,
                    aus=e.au_text,
                )
            )
        return out

    @property
    def size(self) -> tuple[int, int]:
        """Frame ``(width, height)``."""
        return self.face.size

    @property
    def duration(self) -> float:
        """Video length in seconds."""
        return self.n_frames / self.fps

    def frame_time(self, position: int) -> float:
        """Seconds of frame ``position`` relative to the first frame."""
        return position / self.fps

    def truth(self) -> list[dict]:
        """Every event and distractor as plain dicts (the machine-readable ground truth)."""
        rows = []
        for e in sorted([*self.timeline.expressions, *self.timeline.blinks], key=lambda e: (e.onset, e.kind)):
            rows.append(self._truth_row(e))
        for s0, s1 in self.timeline.speech:
            rows.append(self._span_row("speech", s0, s1))
        for j in self.timeline.jerks:
            rows.append(self._span_row("head_jerk", j, min(self.n_frames - 1, j + 4)))
        for a in self.artifacts:
            rows.append(
                {
                    "subject": self.subject,
                    "video": self.video,
                    "kind": "physio_" + a["type"],
                    "channel": a["channel"],
                    "t_onset": round(a["t0"], 4),
                    "t_offset": round(a["t1"], 4),
                }
            )
        return rows

    def _truth_row(self, e: Expression) -> dict:
        return {
            "subject": self.subject,
            "video": self.video,
            "kind": e.kind,
            "onset": self.first_index + e.onset,
            "apex": self.first_index + e.apex,
            "apex_end": self.first_index + e.hold,
            "offset": self.first_index + e.offset,
            "t_onset": round(e.onset / self.fps, 4),
            "t_apex": round(e.apex / self.fps, 4),
            "t_offset": round(e.offset / self.fps, 4),
            "emotion": e.emotion,
            "objective_class": e.objective_class,
            "aus": e.au_text,
            "amplitude_px": round(e.amplitude * (self._blink_px if e.kind == "blink" else 1.0), 3),
            "overlap": list(e.overlaps) if e.kind == "me" else None,
            "dynamics": list(e.dynamics) if e.kind == "me" else None,
            "residual": round(e.residual, 3) if e.kind == "me" else None,
            "t_relaxed": round(e.end / self.fps, 4) if e.kind == "me" else None,
        }

    def _span_row(self, kind: str, s0: int, s1: int) -> dict:
        return {
            "subject": self.subject,
            "video": self.video,
            "kind": kind,
            "onset": self.first_index + s0,
            "offset": self.first_index + s1,
            "t_onset": round(s0 / self.fps, 4),
            "t_offset": round(s1 / self.fps, 4),
        }

    def truth_markers(self) -> tuple[np.ndarray, list[str]]:
        """Ground truth as ``mmer.truth`` markers: one JSON string per onset, apex and offset."""
        stamps, texts = [], []
        for e in self.events:
            if e.kind is EventKind.BLINK:
                continue
            for phase, idx in (("onset", e.onset), ("apex", e.apex), ("offset", e.offset)):
                stamps.append((idx - self.first_index) / self.fps)
                texts.append(
                    json.dumps(
                        {
                            "phase": phase,
                            "kind": e.kind.value,
                            "subject": e.subject,
                            "video": e.video,
                            "onset": e.onset,
                            "apex": e.apex,
                            "offset": e.offset,
                            "frame": idx,
                            "emotion": e.emotion,
                            "objective_class": e.objective_class,
                            "aus": e.aus,
                        }
                    )
                )
        order = np.argsort(stamps, kind="stable")
        return np.asarray(stamps, float)[order], [texts[i] for i in order]

    # ------------------------------------------------------------------ rendering
    def _check(self, position: int) -> int:
        position = int(position)
        if not 0 <= position < self.n_frames:
            raise IndexError(f"frame position {position} outside 0..{self.n_frames - 1}")
        return position

    def _maps(self, position: int) -> tuple[np.ndarray, np.ndarray, list[tuple[AUField, float]], tuple[int, int]]:
        a = self._assets
        tx, ty, roll, _ = self.timeline.head[position]
        cx, cy = a.centre
        # Inverse rigid motion: output pixel p samples the photo at R^-1 (p - c - t) + c.
        th = np.deg2rad(roll)
        cos, sin = np.cos(th), np.sin(th)
        ox = cx + tx
        oy = cy + ty
        mx = cos * (a.grid_x - ox) + sin * (a.grid_y - oy) + cx
        my = -sin * (a.grid_x - ox) + cos * (a.grid_y - oy) + cy
        active = []
        row = self.timeline.weights[position]
        for k in np.flatnonzero(row):
            au, side = self.timeline.keys[k]
            amp = float(row[k]) * (self._blink_px if au == BLINK_AU else 1.0)
            active.append((a.field(au, side), amp))
        shift = (int(round(tx)), int(round(ty)))
        return mx, my, active, shift

    @staticmethod
    def _add_crop(target: np.ndarray, crop: np.ndarray, y0: int, x0: int, scale: float) -> None:
        h, w = target.shape[:2]
        ch, cw = crop.shape
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(h, y0 + ch), min(w, x0 + cw)
        if ya >= yb or xa >= xb:
            return
        target[ya:yb, xa:xb] += scale * crop[ya - y0 : yb - y0, xa - x0 : xb - x0]

    def _warped(self, position: int) -> tuple[np.ndarray, np.ndarray, list, tuple[int, int]]:
        mx, my, active, (sx, sy) = self._maps(position)
        for fld, amp in active:
            # Output q + d samples the photo at q: subtract the displacement from the map.
            self._add_crop(mx, fld.dx, fld.y0 + sy, fld.x0 + sx, -amp)
            self._add_crop(my, fld.dy, fld.y0 + sy, fld.x0 + sx, -amp)
        return mx, my, active, (sx, sy)

    def render(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Render colour and depth of frame ``position`` together (one warp map for both)."""
        position = self._check(position)
        warped = self._warped(position)
        return self._rgb(position, warped), self._depth(position, warped)

    def rgb(self, position: int) -> np.ndarray:
        """Render colour frame ``position`` (BGR uint8, HxWx3); no JPEG compression applied."""
        position = self._check(position)
        return self._rgb(position, self._warped(position))

    def depth(self, position: int) -> np.ndarray:
        """Render depth frame ``position`` (uint16 millimetres, HxW; 0 marks a hole)."""
        position = self._check(position)
        return self._depth(position, self._warped(position))

    def _rgb(self, position: int, warped) -> np.ndarray:
        mx, my, _, _ = warped
        img = cv2.remap(self.face.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        gain = float(self.timeline.gain[position])
        shade = float(self.timeline.shade[position])
        if shade != 0.0:
            # OpenCV's mixed-type multiply is ~8x faster than the same in numpy (0.6 vs 4.9 ms at 640x480).
            h, w = img.shape[:2]
            gains = cv2.repeat((gain + shade * self._ramp).astype(np.float32), h, 1).reshape(h, w, 3)
            img = cv2.multiply(img, gains, dtype=cv2.CV_8U)
        elif gain != 1.0:
            img = cv2.convertScaleAbs(img, alpha=gain, beta=0.0)
        if self.config.noise_sigma > 0:
            pos, neg, _, _ = self._banks
            k = int(self._frame_seeds[position, 0] % _N_NOISE)
            j = int(self._frame_seeds[position, 1] % _N_NOISE)
            cv2.add(img, pos[k], dst=img)
            cv2.subtract(img, neg[j], dst=img)
        if self.config.compression_quality > 0:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.config.compression_quality])
            if not ok:
                raise OSError(f"JPEG encoding failed for frame {position}")
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img

    def _depth(self, position: int, warped) -> np.ndarray:
        mx, my, active, (sx, sy) = warped
        base, _ = self._assets.depth_base(self.config.depth_distance_mm)
        d = cv2.remap(base, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        valid = d > 0
        dz = np.zeros_like(d)
        for fld, amp in active:
            self._add_crop(dz, fld.dz, fld.y0 + sy, fld.x0 + sx, amp * self._assets.mm_per_px)
        d += dz + float(self.timeline.head[position, 3])
        _, _, dnoise, holes = self._banks
        if self.config.depth_noise_mm > 0:
            k = int(self._frame_seeds[position, 2] % _N_NOISE)
            scale = self.config.depth_noise_mm / self.config.depth_distance_mm**2
            d += dnoise[k] * (d * d * scale)
        near, far = self.config.depth_range_mm
        d[~valid | (d < near) | (d > far)] = 0.0
        if self.config.depth_holes > 0:
            d[holes[int(self._frame_seeds[position, 3] % _N_NOISE)]] = 0.0
        return np.clip(d, 0, 65535).astype(np.uint16)

    def motion(self, position: int) -> float:
        """Peak facial displacement (px) of the expressions and blinks at ``position``, excluding
        head motion and speech: the ground-truth motion signal a spotter is after."""
        position = self._check(position)
        peak = 0.0
        for e in [*self.timeline.expressions, *self.timeline.blinks]:
            if e.onset <= position <= e.end:
                amp = e.amplitude * (self._blink_px if e.kind == "blink" else 1.0)
                peak = max(peak, amp * float(e.profile()[position - e.onset]))
        return peak

    # ------------------------------------------------------------------ export
    def to_recording(self) -> Recording:
        """The session as a :class:`mmer.dataset.Recording` (lazy frames, in-memory physiology).

        Tracks: ``rgb`` and ``depth`` frames, ``eda``, ``ecg``, ``ppg``, ``rsp`` samples and the
        ``truth`` marker track; specs come from :mod:`mmer.streams`.
        """
        w, h = self.size
        idx = self.first_index + np.arange(self.n_frames, dtype=np.int64)
        ts = np.arange(self.n_frames, dtype=np.float64) / self.fps
        frames = {
            "rgb": FrameTrack(
                video_spec(StreamType.VIDEO_RGB, width=w, height=h, fps=self.fps, endpoint="", model="synthetic"),
                idx, ts, self.rgb,
            ),
            "depth": FrameTrack(
                video_spec(StreamType.VIDEO_DEPTH, width=w, height=h, fps=self.fps, endpoint="", model="synthetic"),
                idx.copy(), ts.copy(), self.depth,
            ),
        }
        samples = {}
        for name in ("eda", "ecg", "ppg", "rsp"):
            spec = physio_spec(name.upper(), rate=self.physio_rate, model="synthetic")
            samples[name] = SampleTrack(spec, self.physio_times.copy(), self.physio[name].reshape(-1, 1))
        stamps, texts = self.truth_markers()
        samples["truth"] = SampleTrack(markers_spec("mmer.truth", label="truth"), stamps, texts)
        return Recording(
            subject=self.subject,
            video=self.video,
            frames=frames,
            samples=samples,
            events=list(self.events),
            meta={
                "synthetic": True,
                "seed": self.seed,
                "face": self.face.name,
                "fps": self.fps,
                "size": [w, h],
                "artifacts": list(self.artifacts),
            },
        )


def generate_session(
    face: Face | str | Path | np.ndarray,
    *,
    seconds: float,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    config: SynthConfig | None = None,
    subject: str = "spNO.1",
    video: str = "a",
    first_index: int = 1,
    physio_rate: float = 200.0,
    preroll: float = 0.0,
    min_me: int = 0,
) -> SyntheticSession:
    """Draw a synthetic session: a face, expressions with ground truth, distractors, physiology.

    Parameters
    ----------
    face : Face or path or ndarray or "astronaut"
        The subject; anything but a :class:`Face` is loaded with :func:`load_face` at ``size``.
    seconds : float
        Video length.
    fps : float
        Frame rate (CAS(ME)^3 records 30 fps).
    size : (int, int)
        Frame ``(width, height)``.
    seed : int
        Everything drawn (events, physiology, per-frame noise) follows from it.
    config : SynthConfig, optional
        Rates, amplitudes and coupling; defaults mimic CAS(ME)^3.
    subject, video : str
        Names in events and workbooks.
    first_index : int
        Dataset frame index of the first frame.
    physio_rate : float
        Physiology sampling rate in Hz.
    preroll : float
        Seconds of physiology before the first frame (CAS(ME)^3 Part C starts its amplifier first).
    min_me : int
        Draw at least this many micro-expressions.

    Returns
    -------
    SyntheticSession
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if not fps > 0 or not physio_rate > 0:
        raise ValueError(f"fps and physio_rate must be > 0, got {fps!r} and {physio_rate!r}")
    if preroll < 0 or min_me < 0 or seed < 0:
        raise ValueError(f"preroll, min_me and seed must be >= 0, got {preroll!r}, {min_me!r}, {seed!r}")
    config = config or SynthConfig()
    if not isinstance(face, Face):
        face = load_face(face, size=size)
    elif face.size != tuple(size):
        raise ValueError(f"face canvas is {face.size[0]}x{face.size[1]} but size is {size[0]}x{size[1]}")
    n_frames = int(round(seconds * fps))
    if n_frames < 2:
        raise ValueError(f"{seconds} s at {fps} fps is fewer than 2 frames")
    rng = np.random.default_rng([seed, 1])
    timeline = plan_timeline(rng, n_frames=n_frames, fps=fps, height=face.size[1], cfg=config, min_me=min_me,
                             peak=_assets(face).combined_peak, extra=np.random.default_rng([seed, 3]))
    events = [
        {"t": e.onset / fps, "kind": e.kind, "emotion": e.emotion} for e in timeline.expressions
    ]
    times, physio, artifacts = simulate_physio(
        np.random.default_rng([seed, 2]),
        start=-preroll,
        stop=n_frames / fps,
        rate=physio_rate,
        events=events,
        jerks=[j / fps for j in timeline.jerks],
        cfg=config,
    )
    return SyntheticSession(
        face=face,
        timeline=timeline,
        config=config,
        seed=seed,
        subject=subject,
        video=video,
        first_index=first_index,
        physio_rate=physio_rate,
        physio_times=times,
        physio=physio,
        artifacts=artifacts,
    )
