"""Replay: recorded datasets stand in for live hardware.

Readers turn CAS(ME)^3 (Parts A and C), 4DME, XDF recordings and precomputed-flow sets into
:class:`~mmer.dataset.Recording` objects; the :class:`Player` publishes them as the same LSL and
ZeroMQ streams live sensors publish. ``open_dataset(kind, path)`` is the one entry point.
"""

from __future__ import annotations

from pathlib import Path

from mmer.replay._base import Dataset, DatasetError, RecordingRef
from mmer.replay._describe import describe
from mmer.replay.casme3 import Casme3Dataset, open_casme3
from mmer.replay.consumer import Received, ReplayConsumer
from mmer.replay.flowimages import FlowImages, FlowSample, open_flowimages
from mmer.replay.fourdme import open_4dme, parse_aus, read_mesh
from mmer.replay.labels import PROTOCOLS, LabelError, LabelProtocol, get_protocol, normalize_emotion
from mmer.replay.lockstep import LOCKSTEP_KEY, LockstepClient, LockstepStep
from mmer.replay.player import TRUTH_STREAM, Player, ReplayStats
from mmer.replay.xdf import ForeignSpec, open_xdf, scan_xdf

__all__ = [
    "KINDS",
    "open_dataset",
    "describe",
    "open_casme3",
    "open_4dme",
    "open_xdf",
    "open_flowimages",
    "Dataset",
    "DatasetError",
    "RecordingRef",
    "Casme3Dataset",
    "FlowImages",
    "FlowSample",
    "parse_aus",
    "read_mesh",
    "Player",
    "ReplayStats",
    "TRUTH_STREAM",
    "LockstepClient",
    "LockstepStep",
    "LOCKSTEP_KEY",
    "ReplayConsumer",
    "Received",
    "ForeignSpec",
    "scan_xdf",
    "LabelError",
    "LabelProtocol",
    "PROTOCOLS",
    "get_protocol",
    "normalize_emotion",
]

#: Dataset kinds that :func:`open_dataset` reads.
KINDS = ("casme3", "4dme", "xdf", "flowimages")


def open_dataset(kind: str, path: str | Path, *, subjects=None, videos=None, **options) -> Dataset | FlowImages:
    """Open a dataset for inspection or replay.

    Parameters
    ----------
    kind : {"casme3", "4dme", "xdf", "flowimages"}
        Which reader to use.
    path : path-like
        Dataset root (an ``.xdf`` file or a folder of them for ``xdf``).
    subjects, videos : sequence of str, optional
        Keep only these subjects / videos.
    **options
        Reader-specific options (``part`` for ``casme3``, ``salvage`` for ``xdf``).

    Returns
    -------
    Dataset or FlowImages
        With ``.recordings()`` (lazy), ``.events``, ``.defects`` and ``.summary()``;
        ``flowimages`` gives a sample-level :class:`FlowImages` (no recordings).
    """
    if kind == "casme3":
        return open_casme3(path, subjects=subjects, videos=videos, **options)
    if kind == "4dme":
        return open_4dme(path, subjects=subjects, videos=videos, **options)
    if kind == "flowimages":
        return open_flowimages(path, subjects=subjects, videos=videos, **options)
    if kind == "xdf":
        return open_xdf(path, subjects=subjects, videos=videos, **options)
    raise ValueError(f"unknown dataset kind {kind!r}; choose one of {list(KINDS)}")
