"""``mmer demo``: the whole product on synthetic sensors, with ground truth to compare against.

A synthetic RGB-D camera and a synthetic physiology amplifier (:mod:`mmer.sensors.synthetic`)
publish over real LSL and ZeroMQ; the live pipeline spots candidates, decides early (video) and
late (fused), publishes on ``mmer.events`` and optionally records. The report folder gets
``events.csv``, ``summary.json`` and ``timeline.png``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import numpy as np
import pylsl

from mmer.config import parse_config
from mmer.live.pipeline import LivePipeline
from mmer.live.report import format_table, write_report

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

#: ``lsl_api.cfg`` lines that keep liblsl's warnings and errors but not its start-up notes.
LSL_WARNINGS_ONLY = ("[log]", "level = -1")


class _SignalTap:
    """A plain LSL consumer of a few physiology streams, kept whole for the timeline plot."""

    def __init__(self, names: list[str], *, timeout: float = 5.0) -> None:
        self.names, self.timeout = names, timeout
        self.inlets: dict[str, pylsl.StreamInlet] = {}
        self.data: dict[str, tuple[list, list]] = {}
        self._stop_evt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmer-demo-tap", daemon=True)

    def start(self) -> None:
        for name in self.names:
            found = pylsl.resolve_byprop("name", name, 1, self.timeout)
            if found:
                self.inlets[name] = pylsl.StreamInlet(found[0], max_buflen=60)
        self.data = {name: ([], []) for name in self.inlets}
        self._thread.start()

    def stop(self) -> None:
        self._stop_evt.set()
        self._thread.join(timeout=5)
        for inlet in self.inlets.values():
            inlet.close_stream()

    def _run(self) -> None:
        offsets = dict.fromkeys(self.inlets, 0.0)
        while not self._stop_evt.is_set():
            for name, inlet in self.inlets.items():
                try:
                    samples, stamps = inlet.pull_chunk(timeout=0.0, max_samples=4096)
                    if stamps:
                        offsets[name] = inlet.time_correction(timeout=1.0)
                except Exception as err:  # noqa: BLE001 - pylsl's timeout/lost errors: the plot keeps the rest
                    log.warning("plot tap %s: %s", name, err)
                    continue
                if stamps:
                    self.data[name][0].extend(np.asarray(stamps) + offsets[name])
                    self.data[name][1].extend(np.asarray(samples)[:, 0])
            self._stop_evt.wait(0.1)

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name.split(".")[-1].upper(): (np.asarray(ts, float), np.asarray(xs, float))
                for name, (ts, xs) in self.data.items()}


def demo_config(*, seed: int, width: int, height: int, checkpoint: str, status: bool | str, fps: float = 30.0):
    """The session the demo runs: one synthetic RGB-D camera and a 4-channel amplifier sharing a lab.

    ``epoch: None`` and ``wait_for_consumers`` play the seed from its first frame once the pipeline
    listens, so the same seed gives the same session. The sensors run in a child process.
    """
    lab = {"seed": seed, "width": width, "height": height, "fps": fps, "epoch": None, "wait_for_consumers": 60.0}
    return parse_config({
        "name": "mmer-demo",
        "sensors": [
            {"adapter": "synthetic-camera", "options": {**lab, "depth": True}},
            {"adapter": "synthetic-physio", "options": lab},
        ],
        "sensor_process": True,
        "model": {"checkpoint": checkpoint},
        "outputs": {"status": status},
    }, source="demo")


def run_demo(
    *,
    seconds: float = 60.0,
    out: Path = Path("mmer-demo"),
    seed: int = 2024,
    width: int = 640,
    height: int = 480,
    checkpoint: str = "demo",
    record: bool = False,
    status: bool | str = "auto",
    session_id: str | None = None,
) -> tuple[dict, str]:
    """Run the demo session; return the summary (with spotting scores) and the truth table text."""
    from mmer.streams import configure_lsl

    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    configure_lsl(session_id or f"mmer-demo-{uuid.uuid4().hex[:8]}", extra_lines=LSL_WARNINGS_ONLY)
    config = demo_config(seed=seed, width=width, height=height, checkpoint=checkpoint, status=status)
    out = Path(out)
    tap = _SignalTap(["mmer.eda", "mmer.ecg"])
    pipeline = LivePipeline(config, consumers=[tap], record_dir=out / "recording" if record else None)
    pipeline.start()
    summary = pipeline.run(duration=seconds)
    truth = pipeline.truth()
    decisions = list(pipeline.decisions)
    rec = pipeline.recognizer
    full, matches = write_report(
        out, summary={**summary, "seconds": seconds, "seed": seed, "size": [width, height]},
        decisions=decisions, truth=truth, class_names=rec.class_names, labels=rec.meta.get("labels"),
        t0=pipeline.first_frame_t or pipeline.started_at, fps=pipeline.rgb_spec.rate or 30.0,
        signals=tap.arrays(), score=pipeline.spot_signal,
    )
    return full, format_table(decisions, truth, matches, labels=rec.meta.get("labels"))
