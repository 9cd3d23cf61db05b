"""Helpers shared by commands: the ``--json`` contract (last stdout line is one JSON object)."""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["to_jsonable", "print_json"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and non-finite floats into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` as one JSON line on stdout (always the last line of a ``--json`` run)."""
    print(json.dumps(to_jsonable(obj), sort_keys=False), flush=True)
