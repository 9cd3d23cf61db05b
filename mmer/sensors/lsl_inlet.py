"""LSL physio inlet: adopt a device app's stream (BIOPAC, Shimmer, Empatica, BITalino...).

Device apps publish one multi-channel stream with their own names, types and labels. This adapter
resolves it, maps its channels to EDA/ECG/PPG/RSP (by channel label or type, or by an explicit
mapping), and **republishes** each mapped channel as a standard mmer stream (``mmer.eda``...).
Republishing, rather than feeding the buffer directly, keeps the principle that everything
downstream (buffer, recorder, spotter) sees the same streams whether they come from hardware, a
replay or a simulator. Timestamps are moved onto this host's LSL clock with the inlet's
``time_correction()``; the device's original stream stays on the network, so a recorder can keep
the raw one too. Samples only travel through numpy chunks.

Units are converted to mmer's (:func:`unit_converter`): EDA to microsiemens, ECG to millivolts.
A Shimmer GSR channel in kOhm is skin *resistance*, which moves the opposite way to conductance;
republished as it was, every EDA feature would read it upside down. A unit mmer does not know is
refused when the adapter starts (declare the right one with ``units``); a channel without a unit
is taken to be in mmer's unit already, with a warning.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

import numpy as np
import pylsl

from mmer.clock import local_clock
from mmer.sensors.base import Sensor, SensorError
from mmer.streams import PHYSIO_TYPES, Channel, StreamSpec, StreamType, physio_spec
from mmer.transport import SampleOutlet

__all__ = ["LSLPhysioInlet", "map_channels", "unit_converter"]

#: Label/type patterns recognised per modality (case-insensitive, matched on whole words).
SYNONYMS: dict[StreamType, tuple[str, ...]] = {
    StreamType.EDA: ("eda", "gsr", "sc", "skin conductance", "electrodermal", "galvanic"),
    StreamType.ECG: ("ecg", "ekg", "electrocardiogram"),
    StreamType.PPG: ("ppg", "bvp", "pleth", "plethysmogram", "pulse"),
    StreamType.RSP: ("rsp", "resp", "respiration", "breathing", "rip"),
}

_CHUNK = 1024


def _scale(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: x * factor


def _reciprocal(numerator: float) -> Callable[[np.ndarray], np.ndarray]:
    """Resistance to conductance; a resistance <= 0 has no conductance and becomes NaN (counted)."""

    def convert(x: np.ndarray) -> np.ndarray:
        out = np.full(x.shape, np.nan)
        np.divide(numerator, x, out=out, where=x > 0)
        return out

    return convert


#: Per modality with a physical unit: the unit spellings known (lower case, no spaces) and the
#: conversion into mmer's unit. PPG and RSP are shapes in arbitrary units; their unit is kept.
_UNITS: dict[StreamType, dict[str, Callable[[np.ndarray], np.ndarray]]] = {
    StreamType.EDA: {
        **dict.fromkeys(("microsiemens", "microsiemen", "us", "\u00b5s", "\u03bcs"), _scale(1.0)),
        **dict.fromkeys(("siemens", "s"), _scale(1e6)),
        **dict.fromkeys(("millisiemens", "ms"), _scale(1e3)),
        **dict.fromkeys(("nanosiemens", "ns"), _scale(1e-3)),
        **dict.fromkeys(("ohm", "ohms", "\u03c9", "\u2126"), _reciprocal(1e6)),
        **dict.fromkeys(("kohm", "kohms", "kiloohm", "kiloohms", "k\u03c9", "k\u2126"), _reciprocal(1e3)),
        **dict.fromkeys(("megaohm", "megaohms", "m\u03c9", "m\u2126"), _reciprocal(1.0)),
    },
    StreamType.ECG: {
        **dict.fromkeys(("millivolts", "millivolt", "mv"), _scale(1.0)),
        **dict.fromkeys(("microvolts", "microvolt", "uv", "\u00b5v", "\u03bcv"), _scale(1e-3)),
        **dict.fromkeys(("volts", "volt", "v"), _scale(1e3)),
    },
}


def unit_converter(kind: StreamType, unit: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """How to bring a channel of ``kind`` measured in ``unit`` into mmer's unit for that modality.

    Returns
    -------
    callable or None
        Maps a float array to mmer's unit; ``None`` when nothing is to be done (the unit is
        mmer's, or the modality has no physical unit).

    Raises
    ------
    SensorError
        When ``unit`` is not one mmer knows for ``kind`` (the message lists those it knows).
    """
    known = _UNITS.get(kind)
    key = re.sub(r"\s+", "", unit).lower()
    if known is None or not key:
        return None
    if key not in known:
        raise SensorError(
            f"lsl_inlet: {kind.value} channel in unit {unit!r}, which mmer cannot convert to "
            f"{physio_spec(kind).channels[0].unit}; known units: {', '.join(sorted(known))} "
            f"(declare the right one with units={{'{kind.value}': ...}})"
        )
    convert = known[key]
    return None if np.array_equal(convert(np.array([1.0, 2.0])), [1.0, 2.0]) else convert


def _labels(info: pylsl.StreamInfo) -> tuple[list[str], list[str], list[str]]:
    labels, types, units = [], [], []
    node = info.desc().child("channels").child("channel")
    while not node.empty():
        labels.append(node.child_value("label"))
        types.append(node.child_value("type"))
        units.append(node.child_value("unit"))
        node = node.next_sibling("channel")
    n = info.channel_count()
    if len(labels) != n:
        labels, types, units = [f"ch{i}" for i in range(n)], [""] * n, [""] * n
    return labels, types, units


def _matches(text: str, kind: StreamType) -> bool:
    words = re.split(r"[^a-z0-9]+", text.lower())
    joined = " ".join(w for w in words if w)
    return any(re.search(rf"(^| ){re.escape(s)}($| |\d)", joined) for s in SYNONYMS[kind])


def map_channels(
    labels: list[str],
    *,
    types: list[str] | None = None,
    stream_type: str = "",
    mapping: Mapping[str, str | int] | None = None,
) -> dict[StreamType, int]:
    """Decide which channel feeds which modality.

    Parameters
    ----------
    labels : list of str
        Channel labels of the device stream.
    types : list of str, optional
        Channel types from the metadata (also searched).
    stream_type : str
        The stream's LSL type; a one-channel stream whose type names a modality maps directly.
    mapping : mapping of str to str or int, optional
        Explicit ``{"EDA": "GSR_CAL", "ECG": 2}`` (label or zero-based index); overrides guessing.

    Returns
    -------
    dict of StreamType to int
        Channel index per modality.

    Raises
    ------
    SensorError
        When an explicit label or index does not exist, or nothing can be mapped.
    """
    types = types or [""] * len(labels)
    out: dict[StreamType, int] = {}
    if mapping:
        for key, ref in mapping.items():
            try:
                kind = StreamType(str(key).upper())
            except ValueError:
                raise SensorError(f"lsl_inlet: mapping key {key!r} is not one of EDA, ECG, PPG, RSP") from None
            if kind not in PHYSIO_TYPES:
                raise SensorError(f"lsl_inlet: mapping key {key!r} is not a physiological modality")
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and ref not in labels):
                idx = int(ref)
                if not 0 <= idx < len(labels):
                    raise SensorError(f"lsl_inlet: channel index {idx} for {kind.value} out of range; "
                                      f"stream has {len(labels)} channels")
            elif ref in labels:
                idx = labels.index(ref)
            else:
                raise SensorError(f"lsl_inlet: no channel labelled {ref!r} for {kind.value}; labels are {labels}")
            out[kind] = idx
        return out
    if len(labels) == 1 and stream_type.upper() in {t.value for t in PHYSIO_TYPES}:
        return {StreamType(stream_type.upper()): 0}
    for kind in PHYSIO_TYPES:
        for i, (label, ctype) in enumerate(zip(labels, types)):
            if i not in out.values() and (_matches(label, kind) or _matches(ctype, kind)):
                out[kind] = i
                break
    if not out:
        raise SensorError(
            f"lsl_inlet: no channel looks like EDA/ECG/PPG/RSP (labels {labels}); pass an explicit mapping "
            "such as --map EDA=<label>"
        )
    return out


class LSLPhysioInlet(Sensor):
    """Adopt an existing LSL physiology stream and republish it under mmer conventions.

    Parameters
    ----------
    stream : str, optional
        Name of the device stream.
    source_id : str, optional
        Its source id (preferred: survives renames and restarts).
    stream_type : str, optional
        Its LSL type, when neither name nor source id is known.
    mapping : mapping of str to str or int, optional
        Explicit modality-to-channel mapping (see :func:`map_channels`).
    units : mapping of str to str, optional
        The unit of a modality's channel (``{"EDA": "kOhm"}``) where the device's metadata has
        none or a wrong one; see :func:`unit_converter`.
    prefix : str
        Republished names are ``<prefix>.eda`` and so on.
    timeout : float
        Seconds to wait for the device stream to appear.
    """

    name = "lsl-physio"

    def __init__(
        self,
        *,
        stream: str | None = None,
        source_id: str | None = None,
        stream_type: str | None = None,
        mapping: Mapping[str, str | int] | None = None,
        units: Mapping[str, str] | None = None,
        prefix: str = "mmer",
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if not (stream or source_id or stream_type):
            raise ValueError("lsl_inlet: give the device stream's name, source_id or type")
        self.units: dict[StreamType, str] = {}
        for key, unit in dict(units or {}).items():
            kind = StreamType(str(key).upper()) if str(key).upper() in {t.value for t in PHYSIO_TYPES} else None
            if kind is None or not isinstance(unit, str):
                raise ValueError(f"lsl_inlet: units must map EDA/ECG/PPG/RSP to a unit name, got {key!r}: {unit!r}")
            unit_converter(kind, unit)  # an unknown unit fails here, before anything starts
            self.units[kind] = unit
        self.query = [(k, v) for k, v in (("source_id", source_id), ("name", stream), ("type", stream_type)) if v]
        self.mapping = dict(mapping) if mapping else None
        self.prefix = prefix
        self.timeout = timeout
        self._inlet: pylsl.StreamInlet | None = None
        self._outlets: dict[StreamType, SampleOutlet] = {}
        self._columns: dict[StreamType, int] = {}
        self._convert: dict[StreamType, Callable[[np.ndarray], np.ndarray]] = {}
        self._specs: list[StreamSpec] = []
        self._offset = 0.0
        self._next_tc = 0.0

    @property
    def specs(self) -> list[StreamSpec]:
        """The republished mmer streams (after :meth:`start`)."""
        return list(self._specs)

    def _open(self) -> None:
        prop, value = self.query[0]
        found = pylsl.resolve_byprop(prop, value, 1, self.timeout)
        if not found:
            raise SensorError(f"lsl_inlet: no LSL stream with {prop}={value!r} within {self.timeout:g} s")
        if len(found) > 1:
            self.log.warning("lsl_inlet: %d streams match %s=%r; using the first (%s)", len(found), prop, value,
                             found[0].source_id())
        inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=True)
        info = inlet.info(self.timeout)
        if info.channel_format() == pylsl.cf_string:
            raise SensorError(f"lsl_inlet: stream {info.name()!r} carries strings, not samples")
        labels, types, units = _labels(info)
        self._columns = map_channels(labels, types=types, stream_type=info.type(), mapping=self.mapping)
        manufacturer = info.desc().child("acquisition").child_value("manufacturer") or info.name()
        specs: list[StreamSpec] = []
        for kind, col in self._columns.items():
            base = physio_spec(
                kind,
                rate=info.nominal_srate(),
                name=f"{self.prefix}.{kind.value.lower()}",
                source_id=f"{info.source_id() or info.name()}-{kind.value.lower()}",
                manufacturer=manufacturer,
                model=f"{info.name()} channel {labels[col]}",
            )
            unit = self.units.get(kind, units[col])
            convert = unit_converter(kind, unit)
            if convert is not None:
                self._convert[kind] = convert
                self.log.info("lsl_inlet: %s channel %r converted from %s to %s", kind.value, labels[col], unit,
                              base.channels[0].unit)
            elif not unit.strip() and kind in _UNITS:
                self.log.warning("lsl_inlet: %s channel %r has no unit; taken to be %s", kind.value, labels[col],
                                 base.channels[0].unit)
            unit = base.channels[0].unit if kind in _UNITS or not unit.strip() else unit
            spec = base.with_(channels=(Channel(kind.value, unit, kind.value),))
            specs.append(spec)
        for spec in specs:
            self._outlets[StreamType(spec.type)] = SampleOutlet(spec)
            self._specs.append(spec)
        self._dtype = np.dtype(inlet.np_dtype)
        self._buf = np.zeros((_CHUNK, info.channel_count()), dtype=self._dtype)
        inlet.open_stream(self.timeout)
        try:
            self._offset = inlet.time_correction(timeout=2.0)
        except Exception as err:  # noqa: BLE001 - keep the previous estimate, but say so
            self.log.warning("lsl_inlet: first time_correction failed (%s); using 0", err)
        self._inlet = inlet
        self.health.extra["mapping"] = {k.value: labels[c] for k, c in self._columns.items()}
        self.log.info("lsl_inlet: adopted %r (%d ch @ %g Hz), mapping %s", info.name(), info.channel_count(),
                      info.nominal_srate(), self.health.extra["mapping"])

    def _run(self) -> None:
        last_data = time.monotonic()
        stalled = False
        while not self._stop.is_set():
            if self._pull(0.05):
                if stalled:
                    stalled = False
                    self.health.reconnects += 1
                    self.log.warning("lsl_inlet: device stream is back")
                last_data = time.monotonic()
            elif not stalled and time.monotonic() - last_data > 2.0:
                stalled = True
                self.health.errors += 1
                self.health.last_error = "device stream delivered nothing for 2 s"
                self.log.warning("lsl_inlet: device stream delivered nothing for 2 s")
        while self._pull(0.0):
            pass

    def _pull(self, timeout: float) -> int:
        now = local_clock()
        if now >= self._next_tc:
            try:
                self._offset = self._inlet.time_correction(timeout=0.05)
            except Exception:  # noqa: BLE001 - transient; the last estimate stays valid
                pass
            self._next_tc = now + 5.0
        _, ts = self._inlet.pull_chunk(timeout=timeout, max_samples=_CHUNK, dest_obj=self._buf, as_numpy=True)
        n = len(ts)
        if not n:
            return 0
        local = ts + self._offset
        for kind, col in self._columns.items():
            column = self._buf[:n, col : col + 1]
            convert = self._convert.get(kind)
            if convert is not None:
                column = convert(column.astype(np.float64))
            nans = int((~np.isfinite(column)).sum()) if column.dtype.kind == "f" else 0
            if nans:
                self.health.nans += nans
            self._outlets[kind].push_chunk(column, local)
        self.health.samples += n
        return n

    def _close(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None
        for outlet in self._outlets.values():
            outlet.close()
        self._outlets.clear()
