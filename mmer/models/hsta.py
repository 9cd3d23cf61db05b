"""HSTA-style hierarchical spatio-temporal attention fusion of face video, depth and physiology.

Four single-modal spatio-temporal attention encoders (USTA) turn each stream into tokens:

- ``frames``: aligned face crops over the candidate (onset .. apex), each frame with its difference
  to the onset, cut into coarse patches; tokens carry spatial and temporal position embeddings;
- ``flow``: the onset->apex u, v and optical-strain map as patch tokens plus one token per ROI patch;
- ``depth``: the onset->apex depth difference (and onset depth shape) as patch tokens;
- ``physio``: 1-D convolution tokens over the resampled EDA/HR/RSP segments plus one token for the
  neurokit2 scalar features.

The flow stream uses shallow convolution + max-pooling tokens (the filters that make STSTNet work
on flow) instead of linear patches. Cross-modal spatio-temporal attention (CSTA) is stacked in two levels, following the hierarchy of
HSTA: first the two video streams query each other (appearance over time vs. onset/apex motion),
then each modality (video, depth, physio) queries the tokens of all the others. A missing modality
is removed from the keys through ``key_padding_mask`` and from the final pooling through the mask;
an always-present learned null token keeps attention defined when a sample has one modality only.
Each modality also has an auxiliary classifier on its USTA summary (for physiology, the
scalar-feature token and the mean segment token weighed equally), trained with deep supervision
on its own loss; the log-probabilities of the present video and physiology classifiers are summed
(a product of experts, which accumulates evidence from modalities whose noise is independent) and
added to the CSTA head's logits: hybrid early/late fusion. Depth contributes through attention.
"""

from __future__ import annotations

import torch
from torch import nn

from mmer.models._base import InputConfig, RecognitionModel
from mmer.models._layers import Block, PhysioEncoder, masked_mean
from mmer.models._registry import register_model


class _PatchTokens(nn.Module):
    """Linear patch embedding (ViT style, no full-resolution stem: it would dominate the CPU cost)
    with a learned 2-D position embedding."""

    def __init__(self, channels: int, dim: int, size: int, patch: int) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"image_size {size} is not a multiple of the patch size {patch}")
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2)) + self.pos


class _ConvTokens(nn.Module):
    """3x3 convolution + max-pooling to a token grid: the shallow, shift-tolerant motion filters that
    make STSTNet work on flow, here as tokens for attention."""

    def __init__(self, channels: int, dim: int, size: int, patch: int) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"image_size {size} is not a multiple of the flow patch size {patch}")
        width = max(dim // 2, 8)
        self.conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU(),
                                  nn.MaxPool2d(patch))
        self.proj = nn.Linear(width, dim)
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).flatten(2).transpose(1, 2)) + self.pos


class HSTA(RecognitionModel):
    """Hierarchical cross-modal attention model (see the module docstring)."""

    def __init__(
        self,
        inp: InputConfig,
        *,
        dim: int = 48,
        heads: int = 4,
        depth: int = 1,
        patch: int | None = None,
        flow_patch: int | None = None,
        dropout: float = 0.1,
        modality_dropout: float = 0.25,
        aux_weight: float = 1.0,
        name: str = "hsta",
    ) -> None:
        # token grids stay 2x2 (frames, depth) and 4x4 (flow) whatever the image size (28-64 px)
        patch = patch or inp.image_size // 2
        flow_patch = flow_patch or inp.image_size // 4
        super().__init__(
            name,
            inp,
            {"dim": dim, "heads": heads, "depth": depth, "patch": patch, "flow_patch": flow_patch, "dropout": dropout,
             "modality_dropout": modality_dropout, "aux_weight": aux_weight},
        )
        self.modality_dropout = modality_dropout
        s = inp.image_size
        self.frame_tokens = _PatchTokens(2, dim, s, patch)
        self.time_pos = nn.Parameter(torch.zeros(1, inp.n_frames, 1, dim))
        self.flow_tokens = _ConvTokens(3, dim, s, flow_patch)
        self.roi_embed = nn.Sequential(nn.Flatten(2), nn.Linear(3 * inp.roi_size**2, dim), nn.GELU())
        self.roi_pos = nn.Parameter(torch.zeros(1, inp.n_rois, dim))
        self.depth_tokens = _PatchTokens(2, dim, s, patch)
        self.physio_enc = PhysioEncoder(inp.physio_channels, inp.n_physio_feats, dim, dropout=dropout)
        self.physio_pos = nn.Parameter(torch.zeros(1, inp.physio_length // 4 + 1, dim))
        for p in (self.time_pos, self.roi_pos, self.physio_pos):
            nn.init.trunc_normal_(p, std=0.02)

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(Block(dim, heads, dropout=dropout) for _ in range(depth))

        # USTA: one self-attention stack per stream
        self.usta = nn.ModuleDict({k: blocks() for k in ("frames", "flow", "depth", "physio")})
        # CSTA level 1 (inside video) and level 2 (across modalities)
        self.csta1 = nn.ModuleDict({k: Block(dim, heads, dropout=dropout) for k in ("frames", "flow")})
        self.csta2 = nn.ModuleDict({k: Block(dim, heads, dropout=dropout) for k in ("video", "depth", "physio")})
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_embed = nn.Parameter(torch.zeros(3, dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, inp.n_classes))
        # one auxiliary classifier per modality on its own (USTA) summary: deep supervision keeps
        # every encoder discriminative, and their mean joins the fused logits (hybrid fusion)
        self.aux = nn.ModuleDict({k: nn.Linear(dim, inp.n_classes) for k in ("video", "depth", "physio")})
        self.aux_weight = aux_weight
        self.register_buffer("expert_votes", torch.tensor([1.0, 0.0, 1.0]), persistent=False)
        self._aux_logits: torch.Tensor | None = None

    # --- single-modal encoders -------------------------------------------------------------
    def _encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, h, w = frames.shape
        diff = frames - frames[:, :1]
        x = torch.stack([frames, diff * 4.0], 2).reshape(b * t, 2, h, w)
        tok = self.frame_tokens(x).reshape(b, t, -1, self.frame_tokens.pos.shape[-1]) + self.time_pos[:, :t]
        return tok.flatten(1, 2)

    def _encode_flow(self, flow: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.flow_tokens(flow), self.roi_embed(roi) + self.roi_pos], 1)

    def _encode_physio(self, series: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        tokens, feat = self.physio_enc(series, feats)
        return torch.cat([feat[:, None], tokens], 1) + self.physio_pos[:, : tokens.shape[1] + 1]

    @staticmethod
    def _run(stack: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for blk in stack:
            x = blk(x)
        return x

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:
        b = present.shape[0]
        streams = {
            "frames": self._run(self.usta["frames"], self._encode_frames(batch["frames"])),
            "flow": self._run(self.usta["flow"], self._encode_flow(batch["flow"], batch["roi"])),
            "depth": self._run(self.usta["depth"], self.depth_tokens(batch["depth"])),
            "physio": self._run(self.usta["physio"], self._encode_physio(batch["physio"], batch["physio_feats"])),
        }
        null = self.null.expand(b, -1, -1)
        no_pad = torch.zeros(b, 1, dtype=torch.bool, device=present.device)

        # level 1: frames <-> flow (both video; present or absent together)
        frames = self.csta1["frames"](streams["frames"], torch.cat([null, streams["flow"]], 1))
        flow = self.csta1["flow"](streams["flow"], torch.cat([null, streams["frames"]], 1))
        tokens = {"video": torch.cat([frames, flow], 1), "depth": streams["depth"], "physio": streams["physio"]}
        names = list(tokens)
        for i, k in enumerate(names):
            tokens[k] = tokens[k] + self.modality_embed[i]

        # level 2: each modality queries every other present modality
        fused = {}
        for i, k in enumerate(names):
            others = [j for j in range(len(names)) if j != i]
            ctx = torch.cat([null] + [tokens[names[j]] for j in others], 1)
            pad = torch.cat(
                [no_pad]
                + [(present[:, j] == 0)[:, None].expand(-1, tokens[names[j]].shape[1]) for j in others],
                1,
            )
            fused[k] = self.csta2[k](tokens[k], ctx, key_padding_mask=pad)

        pooled = torch.stack([self.norm(fused[k]).mean(1) for k in names], 1)  # (B, 3, dim)
        z = masked_mean(pooled, present[:, :, None], dim=1)
        phys = streams["physio"]
        single = {"video": torch.cat([streams["frames"], streams["flow"]], 1).mean(1), "depth": streams["depth"].mean(1),
                  # the scalar-feature token weighs as much as all segment tokens together
                  "physio": 0.5 * (phys[:, 0] + phys[:, 1:].mean(1))}
        aux = torch.stack([self.aux[k](single[k]) for k in names], 1)  # (B, 3, n_classes)
        self._aux_logits = aux
        # product of the video and physiology experts (sum of log-probabilities) plus the CSTA head.
        # The experts learn only from their own loss (detached here), so joint training cannot let
        # the easiest modality silence the others. Depth joins through attention only: its expert
        # (still trained, for deep supervision) overfits the millimetre noise of small depth changes
        # and made fused decisions worse on development data when it voted.
        votes = present * self.expert_votes
        experts = (torch.log_softmax(aux.detach(), -1) * votes[:, :, None]).sum(1)
        return self.head(z) + experts

    def training_loss(self, batch: dict, target: torch.Tensor, loss_fn) -> torch.Tensor:
        """Fused loss plus the mean auxiliary loss of the modalities present in each sample."""
        present = self.present(batch)
        logits = self.forward_features(batch, present)
        any_present = present.sum(1, keepdim=True) > 0
        loss = loss_fn(torch.where(any_present, logits, self.prior.expand_as(logits)), target)
        if self.aux_weight > 0:
            per = torch.nn.functional.cross_entropy(
                self._aux_logits.flatten(0, 1), target.repeat_interleave(3), reduction="none"
            ).view(-1, 3)
            loss = loss + self.aux_weight * (per * present).sum() / present.sum().clamp_min(1.0)
        return loss


@register_model
def hsta(**cfg) -> HSTA:
    """HSTA-style fusion over video, depth and physiology (about 0.2 M parameters by default)."""
    inp, arch = InputConfig.split(cfg)
    return HSTA(inp, **arch)


@register_model
def hsta_tiny(**cfg) -> HSTA:
    """A smaller HSTA (dim 32, 2 heads) for tests and the shipped demo checkpoint."""
    inp, arch = InputConfig.split(cfg)
    arch = {"dim": 32, "heads": 2, **arch, "name": "hsta_tiny"}
    return HSTA(inp, **arch)
