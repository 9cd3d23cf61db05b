"""CAS(ME)^3 reader: Part A (short videos, RGB-D frames) and Part C (long video + 200 Hz physiology).

The reader works on any subset of the official release: the annotation workbooks alone (as in
``../shared/data/casme3-annotations``), the frames alone, or both, and on synthetic sets written in
the same layout. Every problem in the official files becomes a :class:`~mmer.dataset.Defect` with
the rule applied; the rules are the table in ``docs/readme/replay.md``:

====================  ===========================================================================
defect kind           rule
====================  ===========================================================================
offset_before_onset   repaired from the ``CAS(ME)3_part_A_v2.xls`` row that agrees on two of
apex_outside          onset/apex/offset and is itself consistent; skipped when no such row exists
onset_zero            repaired: JPG numbering starts at 1, so index 0 becomes 1 (the curators'
                      error list gives this fix for spNO.216 e)
label_case            repaired: ``Others`` is read as ``others`` (labels are lower-cased)
video_case            repaired: ``J`` is read as ``j``; folders are matched ignoring case
duplicate_row         skipped: the first copy is kept
multiple_me           counted: several MEs in one video stay separate events
occluded_apex         counted: kept for spotting; listed in :attr:`recognition_exclusions`, as
                      the curators' error list removes these samples from recognition
damaged_frames        skipped: listed frames are never decoded; replay counts them as damaged
bad_quality_frames    counted: kept, the curators only flag them
missing_frames        counted: the gap stays in the timeline (``t = (index - first) / 30``)
event_outside_frames  counted: kept, the annotation points past the frames on disk
me_not_in_workbook    counted: an ME row present in only one of the two Part A workbooks
unlabelled_me         counted: a Part C ME in ``CAS(ME)3_part_C.xls`` absent from the ME workbook;
                      kept as an ME with no emotion
====================  ===========================================================================
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from mmer.dataset import Defect, Event, EventKind, FrameTrack, Recording, SampleTrack
from mmer.replay._base import Dataset, DatasetError, RecordingRef, find_file, int_cell, read_workbook, select
from mmer.replay._frames import (
    IMAGE_SUFFIXES,
    ImageFolderReader,
    VideoFileReader,
    image_size,
    numbered_images,
    video_info,
)
from mmer.replay._physio_text import PART_C_FPS, PART_C_RATE, PHYSIO_COLUMNS, read_physio_text
from mmer.replay.labels import LabelError, normalize_emotion
from mmer.streams import StreamType, physio_spec, video_spec

__all__ = ["Casme3Dataset", "open_casme3", "PART_A_FPS"]

log = logging.getLogger(__name__)

PART_A_FPS = 30.0
ME_WORKBOOK = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
AE_WORKBOOKS = ("CAS(ME)3_part_A_v2.xls", "CAS(ME)3_part_A_v2.xlsx")
PART_C_ME_WORKBOOK = "CAS(ME)3_part_C_ME.xlsx"
PART_C_WORKBOOKS = ("CAS(ME)3_part_C.xls", "CAS(ME)3_part_C.xlsx")
DAMAGED_LIST = "error_info_damaged_image_partA.txt"
QUALITY_LIST = "image_with_bad_quality_partA.txt"
ERROR_LIST = "casme3_partA_error_list_ZhouJu.xlsx"
PART_C_VIDEO = "partC"

_ME_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")
_AE_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "Objective class")
_BLINK_COLUMNS = ("Subject", "Filename", "Onset", "Offset")
_C_ME_COLUMNS = ("sub", "count", "onset", "offset", "au", "emotion")
_C_ALL_COLUMNS = ("Subject", "Onset", "Offset", "Exp_type")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


class Casme3Dataset(Dataset):
    """A CAS(ME)^3 dataset (Part A and/or Part C).

    Attributes
    ----------
    recognition_exclusions : set of (subject, video, onset)
        MEs the curators' error list removes from recognition (apex face occluded).
    """

    recognition_exclusions: set[tuple[str, str, int]]


def _norm_video(value) -> str:
    return str(value).strip().lower()


def _text_cell(frame: pd.DataFrame, idx, column: str, path: Path) -> str:
    """One cell as stripped text; a blank cell raises naming file, row and column (pandas reads it
    as NaN, which ``str`` would turn into the subject or video ``'nan'``). A whole number stored as
    a float (Excel's ``3.0``) reads as ``3``."""
    value = frame.at[idx, column]
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        raise DatasetError(f"{path}: row {frame.at[idx, '_row']}, column {column!r} is empty")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Collapse sorted integers into inclusive ``(first, last)`` runs."""
    runs: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _fmt_runs(runs: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


class _PartA:
    """Reads the Part A annotations and frame folders into events, defects and refs."""

    def __init__(self, root: Path, subjects, videos) -> None:
        self.root = root
        self.subjects = subjects
        self.videos = videos
        self.events: list[Event] = []
        self.defects: list[Defect] = []
        self.exclusions: set[tuple[str, str, int]] = set()
        self.damaged: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        self.sources: dict[str, str] = {}

    # -- annotations -------------------------------------------------------------------------
    def read(self) -> list[RecordingRef]:
        me_path = find_file(self.root, [ME_WORKBOOK])
        ae_path = find_file(self.root, AE_WORKBOOKS)
        ae_me_rows: list[dict] = []
        if ae_path is not None:
            self.sources["part_a_all"] = str(ae_path)
            ae_me_rows = self._read_all_expressions(ae_path)
            self._read_blinks(ae_path)
        if me_path is not None:
            self.sources["part_a_me"] = str(me_path)
            self._read_me(me_path, ae_path, ae_me_rows)
        elif ae_me_rows:
            for row in ae_me_rows:
                self._add_event(row, EventKind.ME, ae_path)
        err_path = find_file(self.root, [ERROR_LIST])
        if err_path is not None:
            self.sources["error_list"] = str(err_path)
            self._read_error_list(err_path)
        dmg = find_file(self.root, [DAMAGED_LIST])
        if dmg is not None:
            self.sources["damaged_list"] = str(dmg)
            self._read_frame_list(dmg, damaged=True)
        bad = find_file(self.root, [QUALITY_LIST])
        if bad is not None:
            self.sources["quality_list"] = str(bad)
            self._read_frame_list(bad, damaged=False)
        self._count_multiple()
        return self._media_refs()

    def _row_dict(self, frame: pd.DataFrame, idx, path: Path, *, apex: bool = True) -> dict:
        raw_video = _text_cell(frame, idx, "Filename", path)
        row = {
            "subject": _text_cell(frame, idx, "Subject", path),
            "video": _norm_video(raw_video),
            "raw_video": raw_video,
            "onset": int_cell(frame, idx, "Onset", path),
            "offset": int_cell(frame, idx, "Offset", path),
            "apex": int_cell(frame, idx, "Apex", path) if apex else None,
            "row": int(frame.at[idx, "_row"]),
            "aus": "" if "AU" not in frame or pd.isna(frame.at[idx, "AU"]) else str(frame.at[idx, "AU"]).strip(),
            "objective": None,
            "emotion": None,
        }
        if "Objective class" in frame and not pd.isna(frame.at[idx, "Objective class"]):
            row["objective"] = str(frame.at[idx, "Objective class"]).strip().upper()
        return row

    def _read_all_expressions(self, path: Path) -> list[dict]:
        frame = read_workbook(path, "AU+Emotion", _AE_COLUMNS)
        me_rows = []
        for idx in frame.index:
            row = self._row_dict(frame, idx, path)
            etype = str(frame.at[idx, "Expression type"]).strip().lower()
            if etype.startswith("micro"):
                me_rows.append(row)
            elif etype.startswith("macro"):
                self._add_event(row, EventKind.MAE, path)
            else:
                raise DatasetError(
                    f"{path}: row {row['row']}, column 'Expression type': {etype!r} is neither "
                    "Micro-expression nor Macro-expression"
                )
        return me_rows

    def _read_blinks(self, path: Path) -> None:
        try:
            frame = read_workbook(path, "eye blink", _BLINK_COLUMNS)
        except DatasetError as err:
            if "no sheet" not in str(err):
                raise
            log.info("%s has no 'eye blink' sheet; no blink events", path)
            return
        for idx in frame.index:
            self._add_event(self._row_dict(frame, idx, path, apex=False), EventKind.BLINK, path)

    def _read_me(self, path: Path, ae_path: Path | None, ae_rows: list[dict]) -> None:
        frame = read_workbook(path, "label", _ME_COLUMNS)
        by_video: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in ae_rows:
            by_video[(r["subject"], r["video"])].append(r)
        matched_ae: set[int] = set()
        for idx in frame.index:
            row = self._row_dict(frame, idx, path)
            if not select([row], self.subjects, self.videos, _key):
                continue
            label = frame.at[idx, "emotion"]
            if pd.isna(label):
                raise DatasetError(f"{path}: row {row['row']}, column 'emotion' is empty")
            try:
                emotion = normalize_emotion(str(label))
            except LabelError as err:
                raise DatasetError(f"{path}: row {row['row']}, column 'emotion': {err}") from None
            if str(label).strip() != emotion:
                self._defect("label_case", path, row, f"repaired: {str(label).strip()!r} read as {emotion!r}")
            row["emotion"] = emotion
            twin = self._twin(row, by_video.get((row["subject"], row["video"]), []))
            if twin is not None:
                matched_ae.add(id(twin))
            if row["offset"] < row["onset"] or not row["onset"] <= row["apex"] <= row["offset"]:
                kind = "offset_before_onset" if row["offset"] < row["onset"] else "apex_outside"
                detail = f"onset {row['onset']}, apex {row['apex']}, offset {row['offset']}"
                if twin is not None and _consistent(twin):
                    self._defect(
                        kind,
                        path,
                        row,
                        f"repaired: onset/apex/offset {twin['onset']}/{twin['apex']}/{twin['offset']} "
                        f"from {ae_path.name} row {twin['row']}",
                        detail,
                    )
                    row.update(onset=twin["onset"], apex=twin["apex"], offset=twin["offset"])
                else:
                    self._defect(kind, path, row, "skipped: no consistent row to repair it from", detail)
                    continue
            self._add_event(row, EventKind.ME, path)
        if ae_path is not None:
            for r in ae_rows:
                if id(r) not in matched_ae and select([r], self.subjects, self.videos, _key):
                    self._defect(
                        "me_not_in_workbook",
                        ae_path,
                        r,
                        f"counted: ME row absent from {path.name}; not added (no emotion label)",
                    )

    @staticmethod
    def _twin(row: dict, candidates: list[dict]) -> dict | None:
        """The row of the other workbook describing the same ME: two of three indices agree."""
        best = None
        for cand in candidates:
            agree = sum(row[k] == cand[k] for k in ("onset", "apex", "offset"))
            if agree == 3:
                return cand
            if agree == 2 and best is None:
                best = cand
        return best

    def _add_event(self, row: dict, kind: EventKind, path: Path) -> None:
        if not select([row], self.subjects, self.videos, _key):
            return
        if row["raw_video"] != row["video"]:
            self._defect("video_case", path, row, f"repaired: video {row['raw_video']!r} read as {row['video']!r}")
        fixed = {k: row[k] for k in ("onset", "apex", "offset")}
        zeros = [k for k, v in fixed.items() if v == 0]
        if zeros:
            for k in zeros:
                fixed[k] = 1
            self._defect(
                "onset_zero",
                path,
                row,
                f"repaired: {'/'.join(zeros)} 0 -> 1 (JPG numbering starts at 1)",
                f"{kind.value} {row['onset']}-{row['offset']}",
            )
        if fixed["offset"] < fixed["onset"] or (
            fixed["apex"] is not None and not fixed["onset"] <= fixed["apex"] <= fixed["offset"]
        ):
            self._defect(
                "offset_before_onset" if fixed["offset"] < fixed["onset"] else "apex_outside",
                path,
                row,
                "skipped: inconsistent indices and no rule repairs them",
                f"onset {row['onset']}, apex {row['apex']}, offset {row['offset']}",
            )
            return
        event = Event(
            subject=row["subject"],
            video=row["video"],
            onset=fixed["onset"],
            offset=fixed["offset"],
            apex=fixed["apex"],
            kind=kind,
            emotion=row["emotion"],
            objective_class=row["objective"],
            aus=row["aus"],
            source_row=row["row"],
        )
        if any(
            e.kind is kind and (e.subject, e.video, e.onset, e.apex, e.offset) == (event.subject, event.video, event.onset, event.apex, event.offset)
            for e in self.events[-50:]
        ):
            self._defect("duplicate_row", path, row, "skipped: same event already read")
            return
        self.events.append(event)

    def _read_error_list(self, path: Path) -> None:
        frame = read_workbook(path, 0, ("Subject", "Filename", "Onset", "Apex", "Offset"))
        problem_col = frame.columns[8] if len(frame.columns) > 9 else None
        for idx in frame.index:
            row = self._row_dict(frame, idx, path)
            if not select([row], self.subjects, self.videos, _key):
                continue
            problem = str(frame.at[idx, problem_col]) if problem_col is not None else ""
            if row["onset"] == 0 or row["apex"] == 0:
                # The fix this row describes (indices + 1) is the onset_zero rule, reported there.
                continue
            key = (row["subject"], row["video"], row["onset"])
            self.exclusions.add(key)
            self._defect(
                "occluded_apex",
                path,
                row,
                "counted: kept for spotting; excluded from recognition (curators' error list)",
                problem,
            )

    def _read_frame_list(self, path: Path, *, damaged: bool) -> None:
        """Parse an exception list (``spNO.3 J 498.jpg ...`` or ``.../spNO.138/a/color/1294.jpg``)."""
        pattern = re.compile(r"(spNO\.\d+)[ /\\]+([A-Za-z])[ /\\]+(?:color[/\\])?(\d+)\.jpg", re.IGNORECASE)
        grouped: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                match = pattern.search(line)
                if match is None:
                    raise DatasetError(f"{path}: line {lineno}: cannot parse {line.strip()[:80]!r}")
                subject = "spNO." + match.group(1).split(".")[1]
                grouped[(subject, _norm_video(match.group(2)), match.group(2))].append((int(match.group(3)), lineno))
        for (subject, video, raw_video), items in grouped.items():
            row = {"subject": subject, "video": video, "raw_video": raw_video}
            if not select([row], self.subjects, self.videos, _key):
                continue
            frames = [f for f, _ in items]
            first_line = min(line for _, line in items)
            seen_frames: dict[int, int] = {}
            repeats = []
            for f, line in items:
                if f in seen_frames:
                    repeats.append((f, line, seen_frames[f]))
                else:
                    seen_frames[f] = line
            if repeats:
                self.defects.append(
                    Defect(
                        kind="duplicate_row",
                        file=str(path),
                        action="skipped: frame already listed",
                        subject=subject,
                        video=video,
                        row=repeats[0][1],
                        detail=f"{len(repeats)} repeated line(s): "
                        + ", ".join(f"{f}.jpg line {line} (first on line {first})" for f, line, first in repeats),
                    )
                )
            detail = f"{len(seen_frames)} frame(s): {_fmt_runs(_runs(frames))}"
            if damaged:
                reason = f"listed as damaged in {path.name}"
                for f, line in items:
                    self.damaged[(subject, video)][f] = f"{reason} (line {line})"
                action = "skipped: frames not decoded; replay counts them as damaged"
            else:
                action = "counted: kept (flagged as bad quality by the curators)"
            self.defects.append(
                Defect(
                    kind="damaged_frames" if damaged else "bad_quality_frames",
                    file=str(path),
                    action=action,
                    subject=subject,
                    video=video,
                    row=first_line,
                    detail=detail,
                )
            )

    def _count_multiple(self) -> None:
        per_video: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for e in self.events:
            if e.kind is EventKind.ME:
                per_video[(e.subject, e.video)].append(e)
        for (subject, video), evs in per_video.items():
            if len(evs) > 1:
                self.defects.append(
                    Defect(
                        kind="multiple_me",
                        file=self.sources.get("part_a_me", self.sources.get("part_a_all", "")),
                        action=f"counted: {len(evs)} MEs kept as separate events",
                        subject=subject,
                        video=video,
                        row=min(e.source_row or 0 for e in evs),
                        detail="onsets " + ", ".join(str(e.onset) for e in evs),
                    )
                )

    def _defect(self, kind: str, path: Path, row: dict, action: str, detail: str = "") -> None:
        self.defects.append(
            Defect(
                kind=kind,
                file=str(path),
                action=action,
                subject=row["subject"],
                video=row["video"],
                row=row.get("row"),
                detail=detail,
            )
        )

    # -- media ---------------------------------------------------------------------------------
    def _media_refs(self) -> list[RecordingRef]:
        refs = []
        for subject_dir in _subject_dirs(self.root):
            subject = "spNO." + subject_dir.name.split(".", 1)[1]
            for video_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
                video = _norm_video(video_dir.name)
                item = {"subject": subject, "video": video}
                if not select([item], self.subjects, self.videos, _key):
                    continue
                layout = _frame_layout(video_dir)
                if layout is None:
                    continue
                refs.append(self._make_ref(subject, video, video_dir, layout))
        return refs

    def _make_ref(self, subject: str, video: str, video_dir: Path, layout: dict) -> RecordingRef:
        rgb_idx, rgb_paths = layout["rgb"]
        first = int(rgb_idx[0]) if len(rgb_idx) else 0
        gaps = _runs(sorted(set(range(first, int(rgb_idx[-1]) + 1)) - set(rgb_idx.tolist()))) if len(rgb_idx) else []
        if gaps:
            self.defects.append(
                Defect(
                    kind="missing_frames",
                    file=str(video_dir),
                    action="counted: gap kept in the timeline, nothing interpolated",
                    subject=subject,
                    video=video,
                    detail=f"{sum(b - a + 1 for a, b in gaps)} index(es) missing: {_fmt_runs(gaps)}",
                )
            )
        events = [e for e in self.events if (e.subject, e.video) == (subject, video)]
        if len(rgb_idx):
            last = int(rgb_idx[-1])
            for e in events:
                if e.onset < first or e.offset > last:
                    self.defects.append(
                        Defect(
                            kind="event_outside_frames",
                            file=str(video_dir),
                            action="counted: kept, annotation points past the frames on disk",
                            subject=subject,
                            video=video,
                            row=e.source_row,
                            detail=f"{e.kind.value} {e.onset}-{e.offset}, frames {first}-{last}",
                        )
                    )
        damaged = dict(self.damaged.get((subject, video), {}))
        video_defects = [d for d in self.defects if (d.subject, d.video) == (subject, video)]

        def load() -> Recording:
            return _part_a_recording(subject, video, video_dir, layout, first, damaged, events, video_defects)

        return RecordingRef(subject, video, load)


def _key(item: dict) -> tuple[str, str]:
    return item["subject"], item["video"]


def _consistent(row: dict) -> bool:
    return row["onset"] <= row["apex"] <= row["offset"] and row["onset"] > 0


def _subject_dirs(root: Path) -> list[Path]:
    """``spNO.<n>`` folders at most two levels below ``root`` (never a full recursive walk)."""
    found = []
    frontier = [root]
    for _ in range(3):
        nxt = []
        for folder in frontier:
            try:
                children = [p for p in folder.iterdir() if p.is_dir()]
            except OSError:
                continue
            for child in children:
                if re.fullmatch(r"spno\.\d+", child.name.lower()):
                    found.append(child)
                else:
                    nxt.append(child)
        frontier = nxt
    return sorted(found, key=lambda p: (int(p.name.split(".")[1]), str(p)))


def _frame_layout(video_dir: Path) -> dict | None:
    """Find colour and depth frames in both published layouts.

    Colour: ``<video>/color/<i>.jpg`` (or ``<video>/<i>.jpg``). Depth: ``<video>/depth/<i>.png``,
    or PNGs kept beside the colour JPGs.
    """
    color_dir = next((p for p in video_dir.iterdir() if p.is_dir() and p.name.lower() in ("color", "colour", "rgb")), None)
    color_dir = color_dir or video_dir
    rgb = numbered_images(color_dir, (".jpg", ".jpeg"))
    if not len(rgb[0]):
        return None
    depth_dir = next((p for p in video_dir.iterdir() if p.is_dir() and p.name.lower() == "depth"), None)
    depth = numbered_images(depth_dir, (".png",)) if depth_dir is not None else numbered_images(color_dir, (".png",))
    return {"rgb": rgb, "depth": depth if len(depth[0]) else None, "color_dir": color_dir, "depth_dir": depth_dir}


def _first_size(paths: list[Path]) -> tuple[int, int]:
    for path in paths[:10]:
        size = image_size(path)
        if size != (0, 0):
            return size
    return 0, 0


def _part_a_recording(subject, video, video_dir, layout, first, damaged, events, defects) -> Recording:
    rgb_idx, rgb_paths = layout["rgb"]
    width, height = _first_size(rgb_paths)
    dmg_pos = {pos: damaged[int(i)] for pos, i in enumerate(rgb_idx) if int(i) in damaged}
    rgb_spec = video_spec(StreamType.VIDEO_RGB, width=width, height=height, fps=PART_A_FPS, endpoint="", model="CAS(ME)^3 Part A")
    frames = {
        "rgb": FrameTrack(
            spec=rgb_spec,
            indices=rgb_idx,
            timestamps=(rgb_idx - first) / PART_A_FPS,
            reader=ImageFolderReader(rgb_paths, depth=False, damaged=dmg_pos),
        )
    }
    if layout["depth"] is not None:
        d_idx, d_paths = layout["depth"]
        dw, dh = _first_size(d_paths)
        d_spec = video_spec(StreamType.VIDEO_DEPTH, width=dw, height=dh, fps=PART_A_FPS, endpoint="", model="CAS(ME)^3 Part A")
        frames["depth"] = FrameTrack(
            spec=d_spec, indices=d_idx, timestamps=(d_idx - first) / PART_A_FPS, reader=ImageFolderReader(d_paths, depth=True)
        )
    meta = {"dataset": "casme3", "part": "A", "fps": PART_A_FPS, "path": str(video_dir), "first_index": first}
    samples = {}
    physio_path = next((p for p in video_dir.glob("*.txt") if p.is_file()), None)
    if physio_path is not None:
        # Not in the official Part A; synthetic sets add it. Its marker is frame ``first`` (t=0).
        samples, extra, found = _physio_tracks(physio_path, "CAS(ME)^3 Part A (synthetic physiology)", subject, video)
        meta.update(extra)
        defects = [*defects, *found]
    return Recording(
        subject=subject,
        video=video,
        frames=frames,
        samples=samples,
        events=list(events),
        defects=list(defects),
        meta=meta,
    )


class _PartC:
    """Reads the Part C workbooks, physiology text files and long videos."""

    def __init__(self, root: Path, subjects, videos) -> None:
        self.root = root
        self.subjects = subjects
        self.videos = videos
        self.events: list[Event] = []
        self.defects: list[Defect] = []
        self.sources: dict[str, str] = {}

    def read(self) -> list[RecordingRef]:
        if self.videos and PART_C_VIDEO.lower() not in {str(v).lower() for v in self.videos}:
            return []
        me_path = find_file(self.root, [PART_C_ME_WORKBOOK])
        all_path = find_file(self.root, PART_C_WORKBOOKS)
        labelled: set[tuple[str, int, int]] = set()
        if me_path is not None:
            self.sources["part_c_me"] = str(me_path)
            frame = read_workbook(me_path, 0, _C_ME_COLUMNS)
            for idx in frame.index:
                row = self._row(frame, idx, me_path, "sub", "onset", "offset")
                label = frame.at[idx, "emotion"]
                try:
                    emotion = normalize_emotion(str(label))
                except LabelError as err:
                    raise DatasetError(f"{me_path}: row {row['row']}, column 'emotion': {err}") from None
                aus = "" if pd.isna(frame.at[idx, "au"]) else str(frame.at[idx, "au"]).strip()
                labelled.add((row["subject"], row["onset"], row["offset"]))
                self._add(row, EventKind.ME, me_path, emotion=emotion, aus=aus)
        if all_path is not None:
            self.sources["part_c_all"] = str(all_path)
            frame = read_workbook(all_path, 0, _C_ALL_COLUMNS)
            for idx in frame.index:
                row = self._row(frame, idx, all_path, "Subject", "Onset", "Offset")
                etype = int_cell(frame, idx, "Exp_type", all_path)
                if etype == 1:
                    if (row["subject"], row["onset"], row["offset"]) in labelled or me_path is None:
                        if me_path is None:
                            self._add(row, EventKind.ME, all_path)
                        continue
                    if select([row], self.subjects, None, _key):
                        self.defects.append(
                            Defect(
                                kind="unlabelled_me",
                                file=str(all_path),
                                action=f"counted: kept as an ME with no emotion (absent from {me_path.name})",
                                subject=row["subject"],
                                video=PART_C_VIDEO,
                                row=row["row"],
                                detail=f"onset {row['onset']}, offset {row['offset']}",
                            )
                        )
                    self._add(row, EventKind.ME, all_path)
                elif etype == 0:
                    self._add(row, EventKind.MAE, all_path)
                else:
                    raise DatasetError(f"{all_path}: row {row['row']}, column 'Exp_type': {etype} is not 0 or 1")
        self.events.sort(key=lambda e: (int(e.subject) if e.subject.isdigit() else 0, e.subject, e.onset))
        return self._media_refs()

    @staticmethod
    def _row(frame, idx, path, sub_col, on_col, off_col) -> dict:
        return {
            "subject": _text_cell(frame, idx, sub_col, path),
            "video": PART_C_VIDEO,
            "onset": int_cell(frame, idx, on_col, path),
            "offset": int_cell(frame, idx, off_col, path),
            "row": int(frame.at[idx, "_row"]),
        }

    def _add(self, row: dict, kind: EventKind, path: Path, *, emotion: str | None = None, aus: str = "") -> None:
        if not select([row], self.subjects, None, _key):
            return
        if row["offset"] < row["onset"]:
            self.defects.append(
                Defect(
                    kind="offset_before_onset",
                    file=str(path),
                    action="skipped: no second source to repair it from",
                    subject=row["subject"],
                    video=PART_C_VIDEO,
                    row=row["row"],
                    detail=f"onset {row['onset']}, offset {row['offset']}",
                )
            )
            return
        self.events.append(
            Event(
                subject=row["subject"],
                video=PART_C_VIDEO,
                onset=row["onset"],
                offset=row["offset"],
                apex=None,
                kind=kind,
                emotion=emotion,
                aus=aus,
                source_row=row["row"],
            )
        )

    def _media_refs(self) -> list[RecordingRef]:
        refs = []
        for subject, video_src, physio, depth in _part_c_media(self.root):
            if not select([{"subject": subject, "video": PART_C_VIDEO}], self.subjects, None, _key):
                continue
            events = [e for e in self.events if e.subject == subject]

            def load(subject=subject, video_src=video_src, physio=physio, depth=depth, events=events) -> Recording:
                return _part_c_recording(subject, video_src, physio, depth, events)

            refs.append(RecordingRef(subject, PART_C_VIDEO, load))
        return refs


def _part_c_media(root: Path) -> list[tuple[str, Path, Path | None, Path | None]]:
    """Pair each Part C subject's long video (file or frame folder) with its physiology and depth.

    Subject folders are looked for in ``partC/`` (as in the release's annotation folder) and in
    the root itself; a subject is the first number in a folder's or file's name, so
    ``3/3.avi`` + ``3/3.txt`` + ``3/depth/<f>.png`` and ``sub03.mp4`` + ``sub03.txt`` both pair
    up. ``spNO.<n>`` folders are Part A and never taken for Part C.
    """
    videos: dict[str, Path] = {}
    physio: dict[str, Path] = {}
    depth: dict[str, Path] = {}
    bases = [p for p in (root / "partC", root / "part_C", root / "PartC") if p.is_dir()] + [root]
    for base in bases:
        for path in sorted(base.iterdir()):
            if path.name.lower().startswith("spno") or path.name.lower() in ("parta", "part_a", "exception"):
                continue
            if path.is_dir():
                number = _subject_number(Path(path.name))
                if number is None:
                    continue
                for child in sorted(path.iterdir()):
                    if child.is_file() and child.suffix.lower() in _VIDEO_SUFFIXES:
                        videos.setdefault(number, child)
                    elif child.is_file() and child.suffix.lower() == ".txt":
                        physio.setdefault(number, child)
                    elif child.is_dir() and child.name.lower() in ("color", "colour", "rgb"):
                        videos.setdefault(number, child)
                    elif child.is_dir() and child.name.lower() == "depth":
                        depth.setdefault(number, child)
            elif path.is_file() and path.suffix.lower() in (*_VIDEO_SUFFIXES, ".txt"):
                number = _subject_number(Path(path.name))
                if number is None:
                    continue
                target = physio if path.suffix.lower() == ".txt" else videos
                target.setdefault(number, path)
    return [(n, videos[n], physio.get(n), depth.get(n)) for n in sorted(videos, key=int)]


def _subject_number(rel: Path) -> str | None:
    for part in (rel.stem, *rel.parts[:-1]):
        match = re.search(r"(\d+)", part)
        if match is not None:
            return str(int(match.group(1)))
    return None


def _part_c_recording(
    subject: str, video_src: Path, physio_path: Path | None, depth_dir: Path | None, events: list[Event]
) -> Recording:
    defects: list[Defect] = []
    if video_src.is_dir():
        idx, paths = numbered_images(video_src, IMAGE_SUFFIXES)
        width, height = _first_size(paths)
        reader = ImageFolderReader(paths, depth=False)
        fps = PART_C_FPS
    else:
        count, fps, width, height = video_info(video_src)
        idx = np.arange(count, dtype=np.int64)
        reader = VideoFileReader(video_src)
    spec = video_spec(StreamType.VIDEO_RGB, width=width, height=height, fps=fps, endpoint="", model="CAS(ME)^3 Part C")
    first = int(idx[0]) if len(idx) else 0
    frames = {"rgb": FrameTrack(spec=spec, indices=idx, timestamps=(idx - first) / fps, reader=reader)}
    if depth_dir is not None:
        d_idx, d_paths = numbered_images(depth_dir, (".png",))
        if len(d_idx):
            dw, dh = _first_size(d_paths)
            d_spec = video_spec(StreamType.VIDEO_DEPTH, width=dw, height=dh, fps=fps, endpoint="", model="CAS(ME)^3 Part C")
            frames["depth"] = FrameTrack(
                spec=d_spec, indices=d_idx, timestamps=(d_idx - first) / fps, reader=ImageFolderReader(d_paths, depth=True)
            )
    meta = {"dataset": "casme3", "part": "C", "fps": fps, "path": str(video_src), "first_index": first}
    samples = {}
    if physio_path is not None:
        samples, extra, found = _physio_tracks(physio_path, "CAS(ME)^3 Part C", subject, PART_C_VIDEO)
        meta.update(extra)
        defects += found
    else:
        defects.append(
            Defect(
                kind="missing_physiology",
                file=str(video_src),
                action="counted: video replayed without physiology",
                subject=subject,
                video=PART_C_VIDEO,
            )
        )
    return Recording(subject=subject, video=PART_C_VIDEO, frames=frames, samples=samples, events=list(events), defects=defects, meta=meta)


def _physio_tracks(path: Path, model: str, subject: str, video: str) -> tuple[dict[str, SampleTrack], dict, list[Defect]]:
    """Four 200 Hz physiology tracks from a Part C text file, ``t=0`` at its ``5`` marker.

    The file's own time column is checked against 200 Hz; a mismatch is a defect (the nominal rate
    is kept, since the frame -> sample rule ``frame / 30 * 200`` assumes it).
    """
    physio = read_physio_text(path)
    defects = []
    step = np.diff(physio.time_min) * 60.0
    if step.size and abs(float(np.median(step)) - 1.0 / PART_C_RATE) > 0.1 / PART_C_RATE:
        defects.append(
            Defect(
                kind="physio_rate",
                file=str(path),
                action=f"counted: replayed at the nominal {PART_C_RATE:g} Hz",
                subject=subject,
                video=video,
                detail=f"time column implies {1.0 / float(np.median(step)):.2f} Hz",
            )
        )
    times = physio.times(PART_C_RATE)
    samples = {}
    for col, name in enumerate(PHYSIO_COLUMNS):
        samples[name.lower()] = SampleTrack(
            spec=physio_spec(name, rate=PART_C_RATE, model=model),
            timestamps=times,
            data=physio.data[:, col : col + 1].astype(np.float32),
        )
    return samples, {"physio_path": str(path), "marker_row": physio.marker_row}, defects


def open_casme3(path: Path | str, *, subjects=None, videos=None, part: str | None = None) -> Casme3Dataset:
    """Open a CAS(ME)^3 folder (official release, annotations only, or a synthetic set).

    Parameters
    ----------
    path : path-like
        Dataset root. Workbooks and exception lists are found anywhere below it by their official
        names; ``spNO.<n>`` frame folders at most two levels down; Part C media under ``partC/``.
    subjects, videos : sequence of str, optional
        Keep only these subjects (``1``, ``spNO.1``) and videos (letters for Part A, ``partC``).
    part : {"A", "C"}, optional
        Read one part only; both by default.

    Returns
    -------
    Casme3Dataset
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"CAS(ME)^3 folder not found: {root}")
    if part is not None and str(part).upper() not in ("A", "C"):
        raise ValueError(f"part must be 'A' or 'C', got {part!r}")
    parts = ("A", "C") if part is None else (str(part).upper(),)
    refs: list[RecordingRef] = []
    events: list[Event] = []
    defects: list[Defect] = []
    sources: dict[str, str] = {}
    exclusions: set = set()
    counts = {}
    for name in parts:
        reader = _PartA(root, subjects, videos) if name == "A" else _PartC(root, subjects, videos)
        part_refs = reader.read()
        refs += part_refs
        events += reader.events
        defects += reader.defects
        sources.update(reader.sources)
        if name == "A":
            exclusions = reader.exclusions
        counts[name] = {
            "subjects": len({e.subject for e in reader.events} | {r.subject for r in part_refs}),
            "events": {k.value: sum(e.kind is k for e in reader.events) for k in EventKind},
            "recordings_with_media": len(part_refs),
        }
    if not sources and not refs:
        raise DatasetError(
            f"{root}: not a CAS(ME)^3 folder (no {ME_WORKBOOK}, {AE_WORKBOOKS[0]}, {PART_C_ME_WORKBOOK}, "
            "spNO.<n> frame folders or partC media found)"
        )
    dataset = Casme3Dataset(
        kind="casme3",
        path=root,
        refs=refs,
        events=events,
        defects=defects,
        info={"parts": counts, "sources": sources, "fps": PART_A_FPS, "physio_rate_hz": PART_C_RATE},
    )
    dataset.recognition_exclusions = exclusions
    return dataset
