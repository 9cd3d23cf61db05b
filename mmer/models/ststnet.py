"""STSTNet: a shallow triple-stream network on horizontal flow, vertical flow and optical strain.

After Liong et al. (2019): each of u, v and strain goes through its own single conv layer (3, 5 and
8 filters), max-pooling and average-pooling; the three streams are concatenated and classified by
one fully connected layer. Adaptive pooling replaces the fixed 28 px geometry so any input size
works. It reads the video modality only.
"""

from __future__ import annotations

import torch
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._registry import register_model


class STSTNet(RecognitionModel):
    """Shallow triple-stream flow/strain network."""

    uses = ("video",)

    def __init__(self, inp: InputConfig, *, filters: tuple[int, int, int] = (3, 5, 8), pooled: int = 5,
                 dropout: float = 0.3) -> None:
        super().__init__("ststnet", inp, {"filters": list(filters), "pooled": pooled, "dropout": dropout})
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1, f, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(f),
                nn.MaxPool2d(3, stride=3, padding=1),
                nn.AdaptiveAvgPool2d(pooled),
            )
            for f in filters
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(sum(filters) * pooled**2, inp.n_classes))

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        flow = batch["flow"]
        feats = [stream(flow[:, i : i + 1]) for i, stream in enumerate(self.streams)]
        return self.head(torch.cat(feats, 1))


@register_model
def ststnet(**cfg) -> STSTNet:
    """STSTNet on the onset->apex u, v and strain maps."""
    inp, arch = InputConfig.split(cfg)
    if "filters" in arch:
        arch["filters"] = tuple(arch["filters"])
    return STSTNet(inp, **arch)
