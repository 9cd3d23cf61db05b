"""Recognition metrics under the MEGC convention.

Predictions from every LOSO fold are pooled *before* the scores are computed: UF1 is the mean over
classes of ``F1_c = 2TP / (2TP + FP + FN)`` and UAR is the mean of the per-class recalls. A class
with no true samples and no predictions contributes nothing (it is undefined, not zero); one with no
true samples but some predictions scores F1 = 0 and has no recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["confusion_matrix", "recognition_scores", "plot_confusion"]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], *, n_classes: int) -> np.ndarray:
    """Count matrix ``C[true, pred]``.

    Parameters
    ----------
    y_true, y_pred : sequence of int
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes in the protocol (classes absent from the data still get a row).

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            raise ValueError(f"{name} holds class {int(arr[bad][0])}, outside [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def recognition_scores(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    *,
    class_names: Sequence[str],
) -> dict:
    """UF1, UAR, accuracy and per-class F1/recall from pooled predictions.

    Parameters
    ----------
    y_true, y_pred : sequence of int
        Pooled labels and predictions over all folds.
    class_names : sequence of str
        Names of the protocol's classes, in index order.

    Returns
    -------
    dict
        ``uf1``, ``uar``, ``accuracy``, ``n_samples``, ``per_class`` (name -> ``f1``, ``recall``,
        ``support``), ``confusion`` (list of rows) and ``classes_scored`` (the classes averaged).
    """
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes=n)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    fp = predicted - tp
    fn = support - tp
    per_class: dict[str, dict] = {}
    f1s, recalls, scored = [], [], []
    for c, name in enumerate(class_names):
        denom = 2 * tp[c] + fp[c] + fn[c]
        f1 = float(2 * tp[c] / denom) if denom > 0 else float("nan")
        recall = float(tp[c] / support[c]) if support[c] > 0 else float("nan")
        per_class[name] = {"f1": f1, "recall": recall, "support": int(support[c])}
        if denom > 0:
            f1s.append(f1)
            scored.append(name)
        if support[c] > 0:
            recalls.append(recall)
    total = int(cm.sum())
    return {
        "uf1": float(np.mean(f1s)) if f1s else float("nan"),
        "uar": float(np.mean(recalls)) if recalls else float("nan"),
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "n_samples": total,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes_scored": scored,
    }


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path, *, title: str = "") -> None:
    """Write a confusion-matrix PNG (row-normalised colours, raw counts in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    size = 1.2 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="row fraction")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
