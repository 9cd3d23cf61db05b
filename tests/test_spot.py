"""The spotter on synthetic sessions with known events, the real face video, and bad input."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from mmer.cli import main
from mmer.dataset import EventKind
from mmer.spotting import Prediction, Spotter, SpotterConfig, spot_video, spotting_scores


@pytest.fixture(scope="module")
def session(faces_dir):
    from mmer.synth import generate_session

    # Development face and seed (benchmarks use held-out ones): two MEs and a macro-expression
    # among blinks, head drift, noise and flicker.
    return generate_session(faces_dir / "0-f1-su-ph.jpg", seconds=8, seed=6, subject="s6", video="a", min_me=2)


@pytest.fixture(scope="module")
def streamed(session):
    recording = session.to_recording()
    emitted, emitted_at = [], {}
    with Spotter(config=SpotterConfig(fps=session.fps)) as spotter:
        for index, t, frame in recording.iter_frames():
            for c in spotter.push(index, t, frame):
                emitted.append((c, t))
                emitted_at[c] = index
        emitted.extend((c, None) for c in spotter.flush())
        timings = spotter.ms_per_frame()
        rejected = dict(spotter.rejected)
    return recording, emitted, timings, rejected, emitted_at


def test_spotter_finds_the_known_events(streamed):
    recording, emitted, _, _, _ = streamed
    preds = [Prediction("s6", "a", c.onset, c.offset, c.apex, c.score, c.kind) for c, _ in emitted]
    scores = spotting_scores(preds, recording.events)
    n_me = sum(e.kind is EventKind.ME for e in recording.events)
    assert n_me == 2
    assert scores["me"]["tp"] == 2 and scores["me"]["fp"] == 0
    assert scores["mae"]["tp"] == 1
    for c, _ in emitted:
        assert c.onset <= c.apex <= c.offset
        assert c.t_onset <= c.t_apex <= c.t_offset
        assert c.kind in ("me", "mae") and c.score > 0 and c.roi


def test_streaming_delay_is_bounded(streamed):
    _, emitted, _, _, _ = streamed
    cfg = SpotterConfig()
    for cand, t_emit in emitted:
        if cand.kind == "me":
            assert t_emit is not None, "an ME waited for flush()"
            # At most the longest ME plus 100 ms after its offset.
            assert t_emit - cand.t_offset <= cfg.max_me_s + 0.1 + 1e-9


def test_an_me_that_is_over_is_not_held_for_confirmation(streamed):
    # An ME of this session has returned to neutral k frames after its score peak, so it does not
    # wait for the confirming frame (k + 1 after the peak): it comes at most k frames after its
    # displacement apex (both MEs came 8-9 frames after their apex before the early path), and
    # never before its own offset.
    _, emitted, _, _, emitted_at = streamed
    k = SpotterConfig().ref
    mes = [c for c, _ in emitted if c.kind == "me"]
    assert min(emitted_at[c] - c.apex for c in mes) <= k
    assert all(emitted_at[c] > c.offset for c in mes)


def test_stage_timings_are_reported(streamed):
    _, _, timings, rejected, _ = streamed
    assert set(timings) == {"total", "face", "align", "flow", "signal", "peaks"}
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"))
    assert all(v > 0 for v in timings.values()), timings  # every stage ran and took time
    assert rejected["blink_frames"] > 0  # the session has blinks; their frames were held out


def test_damaged_and_grey_frames_do_not_crash(session):
    recording = session.to_recording()
    with Spotter() as spotter:
        for n, (index, t, frame) in enumerate(recording.iter_frames()):
            if n >= 40:
                break
            if n % 7 == 3:
                frame = None  # a damaged frame
            elif n % 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            spotter.push(index, t, frame)
        spotter.flush()
        assert spotter.tracker.stats.grey > 0
        assert spotter.frames == 40


def test_config_is_checked():
    with pytest.raises(ValueError, match="fps"):
        SpotterConfig(fps=0)
    with pytest.raises(ValueError, match="p must be"):
        SpotterConfig(p=1.5)
    assert SpotterConfig(fps=30).ref == 7
    assert SpotterConfig(fps=200).ref == 50


def test_spot_video_command_on_the_real_face_video(shared_data, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    code = main(["spot", "video", str(shared_data / "video" / "single_face.mp4"), "--out", str(out),
                 "--plot", str(tmp_path / "plots"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["videos"] == 1
    face = summary["per_video"][0]["face"]
    assert face["with_landmarks"] == face["frames"] > 30
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert out.read_text().splitlines()[0] == "subject,video,onset,offset,apex,score,type"
    assert len(rows) == summary["candidates"]
    assert (tmp_path / "plots" / "single_face_single_face.png").stat().st_size > 1000


def _write_video(path, frames, fps=30.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_without_a_face_gives_zero_candidates_and_says_so(tmp_path):
    rng = np.random.default_rng(1)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3) for _ in range(20)]
    path = tmp_path / "empty.mp4"
    _write_video(path, frames)
    result = spot_video(path, progress=False)
    assert result.candidates == []
    assert result.face["with_landmarks"] == 0 and result.face["frames"] == 20
    assert any("no face" in note for note in result.notes)


def test_undecodable_and_missing_videos_are_clean_errors(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01not a video at all" * 100)
    code = main(["spot", "video", str(bad), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "error" in err
    assert not (tmp_path / "p.csv").exists()
    code = main(["spot", "video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert "video not found" in capsys.readouterr().err


@pytest.mark.slow
def test_spot_and_evaluate_a_synthetic_casme3_set(faces_dir, tmp_path, capsys):
    root = tmp_path / "set"
    assert main(["synth", "casme3", str(root), "--part", "A", "--subjects", "1", "--videos", "1",
                 "--seconds", "8", "--seed", "6", "--me-overlap", "0", "--faces", str(faces_dir / "0-f1-su-ph.jpg"), "--no-depth", "--no-physio"]) == 0
    capsys.readouterr()
    pred = tmp_path / "pred.csv"
    assert main(["spot", "casme3", str(root), "--out", str(pred), "--plot", str(tmp_path / "plots")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "spotting", "--pred", str(pred), "--truth", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for kind in ("me", "mae", "overall"):
        assert set(result[kind]) == {"tp", "fp", "fn", "precision", "recall", "f1"}
    assert result["overall"]["tp"] + result["overall"]["fn"] >= 1
    assert result["me"]["tp"] >= 1
    assert list((tmp_path / "plots").glob("*.png"))


@pytest.mark.slow
def test_bench_spot_reports_the_contract_keys():
    import argparse

    from mmer.bench import spot as bench_spot

    parser = argparse.ArgumentParser()
    bench_spot.add_arguments(parser)
    args = parser.parse_args(["--set", "dev", "--sessions", "1", "--seconds", "3", "--tvl1-pairs", "1", "--rule-cost"])
    result = bench_spot.run(args)
    assert result["set"] == "dev" and result["frozen"] is False
    rule_cost = result["rule_cost"]
    assert set(rule_cost) == {"head_motion", "speech", "ramp", "oscillation", "blink"}
    assert {"me_recall_on", "me_recall_off", "tp_lost", "fp_removed", "earns_more_than_it_costs"} <= set(rule_cost["speech"])
    assert set(result["f1"]) == {"me", "mae", "overall"}
    assert {"total", "face", "align", "flow", "signal", "peaks"} <= set(result["ms_per_frame"])
    assert result["frames"] == 90
    assert result["flow_ms_per_pair"]["tvl1"] > result["flow_ms_per_pair"]["dis"]
    delay = result["emission_delay"]
    assert set(delay) == {"me", "mae"}
    assert {"n", "at_flush", "frames_p50", "frames_p95", "ms_p50", "ms_p95"} <= set(delay["me"])
    assert sum(d["n"] + d["at_flush"] for d in delay.values()) == result["sessions"][0]["candidates"]
    with pytest.raises(ValueError, match="development seeds"):
        bench_spot.run(parser.parse_args(["--set", "dev", "--seed", str(bench_spot.FROZEN_SEED)]))
    with pytest.raises(ValueError, match="frozen set"):
        bench_spot.run(parser.parse_args(["--spotter", "min_score=3"]))
    with pytest.raises(ValueError, match="nose"):
        SpotterConfig(rules=("nose",))


def test_head_jerks_are_not_micro_expressions(faces_dir):
    """A session with head jerks and blinks but no expression: the rigid fit's residue after a jerk
    goes out and back like an ME. Without the head-motion check one comes out as an ME; with it
    none does, and the drop is counted."""
    from mmer.synth import SynthConfig, generate_session

    cfg = SynthConfig(me_per_min=0.0, mae_per_min=0.0, speech_per_min=0.0, head_jerk_per_min=40.0,
                      head_jerk_px=(10.0, 16.0), blink_interval=(1.0, 2.0))
    session = generate_session(faces_dir / "0-f1-su-ph.jpg", seconds=8, seed=616, config=cfg, subject="j", video="a")
    frames = list(session.to_recording().iter_frames())
    assert not [e for e in session.to_recording().events if e.kind in (EventKind.ME, EventKind.MAE)]

    def spot(config):
        with Spotter(config=config) as spotter:
            found = [c for index, t, frame in frames for c in spotter.push(index, t, frame)] + spotter.flush()
            return found, dict(spotter.rejected)

    unchecked, _ = spot(SpotterConfig(fps=session.fps, head_motion=1.0))
    assert [c for c in unchecked if c.kind == "me"], "the session no longer provokes a false ME"
    found, rejected = spot(SpotterConfig(fps=session.fps))
    assert not [c for c in found if c.kind == "me"]
    assert rejected["head_motion"] >= 1


def test_a_blink_does_not_tilt_the_head_motion_fit(faces_dir):
    """Flow that is pure head motion plus eyelids closing by 3 px: once the spotter removes the
    head's motion, the ROIs away from the eyes are still (a blink leaks into none of them)."""
    from mmer.features.face import alignment_matrix
    from mmer.features.roi import face_rois
    from mmer.spotting.spotter import _ROIS
    from mmer.synth import load_face

    face = load_face(faces_dir / "0-f1-su-ph.jpg")
    matrix = alignment_matrix(face.landmarks[:, :2], size=128)
    crop_landmarks = cv2.transform(face.landmarks[None, :, :2].astype(np.float64), matrix)[0]
    spotter = Spotter(tracker=object())
    spotter._boxes = face_rois(crop_landmarks, shape=(128, 128))
    ys, xs = np.mgrid[0:128, 0:128].astype(np.float32)
    head = np.array([[0.01, -0.02, 0.8], [0.02, 0.01, -0.5]], np.float32)  # small roll and zoom, a shift
    flow = np.dstack([head[0, 0] * xs + head[0, 1] * ys + head[0, 2], head[1, 0] * xs + head[1, 1] * ys + head[1, 2]])
    for name in ("eye_r", "eye_l"):
        # The lids' flow, as DIS spreads it a few pixels past the eye boxes.
        x0, y0, x1, y1 = spotter._boxes[name]
        flow[max(0, y0 - 6) : y1 + 6, max(0, x0 - 6) : x1 + 6, 1] += 3.0
    v = spotter._roi_vectors(flow)
    away = [i for i, name in enumerate(_ROIS) if name.startswith(("nose", "mouth", "chin"))]
    # A fit over all inner blocks (rigid_motion with nothing excluded) leaves about 0.19 px here.
    assert np.abs(v[away]).max() < 0.02


def _spotter_with_frames(config: SpotterConfig, n: int) -> Spotter:
    """A spotter holding ``n`` frames with a face and nothing else (internals, for rule tests)."""
    from mmer.spotting.spotter import _Frame

    spotter = Spotter(config=config, tracker=object())
    spotter._frames = {i: _Frame(index=i, t=i / config.fps, crop=np.zeros((2, 2), np.uint8)) for i in range(n)}
    spotter._pos = n
    return spotter


def _macro_interval(config: SpotterConfig, j: int, shape):
    """The macro scale's candidate at score peak ``j`` when the winning ROI moves by ``shape(i)``."""
    spotter = _spotter_with_frames(config, j + 80)  # the newest frame lies past the macro window
    track = spotter._tracks[1]
    track.rois[j] = 0
    spotter._profile = lambda lo, hi, jj, roi, *, step: {i: np.array([0.0, shape(i)]) for i in range(lo, hi + 1)}
    return spotter._interval(track, j, 10.0), spotter.rejected


def test_a_macro_window_that_misses_the_expressions_end_is_not_a_candidate():
    # An expression from frame 200 that is still held where the macro window ends: a score peak
    # before its onset (noise before, the rise after) sees only its start. Removing the drift
    # between the window's ends would fake an apex at the onset (the old behaviour, ramp_ratio
    # off); the rule drops it and the peak on the expression itself decides.
    def rise(i):
        return float(np.clip((i - 200) / 25.0, 0.0, 1.0)) * 1.5

    def bump(i):
        return 1.5 * float(np.sin(np.pi * np.clip((i - 200) / 80.0, 0.0, 1.0)) ** 2)

    cfg = SpotterConfig(fps=30.0)
    old, _ = _macro_interval(SpotterConfig(fps=30.0, ramp_ratio=1e9), 185, rise)
    assert old is not None and old.apex == 200  # the false apex the rule prevents
    cand, rejected = _macro_interval(cfg, 185, rise)
    assert cand is None and rejected["ramp"] == 1
    whole, _ = _macro_interval(cfg, 240, bump)  # the whole expression in the window
    assert whole is not None and whole.kind == "mae" and whole.apex == 240
    assert (whole.offset - whole.onset + 1) / 81 > 0.8 and 200 <= whole.onset and whole.offset <= 280


def test_speech_needs_repeated_large_lip_movements():
    """One parting of the lips with the mesh wobbling on the way is an expression; syllables of
    uneven size are speech."""
    cfg = SpotterConfig(fps=30.0)
    n = 120
    i = np.arange(n)
    opening = 0.15 * np.sin(np.pi * np.clip((i - 40) / 40.0, 0.0, 1.0)) ** 2
    opening += 0.025 * np.sin(2 * np.pi * i / 6.0) * (opening > 0.02)  # mesh wobble of 1/6 of the range
    syllables = 0.1 * np.abs(np.sin(np.pi * 4.0 * i / 30.0)) * np.where((i // 8) % 2, 1.0, 0.6)

    def speaking(lips, config):
        spotter = _spotter_with_frames(config, n)
        for k, f in spotter._frames.items():
            f.mouth = np.array([lips[k], 0.0])
        spotter._mouth_steps.extend([np.array([0.001, 0.001])] * 10)
        return spotter._speaking(60)

    assert speaking(syllables, cfg)
    assert not speaking(opening, cfg)
    assert speaking(opening, SpotterConfig(fps=30.0, speech_relative=0.0))  # without the relative step
    with pytest.raises(ValueError, match="speech_relative"):
        SpotterConfig(speech_relative=1.0)
