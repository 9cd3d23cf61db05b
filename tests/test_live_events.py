"""Decisions on the mmer.events LSL marker stream, and the README subscriber run as written."""

from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_live_helpers import MarkerCollector

from mmer.clock import local_clock
from mmer.live.events import Decision, EventOutlet
from mmer.live.latency import LatencyTracker, percentiles

ROOT = Path(__file__).resolve().parents[1]


def _decision(cid=0, stage="early", **kw):
    base = dict(candidate_id=cid, stage=stage, kind="me", onset=10, apex=14, offset=18, t_onset=100.0,
                t_apex=100.13, t_offset=100.27, label="surprise",
                probabilities={"negative": 0.1, "positive": 0.2, "surprise": 0.7}, modalities=["video", "depth"],
                missing=["physio"], model_id="hsta:test:0")
    base.update(kw)
    return Decision(**base)


def test_decision_json_round_trip_and_checks():
    d = _decision(latency_ms=12.5)
    back = Decision.from_json(d.to_json())
    assert back.to_json() == d.to_json()
    assert back.probabilities == d.probabilities and back.latency_ms == 12.5 and back.modalities == ("video", "depth")
    assert '"score":null' in _decision().to_json()  # NaN never reaches JSON
    assert math.isnan(Decision.from_json(_decision().to_json()).score)
    with pytest.raises(ValueError, match="stage"):
        _decision(stage="final")
    with pytest.raises(ValueError, match="kind"):
        _decision(kind="blink")
    with pytest.raises(ValueError, match="onset <= apex <= offset"):
        _decision(apex=30)


def test_outlet_publishes_json_with_source_timestamp_and_latency():
    outlet = EventOutlet(name="mmer.events.t1", source_id="h6-events-t1")
    collector = MarkerCollector("mmer.events.t1")
    collector.start()
    assert outlet.wait_for_consumers(5.0)
    since = local_clock() - 0.05
    sent = outlet.publish(_decision(0, "early"), since=since)
    outlet.publish(_decision(0, "late"))
    deadline = time.monotonic() + 5
    while len(collector.items) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    items = collector.stop()
    outlet.close()
    assert [Decision.from_json(text).stage for _, text in items] == ["early", "late"]
    first = Decision.from_json(items[0][1])
    assert abs(items[0][0] - 100.0) < 1e-6  # LSL timestamp = candidate onset (source time)
    assert 50.0 <= first.latency_ms < 5000.0 and first.latency_ms == pytest.approx(sent.latency_ms)
    assert first.t_published >= since


def test_latency_tracker_percentiles_and_stages():
    tracker = LatencyTracker()
    for i in range(20):
        e2e = tracker.record("early", {"capture": 0.0, "transport": 0.001, "spot": 0.05 + i * 0.001,
                                       "publish": 0.1 + i * 0.001})
        assert e2e == pytest.approx(100.0 + i)
    summary = tracker.summary()
    assert summary["early"]["n"] == 20
    assert summary["early"]["p50"] == pytest.approx(109.5)
    assert summary["early"]["stages"]["capture->transport"]["p50"] == pytest.approx(1.0)
    assert summary["late"]["n"] == 0 and summary["late"]["p50"] is None
    with pytest.raises(ValueError, match="unknown latency stage"):
        tracker.record("early", {"camera": 0.0, "publish": 1.0})
    with pytest.raises(ValueError, match="publish"):
        tracker.record("early", {"capture": 0.0})
    assert percentiles([float("nan")])["n"] == 0


def _doc_subscriber() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- subscriber -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its subscriber snippet"
    return match.group(1)


@pytest.mark.slow
def test_readme_subscriber_runs_as_written():
    """The late decision comes about 5.7 s after the early one in a live session: the snippet must
    still be listening then (a 5 s timeout printed the early decision and quit)."""
    code = _doc_subscriber()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    outlet = EventOutlet(name="mmer.events", source_id="h6-events-doc")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [printed.put(line) for line in proc.stdout], daemon=True).start()
    lines: list[str] = []
    try:
        assert outlet.wait_for_consumers(20.0), "the README subscriber never connected"
        outlet.publish(_decision(3, "early"), since=local_clock())
        lines.append(printed.get(timeout=10))
        time.sleep(5.7)  # the gap between a candidate's early and late decisions, as measured live
        outlet.publish(_decision(3, "late"), since=local_clock())
        lines.append(printed.get(timeout=10))
    finally:
        proc.kill()
        outlet.close()
    _, err = proc.communicate(timeout=10)
    assert lines[0].startswith("early #3 me 10-18: surprise"), (lines, err[-2000:])
    assert lines[1].startswith("late  #3"), (lines, err[-2000:])
