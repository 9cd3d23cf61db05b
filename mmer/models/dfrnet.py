"""A DFR-Net-style network: temporal, spatial and difference branches fused by concatenation.

In the spirit of the dual-branch/difference feature-refinement designs (Zhou et al.): the
*temporal* branch reads the stack of aligned face crops over the candidate, the *spatial* branch the
apex frame, and the *difference* branch the onset->apex flow/strain maps together with the apex-onset
difference image. Each branch is a two-stage ResNet whose blocks carry channel and spatial
attention. It reads the video modality only.
"""

from __future__ import annotations

import torch
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._layers import ResBlock
from mmer.models._registry import register_model


def _branch(cin: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        ResBlock(width, width),
        ResBlock(width, 2 * width, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class DFRNet(RecognitionModel):
    """Temporal + spatial + difference branches with attention ResNets."""

    uses = ("video",)

    def __init__(self, inp: InputConfig, *, width: int = 12, dropout: float = 0.3) -> None:
        super().__init__("dfrnet", inp, {"width": width, "dropout": dropout})
        self.temporal = _branch(inp.n_frames, width)
        self.spatial = _branch(1, width)
        self.difference = _branch(4, width)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(6 * width, inp.n_classes))

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        frames = batch["frames"]
        onset, apex = frames[:, :1], frames[:, -1:]
        diff = torch.cat([batch["flow"], (apex - onset) * 4.0], 1)
        feats = [self.temporal(frames - onset), self.spatial(apex), self.difference(diff)]
        return self.head(torch.cat(feats, 1))


@register_model
def dfrnet(**cfg) -> DFRNet:
    """DFR-Net-style three-branch attention ResNet on the video modality."""
    inp, arch = InputConfig.split(cfg)
    return DFRNet(inp, **arch)
