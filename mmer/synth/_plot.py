"""A PNG of one session's physiology with its facial events, to see the coupling at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmer.synth._session import SyntheticSession

__all__ = ["plot_physio"]

_COLOURS = {
    "happy": "#2ca02c",
    "surprise": "#ff7f0e",
    "fear": "#9467bd",
    "anger": "#d62728",
    "disgust": "#8c564b",
    "sad": "#1f77b4",
    "others": "#7f7f7f",
}
_UNITS = {"ecg": "ECG (mV)", "ppg": "PPG", "rsp": "RSP", "eda": "EDA (µS)"}


def plot_physio(path: str | Path, session: SyntheticSession) -> Path:
    """Plot ECG, PPG, RSP, EDA and heart rate with ME/macro onsets (coloured by emotion), head
    jerks and physiology artifacts; write a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import neurokit2 as nk

    t = session.physio_times
    rate = session.physio_rate
    fig, axes = plt.subplots(5, 1, figsize=(11, 8), sharex=True, constrained_layout=True)
    for ax, name in zip(axes, ("ecg", "ppg", "rsp", "eda")):
        ax.plot(t, session.physio[name], lw=0.6, color="black")
        ax.set_ylabel(_UNITS[name])
    peaks = nk.ecg_peaks(session.physio["ecg"], sampling_rate=int(round(rate)))[1]["ECG_R_Peaks"]
    if len(peaks) > 2:
        axes[4].plot(t[peaks][1:], 60.0 / np.diff(t[peaks]), ".-", lw=0.8, ms=3, color="black")
    axes[4].set_ylabel("HR (bpm)")
    axes[4].set_xlabel("seconds from the first video frame")
    for e in session.timeline.expressions:
        colour = _COLOURS.get(e.emotion, "grey")
        for ax in axes:
            ax.axvline(e.onset / session.fps, color=colour, lw=1.6 if e.kind == "mae" else 1.0,
                       ls="-" if e.kind == "mae" else "--")
    for j in session.timeline.jerks:
        for ax in axes:
            ax.axvline(j / session.fps, color="black", lw=0.6, ls=":")
    for a in session.artifacts:
        if a["type"] == "electrode_drop":
            axes[("ecg", "ppg", "rsp", "eda").index(a["channel"])].axvspan(a["t0"], a["t1"], color="red", alpha=0.15)
    handles = [plt.Line2D([], [], color=c, label=k) for k, c in _COLOURS.items()]
    handles += [plt.Line2D([], [], color="black", ls="--", label="ME onset (dashed)"),
                plt.Line2D([], [], color="black", label="macro onset (solid)"),
                plt.Line2D([], [], color="black", ls=":", label="head jerk")]
    axes[0].legend(handles=handles, ncol=5, fontsize=7, loc="upper right")
    axes[0].set_title(f"synthetic physiology coupled to facial events ({session.face.name}, seed {session.seed})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
