"""End to end: synthetic sensors -> live pipeline -> events + recording -> replay -> identical events.

The recording is replayed from the frame where the live pipeline started (the recorder connects
first, so it holds a little more) through the same pipeline; what comes out must be the same
candidates with the same early decisions (RGB is recorded losslessly with FFV1, so the replayed
pixels are the live pixels) and late decisions equal within the resampling shift that pyxdf's
timestamp processing introduces.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_live_helpers import make_checkpoint

from mmer.config import parse_config
from mmer.dataset import FrameTrack, Recording, SampleTrack
from mmer.live._sources import ReplaySource
from mmer.live.pipeline import LivePipeline
from mmer.replay import Player, open_dataset

SEED = 11


def _trim(rec: Recording, first_index: int, physio_start: dict[str, float]) -> Recording:
    frames = {}
    for key, track in rec.frames.items():
        keep = np.flatnonzero(track.indices >= first_index)
        base = int(keep[0])
        frames[key] = FrameTrack(track.spec, track.indices[keep], track.timestamps[keep],
                                 lambda pos, track=track, base=base: track.read(pos + base))
    samples = {}
    for key, track in rec.samples.items():
        if track.spec.fmt == "string":
            continue  # markers: the replayed pipeline publishes its own decisions
        keep = track.timestamps >= physio_start[track.spec.name] - 1e-4
        samples[key] = SampleTrack(track.spec, track.timestamps[keep], np.asarray(track.data)[keep])
    return Recording(rec.subject, rec.video, frames=frames, samples=samples, meta=rec.meta)


def _key(d):
    return (d.candidate_id, d.stage, d.kind, d.onset, d.apex, d.offset)


@pytest.mark.slow
def test_live_recording_replays_to_identical_events(tmp_path):
    ckpt = make_checkpoint(tmp_path / "e2e.pt")
    opts = {"seed": SEED, "width": 320, "height": 240, "epoch": None}  # content from the seed's first frame
    cfg = parse_config({
        "sensors": [{"adapter": "synthetic-camera", "options": {**opts, "depth": True}},
                    {"adapter": "synthetic-physio", "options": opts}],
        "model": {"checkpoint": str(ckpt)},
        "outputs": {"status": False},
        "recording": {"rgb_codec": "ffv1", "min_free_mb": 0},
        "inputs": {"max_backlog_s": None},  # never skip a frame, however loaded the CI machine is
    }, source="e2e")
    live = LivePipeline(cfg, record_dir=tmp_path / "rec")
    live.start()
    summary = live.run(duration=20.0)
    assert summary["errors"] == [] and summary["recording"]["stop_reason"] == "stopped"
    assert summary["spot_dropped"] == 0, "the live spotter skipped frames; the replay cannot match"
    assert summary["candidates"] >= 1
    first_seen = {}
    for key in live._physio_keys:
        win = live.buffer.window(0.0, 1e12, streams=[key], timeout=0)
        first_seen[key] = float(win.signals[key].timestamps[0])

    (recording,) = list(open_dataset("xdf", tmp_path / "rec" / "session.xdf").recordings())
    rgb = next(t for t in recording.frames.values() if t.spec.name == "mmer.rgb")
    t_first = float(rgb.timestamps[np.flatnonzero(rgb.indices == live.first_frame_index)[0]])
    physio_start = {key: t - live.first_frame_t + t_first for key, t in first_seen.items()}
    trimmed = _trim(recording, live.first_frame_index, physio_start)

    source = ReplaySource(player=Player(trimmed, speed=1.0, wait_consumers=True, consumer_timeout=60.0))
    replay_cfg = cfg.model_copy(update={"sensors": [], "recording": cfg.recording.model_copy(update={"dir": None}),
                                        "inputs": cfg.inputs.model_copy(update={"truth": None})})
    replayed = LivePipeline(replay_cfg, sources=[source])
    replayed.start()
    again = replayed.run(until=source.finished)
    assert again["errors"] == [] and again["spot_dropped"] == 0

    # Publication order may interleave differently (late decisions wait on wall-clock data).
    a, b = sorted(live.decisions, key=_key), sorted(replayed.decisions, key=_key)
    assert [_key(d) for d in a] == [_key(d) for d in b]
    for da, db in zip(a, b, strict=True):
        assert list(da.modalities) == list(db.modalities), (da, db)
        if da.stage == "early":
            # The same pixels: equal labels, probabilities equal up to float noise.
            assert da.label == db.label, (da.candidate_id, da.probabilities, db.probabilities)
            tol = 1e-3
        else:
            # Also physiology, whose replayed timestamps pyxdf has clock-synced and dejittered:
            # the resampled window shifts by a fraction of a sample (measured up to 0.02 here).
            tol = 0.05
        for name, p in da.probabilities.items():
            assert db.probabilities[name] == pytest.approx(p, abs=tol), (da.stage, da.candidate_id)
