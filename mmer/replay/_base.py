"""What every dataset reader shares: the dataset object, its error type and workbook loading."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from mmer.dataset import Defect, Event, EventKind, Recording
from mmer.errors import MmerError

__all__ = ["DatasetError", "Dataset", "RecordingRef", "read_workbook", "find_file", "select", "subject_key"]

log = logging.getLogger(__name__)


class DatasetError(MmerError, ValueError):
    """A dataset that cannot be read; the message names the file and the row or byte offset."""


class RecordingRef:
    """A recording known by name whose tracks are built only when :meth:`load` is called.

    Keeping only references lets a dataset list hundreds of videos (or an 8-minute Part C video)
    without opening a single frame.
    """

    def __init__(self, subject: str, video: str, loader: Callable[[], Recording]) -> None:
        self.subject = subject
        self.video = video
        self._loader = loader

    def load(self) -> Recording:
        """Build the :class:`~mmer.dataset.Recording` (frame tracks stay lazy)."""
        return self._loader()

    def __repr__(self) -> str:
        return f"RecordingRef(subject={self.subject!r}, video={self.video!r})"


class Dataset:
    """A read dataset: annotations, defects and lazily built recordings.

    Parameters
    ----------
    kind : str
        Reader name (``casme3``, ``4dme``, ``xdf``).
    path : Path
        Dataset root.
    refs : list of RecordingRef
        Recordings that have media on disk (empty for an annotations-only folder).
    events : list of Event
        Every annotation read, after repairs.
    defects : list of Defect
        Every problem found while reading the annotations and listing the media.
    info : dict
        Extra facts for :meth:`summary` (frame rates, sources, ...).
    """

    def __init__(
        self,
        *,
        kind: str,
        path: Path,
        refs: list[RecordingRef],
        events: list[Event],
        defects: list[Defect],
        info: dict | None = None,
    ) -> None:
        self.kind = kind
        self.path = Path(path)
        self._refs = refs
        self.events = events
        self.defects = defects
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.kind} {str(self.path)!r}: {len(self._refs)} recordings, "
            f"{len(self.events)} events, {len(self.defects)} defects>"
        )

    @property
    def refs(self) -> list[RecordingRef]:
        """References of the recordings with media, in dataset order."""
        return list(self._refs)

    def recordings(self) -> Iterator[Recording]:
        """Yield each recording in turn; only one is materialised at a time (frames stay on disk)."""
        for ref in self._refs:
            yield ref.load()

    def summary(self) -> dict:
        """Counts of subjects, videos, events and classes, plus every defect, as plain JSON values."""
        events = self.events
        subjects = {e.subject for e in events} | {r.subject for r in self._refs}
        videos = {(e.subject, e.video) for e in events} | {(r.subject, r.video) for r in self._refs}
        kinds = Counter(e.kind.value for e in events)
        classes = Counter(e.emotion for e in events if e.kind is EventKind.ME and e.emotion)
        objective = Counter(e.objective_class for e in events if e.kind is EventKind.ME and e.objective_class)
        defect_kinds = Counter(d.kind for d in self.defects)
        return {
            "kind": self.kind,
            "path": str(self.path),
            "subjects": len(subjects),
            "videos": len(videos),
            "recordings_with_media": len(self._refs),
            "events": {k.value: kinds.get(k.value, 0) for k in EventKind},
            "classes": dict(sorted(classes.items())),
            "objective_classes": dict(sorted(objective.items())),
            "defect_counts": dict(sorted(defect_kinds.items())),
            **self.info,
            "defects": [_relative(d.as_dict(), self.path) for d in self.defects],
        }


def _relative(item: dict, root: Path) -> dict:
    """Defect dict with its file relative to the dataset root (short, and stable across machines)."""
    try:
        item["file"] = str(Path(item["file"]).relative_to(root))
    except ValueError:
        pass
    return item


def find_file(root: Path, names: Iterable[str]) -> Path | None:
    """Find the first file under ``root`` whose name matches one of ``names`` (case-insensitive)."""
    wanted = [n.lower() for n in names]
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower() in wanted)
    found.sort(key=lambda p: (wanted.index(p.name.lower()), len(p.parts)))
    return found[0] if found else None


def read_workbook(path: Path, sheet: str | int, columns: Iterable[str]) -> pd.DataFrame:
    """Read one sheet and check its columns; errors name the file, the sheet and what is missing.

    Column names are compared after stripping spaces and ignoring case; the frame comes back with
    the canonical names in ``columns``. A ``_row`` column holds the 1-based spreadsheet row
    (header = row 1), so defects can point at the exact line a curator would open.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"workbook not found: {path}")
    try:
        book = pd.ExcelFile(path)
    except Exception as err:  # noqa: BLE001 - xlrd/openpyxl raise many unrelated types
        raise DatasetError(f"{path}: cannot read workbook ({type(err).__name__}: {err})") from err
    with book:
        if isinstance(sheet, str):
            names = {s.strip().lower(): s for s in book.sheet_names}
            if sheet.lower() not in names:
                raise DatasetError(f"{path}: no sheet {sheet!r}; sheets are {book.sheet_names}")
            sheet = names[sheet.lower()]
        try:
            frame = book.parse(sheet)
        except Exception as err:  # noqa: BLE001
            raise DatasetError(f"{path}: sheet {sheet!r} cannot be parsed ({err})") from err
    lookup = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in columns if c.lower() not in lookup]
    if missing:
        raise DatasetError(f"{path}: sheet {sheet!r} lacks column(s) {missing}; found {list(frame.columns)}")
    frame = frame.rename(columns={lookup[c.lower()]: c for c in columns})
    frame["_row"] = range(2, len(frame) + 2)
    return frame


#: Largest frame number a workbook may hold: 46 hours at 60 fps. Larger ones are typing errors
#: (a 10^12 would make every reader allocate or loop over that many frames).
MAX_FRAME_NUMBER = 10_000_000


def int_cell(frame: pd.DataFrame, index, column: str, path: Path) -> int:
    """One cell as an ``int`` from 0 to :data:`MAX_FRAME_NUMBER`; a blank, non-numeric, negative or
    absurd cell raises naming file, row and column."""
    value = frame.at[index, column]
    row = frame.at[index, "_row"]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: row {row}, column {column!r}: {value!r} is not a frame number") from None
    if not math.isfinite(number) or number != int(number):
        raise DatasetError(f"{path}: row {row}, column {column!r}: {value!r} is not a whole frame number")
    if not 0 <= number <= MAX_FRAME_NUMBER:
        raise DatasetError(
            f"{path}: row {row}, column {column!r}: {value!r} is not a frame number from 0 to {MAX_FRAME_NUMBER}"
        )
    return int(number)


def subject_key(subject) -> str:
    """Comparable subject id: lower case, without ``spNO.``/``sub``/``s`` prefixes or leading zeros."""
    text = str(subject).strip().lower()
    for prefix in ("spno.", "spno", "sub", "s"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            text = text[len(prefix):]
            break
    return text.lstrip("0") or "0" if text.isdigit() else text


def select(items: Iterable, subjects: Iterable[str] | None, videos: Iterable[str] | None, key=lambda x: x) -> list:
    """Keep items whose ``(subject, video)`` pass the filters.

    Matching ignores case, and subjects also match by number, so ``1``, ``spNO.1`` and ``sub01``
    select the same subject.
    """
    subs = {subject_key(s) for s in subjects} if subjects else None
    vids = {str(v).lower() for v in videos} if videos else None
    out = []
    for item in items:
        subject, video = key(item)
        if subs is not None and subject_key(subject) not in subs:
            continue
        if vids is not None and str(video).lower() not in vids:
            continue
        out.append(item)
    return out
