"""Building blocks shared by several architectures."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` weighted by ``weight`` (broadcastable), safe when all weights are 0."""
    total = weight.sum(dim=dim, keepdim=True).clamp_min(1e-6)
    return (x * weight).sum(dim=dim, keepdim=True).div(total).squeeze(dim)


class Block(nn.Module):
    """Pre-norm attention block; queries attend to ``context`` (self-attention when it is None)."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self.norm_q(x)
        kv = q if context is None else self.norm_kv(context)
        out, _ = self.attn(q, kv, kv, key_padding_mask=key_padding_mask, need_weights=False)
        x = x + out
        return x + self.mlp(self.norm_mlp(x))


class ChannelSpatialAttention(nn.Module):
    """Channel then spatial attention (the CBAM recipe) used by the DFR-style ResNet."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 2)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        x = x * torch.sigmoid(ch)[:, :, None, None]
        sp = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(sp))


class ResBlock(nn.Module):
    """Basic residual block with channel+spatial attention on the residual path."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            ChannelSpatialAttention(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class PhysioEncoder(nn.Module):
    """1-D convolutions over the resampled segments plus an MLP over the scalar features.

    Returns temporal tokens ``(B, L', dim)`` and one feature token ``(B, dim)``.
    """

    def __init__(self, channels: int, n_feats: int, dim: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(channels, dim // 2, 5, padding=2),
            nn.BatchNorm1d(dim // 2),
            nn.GELU(),
            nn.MaxPool1d(2),
            nn.Conv1d(dim // 2, dim, 5, padding=2),
            nn.BatchNorm1d(dim),
            nn.GELU(),
            nn.MaxPool1d(2),
        )
        self.feats = nn.Sequential(nn.Linear(n_feats, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, series: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.conv(series).transpose(1, 2)
        return tokens, self.feats(feats)


class FlowStem(nn.Module):
    """A shallow CNN over a flow/strain (or depth) map, pooled to a vector."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, dim, 3, padding=1),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(dim * 4, dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
