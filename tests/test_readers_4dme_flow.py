"""4DME and flow-image readers, and the label protocols."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from mmer.replay import DatasetError, LabelError, Player, ReplayConsumer, get_protocol, open_dataset, parse_aus
from mmer.replay.fourdme import read_mesh


def _fourdme(root, *, layout: str) -> None:
    modalities = {"2D_Texture": "grey", "Kinect_Color": "rgb", "Kinect_Depth": "depth", "Mesh": "mesh"}
    for folder, mod in modalities.items():
        base = root / folder / "S01" / "S01_01" if layout == "modality" else root / "S01" / "S01_01" / folder
        base.mkdir(parents=True)
        for i in range(6):
            if mod == "depth":
                cv2.imwrite(str(base / f"{i}.png"), np.full((12, 16), 700 + i, np.uint16))
            elif mod == "mesh":
                (base / f"{i}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
            else:
                cv2.imwrite(str(base / f"{i}.png"), np.full((12, 16, 3), 20 * i, np.uint8))
    pd.DataFrame({
        "sub_ID": ["S01", "S01"], "fold_name": ["S01_01", "S01_02"],
        "Emotion": ["Surprise+Positive", "Negative"], "Onset": [1, 5], "Apex": [2, 4], "Offset": [4, 9],
        "AUs": ["AU1+AU2(k)", "AU4"],
    }).to_excel(root / "4DME_Labelling_Micro_release v1.xlsx", index=False)


@pytest.mark.parametrize("layout", ["modality", "sample"])
def test_4dme_layouts_labels_and_meshes(tmp_path, layout):
    _fourdme(tmp_path, layout=layout)
    ds = open_dataset("4dme", tmp_path)
    assert ds.info["compound_emotions"] == 1 and ds.info["static_aus"] == 1
    assert [d.kind for d in ds.defects] == ["apex_outside"]  # S01_02: apex 4 before onset 5
    rec = next(ds.recordings())
    assert set(rec.frames) == {"grey", "rgb", "depth"}
    assert rec.frames["grey"].spec.rate == 60 and rec.frames["depth"].spec.rate == 30
    assert rec.frames["grey"].read(3)[0, 0, 0] == 60
    assert rec.frames["depth"].read(2).dtype == np.uint16 and rec.frames["depth"].read(2)[0, 0] == 702
    assert rec.events[0].emotion == "surprise+positive" and rec.events[0].aus == "AU1+AU2(k)"
    assert len(rec.meta["meshes"]) == 6
    mesh = read_mesh(rec.meta["meshes"][0])
    assert len(mesh.vertices) == 3


def test_4dme_replays_with_truth_on_the_grey_timeline(tmp_path):
    _fourdme(tmp_path, layout="sample")
    ds = open_dataset("4dme", tmp_path, videos=["S01_01"])
    prefix = "t4d."
    player = Player(ds, lockstep=True, truth_markers=True, prefix=prefix, consumer_timeout=20)
    import threading

    got = []

    def consume():
        with ReplayConsumer([prefix + "mmer.grey", prefix + "mmer.truth"], timeout=15) as consumer:
            consumer.run(lambda r: got.append(r), timeout=15)

    thread = threading.Thread(target=consume)
    thread.start()
    player.run()
    thread.join(20)
    grey = [f for r in got for f in r.frames[prefix + "mmer.grey"]]
    truth = [m for r in got for m in r.markers[prefix + "mmer.truth"]]
    assert [f.index for f in grey] == list(range(6))
    apex_time = next(t for m, t in truth if '"phase": "apex"' in m)
    assert apex_time == pytest.approx(grey[2].timestamp, abs=1e-6)  # apex = grey frame 2


def test_parse_aus_and_bad_mesh(tmp_path):
    assert parse_aus("AU4+AU12(k)") == [("AU4", False), ("AU12", True)]
    assert parse_aus("1+R2(K)") == [("AU1", False), ("AUR2", True)]
    bad = tmp_path / "x.obj"
    bad.write_text("garbage")
    with pytest.raises(DatasetError, match="x.obj"):
        read_mesh(bad)


def _flow(root, rows, *, corrupt: str | None = None):
    (root / "flow").mkdir(parents=True)
    (root / "apex").mkdir()
    lines = ["subject,sample,label,extra"]
    for i, (subject, sample, label) in enumerate(rows):
        lines.append(f"{subject},{sample},{label},x{i}")
        img = np.zeros((28, 28, 3), np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = 10 * i, 255, 0
        if sample == corrupt:
            (root / "flow" / f"{sample}.png").write_bytes(b"\x89PNG broken")
        elif sample != "lost":
            cv2.imwrite(str(root / "flow" / f"{sample}.png"), img)
            cv2.imwrite(str(root / "apex" / f"{sample}.jpg"), np.full((20, 20, 3), 128, np.uint8))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_flowimages_samples_arrays_and_folds(tmp_path):
    _flow(tmp_path, [("s1", "a", "happy"), ("s1", "b", "others"), ("s2", "c", "Disgust"), ("s2", "lost", "sad"),
                     ("s3", "d", "surprise"), ("s3", "d", "surprise")])
    ds = open_dataset("flowimages", tmp_path)
    assert len(ds) == 4 and ds.subjects == ["s1", "s2", "s3"]
    assert sorted(d.kind for d in ds.defects) == ["duplicate_sample", "missing_flow"]
    flow = ds[0].flow()
    assert flow.dtype == np.float32 and flow.shape == (28, 28, 3)
    assert flow[0, 0, 0] == 0.0 and flow[0, 0, 1] == 1.0  # u, v, strain in RGB order (cv2's reversed)
    assert ds.layout == "one" and ds[0].images().keys() == {"flow"}
    assert ds[0].apex().shape == (20, 20, 3) and ds[0].extra == {"extra": "x0"}
    x, y, subjects = ds.arrays(size=16, protocol="3class")
    assert x.shape == (3, 3, 16, 16)  # 'others' is excluded under 3class
    assert list(y) == [1, 0, 2] and list(subjects) == ["s1", "s2", "s3"]
    folds = list(ds.loso_folds())
    assert [f[0] for f in folds] == ["s1", "s2", "s3"] and list(folds[0][2]) == [0, 1]
    assert ds.summary()["classes"] == {"Disgust": 1, "happy": 1, "others": 1, "surprise": 1}
    with pytest.raises(ValueError, match="nothing to replay"):
        Player(ds)


def test_flowimages_bad_input(tmp_path):
    _flow(tmp_path / "c", [("s1", "a", "happy"), ("s1", "b", "sad")], corrupt="b")
    ds = open_dataset("flowimages", tmp_path / "c")
    with pytest.raises(DatasetError, match=r"b.png: cannot decode flow image \(labels.csv line 3\)"):
        ds[1].flow()
    with pytest.raises(DatasetError, match="b.png"):
        open_dataset("flowimages", tmp_path / "c", verify=True)
    (tmp_path / "n").mkdir()
    with pytest.raises(DatasetError, match="no labels.csv"):
        open_dataset("flowimages", tmp_path / "n")
    (tmp_path / "n" / "labels.csv").write_text("subject,sample\ns1,a\n")
    with pytest.raises(DatasetError, match=r"labels.csv: line 1 lacks column\(s\) \['label'\]"):
        open_dataset("flowimages", tmp_path / "n")


def _four(root, n=3, *, size=28):
    """A four-image layout whose u (RGB channel 0) carries the sample index."""
    for folder in ("flow", "flow_apex_offset", "direction", "direction_apex_offset"):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            rgb = np.zeros((size, size, 3), np.uint8)
            rgb[..., 0] = 40 * i + len(folder)
            cv2.imwrite(str(root / folder / f"m{i}.png"), rgb[..., ::-1])
    rows = [f"sub{i % 2},m{i},{('happy', 'disgust', 'surprise')[i % 3]},{('casme2', 'samm')[i % 2]}" for i in range(n)]
    (root / "labels.csv").write_text("subject,sample,label,dataset\n" + "\n".join(rows) + "\n")


def test_flowimages_four_image_layout(tmp_path):
    from mmer.models.data import load_samples

    _four(tmp_path / "ok")
    ds = open_dataset("flowimages", tmp_path / "ok", verify=True)
    assert ds.layout == "four" and ds.summary()["layout"] == "four"
    images = ds[2].images()
    assert set(images) == {"flow", "flow_apex_offset", "direction", "direction_apex_offset"}
    assert images["flow"][0, 0, 0] == pytest.approx((80 + 4) / 255)  # RGB channel 0 = u
    assert images["flow_apex_offset"][0, 0, 0] == pytest.approx((80 + 16) / 255)
    ss = load_samples(f"flowimages:{tmp_path / 'ok'}")
    assert ss.config.image_size == 28  # native resolution by default
    assert ss.arrays["flow"].shape == (3, 3, 28, 28) and ss.arrays["flow_offset"].shape == (3, 3, 28, 28)
    assert ss.arrays["direction"].shape == (3, 6, 28, 28)
    assert ss.meta["dataset"] == ["casme2", "samm", "casme2"]


@pytest.mark.parametrize("damage, message", [
    ("size", r"m1.png: image is 20x20 px but the dataset's images are 28x28"),
    ("grey", r"m1.png: flow image needs 3 channels"),
    ("missing", r"direction/m1.png: missing \(four-image layout, labels.csv line 3"),
])
def test_flowimages_bad_images_name_the_file(tmp_path, damage, message):
    _four(tmp_path)
    target = tmp_path / ("direction" if damage == "missing" else "flow_apex_offset") / "m1.png"
    if damage == "size":
        cv2.imwrite(str(target), np.zeros((20, 20, 3), np.uint8))
    elif damage == "grey":
        cv2.imwrite(str(target), np.zeros((28, 28), np.uint8))
    else:
        target.unlink()
    with pytest.raises(DatasetError, match=message):
        open_dataset("flowimages", tmp_path, verify=True)


def test_label_protocols():
    seven, four, three, obj = (get_protocol(n) for n in ("emotion7", "4class", "3class", "objective"))
    assert seven.map("Others") == "others" and seven.map("Happiness") == "happy"
    assert [four.map(x) for x in ("disgust", "fear", "anger", "sad", "happy", "surprise", "others")] == [
        "negative", "negative", "negative", "negative", "positive", "surprise", "others"]
    assert three.map("others") is None and three.map("sadness") == "negative"
    assert four.map("Surprise+Positive") == "others" and three.map("Surprise+Positive") is None
    assert four.map("negative") == "negative" and four.encode("positive") == 1
    assert obj.map("vii") == "VII" and obj.encode("I") == 0
    with pytest.raises(LabelError, match="unknown emotion label 'bored'"):
        four.map("bored")
    with pytest.raises(LabelError, match="cannot be expressed in protocol 'emotion7'"):
        seven.map("negative")
    with pytest.raises(LabelError, match="unknown objective class"):
        obj.map("VIII")
    with pytest.raises(ValueError, match="unknown label protocol"):
        get_protocol("5class")
