"""Checkpoints: weights plus everything needed to rebuild and use the model, loaded safely.

A checkpoint is a plain dict saved with :func:`torch.save` and read back with
``torch.load(weights_only=True)``, so loading one never executes code from the file:

``format`` (``"mmer-recognition/1"``), ``config`` (model name and constructor options),
``state_dict``, ``class_names``, ``labels`` (protocol), ``modalities`` (trained with),
``features`` (sample-builder options) and ``train`` (how it was trained).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmer.errors import MmerError
from mmer.models._base import MODALITIES
from mmer.models._registry import create_model

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError"]

FORMAT = "mmer-recognition/1"


class CheckpointError(MmerError, ValueError):
    """A checkpoint that cannot be used as asked (wrong model, modalities or file)."""


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    class_names: list[str],
    labels: str,
    modalities: list[str],
    features: dict | None = None,
    train: dict | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "config": dict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "class_names": list(class_names),
            "labels": str(labels),
            "modalities": list(modalities),
            "features": dict(features or {}),
            "train": dict(train or {}),
        },
        path,
    )
    return path


def load_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    modalities: list[str] | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
        Checkpoint file.
    model : str, optional
        Expected model name; a checkpoint of another model raises :class:`CheckpointError`.
    modalities : list of str, optional
        Modalities the caller will feed; each must be one the checkpoint was trained with.

    Returns
    -------
    model : nn.Module
        In eval mode.
    meta : dict
        The checkpoint without ``state_dict``.
    """
    path = Path(path)
    if modalities is not None:
        _check_names(modalities, "modalities", f"{path}: asked for")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise CheckpointError(f"{path}: not a readable mmer checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mmer recognition checkpoint (format {FORMAT!r} expected)")
    _check_contents(ckpt, path)
    config = dict(ckpt["config"])
    name = config.pop("name")
    if model is not None and name != model:
        raise CheckpointError(f"{path}: checkpoint holds model {name!r}, not {model!r}")
    if modalities is not None:
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise CheckpointError(f"unknown modalities {unknown}; expected a subset of {list(MODALITIES)}")
        extra = [m for m in modalities if m not in ckpt["modalities"]]
        if extra:
            raise CheckpointError(
                f"{path}: trained with modalities {ckpt['modalities']}, cannot use {extra}"
            )
    try:
        net = create_model(name, **config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its config does not build model {name!r}: {err}") from None
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {name!r}: {err}") from err
    outputs = getattr(getattr(net, "inp", None), "n_classes", None)
    if outputs is not None and outputs != len(ckpt["class_names"]):
        raise CheckpointError(
            f"{path}: the model has {outputs} outputs but class_names names {len(ckpt['class_names'])} "
            f"({ckpt['class_names']})"
        )
    net.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["config"] = {"name": name, **config}
    return net, meta


#: Keys every checkpoint holds, and the type each must have.
_REQUIRED = {"config": dict, "state_dict": dict, "class_names": list, "modalities": list}


def _check_names(value: object, what: str, where: str) -> None:
    """A non-empty list of distinct strings; a bare string would be read letter by letter."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise CheckpointError(f"{where} {what} {value!r}: expected a non-empty list of names, such as ['video']")
    if not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise CheckpointError(f"{where} {what} {list(value)!r}: names must be distinct non-empty strings")


def _check_contents(ckpt: dict, path: Path) -> None:
    """Every key a checkpoint needs, with the right type, before anything is built from it."""
    missing = [key for key in _REQUIRED if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; it holds {sorted(ckpt)}")
    for key, kind in _REQUIRED.items():
        if not isinstance(ckpt[key], kind):
            raise CheckpointError(f"{path}: {key} is a {type(ckpt[key]).__name__}, expected a {kind.__name__}")
    if not isinstance(ckpt["config"].get("name"), str):
        raise CheckpointError(f"{path}: config has no model name")
    _check_names(ckpt["class_names"], "class_names", f"{path}:")
    _check_names(ckpt["modalities"], "modalities", f"{path}:")
    unknown = [m for m in ckpt["modalities"] if m not in MODALITIES]
    if unknown:
        raise CheckpointError(
            f"{path}: trained with unknown modalities {unknown}; expected a subset of {list(MODALITIES)}"
        )
    for key in ("features", "train"):
        if not isinstance(ckpt.get(key, {}), dict):
            raise CheckpointError(f"{path}: {key} is a {type(ckpt[key]).__name__}, expected a dict")
