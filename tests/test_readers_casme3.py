"""CAS(ME)^3 reader on the real official annotation files and on synthetic sets in the same layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mmer.dataset import EventKind, FrameError
from mmer.replay import DatasetError, open_dataset
from mmer.replay._physio_text import frame_to_sample, read_physio_text

@pytest.fixture(scope="module")
def real(shared_data):
    return open_dataset("casme3", shared_data / "casme3-annotations")


def _me(ds, subject, video):
    return sorted((e.onset, e.apex, e.offset) for e in ds.events if e.kind is EventKind.ME and (e.subject, e.video) == (subject, video))


def test_real_counts_lose_no_row(real):
    part_a = [e for e in real.events if e.video != "partC"]
    kinds = Counter(e.kind for e in part_a)
    # 860 ME rows in the v2 label workbook, 3346 macro rows and 841 blink rows in the xls: all kept.
    assert kinds[EventKind.ME] == 860
    assert kinds[EventKind.MAE] == 3346
    assert kinds[EventKind.BLINK] == 841
    part_c = [e for e in real.events if e.video == "partC"]
    assert sum(e.kind is EventKind.ME for e in part_c) == 166  # 165 labelled + 1 only in the xls
    assert all(e.apex is None for e in part_c)
    assert {e.emotion for e in part_c if e.emotion} == {"negative", "positive", "surprise", "others"}
    assert len(real) == 0  # annotations only: nothing to replay, everything to inspect


def test_real_repairs_follow_the_documented_rules(real):
    assert (1812, 1824, 1845) in _me(real, "spNO.40", "e")  # offset 0 -> from the xls row
    assert (2327, 2363, 2403) in _me(real, "spNO.40", "e")
    assert (2647, 2668, 2694) in _me(real, "spNO.216", "d")  # onset 3647 typo
    assert (112, 160, 358) in _me(real, "spNO.149", "d")  # apex 83 outside
    assert (1, 1, 25) in _me(real, "spNO.216", "e")  # onset/apex 0 -> 1
    assert not [e for e in real.events if e.emotion and e.emotion != e.emotion.lower()]
    assert all(e.video == e.video.lower() for e in real.events if e.video != "partC")
    assert all(e.onset <= e.offset and (e.apex is None or e.onset <= e.apex <= e.offset) for e in real.events)


def test_real_every_defect_reported_with_row_and_action(real):
    kinds = Counter(d.kind for d in real.defects)
    for kind in ("offset_before_onset", "apex_outside", "onset_zero", "label_case", "video_case",
                 "multiple_me", "occluded_apex", "damaged_frames", "bad_quality_frames", "unlabelled_me"):
        assert kinds[kind] > 0, kind
    assert kinds["label_case"] == 3  # the three 'Others' rows
    for d in real.defects:
        assert d.action.split(":")[0] in ("repaired", "skipped", "counted"), d
        assert d.subject and d.file
    damaged = {(d.subject, d.video): d for d in real.defects if d.kind == "damaged_frames"}
    assert damaged[("spNO.3", "j")].detail == "79 frame(s): 498-576"
    assert kinds["duplicate_row"] == 1  # lines 80-88 repeat frames 568-576 of spNO.3 J
    assert damaged[("spNO.4", "j")].row is not None
    assert len(real.recognition_exclusions) == 15


def test_subject_and_video_filters(shared_data):
    ds = open_dataset("casme3", shared_data / "casme3-annotations", subjects=["40"], videos=["e"], part="A")
    assert {(e.subject, e.video) for e in ds.events} == {("spNO.40", "e")}
    assert {d.subject for d in ds.defects} == {"spNO.40"}


def test_inspect_cli_on_real_annotations(shared_data, capsys, tmp_path):
    from mmer.cli import main

    png = tmp_path / "overview.png"
    assert main(["inspect", "casme3", str(shared_data / "casme3-annotations"), "--json", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"subjects", "videos", "events", "classes", "defects"} <= set(report)
    assert set(report["events"]) == {"me", "mae", "blink"}
    assert report["events"]["blink"] == 841
    assert {"kind", "subject", "video", "row", "action"} <= set(report["defects"][0])
    assert len(report["defects"]) == sum(report["defect_counts"].values())


def _tiny_part_a(root: Path, *, depth_beside: bool) -> None:
    rng = np.random.default_rng(1)
    video = root / "spNO.7" / "c"
    color = video / "color"
    color.mkdir(parents=True)
    depth = color if depth_beside else video / "depth"
    depth.mkdir(exist_ok=True)
    for i in range(1, 13):
        if i == 6:  # a frame drop
            continue
        cv2.imwrite(str(color / f"{i}.jpg"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
        cv2.imwrite(str(depth / f"{i}.png"), rng.integers(0, 60000, (24, 32), dtype=np.uint16))
    (color / "9.jpg").write_bytes(b"\xff\xd8 truncated")
    frame = pd.DataFrame({"Subject": ["spNO.7"], "Filename": ["C"], "Onset": [2], "Apex": [4], "Offset": [8],
                          "AU": ["4"], "Objective class": ["III"], "emotion": ["Others"]})
    with pd.ExcelWriter(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx") as xl:
        frame.to_excel(xl, sheet_name="label", index=False)


@pytest.mark.parametrize("depth_beside", [False, True])
def test_tiny_layout_frames_depth_and_defects(tmp_path, depth_beside):
    _tiny_part_a(tmp_path, depth_beside=depth_beside)
    ds = open_dataset("casme3", tmp_path)
    assert len(ds) == 1
    rec = next(ds.recordings())
    rgb, depth = rec.frames["rgb"], rec.frames["depth"]
    assert list(rgb.indices) == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    assert rgb.timestamps[5] == pytest.approx(6 / 30)  # the gap stays in the timeline
    d = depth.read(0)
    assert d.dtype == np.uint16 and d.shape == (24, 32)
    raw = cv2.imread(str(depth.reader.paths[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(d, raw)  # 16-bit raw, unchanged
    with pytest.raises(FrameError, match="9.jpg"):
        rgb.read(list(rgb.indices).index(9))
    kinds = Counter(d.kind for d in ds.defects)
    assert kinds["missing_frames"] == 1 and kinds["label_case"] == 1 and kinds["video_case"] == 1
    assert rec.events[0].emotion == "others" and rec.events[0].video == "c"


def test_synthetic_set_from_the_synthetic_lab(tmp_path):
    synth = pytest.importorskip("mmer.synth")
    out = tmp_path / "set"
    synth.write_casme3(out, part="A", subjects=1, videos=1, seconds=1.0, seed=7, size=(160, 120), progress=False)
    ds = open_dataset("casme3", out)
    rec = next(ds.recordings())
    truth = json.loads((out / "ground_truth.json").read_text())
    assert len(rec.frames["rgb"]) == 30 and len(rec.frames["depth"]) == 30
    assert rec.frames["rgb"].read(0).shape == (120, 160, 3)
    assert rec.frames["depth"].read(0).dtype == np.uint16
    assert set(rec.samples) == {"ppg", "rsp", "ecg", "eda"}
    expected = truth["subjects"][0]["videos"][0]["events"]
    want = sorted((e["kind"], e["onset"], e["offset"]) for e in expected)
    got = sorted((e.kind.value, e.onset, e.offset) for e in rec.events)
    assert got == want
    for e in expected:
        if e["kind"] == "me":
            match = next(x for x in rec.events if x.kind is EventKind.ME and x.onset == e["onset"])
            assert (match.apex, match.emotion, match.objective_class) == (e["apex"], e["emotion"], e["objective_class"])


def test_part_c_physio_aligned_by_marker(tmp_path):
    synth = pytest.importorskip("mmer.synth")
    out = tmp_path / "c"
    synth.write_casme3(out, part="C", subjects=1, seconds=2.0, seed=8, size=(160, 120), progress=False)
    ds = open_dataset("casme3", out, part="C")
    rec = next(ds.recordings())
    physio = read_physio_text(Path(rec.meta["physio_path"]))
    eda = rec.samples["eda"]
    # frame f <-> sample marker + f / 30 * 200, and both sit at the same relative time
    for f in (0, 15, 59):
        k = int(frame_to_sample(f, marker_row=physio.marker_row))
        assert eda.timestamps[k] == pytest.approx(rec.frames["rgb"].timestamps[f], abs=1 / 200)
        assert eda.data[k, 0] == pytest.approx(physio.data[k, 3], rel=1e-6)
    assert all(e.apex is None for e in rec.events)


def test_bad_inputs_name_file_and_row(tmp_path):
    with pytest.raises(DatasetError, match="not a CAS"):
        open_dataset("casme3", tmp_path)
    with pytest.raises(FileNotFoundError):
        open_dataset("casme3", tmp_path / "nope")
    book = tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    book.write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(DatasetError, match=r"cas\(me\)3_part_A_ME_label_JpgIndex_v2.xlsx: cannot read"):
        open_dataset("casme3", tmp_path)
    frame = pd.DataFrame({"Subject": ["spNO.1"], "Filename": ["a"], "Onset": ["x12"], "Apex": [3], "Offset": [9],
                          "AU": ["4"], "Objective class": ["III"], "emotion": ["happy"]})
    with pd.ExcelWriter(book) as xl:
        frame.to_excel(xl, sheet_name="label", index=False)
    with pytest.raises(DatasetError, match="row 2, column 'Onset'"):
        open_dataset("casme3", tmp_path)
    with pd.ExcelWriter(book) as xl:
        frame.drop(columns=["emotion"]).to_excel(xl, sheet_name="label", index=False)
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['emotion'\]"):
        open_dataset("casme3", tmp_path)
    frame["Onset"] = [2]
    frame["emotion"] = ["bemused"]
    with pd.ExcelWriter(book) as xl:
        frame.to_excel(xl, sheet_name="label", index=False)
    with pytest.raises(DatasetError, match="row 2, column 'emotion'.*bemused"):
        open_dataset("casme3", tmp_path)


@pytest.mark.parametrize(("cells", "message"), [
    ({"Onset": [-4]}, r"row 2, column 'Onset': -4 is not a frame number from 0 to 10000000"),
    ({"Offset": [10**12]}, r"row 2, column 'Offset': 1000000000000 is not a frame number from 0"),
    ({"Apex": [float("inf")]}, r"row 2, column 'Apex': inf is not a whole frame number"),
    ({"Subject": [None]}, r"row 2, column 'Subject' is empty"),
    ({"Subject": ["  "]}, r"row 2, column 'Subject' is empty"),
    ({"Filename": [None]}, r"row 2, column 'Filename' is empty"),
])
def test_workbook_cells_out_of_range_or_empty_are_refused(tmp_path, cells, message):
    frame = pd.DataFrame({"Subject": ["spNO.1"], "Filename": ["a"], "Onset": [2], "Apex": [3], "Offset": [9],
                          "AU": ["4"], "Objective class": ["III"], "emotion": ["happy"]})
    for column, values in cells.items():
        frame[column] = values
    with pd.ExcelWriter(tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx") as xl:
        frame.to_excel(xl, sheet_name="label", index=False)
    with pytest.raises(DatasetError, match=message):
        open_dataset("casme3", tmp_path)


def test_physio_text_errors(tmp_path):
    no_marker = tmp_path / "a.txt"
    no_marker.write_text("0.0\t1\t2\t3\t4\t0\t0\n0.00008\t1\t2\t3\t4\t0\t0\n")
    with pytest.raises(DatasetError, match=r"a.txt: no '5' sync marker"):
        read_physio_text(no_marker)
    bad = tmp_path / "b.txt"
    bad.write_text("0.0\t1\t2\t3\t4\t5\t0\n0.00008\t1\tabc\t3\t4\t0\t0\n")
    with pytest.raises(DatasetError, match="b.txt: line 2 is not numeric"):
        read_physio_text(bad)
    ok = tmp_path / "c.txt"
    ok.write_text("time\tppg\trsp\tecg\teda\tmarker\n" + "".join(f"{k / 12000:.6f}\t{k}\t0\t0\t{k * 2}\t{5 if k == 3 else 0}\n" for k in range(8)))
    parsed = read_physio_text(ok)
    assert parsed.marker_row == 3 and parsed.data[4, 3] == 8.0
    assert parsed.times()[3] == 0.0
