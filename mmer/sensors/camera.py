"""Camera adapter: OpenCV ``VideoCapture`` on a device index, a video file or a URL.

Live devices are stamped on the LSL clock the moment ``grab()`` returns (the closest a generic
UVC/RTSP source lets us get to exposure time); gaps longer than 1.5 frame periods are counted as
dropped frames. Video files are paced at their own frame rate (or as fast as possible with
``realtime=False``), keep the file's frame numbers as indices, and stop at the end unless
``loop=True``. Pixels go out on ZeroMQ and timing on LSL (:class:`mmer.transport.VideoOutlet`).
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from mmer.clock import local_clock, sleep_until
from mmer.sensors.base import Sensor, SensorError
from mmer.streams import StreamSpec, StreamType, video_spec
from mmer.transport import DEFAULT_ENDPOINT, FramePublisher, VideoOutlet

__all__ = ["CameraSensor"]

_REOPEN_AFTER = 30  # consecutive failed grabs before a live device is reopened


def _parse_source(source: int | str) -> int | str:
    if isinstance(source, str) and source.strip().lstrip("-").isdigit():
        return int(source)
    return source


class CameraSensor(Sensor):
    """RGB camera publishing ``VideoRGB`` (pixels on ZeroMQ, ``(frame_index, capture_time)`` on LSL).

    Parameters
    ----------
    source : int or str
        Device index (``0``), video file path, or stream URL (``rtsp://...``).
    name, source_id : str, optional
        LSL name and source id (defaults ``mmer.rgb`` and ``mmer-rgb-<source>``).
    width, height, fps : int/float, optional
        Requested capture format for devices (files keep theirs).
    realtime : bool
        Pace files at their frame rate; ``False`` pushes them as fast as they decode.
    loop : bool
        Restart a file at its end instead of stopping.
    endpoint : str
        ZeroMQ bind address for the pixels (ignored when ``publisher`` is given).
    publisher : FramePublisher, optional
        Share a publisher with other video streams.
    wait_for_consumers : float
        For files: wait up to this many seconds for an LSL inlet and a ZeroMQ subscriber before
        the first frame, so that a short clip is not over before anyone listens.
    """

    name = "camera"

    def __init__(
        self,
        *,
        source: int | str = 0,
        name: str = "mmer.rgb",
        source_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool = True,
        loop: bool = False,
        endpoint: str = DEFAULT_ENDPOINT,
        publisher: FramePublisher | None = None,
        wait_for_consumers: float = 0.0,
    ) -> None:
        super().__init__()
        self.source = _parse_source(source)
        self.stream_name = name
        label = os.path.basename(self.source) if isinstance(self.source, str) else str(self.source)
        self.source_id = source_id or f"mmer-rgb-{label}"
        self.req_width, self.req_height, self.req_fps = width, height, fps
        self.realtime = realtime
        self.loop = loop
        self.endpoint = endpoint
        self._publisher = publisher
        self.wait_for_consumers = float(wait_for_consumers)
        self._cap: cv2.VideoCapture | None = None
        self._outlet: VideoOutlet | None = None
        self._spec: StreamSpec | None = None
        self.is_file = isinstance(self.source, str) and "://" not in self.source

    @property
    def specs(self) -> list[StreamSpec]:
        """The ``VideoRGB`` spec (available after :meth:`start`)."""
        return [self._spec] if self._spec is not None else []

    def _open(self) -> None:
        if self.is_file:
            if not os.path.isfile(self.source):
                raise SensorError(f"camera: video file not found: {self.source}")
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            kind = "video file" if self.is_file else "device" if isinstance(self.source, int) else "URL"
            raise SensorError(f"camera: cannot open {kind} {self.source!r} with OpenCV")
        if not self.is_file:
            if self.req_width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.req_width)
            if self.req_height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.req_height)
            if self.req_fps:
                cap.set(cv2.CAP_PROP_FPS, self.req_fps)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or float(self.req_fps or 30.0)
        if width <= 0 or height <= 0:
            cap.release()
            raise SensorError(f"camera: {self.source!r} reports no frame size; is it a video?")
        self.fps = fps
        spec = video_spec(
            StreamType.VIDEO_RGB,
            width=width,
            height=height,
            fps=fps,
            endpoint=self.endpoint,
            name=self.stream_name,
            source_id=self.source_id,
            model="OpenCV VideoCapture",
            extra={"video/source": str(self.source), "video/backend": cap.getBackendName()},
        )
        self._outlet = VideoOutlet(spec, publisher=self._publisher)
        self._spec = self._outlet.spec
        self._cap = cap
        self.log.info("camera %s open: %dx%d @ %.2f fps, pixels on %s", self.source, width, height, fps,
                      self._spec.extra["zmq/endpoint"])

    def _frame(self) -> np.ndarray | None:
        ok, frame = self._cap.retrieve()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return frame

    def _run(self) -> None:
        if self.is_file:
            self._run_file()
        else:
            self._run_device()

    def _run_file(self) -> None:
        if self.wait_for_consumers > 0 and not self._outlet.wait_for_consumers(self.wait_for_consumers):
            self.log.warning("camera %s: nobody listening after %.1f s; playing anyway", self.source,
                             self.wait_for_consumers)
        period = 1.0 / self.fps
        t_start = local_clock()
        shown = 0
        while not self._stop.is_set():
            index = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            if not self._cap.grab():
                if self.loop and shown:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                self.log.info("camera %s: end of file after %d frames", self.source, shown)
                return
            t = t_start + shown * period
            if self.realtime:
                sleep_until(t)
            else:
                t = local_clock()
            frame = self._frame()
            shown += 1
            if frame is None:
                self.health.errors += 1
                self.health.frames_dropped += 1
                self.health.last_error = f"frame {index} could not be decoded"
                self.log.warning("camera %s: frame %d could not be decoded; counted as dropped", self.source, index)
                continue
            self._outlet.push(frame, index, t)
            self.health.frames += 1

    def _run_device(self) -> None:
        period = 1.0 / self.fps
        index = 0
        last_t: float | None = None
        failures = 0
        while not self._stop.is_set():
            if not self._cap.grab():
                failures += 1
                if failures >= _REOPEN_AFTER:
                    self._reopen()
                    failures = 0
                else:
                    time.sleep(period / 2)
                continue
            t = local_clock()
            failures = 0
            frame = self._frame()
            if frame is None:
                self.health.errors += 1
                self.health.frames_dropped += 1
                continue
            if last_t is not None and t - last_t > 1.5 * period:
                missed = int(round((t - last_t) / period)) - 1
                self.health.frames_dropped += missed
                index += missed  # indices keep counting camera periods, so gaps stay visible
            last_t = t
            self._outlet.push(frame, index, t)
            self.health.frames += 1
            index += 1

    def _reopen(self) -> None:
        self.health.errors += 1
        self.health.reconnects += 1
        self.health.last_error = "device stopped delivering frames"
        self.log.warning("camera %s stopped delivering frames; reopening", self.source)
        self._cap.release()
        self._stop.wait(1.0)
        self._cap = cv2.VideoCapture(self.source)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._outlet is not None:
            self._outlet.close()
            self._outlet = None
