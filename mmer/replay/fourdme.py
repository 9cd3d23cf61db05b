"""4DME reader: grey 2D frontal video, Kinect colour and depth frame folders, 4D meshes, labels.

The labelling workbook (``4DME_Labelling_Micro_release v1.xlsx``; columns ``sub_ID, fold_name,
Emotion, Onset, Apex, Offset, AUs``) is found anywhere below the root. Emotions may be compound
(``Surprise+Positive``); AUs marked ``(k)`` are static (held through the sample), which
:func:`parse_aus` reports.

Frame folders are accepted sample-first (``<sub>/<fold>/<modality>/<i>.<ext>``) or modality-first
(``<modality>/<sub>/<fold>/<i>.<ext>``). A modality folder is recognised by its name: ``depth``;
``mesh``/``3d``/``4d`` for meshes; ``colo(u)r``/``rgb`` for Kinect colour; ``grey``/``gray``/
``texture``/``2d`` for the frontal grey video. Onset/apex/offset index the grey (and mesh)
frames. Rates are the release's nominal ones (:data:`FPS`), overridable with ``fps=``; every
modality starts at ``t=0``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from mmer.dataset import Defect, Event, EventKind, FrameTrack, Recording
from mmer.replay._base import Dataset, DatasetError, RecordingRef, int_cell, read_workbook, select
from mmer.replay._frames import IMAGE_SUFFIXES, ImageFolderReader, image_size, numbered_images
from mmer.replay.labels import LabelError, normalize_emotion
from mmer.streams import StreamType, video_spec

__all__ = ["open_4dme", "parse_aus", "read_mesh", "FPS"]

log = logging.getLogger(__name__)

#: Nominal frame rates per modality (grey/mesh from the 4D capture system, colour/depth Kinect).
FPS = {"grey": 60.0, "mesh": 60.0, "rgb": 30.0, "depth": 30.0}
_COLUMNS = ("sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs")
_MESH_SUFFIXES = (".obj", ".ply", ".wrl", ".off", ".stl")


def parse_aus(text: str) -> list[tuple[str, bool]]:
    """Split an AU string into ``(au, static)`` pairs: ``"AU4+AU12(k)"`` -> ``[("AU4", False), ("AU12", True)]``."""
    out = []
    for part in re.split(r"[+,;/ ]+", str(text or "")):
        part = part.strip()
        if not part:
            continue
        static = bool(re.search(r"\(k\)", part, re.IGNORECASE))
        au = re.sub(r"\(k\)", "", part, flags=re.IGNORECASE).strip()
        if au and not au.upper().startswith("AU") and au[-1].isdigit():
            au = f"AU{au}"
        out.append((au, static))
    return out


def read_mesh(path: str | Path):
    """Read one mesh with open3d (imported here, so 4DME frames work without it).

    Raises ``DatasetError`` naming the file when open3d is missing or the mesh is unreadable.
    """
    path = Path(path)
    try:
        import open3d
    except ImportError as err:  # open3d also needs the system libusb-1.0
        raise DatasetError(f"{path}: reading meshes needs open3d ({err})") from err
    mesh = open3d.io.read_triangle_mesh(str(path))
    if mesh.is_empty():
        raise DatasetError(f"{path}: open3d read an empty mesh (damaged or unsupported file)")
    return mesh


def _modality(name: str) -> str | None:
    low = name.lower()
    if "depth" in low:
        return "depth"
    if any(k in low for k in ("mesh", "3d", "4d", "obj")):
        return "mesh"
    if "colo" in low or "rgb" in low:
        return "rgb"
    if any(k in low for k in ("grey", "gray", "texture", "2d", "frontal")):
        return "grey"
    return None


def _sample_folders(root: Path) -> dict[tuple[str, str], dict[str, Path]]:
    """Map ``(subject, fold)`` to ``{modality: folder}`` for both layouts."""
    found: dict[tuple[str, str], dict[str, Path]] = {}
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        mod = _modality(top.name)
        if mod is not None:  # modality-first
            for sub in sorted(p for p in top.iterdir() if p.is_dir()):
                for fold in sorted(p for p in sub.iterdir() if p.is_dir()):
                    found.setdefault((sub.name, fold.name), {})[mod] = fold
            continue
        for fold in sorted(p for p in top.iterdir() if p.is_dir()):  # sample-first
            for child in sorted(p for p in fold.iterdir() if p.is_dir()):
                mod = _modality(child.name)
                if mod is not None:
                    found.setdefault((top.name, fold.name), {})[mod] = child
    return found


def _recording(subject: str, fold: str, folders: dict[str, Path], events: list[Event], fps: dict) -> Recording:
    frames: dict[str, FrameTrack] = {}
    meta: dict = {"dataset": "4dme", "reference_track": "grey", "fps": fps["grey"]}
    for mod in ("grey", "rgb", "depth"):
        folder = folders.get(mod)
        if folder is None:
            continue
        suffixes = (".png",) if mod == "depth" else IMAGE_SUFFIXES
        idx, paths = numbered_images(folder, suffixes)
        if not len(idx):
            continue
        width, height = next((image_size(p) for p in paths[:5] if image_size(p) != (0, 0)), (0, 0))
        kind = StreamType.VIDEO_DEPTH if mod == "depth" else StreamType.VIDEO_RGB
        spec = video_spec(kind, width=width, height=height, fps=fps[mod], endpoint="", model="4DME",
                          name=f"mmer.{mod}", source_id=f"mmer-{mod}")
        frames[mod] = FrameTrack(spec=spec, indices=idx, timestamps=(idx - idx[0]) / fps[mod],
                                 reader=ImageFolderReader(paths, depth=mod == "depth"))
        meta[f"first_index_{mod}"] = int(idx[0])
        meta[f"{mod}_path"] = str(folder)
    if "grey" in frames:
        meta["first_index"] = meta["first_index_grey"]
    else:
        meta["reference_track"] = next(iter(frames), "")
    if "mesh" in folders:
        meta["meshes"] = sorted(str(p) for p in folders["mesh"].iterdir() if p.suffix.lower() in _MESH_SUFFIXES)
    return Recording(subject=subject, video=fold, frames=frames, events=events, meta=meta)


def open_4dme(path: str | Path, *, subjects=None, videos=None, fps: dict | None = None) -> Dataset:
    """Open a 4DME folder (labels alone, frames alone, or both).

    Parameters
    ----------
    path : path-like
        Dataset root.
    subjects, videos : sequence of str, optional
        Keep only these ``sub_ID`` values and ``fold_name`` values.
    fps : dict, optional
        Override :data:`FPS` per modality (``grey``, ``mesh``, ``rgb``, ``depth``).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"4DME folder not found: {root}")
    rates = {**FPS, **(fps or {})}
    books = sorted(p for p in root.rglob("*.xls*") if p.name.lower().startswith("4dme_labelling"))
    events: list[Event] = []
    defects: list[Defect] = []
    static_aus = 0
    compound = 0
    if books:
        book = books[0]
        frame = read_workbook(book, 0, _COLUMNS)
        for idx in frame.index:
            row = int(frame.at[idx, "_row"])
            subject = str(frame.at[idx, "sub_ID"]).strip()
            fold = str(frame.at[idx, "fold_name"]).strip()
            if not select([(subject, fold)], subjects, videos):
                continue
            try:
                emotion = normalize_emotion(str(frame.at[idx, "Emotion"]))
            except LabelError as err:
                raise DatasetError(f"{book}: row {row}, column 'Emotion': {err}") from None
            onset, apex, offset = (int_cell(frame, idx, c, book) for c in ("Onset", "Apex", "Offset"))
            aus = "" if pd.isna(frame.at[idx, "AUs"]) else str(frame.at[idx, "AUs"]).strip()
            static_aus += sum(s for _, s in parse_aus(aus))
            compound += "+" in emotion
            if offset < onset or not onset <= apex <= offset:
                defects.append(Defect(kind="offset_before_onset" if offset < onset else "apex_outside", file=str(book),
                                      action="skipped: inconsistent indices and no second source to repair them",
                                      subject=subject, video=fold, row=row, detail=f"{onset}/{apex}/{offset}"))
                continue
            events.append(Event(subject=subject, video=fold, onset=onset, offset=offset, apex=apex, kind=EventKind.ME,
                                emotion=emotion, aus=aus, source_row=row))
    refs = []
    for (subject, fold), folders in sorted(_sample_folders(root).items()):
        if not select([(subject, fold)], subjects, videos):
            continue
        evs = [e for e in events if (e.subject, e.video) == (subject, fold)]
        refs.append(RecordingRef(subject, fold, lambda s=subject, f=fold, m=folders, e=evs: _recording(s, f, m, e, rates)))
    if not books and not refs:
        raise DatasetError(f"{root}: not a 4DME folder (no 4DME_Labelling*.xlsx and no modality frame folders)")
    info = {"fps": rates, "static_aus": static_aus, "compound_emotions": compound,
            "sources": {"labels": str(books[0])} if books else {}}
    return Dataset(kind="4dme", path=root, refs=refs, events=events, defects=defects, info=info)
