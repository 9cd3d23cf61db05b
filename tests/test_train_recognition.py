"""Strict LOSO training on small synthetic sample sets, the flowimages layout and the commands."""

import json

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.features.sample import SampleConfig
from mmer.models import load_checkpoint
from mmer.models import train as train_mod
from mmer.models.data import SampleSet, load_samples, write_flowimages
from mmer.models.train import TrainOptions, cross_validate, encode_labels, make_folds

torch.set_num_threads(1)
CFG = SampleConfig(image_size=16, flow_size=64, n_frames=2, roi_size=4, physio_length=16)
CLASSES = ["negative", "positive", "surprise"]


def toy_set(n_subjects=4, per_subject=6, seed=0, emotions=("disgust", "happy", "surprise")) -> SampleSet:
    """Random arrays with a class-dependent flow blob and physio feature (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    y = np.arange(n) % len(emotions)
    inp = CFG.model_inputs()
    s = CFG.image_size
    arrays = {
        "frames": rng.normal(0, 0.1, (n, inp["n_frames"], s, s)),
        "flow": rng.normal(0, 0.3, (n, 3, s, s)),
        "roi": rng.normal(0, 0.3, (n, inp["n_rois"], 3, inp["roi_size"], inp["roi_size"])),
        "depth": rng.normal(0, 0.3, (n, 2, s, s)),
        "physio": rng.normal(0, 1, (n, inp["physio_channels"], inp["physio_length"])),
        "physio_feats": rng.normal(0, 1, (n, inp["n_physio_feats"])),
        "mask": np.ones((n, 3)),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    arrays["flow"][:, 0, 4:12, 4:12] += (y[:, None, None] - 1.0) * 1.5
    arrays["physio_feats"][:, :3] += y[:, None] * 2.0
    labels = [json.dumps({"emotion": emotions[k], "objective": "I"}) for k in y]
    subjects = [f"sub{i // per_subject}" for i in range(n)]
    return SampleSet(arrays, labels, subjects, [f"x{i}" for i in range(n)], CFG, {"source": "toy"})


def test_tiny_loso_learns_and_is_deterministic(tmp_path):
    ss = toy_set()
    opts = TrainOptions(model="physionet", modalities=("physio",), epochs=20, batch_size=8, lr=1e-2, seed=3)
    a = cross_validate(ss, opts, out_dir=tmp_path / "a", progress=False)
    b = cross_validate(ss, opts, progress=False, save_final=False)
    assert a["n_folds"] == 4 and a["n_samples"] == 24
    assert a["uf1"] > 0.6  # chance is ~0.33; the toy classes are separable
    assert a["uf1"] == b["uf1"] and a["confusion"] == b["confusion"]
    for key in ("uf1", "uar", "accuracy", "n_samples", "n_folds", "model", "modalities", "selection"):
        assert key in a
    assert "never used for selection" in a["selection"]
    assert (tmp_path / "a" / "confusion.png").is_file()
    assert (tmp_path / "a" / "predictions.csv").read_text().startswith("subject,sample,label,pred,fold")
    model, meta = load_checkpoint(tmp_path / "a" / "model.pt", model="physionet")
    assert meta["class_names"] == CLASSES and meta["features"]["image_size"] == 16
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["uf1"] == pytest.approx(a["uf1"])


def test_test_subject_never_reaches_training_or_selection(monkeypatch):
    ss = toy_set(n_subjects=5, per_subject=3)
    seen = []
    real_fit = train_mod.fit

    def spy(arrays, y, train_rows, *, val_rows=None, **kw):
        seen.append((set(np.asarray(ss.subjects)[train_rows]),
                     set(np.asarray(ss.subjects)[val_rows]) if val_rows is not None else set()))
        return real_fit(arrays, y, train_rows, val_rows=val_rows, **kw)

    monkeypatch.setattr(train_mod, "fit", spy)
    r = cross_validate(ss, TrainOptions(model="ststnet", epochs=2, selection="val", val_fraction=0.25),
                       progress=False, save_final=False)
    assert len(seen) == r["n_folds"] == 5
    for fold, (train_subj, val_subj) in zip(r["folds"], seen):
        test = set(fold["test_subjects"])
        assert test and not test & train_subj and not test & val_subj
        assert val_subj and not val_subj & train_subj
        assert set(fold["val_subjects"]) == val_subj
    assert "validation split" in r["selection"]


def test_modalities_restrict_what_the_model_sees():
    ss = toy_set()
    r = cross_validate(ss, TrainOptions(model="hsta_tiny", epochs=1, modalities=("physio",)), progress=False)
    assert r["modalities"] == ["physio"]
    with pytest.raises(ValueError, match="reads \\['video'\\]"):
        cross_validate(ss, TrainOptions(model="ststnet", epochs=1, modalities=("physio",)), progress=False)


def test_empty_class_and_single_sample_subject():
    ss = toy_set(n_subjects=3, per_subject=4, emotions=("disgust", "happy"))  # no surprise at all
    lone = ss.subset([0])
    lone.subjects[0] = "lonely"
    merged = SampleSet({k: np.concatenate([ss.arrays[k], lone.arrays[k]]) for k in ss.arrays},
                       ss.labels + lone.labels, ss.subjects + lone.subjects, ss.ids + ["lone"], CFG)
    r = cross_validate(merged, TrainOptions(model="physionet", epochs=2), progress=False)
    assert r["n_folds"] == 4 and r["n_samples"] == 13
    assert r["empty_classes"] == ["surprise"]
    assert any(f["test_subjects"] == ["lonely"] and f["n_test"] == 1 for f in r["folds"])


def test_out_of_protocol_label_is_a_clear_error():
    ss = toy_set()
    ss.labels[5] = json.dumps({"emotion": "bored", "objective": None})
    with pytest.raises(ValueError, match="sample x5 .*bored"):
        encode_labels(ss, "3")
    ss = toy_set(emotions=("disgust", "happy", "others"))
    y, classes, excluded = encode_labels(ss, "3")  # 'others' is outside 3-class: excluded, counted
    assert excluded == 8 and (y == -1).sum() == 8 and classes == CLASSES


def test_kfold_is_subject_disjoint():
    subjects = [f"s{i % 7}" for i in range(40)]
    folds = make_folds(subjects, protocol="kfold", folds=3, seed=1)
    rows = np.concatenate([r for _, r in folds])
    assert sorted(rows.tolist()) == list(range(40))
    groups = [{subjects[i] for i in r} for _, r in folds]
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1:])


def test_flowimages_round_trip_and_corrupt_image(tmp_path):
    ss = toy_set(n_subjects=3, per_subject=3)
    labels = [json.loads(raw)["emotion"] for raw in ss.labels]
    write_flowimages(tmp_path / "fi", ss.arrays["flow"], subjects=ss.subjects, samples=ss.ids, labels=labels)
    back = load_samples(f"flowimages:{tmp_path / 'fi'}", config=CFG)
    assert len(back) == 9 and back.subjects == ss.subjects
    assert back.arrays["flow"].min() >= -1.0 and back.arrays["flow"].max() <= 1.0
    assert (back.arrays["mask"] == [1, 0, 0]).all()
    # channel order survives the round trip: u (channel 0) carries the class blob
    r = np.corrcoef(back.arrays["flow"][:, 0, 4:12, 4:12].mean((1, 2)), ss.arrays["flow"][:, 0, 4:12, 4:12].mean((1, 2)))
    assert r[0, 1] > 0.8
    (tmp_path / "fi" / "flow" / "x4.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="x4.png: cannot decode"):
        load_samples(f"flowimages:{tmp_path / 'fi'}", config=CFG)


def test_commands_train_predict_evaluate(tmp_path, capsys):
    ss = toy_set()
    data = ss.save(tmp_path / "set.npz")
    out = tmp_path / "run"
    assert main(["train", "--data", f"samples:{data}", "--model", "physionet", "--epochs", "3",
                 "--modalities", "physio", "--workers", "1", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_folds"] == 4 and res["modalities"] == ["physio"] and res["model"] == "physionet"
    assert main(["evaluate", "recognition", str(out / "predictions.csv"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["uf1"] == pytest.approx(res["uf1"]) and ev["n_samples"] == 24
    assert main(["predict", str(out / "model.pt"), "--data", f"samples:{data}", "--out",
                 str(tmp_path / "p.csv"), "--json"]) == 0
    pr = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pr["n_samples"] == 24 and pr["n_labelled"] == 24
    assert main(["predict", str(out / "model.pt"), "--data", f"samples:{data}", "--modalities", "video"]) == 2
    assert "cannot use ['video']" in capsys.readouterr().err
    assert main(["train", "--data", f"samples:{data}", "--model", "nosuch", "--epochs", "1", "--workers", "1"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_folds_match_sequential():
    ss = toy_set()
    opts = dict(model="physionet", modalities=("physio",), epochs=3, batch_size=8, seed=1)
    seq = cross_validate(ss, TrainOptions(**opts, workers=1), progress=False, save_final=False)
    par = cross_validate(ss, TrainOptions(**opts, workers=2), progress=False, save_final=False)
    assert par["n_folds"] == seq["n_folds"] == 4
    assert par["confusion"] == seq["confusion"]  # seeded per fold: the process layout does not matter


def test_leakage_report_on_a_tiny_run():
    ss = toy_set(n_subjects=4, per_subject=6)
    ss.meta["dataset"] = ["casme2" if s in ("sub0", "sub1") else "samm" for s in ss.subjects]
    r = cross_validate(ss, TrainOptions(model="ststnet", epochs=4, modalities=("video",)), progress=False)
    leak = r["leakage"]
    assert leak["epochs_recorded"] == 4 and len(leak["test_curve_uf1"]) == 4
    assert leak["test_curve_uf1"][-1] == pytest.approx(r["uf1"])  # the last epoch is the strict model
    assert leak["common_epoch"]["uf1"] >= r["uf1"] and leak["strict_uf1"] == r["uf1"]
    assert all(1 <= e <= 4 for e in leak["per_subject"]["epochs_picked"])
    assert set(r["per_dataset"]) == {"casme2", "samm"}
    assert sum(d["n_samples"] for d in r["per_dataset"].values()) == r["n_samples"]
    one = cross_validate(ss, TrainOptions(model="ststnet", epochs=1, modalities=("video",)), progress=False)
    assert one["leakage"]["epochs_recorded"] == 1
    assert one["leakage"]["common_epoch"]["uf1"] == one["uf1"] == one["leakage"]["per_subject"]["uf1"]
    assert one["leakage"]["common_epoch"]["inflation_uf1"] == 0.0


def test_class_missing_from_a_training_fold_is_reported():
    ss = toy_set(n_subjects=3, per_subject=3)  # subject k holds samples 3k..3k+2, labels cycle per sample
    ss.labels = [json.dumps({"emotion": "surprise" if s == "sub1" else "happy", "objective": None})
                 for s in ss.subjects]  # surprise only in sub1
    r = cross_validate(ss, TrainOptions(model="ststnet", epochs=1, modalities=("video",)), progress=False)
    missing = {f["fold"]: f["missing_train_classes"] for f in r["folds"]}
    assert missing == {"sub0": [], "sub1": ["surprise"], "sub2": []} and r["n_folds"] == 3


def test_train_defaults_to_flowcnn_on_flow_images(tmp_path, capsys):
    ss = toy_set(n_subjects=3, per_subject=3)
    labels = [json.loads(raw)["emotion"] for raw in ss.labels]
    write_flowimages(tmp_path / "fi", ss.arrays["flow"], subjects=ss.subjects, samples=ss.ids, labels=labels)
    assert main(["train", "--data", f"flowimages:{tmp_path / 'fi'}", "--epochs", "2", "--modalities", "video",
                 "--workers", "1", "--no-checkpoint", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["model"] == "flowcnn" and res["options"]["ema"] > 0 and res["features"]["image_size"] == 16
    assert res["leakage"]["epochs_recorded"] == 2 and res["n_folds"] == 3
