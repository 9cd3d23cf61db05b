"""FlowCNN: a small CNN for precomputed onset->apex (and apex->offset) flow at native resolution.

Built for the real composite benchmark (28 px u, v, strain images): three conv-BN-ReLU stages
(28 -> 14 -> 7 px), global average pooling and one linear layer, about 14k parameters. Every
input image is min-max scaled per sample and channel inside the model, and u and v are centred on
their spatial median (zero motion -> 0), so the model does not depend on how a project scaled its
images: mmer's own flow, raw or min-max scaled, reaches the network on the same scale.

Training augmentation respects flow (:func:`flip_flow`: a horizontal flip mirrors the image and
negates u), adds small shifts and rotations, random erasing (the erased box reads as no motion)
and mixup. The schedule is fixed in advance (:data:`TRAINING`); nothing is chosen on a test
subject. It reads the video modality only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._registry import register_model

__all__ = ["FlowCNN", "TRAINING", "flip_flow", "flowcnn"]

#: Training schedule fixed before any run on the composite (cosine one-cycle, EMA weights).
TRAINING: dict = {"epochs": 25, "batch_size": 32, "lr": 3e-3, "weight_decay": 5e-2, "ema": 0.98}


def flip_flow(x: torch.Tensor, u_channels: list[int]) -> torch.Tensor:
    """Mirror ``x`` (``(B, C, H, W)``) left-right and negate its horizontal-flow channels.

    A mirrored face moves the other way: the u of the mirrored pixel is minus the original u. This
    holds for centred flow (zero motion = 0), the scale :class:`FlowCNN` works on.
    """
    out = x.flip(-1).clone()
    out[:, u_channels] = -out[:, u_channels]
    return out


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FlowCNN(RecognitionModel):
    """Small CNN over centred flow/strain maps, with flow-respecting augmentation."""

    uses = ("video",)

    def __init__(self, inp: InputConfig, *, width: int = 12, offset: bool = True, direction: bool = False,
                 dropout: float = 0.3, mixup: float = 0.2, erase: float = 0.3, shift: float = 2.0,
                 rotate: float = 8.0) -> None:
        super().__init__("flowcnn", inp, {"width": width, "offset": offset, "direction": direction,
                                          "dropout": dropout, "mixup": mixup, "erase": erase, "shift": shift,
                                          "rotate": rotate})
        self.keys = ["flow"] + (["flow_offset"] if offset else []) + (["direction"] if direction else [])
        channels = 3 * (1 + int(offset)) + 6 * int(direction)
        #: channels that hold u (negated by a flip) and v (centred with u)
        self.u_channels = [0] + ([3] if offset else [])
        self.motion_channels = self.u_channels + [c + 1 for c in self.u_channels]
        self.features = nn.Sequential(
            _stage(channels, width), nn.MaxPool2d(2),
            _stage(width, 2 * width), nn.MaxPool2d(2),
            _stage(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, inp.n_classes))

    def inputs(self, batch: dict) -> torch.Tensor:
        """Stack the images this model reads and bring them to the model's scale.

        Each channel is min-max scaled to [-1, 1] per sample; u and v are then centred on their
        spatial median. Images a batch lacks (``flow_offset`` from a one-image source) are zeros.
        """
        flow = batch["flow"].float()
        parts = [batch[k].float() if k in batch else flow.new_zeros(flow.shape[0], 6 if k == "direction" else 3,
                                                                     *flow.shape[2:]) for k in self.keys]
        x = torch.cat(parts, 1)
        lo = x.amin((2, 3), keepdim=True)
        hi = x.amax((2, 3), keepdim=True)
        x = torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1, torch.zeros_like(x))
        motion = x[:, self.motion_channels]
        centre = motion.flatten(2).median(-1).values[..., None, None]
        x = x.clone()
        x[:, self.motion_channels] = motion - centre
        return x

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        return self.classify(self.inputs(batch))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from model-scale inputs (the output of :meth:`inputs`)."""
        return self.head(self.features(x))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random flip (negating u), shift, rotation and erasing of model-scale inputs."""
        b, _, h, w = x.shape
        flip = torch.rand(b) < 0.5
        if flip.any():
            x = torch.where(flip[:, None, None, None], flip_flow(x, self.u_channels), x)
        angle = (torch.rand(b) * 2 - 1) * math.radians(self.arch["rotate"])
        shift = (torch.rand(b, 2) * 2 - 1) * self.arch["shift"] * 2 / torch.tensor([w, h])
        theta = torch.stack([torch.stack([angle.cos(), -angle.sin(), shift[:, 0]], 1),
                             torch.stack([angle.sin(), angle.cos(), shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.arch["erase"] > 0:
            erase = torch.rand(b) < self.arch["erase"]
            eh = torch.randint(h // 6, h // 3 + 1, (b,))
            ew = torch.randint(w // 6, w // 3 + 1, (b,))
            y0 = (torch.rand(b) * (h - eh)).long()
            x0 = (torch.rand(b) * (w - ew)).long()
            rows = torch.arange(h)[None, :, None]
            cols = torch.arange(w)[None, None, :]
            box = ((rows >= y0[:, None, None]) & (rows < (y0 + eh)[:, None, None])
                   & (cols >= x0[:, None, None]) & (cols < (x0 + ew)[:, None, None]) & erase[:, None, None])
            x = x.masked_fill(box[:, None], 0.0)
        return x

    def training_loss(self, batch: dict, target: torch.Tensor, loss_fn) -> torch.Tensor:
        x = self.augment(self.inputs(batch))
        alpha = self.arch["mixup"]
        if alpha <= 0:
            return loss_fn(self.classify(x), target)
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0])
        logits = self.classify(lam * x + (1 - lam) * x[perm])
        return lam * loss_fn(logits, target) + (1 - lam) * loss_fn(logits, target[perm])


@register_model
def flowcnn(**cfg) -> FlowCNN:
    """FlowCNN on onset->apex flow, plus apex->offset flow where the data has it."""
    inp, arch = InputConfig.split(cfg)
    return FlowCNN(inp, **arch)
