"""Writers for synthetic sets in the CAS(ME)^3 Part A and Part C layouts.

Part A (one folder per subject, one short video per letter)::

    OUT/spNO.<n>/<letter>/color/<i>.jpg          colour frames, JPG index i from 1
    OUT/spNO.<n>/<letter>/depth/<i>.png          16-bit depth in millimetres
    OUT/spNO.<n>/<letter>/physio.txt            extra: 200 Hz physiology in the Part C text format
    OUT/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx  sheet ``label`` (+ empty Sheet1, Sheet3)
    OUT/CAS(ME)3_part_A_v2.xls                   sheets ``AU+Emotion`` and ``eye blink``
    OUT/ground_truth.json, OUT/ground_truth.csv  every event and distractor

Part C (one long video per subject)::

    OUT/<n>/<n>.avi                              MJPG video, frame f is workbook index f
    OUT/<n>/depth/<f>.png                        16-bit depth (unless depth is off)
    OUT/<n>/<n>.txt                              tab-separated: minutes, PPG, RSP, ECG, EDA,
                                                 marker (first 5 = start of the video), unused
    OUT/CAS(ME)3_part_C_ME.xlsx                  sheet ``mockCrimeME``
    OUT/CAS(ME)3_part_C.xls                      sheet ``organize``
    OUT/ground_truth.json, OUT/ground_truth.csv

Everything is written into a hidden staging folder beside ``OUT`` and moved into place at the
end, so a failed run leaves no half-written set.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import string
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mmer.dataset import EventKind
from mmer.synth._config import SynthConfig
from mmer.synth._face import Face, load_face, resolve_faces
from mmer.synth._registry import FaceSpec, face_registry, load_registered
from mmer.synth._session import SyntheticSession, generate_session

__all__ = ["write_casme3", "write_physio_text", "PART_A_LABEL", "PART_A_ALL", "PART_C_ME", "PART_C_ALL"]

log = logging.getLogger(__name__)

PART_A_LABEL = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
PART_A_ALL = "CAS(ME)3_part_A_v2.xls"
PART_C_ME = "CAS(ME)3_part_C_ME.xlsx"
PART_C_ALL = "CAS(ME)3_part_C.xls"

_LABEL_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
_ALL_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "Objective class"]
_BLINK_COLUMNS = ["Subject", "Filename", "Onset", "Offset"]
_C_ME_COLUMNS = ["sub", "count", "onset", "offset", "au", "emotion"]
_C_ALL_COLUMNS = ["Subject", "Onset", "Offset", "diff", "Exp_type", "risk"]
#: Part C uses four classes.
FOUR_CLASS = {
    "happy": "positive",
    "surprise": "surprise",
    "disgust": "negative",
    "fear": "negative",
    "anger": "negative",
    "sad": "negative",
    "others": "others",
}
_EVENT_KINDS = ("me", "mae", "blink")
_DISTRACTOR_KINDS = ("speech", "head_jerk")
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_FIXED_ISO = "2020-01-01T00:00:00Z"


def _video_seed(seed: int, subject: int, video: int) -> int:
    return int(np.random.SeedSequence([seed, subject, video]).generate_state(1)[0] & 0x7FFFFFFF)


# ---------------------------------------------------------------------------------- workbooks
def _write_xlsx(path: Path, sheets: dict[str, tuple[list[str], list[list]]]) -> None:
    """Write an .xlsx with openpyxl, then pin its timestamps so equal input gives equal bytes."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name, (header, rows) in sheets.items():
        ws = wb.create_sheet(name)
        if header:
            ws.append(header)
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", _FIXED_ISO.encode(), data)
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, data)


def _write_xls(path: Path, sheets: dict[str, tuple[list[str], list[list]]]) -> None:
    import xlwt

    wb = xlwt.Workbook()
    for name, (header, rows) in sheets.items():
        ws = wb.add_sheet(name)
        for c, value in enumerate(header):
            ws.write(0, c, value)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                ws.write(r, c, value)
    wb.save(str(path))


def write_physio_text(path: Path, session: SyntheticSession) -> int:
    """Write the Part C physiology text file; return the sample index of the ``5`` marker.

    Columns (tab-separated, no header, like an amplifier's text export): time in minutes, PPG,
    RSP, ECG, EDA, marker, unused. The first ``5`` marks the first video frame; a second one
    marks the last frame.
    """
    t = session.physio_times
    n = len(t)
    start = int(np.argmin(np.abs(t)))
    last = min(n - 1, start + int(round((session.n_frames - 1) / session.fps * session.physio_rate)))
    marker = np.zeros(n)
    marker[start] = 5
    marker[last] = 5
    minutes = (t - t[0]) / 60.0
    p = session.physio
    table = np.column_stack([minutes, p["ppg"], p["rsp"], p["ecg"], p["eda"], marker, np.zeros(n)])
    np.savetxt(path, table, fmt=["%.8f", "%.5f", "%.5f", "%.5f", "%.5f", "%d", "%d"], delimiter="\t")
    return start


# ---------------------------------------------------------------------------------- frames
def _write_frames(
    session: SyntheticSession,
    color_dir: Path | None,
    depth_dir: Path | None,
    *,
    pool: ThreadPoolExecutor,
    bar: tqdm,
    video_path: Path | None = None,
) -> None:
    quality = [cv2.IMWRITE_JPEG_QUALITY, int(session.config.jpeg_quality)]
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]

    def one(pos: int) -> np.ndarray | None:
        index = session.first_index + pos
        if depth_dir is not None:
            rgb, depth = session.render(pos)
        else:
            rgb, depth = session.rgb(pos), None
        if color_dir is not None:
            ok, buf = cv2.imencode(".jpg", rgb, quality)
            if not ok:
                raise OSError(f"JPEG encoding failed for frame {index}")
            (color_dir / f"{index}.jpg").write_bytes(buf.tobytes())
        if depth_dir is not None:
            ok, buf = cv2.imencode(".png", depth, png)
            if not ok:
                raise OSError(f"PNG encoding failed for depth frame {index}")
            (depth_dir / f"{index}.png").write_bytes(buf.tobytes())
        return rgb if video_path is not None else None

    writer = None
    if video_path is not None:
        w, h = session.size
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), session.fps, (w, h))
        if not writer.isOpened():
            raise OSError(f"cannot open a video writer for {video_path}")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(session.config.jpeg_quality))
    try:
        chunk = 64
        for start in range(0, session.n_frames, chunk):
            positions = range(start, min(session.n_frames, start + chunk))
            for rgb in pool.map(one, positions):
                if writer is not None:
                    writer.write(rgb)
                bar.update(1)
    finally:
        if writer is not None:
            writer.release()


# ---------------------------------------------------------------------------------- writer
def _check_output(out: Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output folder {out} is not empty; pass --overwrite to replace it")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the parent folder of {out}: {err.strerror or err}") from None
    staging = parent / f".{out.name}.partial-{os.getpid()}"
    try:
        staging.mkdir(exist_ok=False)
        (staging / ".probe").write_bytes(b"")
        (staging / ".probe").unlink()
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"output {out} is not writable: {err.strerror or err}") from None
    return staging


def write_casme3(
    out: str | Path,
    *,
    part: str = "A",
    subjects: int = 2,
    videos: int = 2,
    seconds: float = 10.0,
    seed: int = 0,
    faces: str | Path | list | None = None,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    config: SynthConfig | None = None,
    depth: bool = True,
    physio: bool = True,
    overwrite: bool = False,
    defects: bool = False,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Write a synthetic CAS(ME)^3 set (Part A or Part C layout) with its workbooks and ground truth.

    Parameters
    ----------
    out : path
        Output folder (created; must be empty unless ``overwrite``).
    part : {"A", "C"}
        Layout: Part A (short videos per letter, JPG frames) or Part C (one long video per
        subject, physiology text, Part C workbooks).
    subjects, videos : int
        Subjects, and videos per subject (Part A only; at most 26).
    seconds : float
        Length of each video.
    seed : int
        Same seed, same bytes.
    faces : path, list or None
        A folder of photographs, one photograph, ``"astronaut"``, a list of those or of
        :class:`Face`, ``"registry:dev"`` or ``"registry:frozen"`` for a split of the face
        registry, or None for the ``dev`` split. Subjects cycle through them.
    fps, size : float, (int, int)
        Frame rate and frame ``(width, height)``.
    config : SynthConfig, optional
        Generator knobs.
    depth, physio : bool
        Write depth frames; write physiology (always written for Part C).
    overwrite : bool
        Replace a non-empty ``out``.
    defects : bool
        Part A: plant the official release's defects, all listed in ``ground_truth.json``: one
        damaged JPG per video (named in ``exception/error_info_damaged_image_partA.txt``), one
        missing frame index per video, and ``Others`` for ``others`` once in the label sheet.
        Planted frames never fall inside a micro-expression.
    workers : int
        Threads rendering and encoding frames.
    progress : bool
        Show a tqdm bar on stderr.

    Returns
    -------
    dict
        Summary: ``path``, ``part``, ``subjects``, ``videos``, ``frames``, ``events`` per kind.
    """
    part = str(part).upper()
    if part not in ("A", "C"):
        raise ValueError(f"part must be 'A' or 'C', got {part!r}")
    if subjects < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}")
    if part == "A" and not 1 <= videos <= 26:
        raise ValueError(f"videos must be within 1..26 for Part A, got {videos}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if round(seconds * fps) < 2:
        raise ValueError(f"{seconds} s at {fps} fps is fewer than 2 frames per video")
    config = config or SynthConfig()
    if faces is None:
        sources: list = face_registry("dev")
    elif isinstance(faces, list):
        sources = faces
    elif str(faces).startswith("registry:"):
        sources = face_registry(str(faces).removeprefix("registry:"))
    else:
        sources = resolve_faces(faces)
    if not sources:
        raise ValueError("no face photographs found; pass --faces DIR")
    # Every face is checked (mesh detection) before any frame is written.
    loaded: list[Face] = [f if isinstance(f, Face) else load_registered(f, size=size) if isinstance(f, FaceSpec)
                          else load_face(f, size=size) for f in sources[:subjects]]
    out = Path(out)
    staging = _check_output(out, overwrite)
    n_videos = videos if part == "A" else 1
    total = subjects * n_videos * int(round(seconds * fps))
    summary = {"path": str(out), "part": part, "subjects": subjects, "videos": subjects * n_videos, "frames": 0,
               "events": {"me": 0, "mae": 0, "blink": 0}}
    truth: list[dict] = []
    manifest = {"generator": "mmer.synth", "part": part, "seed": seed, "fps": fps, "size": list(size),
                "seconds": seconds, "config": config.as_dict(), "subjects": []}
    label_rows, all_rows, blink_rows, c_me_rows, c_all_rows = [], [], [], [], []
    found_defects: list[dict] = []
    case_done = False
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
            total=total, unit="frame", desc=f"synth casme3 {part}", disable=not progress, leave=False
        ) as bar:
            for s in range(1, subjects + 1):
                face = loaded[(s - 1) % len(loaded)]
                subj_entry = {"subject": f"spNO.{s}" if part == "A" else s, "face": face.name, "videos": []}
                for v in range(n_videos):
                    vseed = _video_seed(seed, s, v)
                    rng = np.random.default_rng(vseed)
                    if part == "A":
                        letter = string.ascii_lowercase[v]
                        session = generate_session(face, seconds=seconds, fps=fps, size=size, seed=vseed,
                                                   config=config, subject=f"spNO.{s}", video=letter,
                                                   first_index=1, min_me=1)
                        vdir = staging / f"spNO.{s}" / letter
                        (vdir / "color").mkdir(parents=True)
                        if depth:
                            (vdir / "depth").mkdir()
                        _write_frames(session, vdir / "color", vdir / "depth" if depth else None, pool=pool, bar=bar)
                        if physio:
                            write_physio_text(vdir / "physio.txt", session)
                        if defects:
                            found_defects.extend(_damage(vdir, session, depth=depth))
                    else:
                        preroll = float(rng.uniform(3.0, 10.0))
                        session = generate_session(face, seconds=seconds, fps=fps, size=size, seed=vseed,
                                                   config=config, subject=str(s), video=str(s),
                                                   first_index=0, preroll=preroll, min_me=1)
                        sdir = staging / str(s)
                        sdir.mkdir(parents=True)
                        if depth:
                            (sdir / "depth").mkdir()
                        _write_frames(session, None, sdir / "depth" if depth else None, pool=pool, bar=bar,
                                      video_path=sdir / f"{s}.avi")
                        write_physio_text(sdir / f"{s}.txt", session)
                    summary["frames"] += session.n_frames
                    rows = session.truth()
                    truth.extend(rows)
                    subj_entry["videos"].append({"video": session.video, "seed": vseed, "n_frames": session.n_frames,
                                                 "first_index": session.first_index,
                                                 "physio_start": float(session.physio_times[0]),
                                                 "events": [r for r in rows if r["kind"] in _EVENT_KINDS],
                                                 "distractors": [r for r in rows if r["kind"] in _DISTRACTOR_KINDS],
                                                 "artifacts": [r for r in rows if r["kind"].startswith("physio_")]})
                    count = 0
                    for e in session.events:
                        summary["events"][e.kind.value] += 1
                        if part == "A":
                            if e.kind is EventKind.BLINK:
                                blink_rows.append([e.subject, e.video, str(e.onset), str(e.offset)])
                                continue
                            kind = "Micro-expression" if e.kind is EventKind.ME else "Macro-expression"
                            all_rows.append([e.subject, e.video, str(e.onset), str(e.apex), str(e.offset), e.aus,
                                             kind, e.objective_class])
                            if e.kind is EventKind.ME:
                                emotion = e.emotion
                                if defects and emotion == "others" and not case_done:
                                    emotion, case_done = "Others", True  # as in the official workbook
                                    found_defects.append({"kind": "label_case", "subject": e.subject,
                                                          "video": e.video, "onset": e.onset, "value": emotion})
                                label_rows.append([e.subject, e.video, str(e.onset), str(e.apex), str(e.offset),
                                                   e.aus, e.objective_class, emotion])
                        elif e.kind is not EventKind.BLINK:
                            is_me = e.kind is EventKind.ME
                            c_all_rows.append([s, e.onset, e.offset, e.offset - e.onset, int(is_me),
                                               int(rng.random() < 0.65)])
                            if is_me:
                                count += 1
                                au = _part_c_au(e.aus, rng, allow_number=bool(c_me_rows))
                                c_me_rows.append([s, count, e.onset, e.offset, au, FOUR_CLASS[e.emotion]])
                manifest["subjects"].append(subj_entry)
        if part == "A":
            _write_xlsx(staging / PART_A_LABEL, {"label": (_LABEL_COLUMNS, label_rows), "Sheet1": ([], []),
                                                  "Sheet3": ([], [])})
            _write_xls(staging / PART_A_ALL, {"AU+Emotion": (_ALL_COLUMNS, all_rows),
                                              "eye blink": (_BLINK_COLUMNS, blink_rows)})
        else:
            _write_xlsx(staging / PART_C_ME, {"mockCrimeME": (_C_ME_COLUMNS, c_me_rows)})
            _write_xls(staging / PART_C_ALL, {"organize": (_C_ALL_COLUMNS, c_all_rows)})
        if defects and part == "A":
            (staging / "exception").mkdir()
            damaged = [f"{d['subject']} {d['video']} {d['frame']}.jpg  the image cannot open\n"
                       for d in found_defects if d["kind"] == "damaged_jpg"]
            (staging / "exception" / "error_info_damaged_image_partA.txt").write_text("".join(damaged))
            manifest["defects"] = found_defects
        (staging / "ground_truth.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _write_truth_csv(staging / "ground_truth.csv", truth)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise ValueError(f"writing {out} failed, nothing was left behind: {err}") from err
        raise
    log.info("wrote %s: %s", out, summary)
    return summary


def _damage(vdir: Path, session: SyntheticSession, *, depth: bool) -> list[dict]:
    """Truncate one JPG and delete one frame, both away from every ME (the official defects)."""
    rng = np.random.default_rng([session.seed, 17])
    busy = np.zeros(session.n_frames, bool)
    for e in session.timeline.expressions:
        if e.kind == "me":
            busy[max(0, e.onset - 2) : e.offset + 3] = True
    busy[[0, -1]] = True
    free = np.flatnonzero(~busy)
    if len(free) < 2:
        return []
    damaged, missing = (session.first_index + int(p) for p in rng.choice(free, size=2, replace=False))
    jpg = vdir / "color" / f"{damaged}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:64])
    (vdir / "color" / f"{missing}.jpg").unlink()
    if depth:
        (vdir / "depth" / f"{missing}.png").unlink()
    where = {"subject": session.subject, "video": session.video}
    return [{"kind": "damaged_jpg", **where, "frame": damaged}, {"kind": "missing_frame", **where, "frame": missing}]


def _part_c_au(aus: str, rng: np.random.Generator, *, allow_number: bool) -> str | int:
    """Part C style AU cell: comma-separated, a bare number when one AU (as in the real sheet).

    The first row always keeps its AU combination, so the column reads back as text, as the
    official one does, even in a tiny set.
    """
    parts = aus.split("+")
    if allow_number and rng.random() < 0.3:
        parts = parts[:1]
    if len(parts) == 1 and parts[0].isdigit():
        return int(parts[0])
    return ",".join(parts)


_TRUTH_FIELDS = ["subject", "video", "kind", "onset", "apex", "apex_end", "offset", "t_onset", "t_apex",
                 "t_offset", "emotion", "objective_class", "aus", "amplitude_px", "channel", "overlap", "dynamics",
                 "residual", "t_relaxed"]


def _write_truth_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_TRUTH_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in _TRUTH_FIELDS})


def _cell(value) -> str | int | float:
    """CSV cell: empty for None, ``+``-joined for lists (``speech+blink``; empty when none)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "+".join(value)
    return value
