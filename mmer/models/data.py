"""Labelled sample sets for training: loading datasets, caching features, the flowimages layout.

A :class:`SampleSet` is the stacked arrays of :mod:`mmer.features.sample` plus labels, subjects
and sample ids. Extraction (face alignment, TV-L1, neurokit2) is the slow part of a run, so sets
built from recordings are cached as one ``.npz`` per dataset and builder config; a second run with
another model, protocol or modality subset reads the cache.

Dataset specs are ``KIND:PATH``:

- ``casme3:PATH`` and ``synth:PATH`` - a CAS(ME)^3-layout folder (real or written by
  ``mmer synth casme3``), read with :func:`mmer.replay.open_dataset`; every ME event is a sample;
- ``flowimages:PATH`` - ``labels.csv`` (``subject,sample,label``) + ``flow/<sample>.png``
  (+ optional ``apex/<sample>.jpg``);
- ``samples:FILE.npz`` - a set saved by :meth:`SampleSet.save` (for example by the benchmark).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from mmer.features.sample import MODALITIES, SampleConfig, sample_from_flow_image, stack_samples

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_KINDS",
    "LABEL_CHOICES",
    "SampleSet",
    "parse_data_spec",
    "load_samples",
    "write_flowimages",
]

DATA_KINDS = ("casme3", "synth", "flowimages", "samples")

#: ``--labels`` values and the label protocols of :mod:`mmer.replay.labels` they select.
LABEL_CHOICES = {"7": "emotion7", "4": "4class", "3": "3class", "objective": "objective"}


def cache_root() -> Path:
    """Feature cache folder: ``$MMER_CACHE`` or ``$XDG_CACHE_HOME/mmer`` (``~/.cache/mmer``)."""
    env = os.environ.get("MMER_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmer"


@dataclass
class SampleSet:
    """Stacked sample arrays with raw labels, subjects and ids (one row per sample)."""

    arrays: dict[str, np.ndarray]
    labels: list[str]
    subjects: list[str]
    ids: list[str]
    config: SampleConfig = field(default_factory=SampleConfig)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.subjects) == len(self.ids) == n):
            raise ValueError("labels, subjects and ids must have one entry per sample")
        for k, v in self.arrays.items():
            if len(v) != n:
                raise ValueError(f"array {k!r} has {len(v)} rows for {n} samples")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: Sequence[int]) -> SampleSet:
        rows = np.asarray(rows, dtype=int)
        return SampleSet(
            {k: v[rows] for k, v in self.arrays.items()},
            [self.labels[i] for i in rows],
            [self.subjects[i] for i in rows],
            [self.ids[i] for i in rows],
            self.config,
            dict(self.meta),
        )

    def save(self, path: str | Path) -> Path:
        """Write the set as one ``.npz`` (arrays plus a JSON header)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"labels": self.labels, "subjects": self.subjects, "ids": self.ids,
                  "config": self.config.as_dict(), "meta": self.meta}
        tmp = path.with_name(path.name + ".part.npz")
        np.savez_compressed(tmp, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **self.arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SampleSet:
        """Read a set written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sample set not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(z["__header__"].tobytes().decode())
                arrays = {k: z[k] for k in z.files if k != "__header__"}
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: not an mmer sample set ({err})") from err
        return cls(arrays, header["labels"], header["subjects"], header["ids"],
                   SampleConfig(**header["config"]), header.get("meta", {}))


def parse_data_spec(spec: str) -> tuple[str, Path]:
    """Split ``KIND:PATH`` and check both parts."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise ValueError(f"--data must be KIND:PATH with KIND in {list(DATA_KINDS)}, got {spec!r}")
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; choose one of {list(DATA_KINDS)}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{kind} data not found: {p}")
    return kind, p


def load_samples(spec: str, *, config: SampleConfig | None = None, cache: bool = True) -> SampleSet:
    """Load (or build and cache) the labelled samples of a dataset spec ``KIND:PATH``.

    Without ``config``, flow images keep their native size and recordings use ``SampleConfig()``.
    """
    kind, path = parse_data_spec(spec)
    if kind == "samples":
        return SampleSet.load(path)
    if kind == "flowimages":
        return _read_flowimages(path, config)
    return _from_recordings(path, config or SampleConfig(), cache=cache)


# --- CAS(ME)^3-layout datasets ------------------------------------------------------------------
def _fingerprint(path: Path, cfg: SampleConfig) -> str:
    stamp = []
    for p in sorted(path.glob("*")):
        if p.is_file():
            st = p.stat()
            stamp.append((p.name, st.st_size, int(st.st_mtime)))
    text = json.dumps({"path": str(path.resolve()), "files": stamp, "config": cfg.as_dict(), "v": 1})
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _from_recordings(path: Path, cfg: SampleConfig, *, cache: bool) -> SampleSet:
    from mmer.dataset import EventKind
    from mmer.features.face import FaceTracker
    from mmer.features.sample import sample_from_recording
    from mmer.replay import open_dataset

    cache_file = cache_root() / "features" / f"{path.name}-{_fingerprint(path, cfg)}.npz"
    if cache and cache_file.is_file():
        logger.info("reading cached features %s", cache_file)
        return SampleSet.load(cache_file)
    ds = open_dataset("casme3", path)
    refs = ds.refs
    if not refs:
        raise ValueError(f"{path}: no recordings with media (an annotations-only folder cannot be trained on)")
    samples, labels, subjects, ids = [], [], [], []
    info = Counter()
    tracker = FaceTracker()
    try:
        for ref in tqdm(refs, desc="features", unit="video", leave=False):
            rec = ref.load()
            for ev in rec.events:
                if ev.kind is not EventKind.ME:
                    continue
                if not ev.emotion and not ev.objective_class:
                    info["unlabelled"] += 1
                    continue
                s = sample_from_recording(rec, ev, config=cfg, tracker=tracker)
                for m, on in zip(MODALITIES, s.mask):
                    info[f"{m}_present"] += int(on)
                samples.append(s)
                labels.append(json.dumps({"emotion": ev.emotion, "objective": ev.objective_class}))
                subjects.append(str(ev.subject))
                ids.append(f"{ev.subject}/{ev.video}/{ev.onset}")
    finally:
        tracker.close()
    if not samples:
        raise ValueError(f"{path}: no labelled micro-expression events with media")
    out = SampleSet(stack_samples(samples), labels, subjects, ids, cfg,
                    {"source": f"casme3:{path}", "counts": dict(info), "defects": len(ds.defects)})
    if cache:
        out.save(cache_file)
        logger.info("cached features in %s", cache_file)
    return out


# --- flowimages layout --------------------------------------------------------------------------
def _read_flowimages(path: Path, cfg: SampleConfig | None) -> SampleSet:
    """Read the layout with :mod:`mmer.replay`'s flowimages reader; skipped rows are reported.

    Without a config the images keep their native size. The four-image layout adds the arrays
    ``flow_offset`` (apex->offset u, v, strain) and ``direction`` (both direction images), scaled
    to [-1, 1] like ``flow``. A ``dataset`` column of ``labels.csv`` lands in ``meta["dataset"]``.
    """
    from mmer.replay import open_dataset

    ds = open_dataset("flowimages", path)
    for d in ds.defects:
        logger.warning("flowimages: %s row %s (%s): %s", d.file, d.row, d.kind, d.action)
    if len(ds) == 0:
        raise ValueError(f"{path}: no usable samples in labels.csv")
    native = ds.native_size()
    if cfg is None:
        side = min(native)
        cfg = SampleConfig(image_size=side, flow_size=max(64, side))
    samples, labels, subjects, ids = [], [], [], []
    extra: dict[str, list[np.ndarray]] = {"flow_offset": [], "direction": []}
    for fs in tqdm(ds.samples, desc="flow images", unit="img", leave=False):
        images = fs.images(expect=native)
        samples.append(sample_from_flow_image(images["flow"], config=cfg, apex=fs.apex()))
        if ds.layout == "four":
            extra["flow_offset"].append(_scaled(images["flow_apex_offset"], cfg.image_size))
            extra["direction"].append(np.concatenate([_scaled(images["direction"], cfg.image_size),
                                                      _scaled(images["direction_apex_offset"], cfg.image_size)]))
        labels.append(json.dumps({"emotion": fs.label, "objective": None}))
        subjects.append(fs.subject)
        ids.append(fs.sample)
    arrays = stack_samples(samples)
    if ds.layout == "four":
        arrays.update({k: np.stack(v) for k, v in extra.items()})
    meta = {"source": f"flowimages:{path}", "layout": ds.layout, "defects": [d.as_dict() for d in ds.defects]}
    if all("dataset" in fs.extra for fs in ds.samples):
        meta["dataset"] = [fs.extra["dataset"] for fs in ds.samples]
    return SampleSet(arrays, labels, subjects, ids, cfg, meta)


def _scaled(image: np.ndarray, side: int) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1] -> ``(3, side, side)`` in [-1, 1], the scale of ``flow``."""
    if image.shape[:2] != (side, side):
        image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return (image * 2.0 - 1.0).transpose(2, 0, 1).astype(np.float32)


def write_flowimages(
    out: str | Path,
    flows: np.ndarray,
    *,
    subjects: Sequence[str],
    samples: Sequence[str],
    labels: Sequence[str],
    apex: Sequence[np.ndarray] | None = None,
) -> Path:
    """Write flow maps in the flowimages layout.

    Parameters
    ----------
    out : path
        Folder to create (``labels.csv``, ``flow/``, optional ``apex/``).
    flows : ndarray, shape (n, 3, H, W)
        u, v and optical strain; each channel of each image is min-max scaled to 0-255, the
        convention of STSTNet/HTNet-style releases.
    subjects, samples, labels : sequence of str
        One per flow map.
    apex : sequence of ndarray, optional
        Apex face crops (grey or BGR uint8) written as ``apex/<sample>.jpg``.
    """
    out = Path(out)
    flows = np.asarray(flows, dtype=np.float32)
    if flows.ndim != 4 or flows.shape[1] != 3:
        raise ValueError(f"flows must be (n, 3, H, W), got {flows.shape}")
    if not (len(subjects) == len(samples) == len(labels) == len(flows)):
        raise ValueError("flows, subjects, samples and labels must have the same length")
    (out / "flow").mkdir(parents=True, exist_ok=True)
    if apex is not None:
        (out / "apex").mkdir(exist_ok=True)
    for i, name in enumerate(samples):
        maps = flows[i]
        lo = maps.min(axis=(1, 2), keepdims=True)
        hi = maps.max(axis=(1, 2), keepdims=True)
        scaled = np.where(hi > lo, (maps - lo) / np.maximum(hi - lo, 1e-12), 0.5) * 255.0
        # u, v, strain in RGB order, as the public releases store them (cv2 writes BGR)
        image = np.round(scaled).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
        if not cv2.imwrite(str(out / "flow" / f"{name}.png"), image):
            raise OSError(f"cannot write {out / 'flow' / f'{name}.png'}")
        if apex is not None:
            cv2.imwrite(str(out / "apex" / f"{name}.jpg"), apex[i])
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "sample", "label"])
        w.writerows(zip(subjects, samples, labels))
    return out
