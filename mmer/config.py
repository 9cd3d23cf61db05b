"""Validated session configuration for ``mmer live``, ``mmer record`` and ``mmer demo``.

A session YAML names where data comes from (sensor adapters or a replayed dataset), which
streams the pipeline consumes, buffer lengths and stall timeouts, spotter settings, the model
checkpoint, the event outlet and the recording folder. Every section is a pydantic model with
``extra="forbid"``, so a typo is an error that names the field, and a bad value is an error that
names the allowed values; nothing is guessed.

:func:`example_config` returns the commented example that ``mmer live --example-config`` prints
(``examples/session.yaml`` is the same text).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmer.errors import MmerError

__all__ = [
    "SessionConfig",
    "SensorConfig",
    "ReplayConfig",
    "InputsConfig",
    "BufferConfig",
    "ModelConfig",
    "OutputsConfig",
    "RecordingConfig",
    "ConfigError",
    "load_config",
    "parse_config",
    "example_config",
]

PHYSIO_NAMES = ("EDA", "ECG", "PPG", "RSP")


class ConfigError(MmerError, ValueError):
    """A session file that cannot be used; the message names the file, field and allowed values."""


class _Section(BaseModel):
    # NaN passes no comparison, so "gt=0" would let it through; infinity is no duration or size.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _finite(value: Any, where: str = "") -> Any:
    """Refuse NaN and infinity anywhere inside free-form options (YAML spells them .nan and .inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'value'} is {value}; only finite numbers are allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _finite(item, f"{where}[{i}]")
    return value


class SensorConfig(_Section):
    """One sensor adapter from :mod:`mmer.sensors` and its keyword options."""

    adapter: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    required: bool = True

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, value: str) -> str:
        from mmer.sensors import ADAPTERS

        if value not in ADAPTERS:
            raise ValueError(f"unknown adapter {value!r}; allowed: {', '.join(sorted(ADAPTERS))}")
        return value

    @model_validator(mode="after")
    def _known_options(self) -> SensorConfig:
        import inspect

        from mmer.sensors import SensorError, get_adapter

        _finite(self.options, "options")
        try:
            params = inspect.signature(get_adapter(self.adapter).__init__).parameters
        except SensorError:
            return self  # optional extra not installed: reported when the session starts
        allowed = sorted(p for p in params if p != "self")
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(f"adapter {self.adapter!r} has no option(s) {unknown}; allowed: {', '.join(allowed)}")
        return self


class ReplayConfig(_Section):
    """A recorded dataset played as if it were live hardware (``mmer replay``)."""

    kind: Literal["casme3", "4dme", "xdf"]
    path: Path
    part: Literal["A", "C"] | None = None
    subjects: list[str] | None = None
    videos: list[str] | None = None
    speed: float = Field(default=1.0, gt=0)
    loop: bool = False


class InputsConfig(_Section):
    """The LSL streams the pipeline consumes, by stream name, resolved inside the session."""

    rgb: str = "mmer.rgb"
    depth: str | None = "mmer.depth"
    physio: list[str] = Field(default_factory=lambda: ["mmer.eda", "mmer.ecg", "mmer.ppg", "mmer.rsp"])
    truth: str | None = "mmer.truth"
    resolve_timeout_s: float = Field(default=10.0, gt=0)
    zmq_hwm: int = Field(default=256, ge=1)
    max_backlog_s: float | None = Field(default=2.0, gt=0)


class BufferConfig(_Section):
    """Alignment buffer: history kept, stall timeout and the late decision's physiology window."""

    seconds: float = Field(default=30.0, gt=0)
    stall_timeout_s: float = Field(default=2.0, gt=0)
    physio_window_s: tuple[float, float] = (-2.0, 6.0)

    @field_validator("physio_window_s")
    @classmethod
    def _window_order(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"start must be before end, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _fits_history(self) -> BufferConfig:
        span = self.physio_window_s[1] - self.physio_window_s[0]
        if span + self.stall_timeout_s >= self.seconds:
            raise ValueError(
                f"seconds ({self.seconds}) must exceed the physio window ({span} s) plus the stall "
                f"timeout ({self.stall_timeout_s} s), or late decisions would read evicted data"
            )
        return self


class ModelConfig(_Section):
    """The recognition checkpoint: ``demo`` (shipped in the package) or a path."""

    checkpoint: str = "demo"
    threads: int = Field(default=1, ge=1, le=64)


class OutputsConfig(_Section):
    """Where decisions go: the LSL marker stream, an optional CSV, and the terminal view."""

    events_stream: str = "mmer.events"
    events_source_id: str | None = None
    events_csv: Path | None = None
    status: Literal["auto"] | bool = "auto"


class RecordingConfig(_Section):
    """The recording folder: XDF via LabRecorder plus video sidecars and ``session.json``."""

    dir: Path | None = None
    rgb_codec: Literal["mp4v", "mjpeg", "ffv1"] = "mp4v"
    rgb_quality: int = Field(default=90, ge=1, le=100)
    depth_png_compression: int = Field(default=1, ge=0, le=9)
    min_free_mb: float = Field(default=200.0, ge=0)
    overwrite: bool = False


class SessionConfig(_Section):
    """A whole live session (see ``mmer live --example-config``)."""

    session_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    name: str = "mmer-session"
    duration_s: float | None = Field(default=None, gt=0)
    sensors: list[SensorConfig] = Field(default_factory=list)
    sensor_process: bool = False
    replay: ReplayConfig | None = None
    inputs: InputsConfig = Field(default_factory=InputsConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    spotter: dict[str, Any] = Field(default_factory=dict)
    model: ModelConfig = Field(default_factory=ModelConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)

    @field_validator("spotter")
    @classmethod
    def _spotter_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import fields

        from mmer.spotting.spotter import SpotterConfig

        allowed = {f.name for f in fields(SpotterConfig)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown spotter setting(s) {unknown}; allowed: {sorted(allowed)}")
        _finite(value)
        SpotterConfig(**value)  # its own checks name the bad value
        return value

    def spotter_config(self, *, fps: float | None = None):
        """Build the :class:`~mmer.spotting.SpotterConfig`; ``fps`` fills in when not set."""
        from mmer.spotting.spotter import SpotterConfig

        opts = dict(self.spotter)
        if fps is not None:
            opts.setdefault("fps", fps)
        return SpotterConfig(**opts)


_UNION_TAGS = {"bool", "int", "float", "str", "none", "list", "dict"}


def _format_errors(err: ValidationError, source: str) -> str:
    grouped: dict[str, list[str]] = {}
    for item in err.errors():
        parts = [str(p) for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))]
        loc = ".".join(parts) or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(item["loc"][:-1])
            msg = f"unknown field; allowed: {', '.join(allowed)}" if allowed else "unknown field"
        elif item["type"] in ("literal_error", "bool_parsing", "bool_type"):
            msg = f"{msg} (got {item['input']!r})"
        grouped.setdefault(loc, []).append(msg)
    # A union (for example "auto" or a boolean) reports one error per alternative: show them as one.
    lines = [f"  {loc}: {' | '.join(msgs)}" for loc, msgs in grouped.items()]
    return f"{source}: invalid session config\n" + "\n".join(lines)


def _allowed_fields(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = SessionConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        model = _model_in(ann)
    return sorted(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def parse_config(data: dict[str, Any] | None, *, source: str = "<config>") -> SessionConfig:
    """Validate a mapping (parsed YAML) into a :class:`SessionConfig`.

    Raises
    ------
    ConfigError
        Naming ``source``, every bad field by its dotted path, and the allowed values.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return SessionConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> SessionConfig:
    """Read and validate a session YAML file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ConfigError
        When the YAML is malformed or a field is invalid (the message names both).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"session config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(data, source=str(path))


_EXAMPLE = """\
# mmer live session (validated by mmer.config.SessionConfig).
# Run it with:  mmer live --config session.yaml [--record DIR] [--json]
# Unknown keys are errors; every field below shows its default unless noted.

# LSL SessionID shared by every process of this session. null keeps liblsl's default session,
# which is where vendor LSL apps (BIOPAC, Shimmer, Empatica, BITalino...) publish; set a name to
# keep several sessions on one network apart (every process of the session must use it).
session_id: null
name: my-lab-session
# Stop after this many seconds; null runs until Ctrl-C (or SIGTERM).
duration_s: null

# Sensor adapters started by this process (`mmer sensors` lists the adapter names). Leave the
# list empty when the streams come from other programs (a physio amplifier's LSL app, a camera
# started with `mmer stream`). `required: false` lets the session start without that sensor.
sensors:
  - adapter: synthetic-camera
    options: {width: 640, height: 480, fps: 30, depth: true, seed: 1000}
  - adapter: synthetic-physio
    options: {rate: 200, seed: 1000}
    required: true
# Run the sensors above in one child process (default false), as separate sensor apps run:
# their acquisition (decoding, rendering) then never competes with the pipeline for the interpreter.
sensor_process: true

# Or replay a recorded dataset as if it were live hardware (same streams, same clock); kind is
# casme3 (with part: A or C), 4dme or xdf (a recording folder's session.xdf):
# replay: {kind: xdf, path: recordings/2024-05-01/session.xdf, speed: 1.0}
replay: null

# The streams the pipeline consumes, by LSL name, resolved inside the session.
inputs:
  rgb: mmer.rgb                 # VideoRGB: frame timing on LSL, pixels on ZeroMQ (required)
  depth: mmer.depth             # VideoDepth, or null
  physio: [mmer.eda, mmer.ecg, mmer.ppg, mmer.rsp]
  truth: mmer.truth             # ground-truth markers, recorded when present, or null
  resolve_timeout_s: 10.0       # how long to wait for each stream at start
  zmq_hwm: 256                  # frames queued per subscriber before ZeroMQ drops
  max_backlog_s: 2.0            # frames waiting longer for the spotter are skipped (and counted);
                                # null never skips: deterministic replays, growing latency

# Alignment buffer: seconds of history per stream; a stream silent for stall_timeout_s is
# declared stalled and windows complete without it (the decision names the missing modality).
# The late, fused decision waits for physiology from onset+start to onset+end seconds.
buffer:
  seconds: 30.0
  stall_timeout_s: 2.0
  physio_window_s: [-2.0, 6.0]

# Spotter settings (fields of mmer.spotting.SpotterConfig); fps comes from the RGB stream.
spotter:
  max_me_s: 0.5
  min_score: 4.0        # ME apex floor, in units of each region's own recent motion
  macro_min_score: 5.0
  macro: true

# Recognition checkpoint: `demo` is the small model shipped in the package, or a file path.
# Its modalities must be available from the inputs above (checked before start).
model:
  checkpoint: demo
  threads: 1

# Decisions go out as JSON strings on an LSL marker stream (early from video, late fused).
outputs:
  events_stream: mmer.events
  events_source_id: null        # defaults to the stream name
  events_csv: null              # also append decisions to this CSV file
  status: auto                  # terminal view: auto (only on a TTY), true or false

# Recording (also `--record DIR`): DIR/session.xdf written by LabRecorder, video sidecars in
# DIR/video/ and a DIR/session.json manifest.
recording:
  dir: null
  rgb_codec: mp4v               # mp4v (.mp4), mjpeg (.avi, uses rgb_quality), ffv1 (.mkv, lossless)
  rgb_quality: 90               # 1-100, MJPEG only
  depth_png_compression: 1      # 0-9, 16-bit PNG per depth frame (lossless at every level)
  min_free_mb: 200              # refuse to start, or stop cleanly, below this much free disk
  overwrite: false
"""


def example_config() -> str:
    """Return the commented example session YAML (valid as written)."""
    return _EXAMPLE
