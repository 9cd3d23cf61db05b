"""CAS(ME)^3 Part C physiology text: 200 Hz PPG, RSP, ECG, EDA and a ``5`` sync marker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.replay._base import DatasetError

#: Channel order of the official files after the time column (time in minutes first).
PHYSIO_COLUMNS = ("PPG", "RSP", "ECG", "EDA")
SYNC_MARKER = 5.0
PART_C_RATE = 200.0
PART_C_FPS = 30.0

_HEADER_ALIASES = {
    "time": ("time", "min", "minutes", "time(min)", "time_min"),
    "PPG": ("ppg", "pulse", "bvp"),
    "RSP": ("rsp", "resp", "respiration"),
    "ECG": ("ecg", "ekg"),
    "EDA": ("eda", "gsr", "sc", "scr"),
    "marker": ("marker", "mark", "event", "events", "trigger", "sync"),
}


@dataclass
class PhysioText:
    """Parsed physiology file.

    Attributes
    ----------
    path : Path
        The file.
    data : ndarray, shape (n, 4), float64
        PPG, RSP, ECG, EDA in file order.
    marker_row : int
        0-based data row of the first ``5`` in the marker column: the first video frame.
    time_min : ndarray, shape (n,)
        The file's own time column (minutes).
    """

    path: Path
    data: np.ndarray
    marker_row: int
    time_min: np.ndarray

    def times(self, rate: float = PART_C_RATE) -> np.ndarray:
        """Sample times in seconds relative to the sync marker (frame 0 at ``t=0``)."""
        return (np.arange(len(self.data)) - self.marker_row) / rate


def frame_to_sample(frame: int | np.ndarray, *, marker_row: int, fps: float = PART_C_FPS, rate: float = PART_C_RATE):
    """Physiology row of a video frame: ``marker_row + frame / fps * rate`` (rounded down)."""
    return marker_row + np.floor(np.asarray(frame) / fps * rate).astype(np.int64)


def read_physio_text(path: Path) -> PhysioText:
    """Read a Part C physiology file.

    The columns are time (minutes), PPG, RSP, ECG, EDA, then a marker column whose first ``5``
    marks the start of the audio-video recording; later columns are ignored. A header line is
    optional; when present its names choose the columns. Separators may be tabs, commas or
    spaces. Errors name the file and the 1-based line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"physiology file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a text file (byte offset {err.start})") from None
    lines = text.splitlines()
    split = re.compile(r"[\t,; ]+")
    order = {"time": 0, "PPG": 1, "RSP": 2, "ECG": 3, "EDA": 4, "marker": 5}
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise DatasetError(f"{path}: empty physiology file")
    first = split.split(lines[start].strip())
    if not _is_number(first[0]):
        names = [f.strip().lower() for f in first]
        for key, aliases in _HEADER_ALIASES.items():
            for i, name in enumerate(names):
                if name in aliases or any(name.startswith(a) for a in aliases if len(a) > 2):
                    order[key] = i
                    break
        start += 1
    need = max(order.values()) + 1
    columns = [order[k] for k in ("time", *PHYSIO_COLUMNS, "marker")]
    table = _fast_table(lines, start, columns)
    if table is None:
        table = _checked_table(path, lines, start, columns, need)
    if not len(table):
        raise DatasetError(f"{path}: no samples")
    hits = np.flatnonzero(table[:, 5] == SYNC_MARKER)
    if hits.size == 0:
        raise DatasetError(
            f"{path}: no '5' sync marker in column {order['marker'] + 1} ({len(table)} rows read); "
            "cannot align physiology to video"
        )
    return PhysioText(path=path, data=table[:, 1:5].copy(), marker_row=int(hits[0]), time_min=table[:, 0].copy())


def _fast_table(lines: list[str], start: int, columns: list[int]) -> np.ndarray | None:
    """numpy's C parser on a uniform file; ``None`` when the file needs the checked path."""
    sample = lines[start] if start < len(lines) else ""
    delimiter = "\t" if "\t" in sample else ("," if "," in sample else None)
    try:
        table = np.loadtxt(lines[start:], delimiter=delimiter, usecols=columns, dtype=np.float64, ndmin=2)
    except (ValueError, IndexError):
        return None
    return table


def _checked_table(path: Path, lines: list[str], start: int, columns: list[int], need: int) -> np.ndarray:
    """Line-by-line parse that names the first bad line (run only when the fast parse fails)."""
    split = re.compile(r"[\t,; ]+")
    rows = []
    for lineno in range(start, len(lines)):
        line = lines[lineno].strip()
        if not line:
            continue
        fields = split.split(line)
        if len(fields) < need:
            raise DatasetError(
                f"{path}: line {lineno + 1} has {len(fields)} columns, need {need} "
                "(time, PPG, RSP, ECG, EDA, marker)"
            )
        try:
            rows.append([float(fields[c]) for c in columns])
        except ValueError:
            raise DatasetError(f"{path}: line {lineno + 1} is not numeric: {line[:80]!r}") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(columns))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
