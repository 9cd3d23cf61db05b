"""PNG timeline of the spotting signal, with predictions and ground truth."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mmer.dataset import Event, EventKind
from mmer.spotting.spotter import Candidate

__all__ = ["plot_timeline"]

_COLOURS = {"me": "tab:red", "mae": "tab:blue", "blink": "tab:grey"}


def plot_timeline(
    path: str | Path,
    signal: dict[str, list[tuple[int, float, float]]],
    candidates: Iterable[Candidate],
    truth: Iterable[Event] = (),
    *,
    title: str = "",
) -> Path:
    """Draw the per-frame score of each scale, predicted intervals (top band) and ground truth
    (bottom band) over frame index; return the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(14, 4), dpi=100)
    top = 1.0
    for name, rows in signal.items():
        if not rows:
            continue
        idx = [r[0] for r in rows]
        val = [r[2] for r in rows]
        ax.plot(idx, val, lw=0.8, label=f"{name} score", color=_COLOURS.get(name, "k"), alpha=0.8)
        top = max(top, max(val))
    for c in candidates:
        ax.axvspan(c.onset, c.offset + 1, ymin=0.92, ymax=1.0, color=_COLOURS[c.kind], alpha=0.8)
        ax.axvline(c.apex, color=_COLOURS[c.kind], lw=0.5, ls=":")
    for e in truth:
        kind = "me" if e.kind == EventKind.ME else "mae" if e.kind == EventKind.MAE else "blink"
        ax.axvspan(e.onset, e.offset + 1, ymin=0.0, ymax=0.06, color=_COLOURS[kind], alpha=0.8)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlabel("frame index")
    ax.set_ylabel("score (x ROI motion level)")
    ax.set_title(title + "   top band: predictions, bottom band: ground truth (red ME, blue macro, grey blink)",
                 fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
