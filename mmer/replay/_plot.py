"""``mmer inspect --plot``: one PNG with the class balance, event lengths and defect counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mmer.dataset import EventKind

__all__ = ["plot_summary"]


def plot_summary(dataset, report: dict, path: str | Path) -> Path:
    """Write a three-panel overview of a dataset to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    classes = report.get("classes", {})
    ax = axes[0]
    ax.bar(list(classes), list(classes.values()), color="#4c72b0")
    ax.set_title("ME classes (raw labels)")
    ax.tick_params(axis="x", rotation=45)
    ax = axes[1]
    events = getattr(dataset, "events", [])
    for kind, color in ((EventKind.ME, "#c44e52"), (EventKind.MAE, "#55a868"), (EventKind.BLINK, "#8172b2")):
        lengths = np.array([e.n_frames for e in events if e.kind is kind])
        if lengths.size:
            ax.hist(np.clip(lengths, 1, 300), bins=60, range=(0, 300), alpha=0.6, color=color,
                    label=f"{kind.value} (n={lengths.size}, median {np.median(lengths):.0f})")
    ax.set_xlabel("length (frames, clipped at 300)")
    ax.set_title("event lengths")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax = axes[2]
    counts = Counter(d["kind"] for d in report.get("defects", []))
    names = sorted(counts, key=counts.get)
    ax.barh(names, [counts[n] for n in names], color="#dd8452")
    ax.set_title(f"defects ({sum(counts.values())})")
    fig.suptitle(f"{report['kind']}: {report['subjects']} subjects, {report['videos']} videos", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
