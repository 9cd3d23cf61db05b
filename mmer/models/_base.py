"""What every recognition model shares: the batch layout, the modality mask and the config.

A batch is a dict of tensors (see :data:`BATCH_KEYS`); ``batch["mask"]`` is ``(B, 3)`` with one
column per modality in :data:`MODALITIES` order, 1 where the modality is present. Models read only
the keys of the modalities they use and must give finite logits for any mask, including one where
none of their modalities is present (they then return a learned class prior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

MODALITIES: tuple[str, ...] = ("video", "depth", "physio")

#: batch key -> (modality, shape without the batch dimension, as a function of the input config)
BATCH_KEYS = {
    "frames": "video",
    "flow": "video",
    "roi": "video",
    "depth": "depth",
    "physio": "physio",
    "physio_feats": "physio",
}


@dataclass(frozen=True)
class InputConfig:
    """Shapes of the sample arrays a model expects; stored in every checkpoint."""

    n_classes: int = 3
    image_size: int = 32
    n_frames: int = 4
    n_rois: int = 6
    roi_size: int = 12
    physio_channels: int = 5
    physio_length: int = 64
    n_physio_feats: int = 10

    @classmethod
    def split(cls, cfg: dict) -> tuple[InputConfig, dict]:
        """Separate input-shape keys from architecture keys."""
        names = {f.name for f in fields(cls)}
        inp = cls(**{k: v for k, v in cfg.items() if k in names})
        return inp, {k: v for k, v in cfg.items() if k not in names}

    def as_dict(self) -> dict:
        return asdict(self)


def modality_index(name: str) -> int:
    """Column of ``name`` in the mask."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)}")
    return MODALITIES.index(name)


class RecognitionModel(nn.Module):
    """Base class: keeps the config and the class-prior fallback for samples with no usable input.

    Subclasses set :attr:`uses` (the modalities they read), call ``super().__init__(name, cfg)``
    and implement :meth:`forward_features` returning logits for every row; rows with none of
    :attr:`uses` present are replaced by the learned prior.
    """

    uses: tuple[str, ...] = MODALITIES

    def __init__(self, name: str, inp: InputConfig, arch: dict) -> None:
        super().__init__()
        self.model_name = name
        self.inp = inp
        self.arch = dict(arch)
        self.prior = nn.Parameter(torch.zeros(inp.n_classes))
        self.modality_dropout = 0.0

    @property
    def config(self) -> dict:
        """Everything :func:`~mmer.models.create_model` needs to rebuild this model."""
        return {"name": self.model_name, **self.inp.as_dict(), **self.arch}

    def present(self, batch: dict) -> torch.Tensor:
        """``(B, len(uses))`` float mask of the modalities this model reads, after training dropout."""
        mask = batch["mask"].float()
        cols = [modality_index(m) for m in self.uses]
        sub = mask[:, cols]
        if self.training and self.modality_dropout > 0 and sub.shape[1] > 1:
            keep = (torch.rand_like(sub) >= self.modality_dropout).float() * sub
            # never drop every present modality of a sample
            none = keep.sum(1, keepdim=True) == 0
            sub = torch.where(none, sub, keep)
        return sub

    def forward(self, batch: dict) -> torch.Tensor:
        present = self.present(batch)
        logits = self.forward_features(batch, present)
        any_present = present.sum(1, keepdim=True) > 0
        return torch.where(any_present, logits, self.prior.expand_as(logits))

    def forward_features(self, batch: dict, present: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Class logits from the modalities marked in ``present``; every architecture defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_features")

    def training_loss(self, batch: dict, target: torch.Tensor, loss_fn) -> torch.Tensor:
        """Loss for one training batch; models with auxiliary heads add their terms here."""
        return loss_fn(self(batch), target)
