"""The shipped demo checkpoint serves the early (video-only) and the late (fused) decision."""

import numpy as np
import pytest
import torch

from mmer.features.sample import Sample, SampleConfig
from mmer.models import DEMO_CHECKPOINT, Recognizer

torch.set_num_threads(1)


def fake_sample(cfg: SampleConfig, inp: dict, mask, seed=0) -> Sample:
    rng = np.random.default_rng(seed)
    s, p = inp["image_size"], inp["roi_size"]
    arrays = {
        "frames": rng.normal(0, 0.1, (inp["n_frames"], s, s)),
        "flow": rng.normal(0, 0.3, (3, s, s)),
        "roi": rng.normal(0, 0.3, (inp["n_rois"], 3, p, p)),
        "depth": rng.normal(0, 0.3, (2, s, s)),
        "physio": rng.normal(0, 1, (inp["physio_channels"], inp["physio_length"])),
        "physio_feats": rng.normal(0, 1, (inp["n_physio_feats"],)),
        "mask": np.asarray(mask, dtype=float),
    }
    return Sample({k: v.astype(np.float32) for k, v in arrays.items()})


def test_demo_checkpoint_is_small_and_serves_both_decisions():
    assert DEMO_CHECKPOINT.is_file() and DEMO_CHECKPOINT.stat().st_size < 1_000_000
    rec = Recognizer()
    assert rec.modalities == ["video", "depth", "physio"] and rec.classes == ["negative", "positive", "surprise"]
    # the live early decision builds samples with the checkpoint's options: TV-L1 would cost more
    # than its whole latency budget, so the shipped checkpoint must use DIS
    assert rec.config.flow_method == "dis"
    inp = rec.config.model_inputs()
    full = fake_sample(rec.config, inp, [1, 1, 1])
    early = rec.predict(full, modalities=("video",))[0]
    late = rec.predict(full)[0]
    assert early["modalities"] == ["video"] and late["modalities"] == ["video", "depth", "physio"]
    for out in (early, late):
        assert out["label"] in rec.classes
        assert sum(out["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert early["probs"] != late["probs"]  # physiology and depth change the fused decision
    no_physio = fake_sample(rec.config, inp, [1, 1, 0])
    assert rec.predict(no_physio)[0]["modalities"] == ["video", "depth"]


def test_recognizer_rejects_mismatched_samples():
    rec = Recognizer()
    wrong = SampleConfig(image_size=48)
    inp = {**rec.config.model_inputs(), "image_size": 48}
    with pytest.raises(ValueError, match="other sizes"):
        rec.predict(fake_sample(wrong, inp, [1, 0, 0]))
    with pytest.raises(ValueError, match="unknown modalities"):
        rec.predict(fake_sample(rec.config, rec.config.model_inputs(), [1, 0, 0]), modalities=("audio",))


def test_composite_checkpoint_serves_video_only_live_decisions():
    from mmer.features.sample import build_sample
    from mmer.live._recognizer import SessionRecognizer
    from mmer.models import COMPOSITE_CHECKPOINT

    assert COMPOSITE_CHECKPOINT.stat().st_size < 300_000
    rec = SessionRecognizer("composite", available=["video", "depth", "physio"])
    assert rec.available == ("video",) and rec.modalities("early") == ("video",)
    assert rec.class_names == ["negative", "positive", "surprise"] and rec.meta["train"]["n_samples"] == 442
    assert rec.sample_config.image_size == 28
    cfg = rec.sample_config
    sample = build_sample(config=cfg)
    sample.arrays["flow"] = np.random.default_rng(0).normal(0, 1, (3, 28, 28)).astype(np.float32)
    sample.arrays["mask"][0] = 1.0
    probs = rec.predict(sample, rec.modalities("early"))
    assert set(probs) == set(rec.class_names) and abs(sum(probs.values()) - 1) < 1e-5
