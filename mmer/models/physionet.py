"""A physiology-only 1-D network: convolutions over the resampled segments plus the scalar features."""

from __future__ import annotations

import torch
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._layers import PhysioEncoder
from mmer.models._registry import register_model


class PhysioNet(RecognitionModel):
    """EDA/HR/RSP segments and neurokit2 features -> class logits."""

    uses = ("physio",)

    def __init__(self, inp: InputConfig, *, dim: int = 32, dropout: float = 0.2) -> None:
        super().__init__("physionet", inp, {"dim": dim, "dropout": dropout})
        self.enc = PhysioEncoder(inp.physio_channels, inp.n_physio_feats, dim, dropout=dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, inp.n_classes))

    def embed(self, batch: dict) -> torch.Tensor:
        """Pooled physiology embedding ``(B, 2 * dim)``."""
        tokens, feat = self.enc(batch["physio"], batch["physio_feats"])
        return torch.cat([tokens.mean(1), feat], 1)

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(batch))


@register_model
def physionet(**cfg) -> PhysioNet:
    """Physiology-only 1-D CNN baseline."""
    inp, arch = InputConfig.split(cfg)
    return PhysioNet(inp, **arch)
