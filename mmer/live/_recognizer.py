"""The recogniser as the live pipeline uses it: a checkpoint, its sample options and a mask.

The checkpoint is checked against the modalities the session configures *before* anything
starts, so a model that cannot be fed fails with a message instead of publishing priors.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_PACKAGED = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def resolve_checkpoint(name: str) -> Path:
    """``demo`` (or any name of a file in ``mmer/data/checkpoints``) or a path to a ``.pt`` file."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (_PACKAGED / name, _PACKAGED / f"{name}.pt"):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.name for p in _PACKAGED.glob("*.pt")) if _PACKAGED.is_dir() else []
    raise FileNotFoundError(
        f"checkpoint {name!r} is neither a file nor a packaged checkpoint; packaged: {shipped or 'none'}"
    )


class OnsetLandmarks:
    """Face-mesh landmarks of one frame, with no memory of earlier frames.

    A tracking face mesh carries its region of interest from call to call, so the landmarks of a
    candidate's onset would depend on which candidates came before it (measured: flow maps of the
    same frames differed by 0.24 px of 0.41). Static mode looks at each frame afresh, which makes a
    decision a function of its own frames only: a replayed recording decides exactly as live.
    """

    def __init__(self) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                     refine_landmarks=False, min_detection_confidence=0.5)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """``(468, 2)`` pixel coordinates in ``frame``, or None when no face is found."""
        import cv2

        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        found = self._mesh.process(rgb)
        if not found.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        return np.array([(p.x * w, p.y * h) for p in found.multi_face_landmarks[0].landmark], dtype=np.float64)

    def close(self) -> None:
        self._mesh.close()


class SessionRecognizer:
    """:class:`mmer.models.Recognizer` checked against what a session can deliver.

    Parameters
    ----------
    checkpoint : str
        Path or packaged name (see :func:`resolve_checkpoint`).
    available : sequence of str
        Modalities the session can deliver (``video``, ``depth``, ``physio``).
    threads : int
        torch intra-op threads (1 keeps the pipeline's other threads responsive on few cores).
    """

    def __init__(self, checkpoint: str, *, available: Sequence[str], threads: int = 1) -> None:
        from mmer.models import MODALITIES
        from mmer.models.recognizer import Recognizer

        path = resolve_checkpoint(checkpoint)
        unknown = [m for m in available if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; allowed: {list(MODALITIES)}")
        self._rec = Recognizer(path, threads=threads)
        trained = list(self._rec.modalities)
        if "video" not in trained:
            raise ValueError(
                f"checkpoint {path} was trained on {trained}; the live pipeline needs a model that reads "
                f"video (its early decision is video only)"
            )
        extra = [m for m in available if m not in trained]
        if extra and trained != ["video"]:
            raise ValueError(
                f"checkpoint {path} was trained on {trained} but the session configures {list(available)}; "
                f"remove the {extra} inputs from the config or use a checkpoint trained with them"
            )
        self.path = path
        self.meta = self._rec.meta
        # a video-only checkpoint (the packaged ``composite``) decides on video alone; the session
        # still records its other modalities
        self.available = tuple(m for m in MODALITIES if m in available and m in trained)
        self.class_names = list(self._rec.classes)
        self.sample_config = self._rec.config
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.model_id = f"{self.meta['config']['name']}:{path.stem}:{digest}"

    def warm_up(self) -> None:
        """Run the model once on an empty sample, and the physiology features once on simulated
        signals, so the first decisions pay neither torch's set-up nor the physiology code's
        first-call cost (measured: the first late decision took 1.0-1.9 s, later ones 0.1 s)."""
        from mmer.features.sample import build_sample

        self.predict(build_sample(config=self.sample_config), self.available)
        if "physio" in self.available:
            import neurokit2 as nk

            cfg, rate = self.sample_config, 200
            seconds = int(np.ceil(cfg.physio_pre + cfg.physio_post))
            physio = {"ecg": nk.ecg_simulate(duration=seconds, sampling_rate=rate, random_state=0),
                      "ppg": nk.ppg_simulate(duration=seconds, sampling_rate=rate, random_state=0),
                      "rsp": nk.rsp_simulate(duration=seconds, sampling_rate=rate, random_state=0),
                      "eda": nk.eda_simulate(duration=seconds, sampling_rate=rate, scr_number=1, random_state=0)}
            sample = build_sample(config=cfg, physio=physio, physio_rate=rate, physio_onset=cfg.physio_pre)
            self.predict(sample, self.available)

    def modalities(self, stage: str) -> tuple[str, ...]:
        """Modalities fed at a stage: early reads video (and depth), late everything available."""
        if stage == "early":
            return tuple(m for m in self.available if m != "physio")
        return self.available

    def predict(self, sample, modalities: Sequence[str]) -> dict[str, float]:
        """Class probabilities for one sample, feeding only ``modalities`` (absent ones stay masked)."""
        return self._rec.predict(sample, modalities=list(modalities))[0]["probs"]
