"""mmer's own flow on real ME clips reaches the composite checkpoint on the composite images' scale."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = sorted((DATA / "me-clips").glob("*.gif")) if (DATA / "me-clips").is_dir() else []
COMPOSITE = DATA / "composite-causalnet"


def _stats(model, flow: np.ndarray) -> np.ndarray:
    """Mean |u|, mean |v|, mean and sd of strain on the model's input scale."""
    x = model.inputs({"flow": torch.as_tensor(flow, dtype=torch.float32)}).numpy()
    return np.stack([np.abs(x[:, 0]).mean((1, 2)), np.abs(x[:, 1]).mean((1, 2)), x[:, 2].mean((1, 2)),
                     x[:, 2].std((1, 2))], 1)


@pytest.mark.slow
@pytest.mark.skipif(not CLIPS or not COMPOSITE.is_dir(), reason="needs ../shared/data (me-clips, composite)")
def test_mmer_flow_of_real_clips_matches_the_composite_statistics():
    from PIL import Image, ImageSequence

    from mmer.features.face import FaceTracker
    from mmer.features.sample import build_sample
    from mmer.models import COMPOSITE_CHECKPOINT, Recognizer
    from mmer.models.data import load_samples

    rec = Recognizer(COMPOSITE_CHECKPOINT)
    model = rec.model
    composite = _stats(model, load_samples(f"flowimages:{COMPOSITE}").arrays["flow"])
    lo, hi = np.percentile(composite, [10, 90], axis=0)
    tracker = FaceTracker()
    ours, raw = [], []
    try:
        for clip in CLIPS:
            frames = [np.array(im.convert("L")) for im in ImageSequence.Iterator(Image.open(clip))]
            # tight crops: put them on a larger canvas so the face mesh finds the face
            frames = [cv2.copyMakeBorder(f, 64, 64, 64, 64, cv2.BORDER_REPLICATE) for f in frames]
            apex = int(np.argmax([np.abs(f.astype(float) - frames[0]).mean() for f in frames]))
            sample = build_sample(config=rec.config, frames=[frames[0], frames[apex]], tracker=tracker)
            assert sample.info["video"] == "ok", clip.name
            assert sample.arrays["flow"].shape == (3, 28, 28)
            ours.append(_stats(model, sample.arrays["flow"][None])[0])
            raw.append(sample.arrays["flow"][2].mean())
    finally:
        tracker.close()
    median = np.median(ours, axis=0)
    assert np.all((median >= lo) & (median <= hi)), (median, lo, hi)
    # without the checkpoint's scaling the strain channel would sit far from the composite's
    assert not lo[2] <= np.median(raw) <= hi[2]
