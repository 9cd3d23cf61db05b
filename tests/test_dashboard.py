"""The dashboard in a real browser: Debian's chromium driven by Playwright, real LSL and ZeroMQ streams.

The dashboard runs as ``mmer dashboard`` (or ``mmer live --dashboard``) in a process of its own,
as in a lab; each test's streams have a unique source id and the dashboard watches only those.
Screenshots are kept in pytest's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest

from mmer.clock import local_clock
from mmer.dashboard.server import parse_listen
from mmer.live.events import Decision, EventOutlet

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHYSIO = ("eda", "ecg", "ppg", "rsp")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make install adds it)")


class _Server:
    """A dashboard (or live) process whose stderr is read all along; ``url`` is the printed one."""

    def __init__(self, cmd: list[str], timeout: float = 120.0) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.out = ""
        self._got = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self._stdout = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout.start()
        assert self._got.wait(timeout), f"no dashboard line; stderr: {''.join(self.lines)[-3000:]}"
        line = next(x for x in self.lines if x.startswith("dashboard: "))
        self.url = line.split(" ", 1)[1].strip()
        self.base = self.url.split("/?")[0]
        self.token = self.url.split("token=")[1]

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("dashboard: "):
                self._got.set()

    def _read_stdout(self) -> None:
        self.out = self.proc.stdout.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def lab_streams(faces_dir):
    """A synthetic camera (RGB, depth, truth) and amplifier (EDA, ECG, PPG, RSP) under a unique prefix."""
    from mmer.sensors.synthetic import SyntheticCamera, SyntheticPhysio
    from mmer.synth import SynthConfig, SyntheticLab

    prefix = f"dash{uuid.uuid4().hex[:6]}"
    lab = SyntheticLab(face=faces_dir / "0-f1-su-ph.jpg", seed=4, config=SynthConfig(me_per_min=30, mae_per_min=10),
                       size=(320, 240), segment=4.0, epoch=None)
    cam = SyntheticCamera(lab=lab, width=320, height=240, source_id=prefix, prefix=prefix)
    phys = SyntheticPhysio(lab=lab, width=320, height=240, source_id=prefix, prefix=prefix)
    cam.start()
    phys.start()
    yield prefix
    cam.stop()
    phys.stop()


@pytest.fixture(scope="module")
def dashboard(lab_streams):
    server = _Server([sys.executable, "-m", "mmer", "dashboard", "--listen", "127.0.0.1:0", "--stall-after", "1",
                      "--streams", f"starts-with(source_id,'{lab_streams}')", "--exit-with", str(os.getpid())])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1300, "height": 1000})
        yield context
        context.close()


@pytest.fixture(scope="module")
def page(browser, dashboard):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(dashboard.url)
    page.wait_for_function("() => window.mmer && window.mmer.hello >= 1", timeout=60_000)
    yield page
    assert errors == [], errors
    page.close()


_STATE_JS = "n => { const c = document.querySelector(`tr[data-stream=\"${n}\"] td.state`); return c ? c.textContent : null; }"


def _row_state(page, name: str) -> str | None:
    return page.evaluate(_STATE_JS, name)


def _wait_state(page, name: str, state: str, timeout: float = 30.0) -> None:
    page.wait_for_function(f"([n, s]) => ({_STATE_JS})(n) === s", arg=[name, state], timeout=timeout * 1000)


class _Pusher(threading.Thread):
    """A 50 Hz one-channel stream pushed from the test; remembers when each sample was published."""

    def __init__(self, name: str, source_id: str, kind: str = "EDA") -> None:
        super().__init__(daemon=True)
        self.name, self.source_id, self.kind = name, source_id, kind
        self.outlet = self._outlet()
        self.pushed: list[tuple[float, float]] = []  # (LSL timestamp, wall-clock ms)
        self.paused = threading.Event()
        self.done = threading.Event()

    def _outlet(self) -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(pylsl.StreamInfo(self.name, self.kind, 1, 50.0, pylsl.cf_float32, self.source_id))

    def run(self) -> None:
        k = 0
        while not self.done.wait(0.02):
            if self.paused.is_set() or self.outlet is None:
                continue
            k += 1
            ts = local_clock()
            self.outlet.push_sample([float(np.sin(k / 8.0))], ts)
            self.pushed.append((ts, time.time() * 1000.0))

    def vanish(self) -> None:
        outlet, self.outlet = self.outlet, None
        del outlet

    def come_back(self) -> None:
        self.outlet = self._outlet()


@pytest.mark.slow
def test_page_shows_every_stream_its_face_and_traces(page, lab_streams, tmp_path_factory):
    names = [f"{lab_streams}.{s}" for s in ("rgb", "depth", "truth", *PHYSIO)]
    for name in names:
        _wait_state(page, name, "ok", timeout=60)
    page.wait_for_function("() => document.getElementById('face-info').textContent.startsWith('face: found')",
                           timeout=60_000)
    page.wait_for_function("n => n.every(k => (window.mmer.draws[k] || 0) > 5)",
                           arg=[f"{lab_streams}.{s}" for s in PHYSIO], timeout=30_000)
    rows = page.eval_on_selector_all("#streams tbody tr", "rs => rs.map(r => r.dataset.stream)")
    assert sorted(rows) == sorted(names)  # the table names each stream by its LSL name, and only those
    rgb = page.eval_on_selector(f'tr[data-stream="{lab_streams}.rgb"]', "r => [...r.cells].map(c => c.textContent)")
    assert rgb[2] == "30" and 20.0 < float(rgb[3]) < 40.0  # nominal and effective rate
    page.wait_for_timeout(3000)  # let neurokit2 mark beats on a few seconds of ECG
    shot = tmp_path_factory.mktemp("screenshots") / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_traces_update_at_10hz_and_a_sample_reaches_its_pixel_within_250ms(page, lab_streams, dashboard):
    ecg = f"{lab_streams}.ecg"
    count = "k => [window.mmer.draws[k] || 0, window.mmer.ticks, performance.now()]"
    draws0, ticks0, t0 = page.evaluate(count, ecg)
    page.wait_for_timeout(3000)
    draws1, ticks1, t1 = page.evaluate(count, ecg)
    rate, ticks = (draws1 - draws0) / (t1 - t0) * 1000.0, (ticks1 - ticks0) / (t1 - t0) * 1000.0
    assert rate >= 10.0, f"the ECG trace was redrawn {rate:.1f} times a second ({ticks:.1f} feed messages/s)"

    probe = _Pusher(f"{lab_streams}.probe", f"{lab_streams}-probe")
    probe.start()
    try:
        _wait_state(page, probe.name, "ok")
        page.wait_for_timeout(2000)
        samples = list(probe.pushed[-60:-10])  # published at least 200 ms before the question
        delays = []
        for ts, wall_ms in samples:
            drawn = page.evaluate("([n, t]) => window.mmerDrawnAt(n, t)", [probe.name, ts])
            assert drawn is not None, "a published sample never reached the page"
            delays.append(drawn - wall_ms)
    finally:
        probe.done.set()
        probe.join(timeout=5)
    p50, p95 = np.percentile(delays, [50, 95])
    print(f"\nsample -> pixel in the browser: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(delays):.0f} ms "
          f"over {len(delays)} samples; ECG redraws {rate:.1f}/s, feed {ticks:.1f} messages/s")
    assert min(delays) > 0  # drawn after it was published: the clocks agree
    assert p95 <= 250.0, f"sample -> pixel p95 {p95:.0f} ms"


@pytest.mark.slow
def test_a_published_decision_appears_with_its_probabilities(page, lab_streams):
    outlet = EventOutlet(name=f"{lab_streams}.events", source_id=f"{lab_streams}-events")
    try:
        _wait_state(page, f"{lab_streams}.events", "ok")
        now = local_clock()
        decision = Decision(candidate_id=4242, stage="early", kind="me", onset=10, apex=12, offset=15,
                            t_onset=now - 1.0, t_apex=now - 0.9, t_offset=now - 0.8, label="surprise",
                            probabilities={"surprise": 0.7, "negative": 0.2, "positive": 0.1},
                            modalities=("rgb",), model_id="test")
        outlet.publish(decision, since=now - 0.8)
        page.wait_for_selector('#decisions tr[data-candidate="4242"]', timeout=20_000)
        cells = page.eval_on_selector('#decisions tr[data-candidate="4242"]', "r => [...r.cells].map(c => c.textContent)")
    finally:
        outlet.close()
    assert cells[2:5] == ["early", "me", "surprise"]
    assert "0.70" in cells[5] and "0.20" in cells[5]


@pytest.mark.slow
def test_a_stream_that_stalls_vanishes_and_returns(page, lab_streams):
    pusher = _Pusher(f"{lab_streams}.flaky", f"{lab_streams}-flaky", kind="RSP")
    pusher.start()
    try:
        _wait_state(page, pusher.name, "ok")
        pusher.paused.set()
        _wait_state(page, pusher.name, "stalled")
        pusher.paused.clear()
        _wait_state(page, pusher.name, "ok")
        pusher.vanish()
        _wait_state(page, pusher.name, "gone")
        pusher.come_back()
        _wait_state(page, pusher.name, "ok")
        stalls = page.eval_on_selector(f'tr[data-stream="{pusher.name}"]', "r => Number(r.cells[7].textContent)")
    finally:
        pusher.done.set()
        pusher.join(timeout=5)
    assert stalls == 2  # the pause and the vanishing
    assert _row_state(page, f"{lab_streams}.ecg") == "ok"  # the others never noticed


def test_the_token_is_required_and_nothing_mutates(dashboard):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    base, token = dashboard.base, dashboard.token
    assert _status(f"{base}/?token={token}") == 200
    assert _status(f"{base}/") == 401
    assert _status(f"{base}/?token=wrong{token}") == 403
    assert _status(f"{base}/static/app.js") == 401
    assert _status(f"{base}/api/state?token=x") == 403
    assert _status(f"{base}/static/uPlot.iife.min.js?token={token}") == 200
    assert _status(f"{base}/?token={token}", method="POST") == 405
    assert _status(f"{base}/api/state?token={token}", method="DELETE") == 405
    for query in ("", "?token=nope"):
        with pytest.raises(InvalidStatus) as err, connect(f"{base.replace('http', 'ws')}/ws{query}", open_timeout=10):
            pass
        assert err.value.response.status_code == 403
    with connect(f"{base.replace('http', 'ws')}/ws?token={token}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    with urllib.request.urlopen(f"{base}/api/state?token={token}", timeout=10) as resp:
        assert json.loads(resp.read())["refused"] >= 6  # each refusal is counted


def test_score_tap_pushes_each_new_score_once_with_its_capture_time():
    from collections import deque

    from mmer.dashboard.tap import ScoreTap

    source = f"tap-{uuid.uuid4().hex[:8]}"
    tap = ScoreTap(source, period=0.0)
    found = pylsl.resolve_byprop("source_id", source, 1, 10.0)
    assert found, "the score stream is not on LSL"
    inlet = pylsl.StreamInlet(found[0], max_buflen=10)
    inlet.open_stream(timeout=10)
    signal = {"me": deque(), "mae": deque(), "other": deque([(0, 0.0, 9.0)])}
    for i in range(5):
        signal["me"].append((i, 100.0 + i / 30, float(i)))
        if i >= 2:
            signal["mae"].append((i - 2, 100.0 + (i - 2) / 30, 10.0 + i))
        tap(signal, 0.5)
        tap(signal, 0.5)  # nothing new: nothing pushed
    rows, stamps = [], []
    deadline = time.monotonic() + 10
    while len(rows) < 8 and time.monotonic() < deadline:  # read while the outlet lives
        got, ts = inlet.pull_chunk(timeout=0.5)
        rows += got
        stamps += ts
    inlet.close_stream()
    tap.close()
    assert [(int(r[0]), int(r[1])) for r in rows] == [(0, 0), (1, 0), (2, 0), (0, 1), (3, 0), (1, 1), (4, 0), (2, 1)]
    assert stamps[:2] == pytest.approx([100.5, 100.5 + 1 / 30], abs=1e-6)  # capture time + clock offset
    assert [r[2] for r in rows if r[1] == 1] == [12.0, 13.0, 14.0]


def test_listen_addresses_and_bad_values():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("host:port", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="port|HOST:PORT"):
            parse_listen(bad)
    proc = subprocess.run([sys.executable, "-m", "mmer", "dashboard", "--listen", "nowhere:http"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "mmer dashboard: error: --dashboard/--listen must be HOST:PORT" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "mmer", "live", "--config", "missing.yaml", "--dashboard", "x:y"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "mmer live: error: --dashboard/--listen must be HOST:PORT" in proc.stderr


def test_another_interface_needs_an_explicit_host_and_warns():
    server = _Server([sys.executable, "-m", "mmer", "dashboard", "--listen", "0.0.0.0:0", "--streams", "name='none'",
                      "--no-face", "--exit-with", str(os.getpid())])
    try:
        said = [x for x in server.lines if x.startswith(("mmer dashboard: warning", "dashboard: "))]
        assert said[0].startswith("mmer dashboard: warning: listening on 0.0.0.0, reachable from other machines")
        assert said[1].startswith("dashboard: http://0.0.0.0:")
        port = server.base.rsplit(":", 1)[1]
        assert _status(f"http://127.0.0.1:{port}/?token={server.token}") == 200
    finally:
        server.stop()


@pytest.mark.slow
def test_live_dashboard_survives_bad_clients_and_shows_the_sessions_decisions(browser, tmp_path):
    """``mmer live --dashboard``: a second tab, a tab closed mid-stream, a reader that stops reading and
    wrong tokens change nothing in the run; the page shows the session's streams, score and decisions."""
    from websockets.sync.client import connect

    opts = "{seed: 36, width: 320, height: 240, epoch: null, wait_for_consumers: 60}"
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"session_id: dash-live-{uuid.uuid4().hex[:8]}\nsensors:\n"
                   f"  - adapter: synthetic-camera\n    options: {opts}\n"
                   f"  - adapter: synthetic-physio\n    options: {opts}\n"
                   "sensor_process: true\nmodel: {checkpoint: demo}\noutputs: {status: false}\n", encoding="utf-8")
    live = _Server([sys.executable, "-m", "mmer", "live", "--config", str(cfg), "--seconds", "25", "--json",
                    "--dashboard", "127.0.0.1:0", "--record", str(tmp_path / "rec")], timeout=240)
    try:
        first = browser.new_page()
        first.goto(live.url)
        first.wait_for_function("() => window.mmer && window.mmer.hello === 1", timeout=60_000)
        second = browser.new_page()
        second.goto(live.url)
        second.wait_for_function("() => window.mmer && window.mmer.ticks > 5", timeout=60_000)
        second.close()  # a tab that goes away mid-stream
        with connect(f"{live.base.replace('http', 'ws')}/ws?token={live.token}", open_timeout=10):
            # A reader that never reads, then goes away.
            for _ in range(3):
                assert _status(f"{live.base}/?token=x{live.token}") == 403
            _wait_state(first, "mmer.rgb", "ok", timeout=60)
            first.wait_for_function("() => (window.mmer.draws.score || 0) > 20", timeout=60_000)
            first.wait_for_selector("#decisions tbody tr", timeout=60_000)
            recording = first.text_content("#recording")
            first.wait_for_timeout(2000)  # a few more seconds of traces and beats for the picture
            first.screenshot(path=str(tmp_path / "dashboard-live.png"), full_page=True)
        live.proc.wait(timeout=240)
        assert first.evaluate("() => window.mmer.hello") == 1  # never cut off nor reconnected
        first.close()
    finally:
        live.stop()
    assert live.proc.returncode == 0, "".join(live.lines)[-3000:]
    live._stdout.join(timeout=10)
    summary = json.loads(live.out.strip().splitlines()[-1])
    # Bad clients cost the run nothing it reports: no error, no physiology lost, decisions made. Frames
    # the spotter skips depend on the machine's load (on a busy 2-core box, with or without a
    # dashboard); bench live --dashboard compares those.
    assert summary["errors"] == [] and summary["events"] >= 1 and summary["physio_lost"] == 0
    print(f"\nlive --dashboard: {summary['events']} decisions, frames dropped {summary['frames_dropped_pct']:.1f} % "
          f"(spotter backlog {summary['spot_dropped']}, source {summary['frames_dropped_by_source']})")
    assert sum(x.startswith("dashboard: http://127.0.0.1:") for x in live.lines) == 1
    assert recording.startswith("recording ") and " MB" in recording
    with pytest.raises(urllib.error.URLError):  # the dashboard ended with the session
        urllib.request.urlopen(f"{live.base}/?token={live.token}", timeout=5)
    assert re.search(r"\d+ candidates, \d+ decisions", "".join(live.lines))
