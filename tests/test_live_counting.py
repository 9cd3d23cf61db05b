"""What the live pipeline counts: frames lost at the high-water mark, dead sensor processes, stop state."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest
from test_live_pipeline import _config, checkpoint  # noqa: F401 - the fixture is used by name

from mmer.fusion import AlignmentBuffer
from mmer.live.pipeline import LivePipeline, _VideoReader
from mmer.streams import StreamType, video_spec
from mmer.transport import FramePublisher, VideoOutlet


@pytest.mark.xfail(strict=False, reason="in full-suite runs the reader sometimes still receives frame 39 "
                   "although it is held on its first frame: where ZeroMQ buffers it is not yet traced")
def test_frames_dropped_at_the_high_water_mark_are_counted_without_a_later_frame():
    name = f"t{uuid.uuid4().hex[:8]}.rgb"
    spec = video_spec(StreamType.VIDEO_RGB, width=640, height=480, fps=30, endpoint="", name=name)
    publisher = FramePublisher(hwm=1)
    outlet = VideoOutlet(spec, publisher=publisher)
    buffer = AlignmentBuffer(seconds=10)
    info = pylsl.resolve_byprop("source_id", outlet.spec.source_id, 1, 5.0)[0]
    pushed = threading.Event()
    reader = _VideoReader(outlet.spec, buffer, stall_timeout=5.0, hwm=1, info=info,
                          on_frame=lambda *_: pushed.wait(10.0))
    try:
        reader.start()
        assert outlet.wait_for_consumers(5.0)
        frame = np.zeros((480, 640, 3), np.uint8)
        for i in range(40):  # the reader is held on its first frame: 36 MB cannot fit the queues
            outlet.push(frame, i, time.monotonic())
        pushed.set()
        reader.stop(drain=True)
        reader.join(10.0)
        assert not reader.is_alive()
        assert reader.last_index < 39  # the last frames were dropped, and no later frame shows the gap
        assert reader.tail_lost == 39 - reader.last_index
        assert reader.received + reader.sub.gaps + reader.tail_lost == 40
    finally:
        outlet.close()
        publisher.close()
        buffer.close()


@pytest.mark.slow
def test_a_killed_sensor_process_is_an_error_of_the_run(checkpoint):  # noqa: F811
    pipeline = LivePipeline(_config(checkpoint, sensor_process=True))
    pipeline.start()
    host = pipeline.sensors[0].host
    killer = threading.Timer(1.5, os.kill, (host._process.pid, signal.SIGKILL))  # noqa: SLF001 - the child's pid
    killer.start()
    summary = pipeline.run(duration=4.0)
    killer.join()
    assert host.failure is not None and "killed by signal 9" in host.failure
    assert summary["errors"] == [host.failure]  # once, although two adapters ran in that process
