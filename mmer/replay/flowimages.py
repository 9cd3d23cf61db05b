"""Precomputed-flow datasets (the STSTNet/HTNet benchmark layout): one sample per ME, no video.

Two layouts are read. The one-image layout::

    ROOT/labels.csv          subject,sample,label[,dataset][,more columns]
    ROOT/flow/<sample>.png   onset->apex flow: u, v, optical strain, each min-max scaled to 0-255
    ROOT/apex/<sample>.jpg   optional apex face

and the four-image layout of the public composite releases (CausalNet, STSTNet-style), which adds::

    ROOT/flow_apex_offset/<sample>.png       apex->offset flow (u, v, strain)
    ROOT/direction/<sample>.png              onset->apex flow direction image
    ROOT/direction_apex_offset/<sample>.png  apex->offset flow direction image

A folder with ``flow_apex_offset/`` is read as the four-image layout, and then every sample needs
all four images. Channels are u, v, strain in the image's RGB order (the order of the public
releases, whose writers store ``[u, v, strain]`` as RGB; ``cv2.imread`` returns them reversed).
All images of one kind must share one size. This is a sample-level dataset, so it has no
recordings to replay; training code uses :class:`FlowImages` directly.

Bad input: an undecodable image, one with other than 3 channels (4 with alpha) or one whose size
differs from the first image of its kind raises :class:`~mmer.replay.DatasetError` naming the
file. A sample whose onset->apex flow file is missing is skipped and recorded as a
``missing_flow`` defect; in the four-image layout a missing secondary image is an error.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mmer.dataset import Defect
from mmer.replay._base import DatasetError, select
from mmer.replay.labels import get_protocol

__all__ = ["EXTRA_IMAGES", "FlowSample", "FlowImages", "open_flowimages", "read_flow_png"]

_APEX_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

#: folders of the four-image layout besides ``flow/``, in the order models stack them
EXTRA_IMAGES: tuple[str, ...] = ("flow_apex_offset", "direction", "direction_apex_offset")


def read_flow_png(path: Path, *, row: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """One flow or direction image as float32 ``(H, W, 3)`` in [0, 1], channels in RGB order.

    Raises ``DatasetError`` naming ``path`` when it cannot be decoded, has other than 3 colour
    channels, or differs from the expected ``size`` ``(H, W)``.
    """
    where = f" (labels.csv line {row})" if row is not None else ""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path}: cannot decode flow image{where}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DatasetError(f"{path}: flow image needs 3 channels (u, v, strain), got shape {image.shape}{where}")
    if size is not None and image.shape[:2] != tuple(size):
        raise DatasetError(f"{path}: image is {image.shape[1]}x{image.shape[0]} px but the dataset's images are "
                           f"{size[1]}x{size[0]}{where}")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(image[..., 2::-1]).astype(np.float32) / scale


@dataclass(frozen=True)
class FlowSample:
    """One sample of a flow-image dataset.

    Attributes
    ----------
    subject, sample, label : str
        From ``labels.csv``.
    flow_path : Path
        The flow image.
    apex_path : Path or None
        The apex face, when ``apex/`` has one.
    extra_paths : dict
        Four-image layout: folder name (:data:`EXTRA_IMAGES`) -> image path; empty otherwise.
    row : int
        1-based line in ``labels.csv`` (header = line 1).
    extra : dict
        Any further ``labels.csv`` columns.
    """

    subject: str
    sample: str
    label: str
    flow_path: Path
    apex_path: Path | None
    row: int
    extra: dict = field(default_factory=dict)
    extra_paths: dict = field(default_factory=dict)

    def flow(self, *, size: int | None = None, expect: tuple[int, int] | None = None) -> np.ndarray:
        """Onset->apex flow as float32 ``(H, W, 3)`` in [0, 1]: channels u, v, strain.

        ``size`` resizes to ``size x size`` (area interpolation); ``expect`` is the ``(H, W)`` the
        stored image must have. Raises ``DatasetError`` naming the file on bad input.
        """
        return self._read(self.flow_path, size, expect)

    def images(self, *, size: int | None = None, expect: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Every image of the sample: ``{"flow": ..., **{name: ...}}`` for the four-image layout."""
        out = {"flow": self.flow(size=size, expect=expect)}
        for name, path in self.extra_paths.items():
            out[name] = self._read(path, size, expect)
        return out

    def _read(self, path: Path, size: int | None, expect: tuple[int, int] | None) -> np.ndarray:
        image = read_flow_png(path, row=self.row, size=expect)
        if size is not None and image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        return image

    def apex(self) -> np.ndarray | None:
        """Apex face (BGR uint8), or ``None`` when the dataset has none for this sample."""
        if self.apex_path is None:
            return None
        image = cv2.imread(str(self.apex_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{self.apex_path}: cannot decode apex image (labels.csv line {self.row})")
        return image


class FlowImages:
    """A flow-image dataset: :class:`FlowSample` list plus helpers for LOSO training.

    Use :func:`open_flowimages` (or ``open_dataset("flowimages", path)``) to build one.
    """

    kind = "flowimages"

    def __init__(self, path: Path, samples: list[FlowSample], defects: list[Defect], *, layout: str = "one") -> None:
        self.path = Path(path)
        self.layout = layout
        self.samples = samples
        self.defects = defects
        self.events: list = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> FlowSample:
        return self.samples[i]

    def __iter__(self) -> Iterator[FlowSample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return f"<FlowImages {str(self.path)!r}: {len(self.samples)} samples, {len(self.subjects)} subjects>"

    @property
    def subjects(self) -> list[str]:
        """Subjects in first-seen order."""
        return list(dict.fromkeys(s.subject for s in self.samples))

    def recordings(self) -> Iterator:
        """No recordings: flow images are per sample, not streams."""
        return iter(())

    def labels(self, protocol: str | None = None) -> list[str | None]:
        """Labels per sample, mapped through a label protocol when given (``None`` = excluded)."""
        if protocol is None:
            return [s.label for s in self.samples]
        proto = get_protocol(protocol)
        return [proto.map(s.label) for s in self.samples]

    def arrays(self, *, size: int | None = None, protocol: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack everything for training: ``X`` (n, 3, H, W) float32, ``y`` class index, ``subjects``.

        With a protocol, excluded samples (``None``) are left out and ``y`` indexes the protocol's
        classes; without one, ``y`` indexes the sorted distinct labels.
        """
        labels = self.labels(protocol)
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        classes = list(get_protocol(protocol).classes) if protocol else sorted({labels[i] for i in keep})
        expect = self.native_size() if keep else None
        images = [self.samples[i].flow(size=size, expect=expect).transpose(2, 0, 1) for i in keep]
        x = np.stack(images) if images else np.zeros((0, 3, size or 0, size or 0), np.float32)
        y = np.array([classes.index(labels[i]) for i in keep], dtype=np.int64)
        subjects = np.array([self.samples[i].subject for i in keep])
        return x, y, subjects

    def native_size(self) -> tuple[int, int]:
        """``(H, W)`` of the first sample's flow image: every image must match it."""
        if not self.samples:
            raise DatasetError(f"{self.path}: no samples")
        return read_flow_png(self.samples[0].flow_path, row=self.samples[0].row).shape[:2]

    def loso_folds(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Leave-one-subject-out: yield ``(subject, train_indices, test_indices)``."""
        subjects = np.array([s.subject for s in self.samples])
        for subject in self.subjects:
            test = np.flatnonzero(subjects == subject)
            yield subject, np.flatnonzero(subjects != subject), test

    def summary(self) -> dict:
        """Counts for ``mmer inspect``."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "layout": self.layout,
            "subjects": len(self.subjects),
            "videos": len(self.samples),
            "samples": len(self.samples),
            "with_apex": sum(s.apex_path is not None for s in self.samples),
            "events": {"me": len(self.samples), "mae": 0, "blink": 0},
            "classes": dict(sorted(Counter(s.label for s in self.samples).items())),
            "defect_counts": dict(sorted(Counter(d.kind for d in self.defects).items())),
            "defects": [d.as_dict() for d in self.defects],
        }


def open_flowimages(path: str | Path, *, subjects=None, videos=None, verify: bool = False) -> FlowImages:
    """Open a flow-image folder.

    Parameters
    ----------
    path : path-like
        Folder with ``labels.csv`` and ``flow/``.
    subjects, videos : sequence of str, optional
        Keep only these subjects / sample names.
    verify : bool
        Decode every image now (a damaged, wrongly sized or wrongly shaped one raises, naming the
        file) instead of on first use.
    """
    root = Path(path)
    table = root / "labels.csv"
    if not root.is_dir():
        raise FileNotFoundError(f"flow-image folder not found: {root}")
    if not table.is_file():
        raise DatasetError(f"{root}: not a flow-image dataset (no labels.csv)")
    flow_dir, apex_dir = root / "flow", root / "apex"
    layout = "four" if (root / EXTRA_IMAGES[0]).is_dir() else "one"
    samples: list[FlowSample] = []
    defects: list[Defect] = []
    seen: set[str] = set()
    with open(table, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        missing = [c for c in ("subject", "sample", "label") if c not in fields]
        if missing:
            raise DatasetError(f"{table}: line 1 lacks column(s) {missing}; found {reader.fieldnames}")
        for lineno, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            subject, sample, label = row["subject"], row["sample"], row["label"]
            if not subject or not sample or not label:
                raise DatasetError(f"{table}: line {lineno}: subject, sample and label must not be empty")
            if not select([(subject, sample)], subjects, videos):
                continue
            if sample in seen:
                defects.append(Defect(kind="duplicate_sample", file=str(table), action="skipped: first row kept",
                                      subject=subject, video=sample, row=lineno))
                continue
            seen.add(sample)
            flow = flow_dir / f"{sample}.png"
            if not flow.is_file():
                defects.append(Defect(kind="missing_flow", file=str(flow), action="skipped: no flow image",
                                      subject=subject, video=sample, row=lineno))
                continue
            extra_paths = {name: root / name / f"{sample}.png" for name in EXTRA_IMAGES} if layout == "four" else {}
            lost = [str(p) for p in extra_paths.values() if not p.is_file()]
            if lost:
                raise DatasetError(f"{lost[0]}: missing (four-image layout, labels.csv line {lineno}, sample {sample})")
            apex = next((apex_dir / f"{sample}{ext}" for ext in _APEX_SUFFIXES if (apex_dir / f"{sample}{ext}").is_file()), None)
            extra = {k: v for k, v in row.items() if k not in ("subject", "sample", "label")}
            samples.append(FlowSample(subject, sample, label, flow, apex, lineno, extra, extra_paths))
    dataset = FlowImages(root, samples, defects, layout=layout)
    if verify and samples:
        expect = dataset.native_size()
        for s in samples:
            s.images(expect=expect)
            s.apex()
    return dataset
