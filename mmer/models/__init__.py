"""Recognition models: a timm-style registry, checkpoints, metrics and LOSO training.

>>> from mmer.models import create_model, list_models
>>> net = create_model("hsta", n_classes=3)

Every model takes a dict batch (see :mod:`mmer.models._base`) with a ``(B, 3)`` modality mask
over ``("video", "depth", "physio")``, so any subset of modalities works with any model.
"""

from mmer.models import dfrnet, flowcnn, hsta, late_fusion, physionet, ststnet  # noqa: F401  (registration)
from mmer.models._base import MODALITIES, InputConfig, RecognitionModel
from mmer.models._registry import create_model, list_models, register_model
from mmer.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmer.models.metrics import confusion_matrix, recognition_scores
from mmer.models.recognizer import COMPOSITE_CHECKPOINT, DEMO_CHECKPOINT, Recognizer

__all__ = [
    "MODALITIES",
    "InputConfig",
    "RecognitionModel",
    "create_model",
    "list_models",
    "register_model",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "confusion_matrix",
    "recognition_scores",
    "Recognizer",
    "DEMO_CHECKPOINT",
    "COMPOSITE_CHECKPOINT",
]
