"""Sensor adapters behind one protocol (:class:`~mmer.sensors.base.Sensor`), and their registry.

Adapters are registered by import path and imported only when used, so listing them never pulls
in an optional dependency (``pyrealsense2``) or a heavy one.

>>> from mmer.sensors import create_sensor
>>> cam = create_sensor("camera", source="clip.mp4", realtime=False)  # doctest: +SKIP
>>> with cam:                                                        # doctest: +SKIP
...     cam.wait()
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect

from mmer.errors import MmerError
from mmer.sensors.base import Sensor, SensorError, SensorHealth

__all__ = ["ADAPTERS", "Sensor", "SensorError", "SensorHealth", "SensorOptionError", "create_sensor", "get_adapter",
           "list_adapters"]

#: Adapter name -> ``module:Class``.
ADAPTERS: dict[str, str] = {
    "camera": "mmer.sensors.camera:CameraSensor",
    "realsense": "mmer.sensors.realsense:RealSenseSensor",
    "lsl-physio": "mmer.sensors.lsl_inlet:LSLPhysioInlet",
    "synthetic-physio": "mmer.sensors.synthetic:SyntheticPhysio",
    "synthetic-camera": "mmer.sensors.synthetic:SyntheticCamera",
}


def get_adapter(name: str) -> type[Sensor]:
    """Import and return the adapter class registered as ``name``.

    Raises ``ValueError`` for an unknown name and :class:`SensorError` when its module cannot be
    imported (an optional dependency is missing).
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown sensor adapter {name!r}; available: {', '.join(sorted(ADAPTERS))}")
    module_name, cls_name = ADAPTERS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SensorError(f"sensor adapter {name!r} is not available: {err}") from err
    try:
        return getattr(module, cls_name)
    except AttributeError:
        raise SensorError(f"sensor adapter {name!r}: {module_name} has no {cls_name}") from None


class SensorOptionError(MmerError, ValueError):
    """An adapter's option that it does not take, or a value it refuses (the message names both)."""


def create_sensor(adapter: str, /, **options) -> Sensor:
    """Build an adapter by name; unknown options or bad values raise :class:`SensorOptionError`."""
    cls = get_adapter(adapter)
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(options) - set(params) - {"self"})
    if unknown and not accepts_any:
        accepted = sorted(p for p in params if p != "self")
        raise SensorOptionError(f"sensor {adapter!r} does not take {unknown}; it accepts {accepted}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise SensorOptionError(f"sensor {adapter!r}: bad option value: {err}") from None


def list_adapters() -> list[dict]:
    """Every registered adapter with whether it can be imported here, and a one-line summary."""
    rows = []
    for name, target in ADAPTERS.items():
        row = {"name": name, "target": target, "available": True, "summary": "", "reason": ""}
        try:
            cls = get_adapter(name)
            row["summary"] = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
            absent = [m for m in getattr(cls, "requires", ()) if importlib.util.find_spec(m) is None]
            if absent:
                row["available"] = False
                row["reason"] = f"needs {', '.join(absent)} (optional extra)"
        except SensorError as err:
            row["available"] = False
            row["reason"] = str(err)
        rows.append(row)
    return rows
