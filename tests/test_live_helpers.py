"""Helpers shared by the live tests (no tests here)."""

from __future__ import annotations

import threading
from pathlib import Path

import pylsl

from mmer.features.sample import SampleConfig
from mmer.models import create_model, save_checkpoint

CLASSES = ["negative", "positive", "surprise"]


def make_checkpoint(path: Path, *, modalities=("video", "depth", "physio"), seed: int = 0) -> Path:
    """A small untrained HSTA checkpoint in the shipped format: real weights, meaningless classes.

    The pipeline tests check plumbing (shapes, masks, determinism, latency), not accuracy.
    """
    import torch

    torch.manual_seed(seed)
    cfg = SampleConfig(flow_method="dis")
    net = create_model("hsta", n_classes=len(CLASSES), **cfg.model_inputs())
    return save_checkpoint(path, net, class_names=CLASSES, labels="3class", modalities=list(modalities),
                           features=cfg.as_dict())


class MarkerCollector(threading.Thread):
    """Subscribes to a marker stream by name and keeps every (timestamp, text)."""

    def __init__(self, name: str, *, timeout: float = 10.0) -> None:
        super().__init__(daemon=True)
        found = pylsl.resolve_byprop("name", name, 1, timeout)
        if not found:
            raise AssertionError(f"marker stream {name!r} not found")
        self.inlet = pylsl.StreamInlet(found[0])
        self.inlet.open_stream(timeout=5.0)
        self.items: list[tuple[float, str]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            samples, stamps = self.inlet.pull_chunk(timeout=0.1)
            self.items.extend((t, s[0]) for s, t in zip(samples, stamps))

    def stop(self) -> list[tuple[float, str]]:
        self._halt.set()
        self.join(timeout=5)
        # A lingering inlet would reconnect to the next test's stream of the same name.
        self.inlet.close_stream()
        return self.items
