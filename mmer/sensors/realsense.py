"""Intel RealSense RGB-D adapter (optional extra ``pyrealsense2``).

Publishes two video streams that share one ZeroMQ publisher: ``VideoRGB`` (BGR uint8) and
``VideoDepth`` (uint16 millimetres, aligned to the colour camera with ``rs.align`` so that pixel
(u, v) means the same point in both). The colour intrinsics (``fx``, ``fy``, ``ppx``, ``ppy``,
distortion model and coefficients) and the depth scale go into the LSL metadata under
``desc/intrinsics``, so a recording can be back-projected to 3-D later.

Timestamps: RealSense frames carry a host-synchronised ``global_time`` (milliseconds on the
system clock); it is mapped onto the LSL clock with :func:`mmer.clock.wall_to_lsl_offset`, measured
again once a second so that NTP slewing is followed, which keeps the device's own capture time
instead of the arrival time. Frame-number gaps count as dropped frames.
"""

from __future__ import annotations

import numpy as np

from mmer.clock import local_clock, wall_to_lsl_offset
from mmer.sensors.base import Sensor, SensorError
from mmer.streams import StreamSpec, StreamType, video_spec
from mmer.transport import DEFAULT_ENDPOINT, FramePublisher, VideoOutlet

__all__ = ["RealSenseSensor"]

_INSTALL_HINT = "install the optional extra: pip install 'mmer[realsense]' (provides pyrealsense2)"


def _import_rs():
    try:
        import pyrealsense2 as rs
    except ImportError as err:
        raise SensorError(f"realsense: pyrealsense2 is not installed; {_INSTALL_HINT}") from err
    return rs


class RealSenseSensor(Sensor):
    """Intel RealSense colour + aligned depth.

    Parameters
    ----------
    serial : str, optional
        Device serial number; the first device found by default.
    width, height, fps : int
        Stream format for both colour and depth.
    align : bool
        Align depth to the colour camera (recommended; the streams then share intrinsics).
    name_prefix : str
        Streams are ``<prefix>.rgb`` and ``<prefix>.depth``.
    endpoint : str
        ZeroMQ bind address for the pixels of both streams.
    """

    name = "realsense"
    #: Optional modules this adapter imports when it starts.
    requires: tuple[str, ...] = ("pyrealsense2",)

    def __init__(
        self,
        *,
        serial: str | None = None,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        align: bool = True,
        name_prefix: str = "mmer",
        endpoint: str = DEFAULT_ENDPOINT,
    ) -> None:
        super().__init__()
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"realsense: width, height and fps must be > 0, got {width}x{height}@{fps}")
        self.serial = serial
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.align = align
        self.prefix = name_prefix
        self.endpoint = endpoint
        self._specs: list[StreamSpec] = []
        self._pipeline = None
        self._aligner = None
        self._publisher: FramePublisher | None = None
        self._rgb: VideoOutlet | None = None
        self._depth: VideoOutlet | None = None
        self._depth_to_mm = 1.0
        self._wall_offset = 0.0
        self._offset_measured_at = float("-inf")

    @property
    def specs(self) -> list[StreamSpec]:
        """``VideoRGB`` and ``VideoDepth`` specs (available after :meth:`start`)."""
        return list(self._specs)

    def _open(self) -> None:
        rs = _import_rs()
        devices = list(rs.context().query_devices())
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        if not devices:
            raise SensorError("realsense: no RealSense device is connected")
        if self.serial is not None and self.serial not in serials:
            raise SensorError(f"realsense: device {self.serial!r} not found; connected: {serials}")
        serial = self.serial or serials[0]
        device = devices[serials.index(serial)]
        model = device.get_info(rs.camera_info.name)
        cfg = rs.config()
        cfg.enable_device(serial)
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.bgr8, self.fps)
        cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(cfg)
        except RuntimeError as err:
            raise SensorError(
                f"realsense: cannot start {model} {serial} at {self.width}x{self.height}@{self.fps}: {err}"
            ) from err
        scale = profile.get_device().first_depth_sensor().get_depth_scale()  # metres per unit
        self._depth_to_mm = scale * 1000.0
        intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        meta = {
            "intrinsics/fx": f"{intr.fx:.6f}",
            "intrinsics/fy": f"{intr.fy:.6f}",
            "intrinsics/ppx": f"{intr.ppx:.6f}",
            "intrinsics/ppy": f"{intr.ppy:.6f}",
            "intrinsics/model": str(intr.model),
            "intrinsics/coeffs": " ".join(f"{c:.8f}" for c in intr.coeffs),
            "intrinsics/depth_scale_m": f"{scale:.8f}",
            "intrinsics/depth_aligned_to_color": str(self.align).lower(),
            "video/serial": serial,
        }
        self._publisher = FramePublisher(endpoint=self.endpoint)
        common = dict(width=self.width, height=self.height, fps=self.fps, endpoint=self._publisher.endpoint,
                      manufacturer="Intel", model=model, extra=meta)
        self._rgb = VideoOutlet(
            video_spec(StreamType.VIDEO_RGB, name=f"{self.prefix}.rgb", source_id=f"realsense-{serial}-rgb", **common),
            publisher=self._publisher,
        )
        self._depth = VideoOutlet(
            video_spec(StreamType.VIDEO_DEPTH, name=f"{self.prefix}.depth", source_id=f"realsense-{serial}-depth",
                       **common),
            publisher=self._publisher,
        )
        self._specs = [self._rgb.spec, self._depth.spec]
        self._aligner = rs.align(rs.stream.color) if self.align else None
        self._pipeline = pipeline
        self._rs = rs
        self.log.info("realsense %s %s started (%dx%d@%d, depth scale %.6f m)", model, serial, self.width,
                      self.height, self.fps, scale)

    def _lsl_time(self, frame) -> float:
        """Map a frame's device timestamp to the LSL clock (arrival time if the domain is unknown)."""
        now_lsl = local_clock()
        if frame.get_frame_timestamp_domain() not in (
            self._rs.timestamp_domain.global_time,
            self._rs.timestamp_domain.system_time,
        ):
            return now_lsl
        if now_lsl - self._offset_measured_at > 1.0:
            self._wall_offset, self._offset_measured_at = wall_to_lsl_offset(), now_lsl
        return frame.get_timestamp() / 1000.0 + self._wall_offset

    def _run(self) -> None:
        last_number: int | None = None
        while not self._stop.is_set():
            try:
                frames = self._pipeline.wait_for_frames(1000)
            except RuntimeError as err:
                self.health.errors += 1
                self.health.last_error = str(err)
                self.log.warning("realsense: no frames within 1 s (%s)", err)
                continue
            if self._aligner is not None:
                frames = self._aligner.process(frames)
            color, depth = frames.get_color_frame(), frames.get_depth_frame()
            if not color or not depth:
                self.health.frames_dropped += 1
                continue
            number = int(color.get_frame_number())
            if last_number is not None and number > last_number + 1:
                self.health.frames_dropped += number - last_number - 1
            last_number = number
            t = self._lsl_time(color)
            bgr = np.asanyarray(color.get_data()).copy()
            z = np.asanyarray(depth.get_data())
            if abs(self._depth_to_mm - 1.0) < 1e-6:
                depth_mm = z.copy()
            else:
                depth_mm = np.round(z * self._depth_to_mm).astype(np.uint16)
            self._rgb.push(bgr, number, t)
            self._depth.push(depth_mm, number, t)
            self.health.frames += 1

    def _close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None
        for outlet in (self._rgb, self._depth):
            if outlet is not None:
                outlet.close()
        if self._publisher is not None:
            self._publisher.close()
        self._rgb = self._depth = self._publisher = None
