"""Inference on candidates: a checkpoint, its sample-builder options and its class names together.

:class:`Recognizer` is what the live pipeline uses. One checkpoint serves both decisions of a
candidate through the modality mask: the *early* decision feeds video only as soon as the
candidate closes, the *late* one feeds every modality once the physiological window is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmer.features.sample import MODALITIES, Sample, SampleConfig, stack_samples
from mmer.models.checkpoint import load_checkpoint

__all__ = ["COMPOSITE_CHECKPOINT", "DEMO_CHECKPOINT", "Recognizer"]

#: The small checkpoint shipped with mmer (HSTA-tiny, 3 classes, trained on synthetic data; see
#: ``docs/readme/recognition.md`` for the command that made it).
DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "demo.pt"

#: flowcnn trained on the real 3-class composite (CASME II + SAMM + SMIC), video only, onset->apex
#: TV-L1 flow at 28 px; its data, protocol and strict LOSO figures: ``docs/model-card-composite.md``.
COMPOSITE_CHECKPOINT = DEMO_CHECKPOINT.with_name("composite.pt")


class Recognizer:
    """Classify samples with a trained checkpoint.

    Parameters
    ----------
    checkpoint : path, optional
        A ``model.pt`` from ``mmer train``; the shipped demo checkpoint by default.
    threads : int, optional
        torch intra-op threads to use (unchanged when None).

    Attributes
    ----------
    classes : list of str
    modalities : list of str
        Modalities the checkpoint was trained with.
    config : SampleConfig
        Build samples with this (the flow method and sizes the model was trained on).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, threads: int | None = None) -> None:
        self.path = Path(checkpoint) if checkpoint is not None else DEMO_CHECKPOINT
        self.model, self.meta = load_checkpoint(self.path)
        self.classes: list[str] = list(self.meta["class_names"])
        self.modalities: list[str] = list(self.meta["modalities"])
        self.config = SampleConfig(**self.meta["features"]) if self.meta.get("features") else SampleConfig()
        if threads is not None:
            torch.set_num_threads(int(threads))

    def predict(self, sample: Sample | Sequence[Sample], *, modalities: Sequence[str] | None = None) -> list[dict]:
        """Class probabilities for one or more samples.

        Parameters
        ----------
        sample : Sample or sequence of Sample
        modalities : sequence of str, optional
            Feed only these (``("video",)`` for the early decision); default: every modality the
            checkpoint knows. A modality absent from a sample stays masked either way.

        Returns
        -------
        list of dict
            Per sample: ``label``, ``confidence``, ``probs`` (class -> probability) and
            ``modalities`` (those actually used).
        """
        from mmer.models.train import to_batch

        samples = [sample] if isinstance(sample, Sample) else list(sample)
        mods = list(modalities) if modalities is not None else self.modalities
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; expected a subset of {list(MODALITIES)}")
        extra = [m for m in mods if m not in self.modalities]
        if extra:
            raise ValueError(f"{self.path}: trained with {self.modalities}, cannot use {extra}")
        arrays = stack_samples(samples)
        expected = self.config.model_inputs()
        if arrays["flow"].shape[-1] != expected["image_size"] or arrays["frames"].shape[1] != expected["n_frames"]:
            raise ValueError(f"samples were built with other sizes than {self.path} expects ({expected}); "
                             "build them with Recognizer.config")
        self.model.eval()
        with torch.no_grad():
            probs = torch.softmax(self.model(to_batch(arrays, np.arange(len(samples)), mods)), -1).numpy()
        out = []
        for s, p in zip(samples, probs):
            k = int(p.argmax())
            used = [m for m in mods if s.arrays["mask"][MODALITIES.index(m)] > 0]
            out.append({"label": self.classes[k], "confidence": float(p[k]),
                        "probs": {c: float(v) for c, v in zip(self.classes, p)}, "modalities": used})
        return out
