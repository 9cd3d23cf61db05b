"""Late fusion of a video network and a physiology network.

Each branch classifies on its own; the fused log-probabilities are the mask-weighted mean of the
branches' log-softmax outputs, so a sample missing one modality is classified by the other alone.
"""

from __future__ import annotations

import torch
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._layers import FlowStem, PhysioEncoder
from mmer.models._registry import register_model


class LateFusion(RecognitionModel):
    """Video (flow/strain CNN + apex-onset difference) and physiology branches, fused by averaging."""

    uses = ("video", "physio")

    def __init__(self, inp: InputConfig, *, dim: int = 32, dropout: float = 0.2, modality_dropout: float = 0.2) -> None:
        super().__init__("late_fusion", inp, {"dim": dim, "dropout": dropout, "modality_dropout": modality_dropout})
        self.modality_dropout = modality_dropout
        self.video = FlowStem(4, dim)
        self.video_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, inp.n_classes))
        self.physio = PhysioEncoder(inp.physio_channels, inp.n_physio_feats, dim, dropout=dropout)
        self.physio_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, inp.n_classes))

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        frames = batch["frames"]
        video_in = torch.cat([batch["flow"], (frames[:, -1:] - frames[:, :1]) * 4.0], 1)
        v = torch.log_softmax(self.video_head(self.video(video_in)), -1)
        tokens, feat = self.physio(batch["physio"], batch["physio_feats"])
        p = torch.log_softmax(self.physio_head(torch.cat([tokens.mean(1), feat], 1)), -1)
        w = present / present.sum(1, keepdim=True).clamp_min(1.0)
        return w[:, :1] * v + w[:, 1:] * p


@register_model
def late_fusion(**cfg) -> LateFusion:
    """Late fusion (mean log-probability) of video and physiology branches."""
    inp, arch = InputConfig.split(cfg)
    return LateFusion(inp, **arch)
