"""``mmer demo`` end to end: report folder and the ``--json`` contract."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from test_live_helpers import CLASSES, make_checkpoint

from mmer.live.events import Decision
from mmer.live.report import format_table, match_truth


@pytest.mark.slow
def test_demo_writes_report_and_json_summary(tmp_path):
    ckpt = make_checkpoint(tmp_path / "demo-test.pt")
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "mmer", "demo", "--seconds", "15", "--out", str(out), "--size", "320x240",
         "--checkpoint", str(ckpt), "--json"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(summary)[:5] == ["events", "candidates", "latency_ms", "physio_lost", "frames_dropped_pct"]
    assert set(summary["latency_ms"]["early"]) >= {"p50", "p95"} and set(summary["latency_ms"]["late"]) >= {"p50", "p95"}
    assert summary["physio_lost"] == 0
    assert "truth" in proc.stderr and "latency ms p50/p95" in proc.stderr
    saved = json.loads((out / "summary.json").read_text())
    assert saved["events"] == summary["events"]
    # 15 s of the demo session hold true expressions, and each is either found or counted missed.
    assert saved["truth_events"] >= 1
    assert saved["truth_events"] == saved["spotting"]["tp"] + saved["spotting"]["fn"]
    assert (out / "timeline.png").stat().st_size > 10_000
    with open(out / "events.csv", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert len(rows) == summary["events"]
    assert {"candidate_id", "stage", "label", *[f"p_{c}" for c in CLASSES], "truth_onset"} <= set(header)


def _d(cid, onset, offset, kind="me", stage="early"):
    return Decision(candidate_id=cid, stage=stage, kind=kind, onset=onset, apex=onset, offset=offset, t_onset=0.0,
                    t_apex=0.0, t_offset=0.0, label="surprise", probabilities={"surprise": 0.9, "negative": 0.1},
                    modalities=["video"])


def test_truth_matching_is_one_to_one_by_iou():
    truth = [{"kind": "me", "onset": 10, "offset": 19, "emotion": "surprise"},
             {"kind": "mae", "onset": 100, "offset": 160, "emotion": "happiness"},
             {"kind": "blink", "onset": 50, "offset": 53}]
    decisions = [_d(0, 11, 20), _d(0, 11, 20, stage="late"), _d(1, 12, 19), _d(2, 100, 150, kind="mae"),
                 _d(3, 50, 53)]
    m = match_truth(decisions, truth)
    assert m["tp"] == 2 and m["fp"] == 2 and m["fn"] == 0
    assert m["pairs"][2] == 1 and m["pairs"].get(0, m["pairs"].get(1)) == 0
    table = format_table(decisions, truth, m, labels="3class")
    assert "me 10-19 surprise (surprise)" in table and "false positive" in table and "blink" not in table


def test_live_benchmark_times_matched_mes_from_their_true_last_frame():
    from dataclasses import replace

    from mmer.bench.live import _from_true_offset

    truth = [{"kind": "me", "onset": 10, "offset": 19}, {"kind": "me", "onset": 40, "offset": 52}]
    # Candidate 0 ends a frame after the truth (frame 20 captured at t = 10 s), published at 10.15 s:
    # the true last frame was captured 1/30 s before frame 20, so 183.3 ms. Its late decision,
    # the unmatched candidate 1 and the macro are not counted.
    decisions = [replace(_d(0, 11, 20), t_offset=10.0, t_published=10.15),
                 replace(_d(0, 11, 20, stage="late"), t_offset=10.0, t_published=12.0),
                 replace(_d(1, 80, 85), t_offset=20.0, t_published=20.1),
                 replace(_d(2, 40, 50), t_offset=30.0, t_published=30.15),
                 replace(_d(3, 100, 150, kind="mae"), t_offset=40.0, t_published=41.0)]
    result = _from_true_offset(decisions, truth, match_truth(decisions, truth)["pairs"], fps=30.0)
    assert result["n"] == 2
    assert result["max"] == pytest.approx(183.333, abs=1e-3)
    # Candidate 2 ends two frames before the truth: 66.7 ms less than its own 150 ms.
    assert result["p50"] == pytest.approx((183.333 + 83.333) / 2, abs=1e-3)
