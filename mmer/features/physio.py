"""Physiological features around a micro-expression onset, NeuroKit2 style.

One verb_noun function per signal, each taking a plain 1-D array, its sampling rate and the onset
time (seconds from the start of the array) and returning plain arrays and dicts:

- :func:`eda_features` - phasic/tonic split, skin-conductance response (SCR) amplitude and latency;
- :func:`cardiac_features` - heart rate and HRV (RMSSD) from ECG or PPG;
- :func:`rsp_features` - respiration rate and amplitude, and the amplitude change after onset;
- :func:`physio_process` - all of the above over a window (``onset - pre`` .. ``onset + post``),
  with the resampled segments the models read.

Why these: an SCR follows an emotional stimulus after about 1-3 s and lasts several seconds, heart
rate reacts over 2-6 s, and breathing pauses on surprise, so each carries partial class
information a few seconds *after* the ME. Signals that neurokit2 cannot process (flat, too short,
no beats found) give NaN features and are reported in ``quality``, never an exception mid-run.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "PHYSIO_SERIES",
    "PHYSIO_FEATURES",
    "eda_features",
    "cardiac_features",
    "rsp_features",
    "physio_resample",
    "physio_process",
]

#: Rows of the resampled segment array, in order.
PHYSIO_SERIES: tuple[str, ...] = ("eda_phasic", "eda_tonic", "hr", "rsp", "rsp_amplitude")

#: Entries of the scalar feature vector, in order (see :func:`physio_process` for units/scaling).
PHYSIO_FEATURES: tuple[str, ...] = (
    "scr_amplitude",
    "scr_latency",
    "scr_present",
    "eda_tonic_change",
    "hr_baseline",
    "hr_change",
    "hr_change_peak",
    "hrv_rmssd",
    "rsp_rate",
    "rsp_amplitude_change",
)

# Divisors that bring each feature to order 1 for the networks (units in PHYSIO_FEATURES docs).
_FEATURE_SCALE = np.array([1.0, 5.0, 1.0, 1.0, 100.0, 10.0, 10.0, 100.0, 30.0, 1.0], dtype=np.float32)


def _nk():
    import neurokit2 as nk  # imported lazily: it pulls scipy/pandas/sklearn

    return nk


def _check_signal(signal: np.ndarray, sampling_rate: float, name: str) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float64).ravel()
    if sampling_rate <= 0:
        raise ValueError(f"{name}: sampling_rate must be > 0, got {sampling_rate}")
    if x.size < int(2 * sampling_rate):
        raise ValueError(f"{name}: needs at least 2 s of signal, got {x.size} samples at {sampling_rate} Hz")
    if not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        idx = np.arange(x.size)
        if bad.all():
            raise ValueError(f"{name}: every sample is NaN or infinite")
        x = x.copy()
        x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return x


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def eda_features(
    eda: np.ndarray,
    *,
    sampling_rate: float,
    onset: float,
    response_window: tuple[float, float] = (0.5, 5.0),
    min_amplitude: float = 0.02,
) -> dict:
    """Decompose EDA and measure the SCR that follows ``onset``.

    Parameters
    ----------
    eda : ndarray, shape (n,)
        Skin conductance in microsiemens.
    sampling_rate : float
        Hz.
    onset : float
        ME onset in seconds from the first sample.
    response_window : (float, float)
        An SCR counts when its onset falls this many seconds after the ME onset.
    min_amplitude : float
        Smallest SCR in µS (neurokit2's own threshold is relative to the largest peak, so a flat
        trace would otherwise yield "responses" made of noise).

    Returns
    -------
    dict
        ``phasic``, ``tonic`` (arrays, n), ``scr_amplitude`` (µS, 0 without SCR), ``scr_latency``
        (s from ME onset to SCR onset, NaN without SCR), ``scr_present`` (0/1) and
        ``tonic_change`` (mean tonic level after minus before onset, µS).
    """
    nk = _nk()
    x = _check_signal(eda, sampling_rate, "EDA")
    cleaned = _quiet(nk.eda_clean, x, sampling_rate=sampling_rate)
    parts = _quiet(nk.eda_phasic, cleaned, sampling_rate=sampling_rate, method="highpass")
    phasic = parts["EDA_Phasic"].to_numpy()
    tonic = parts["EDA_Tonic"].to_numpy()
    amplitude, latency = 0.0, float("nan")
    try:
        _, info = _quiet(nk.eda_peaks, phasic, sampling_rate=sampling_rate, amplitude_min=0.02)
        onsets = np.asarray(info["SCR_Onsets"], dtype=float) / sampling_rate
        amps = np.asarray(info["SCR_Amplitude"], dtype=float)
        keep = np.isfinite(onsets) & np.isfinite(amps)
        rel = onsets[keep] - onset
        amps = amps[keep]
        hit = (rel >= response_window[0]) & (rel <= response_window[1]) & (amps >= min_amplitude)
        if hit.any():
            best = int(np.argmax(np.where(hit, amps, -np.inf)))
            amplitude, latency = float(amps[best]), float(rel[best])
    except (ValueError, IndexError, KeyError) as err:
        logger.debug("eda_peaks found no SCR: %s", err)
    i0 = int(onset * sampling_rate)
    before = tonic[: max(i0, 1)].mean()
    after = tonic[i0:].mean() if i0 < tonic.size else before
    return {
        "phasic": phasic,
        "tonic": tonic,
        "scr_amplitude": amplitude,
        "scr_latency": latency,
        "scr_present": float(np.isfinite(latency)),
        "tonic_change": float(after - before),
    }


def cardiac_features(signal: np.ndarray, *, sampling_rate: float, onset: float, kind: str = "ecg") -> dict:
    """Heart rate around ``onset`` and HRV over the whole segment, from ECG or PPG.

    Returns
    -------
    dict
        ``hr`` (bpm, interpolated to every sample), ``hr_baseline`` (mean bpm before onset),
        ``hr_change`` (mean bpm 1-6 s after onset minus baseline), ``hr_change_peak`` (largest
        absolute deviation after onset, signed), ``hrv_rmssd`` (ms) and ``n_beats``; NaN where
        fewer than 3 beats are found.
    """
    nk = _nk()
    if kind not in ("ecg", "ppg"):
        raise ValueError(f"kind must be 'ecg' or 'ppg', got {kind!r}")
    x = _check_signal(signal, sampling_rate, kind.upper())
    n = x.size
    nan = {"hr": np.full(n, np.nan), "hr_baseline": np.nan, "hr_change": np.nan, "hr_change_peak": np.nan,
           "hrv_rmssd": np.nan, "n_beats": 0}
    try:
        if kind == "ecg":
            cleaned = _quiet(nk.ecg_clean, x, sampling_rate=sampling_rate)
            _, info = _quiet(nk.ecg_peaks, cleaned, sampling_rate=sampling_rate)
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
        else:
            cleaned = _quiet(nk.ppg_clean, x, sampling_rate=sampling_rate)
            _, info = _quiet(nk.ppg_peaks, cleaned, sampling_rate=sampling_rate)
            peaks = np.asarray(info["PPG_Peaks"], dtype=int)
    except (ValueError, IndexError, ZeroDivisionError) as err:
        logger.debug("%s peak detection failed: %s", kind, err)
        return nan
    if peaks.size < 3:
        return nan
    ibi = np.diff(peaks) / sampling_rate
    ok = (ibi > 0.25) & (ibi < 2.0)  # 30-240 bpm; the rest are detection errors
    if ok.sum() < 2:
        return nan
    t_beat = peaks[1:][ok] / sampling_rate
    rate = 60.0 / ibi[ok]
    t = np.arange(n) / sampling_rate
    hr = np.interp(t, t_beat, rate)
    pre = t < onset
    post = (t >= onset + 1.0) & (t <= onset + 6.0)
    baseline = float(hr[pre].mean()) if pre.any() else float(hr.mean())
    after = hr[t >= onset] - baseline
    rr = ibi[ok] * 1000.0
    return {
        "hr": hr,
        "hr_baseline": baseline,
        "hr_change": float(hr[post].mean() - baseline) if post.any() else float("nan"),
        "hr_change_peak": float(after[np.argmax(np.abs(after))]) if after.size else float("nan"),
        "hrv_rmssd": float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size > 2 else float("nan"),
        "n_beats": int(peaks.size),
    }


def rsp_features(rsp: np.ndarray, *, sampling_rate: float, onset: float) -> dict:
    """Respiration rate and amplitude, and how the amplitude changes after ``onset``.

    Breath-by-breath peak detection is unreliable over an 8 s window (two or three breaths), so the
    rate is the dominant frequency of the cleaned signal in 6-60 breaths/min and the amplitude is
    its analytic-signal envelope (twice the envelope approximates peak-to-trough depth).

    Returns
    -------
    dict
        ``cleaned`` and ``amplitude`` (arrays, n), ``rate`` (breaths/min), ``amplitude_change``
        (mean amplitude 0-4 s after onset divided by the mean before, minus 1; negative for a
        pause).
    """
    from scipy.signal import hilbert

    nk = _nk()
    x = _check_signal(rsp, sampling_rate, "RSP")
    cleaned = np.asarray(_quiet(nk.rsp_clean, x, sampling_rate=sampling_rate), dtype=float)
    n = x.size
    t = np.arange(n) / sampling_rate
    centred = cleaned - cleaned.mean()
    if not np.any(centred):
        return {"cleaned": cleaned, "amplitude": np.full(n, np.nan), "rate": float("nan"), "amplitude_change": float("nan")}
    nfft = max(4 * n, int(120 * sampling_rate))
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(n), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sampling_rate)
    band = (freqs >= 0.1) & (freqs <= 1.0)
    rate = float(freqs[band][np.argmax(spectrum[band])] * 60.0)
    win = max(int(sampling_rate), 1)
    amplitude = 2.0 * np.convolve(np.abs(hilbert(centred)), np.ones(win) / win, mode="same")
    pre = t < onset
    post = (t >= onset) & (t <= onset + 4.0)
    base = amplitude[pre].mean() if pre.any() else amplitude.mean()
    change = float(amplitude[post].mean() / base - 1.0) if post.any() and base > 0 else float("nan")
    return {"cleaned": cleaned, "amplitude": amplitude, "rate": rate, "amplitude_change": change}


def physio_resample(signal: np.ndarray, *, length: int) -> np.ndarray:
    """Linear resampling of a segment to ``length`` points (NaNs are interpolated over)."""
    x = np.asarray(signal, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("cannot resample an empty segment")
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros(length, dtype=np.float32)
    src = np.linspace(0.0, 1.0, x.size)
    x = np.interp(src, src[ok], x[ok])
    return np.interp(np.linspace(0.0, 1.0, length), src, x).astype(np.float32)


def physio_process(
    signals: Mapping[str, np.ndarray],
    *,
    sampling_rate: float,
    onset: float,
    length: int = 64,
) -> dict:
    """Features and resampled segments from whichever physiological channels are present.

    Parameters
    ----------
    signals : mapping
        Any of ``"eda"``, ``"ecg"``, ``"ppg"``, ``"rsp"`` -> 1-D array covering the window (the
        window usually runs from ``onset - 2 s`` to ``onset + 6 s``). Heart rate comes from ECG
        when present, else from PPG.
    sampling_rate : float
        Hz (all channels share it; resample first otherwise).
    onset : float
        ME onset in seconds from the first sample of the window.
    length : int
        Points per resampled segment.

    Returns
    -------
    dict
        ``series`` (float32, ``(len(PHYSIO_SERIES), length)``: EDA phasic, tonic minus its
        pre-onset mean, HR minus baseline (bpm/10), cleaned RSP (z-scored), RSP amplitude
        relative change), ``features`` (float32, ``(len(PHYSIO_FEATURES),)``, scaled by
        ``scr_amplitude/1 µS, scr_latency/5 s, hr/100 bpm, hr changes/10 bpm, rmssd/100 ms,
        rsp_rate/30 per min``; NaN set to 0), ``raw`` (the named values before scaling) and
        ``quality`` (channel -> ``ok`` or why not).
    """
    unknown = set(signals) - {"eda", "ecg", "ppg", "rsp"}
    if unknown:
        raise ValueError(f"unknown physiological channels {sorted(unknown)}; use eda, ecg, ppg, rsp")
    if length < 8:
        raise ValueError(f"length must be >= 8, got {length}")
    series = np.zeros((len(PHYSIO_SERIES), length), dtype=np.float32)
    raw = {k: float("nan") for k in PHYSIO_FEATURES}
    quality: dict[str, str] = {}

    if "eda" in signals:
        try:
            e = eda_features(signals["eda"], sampling_rate=sampling_rate, onset=onset)
            i0 = max(int(onset * sampling_rate), 1)
            series[0] = physio_resample(e["phasic"], length=length)
            series[1] = physio_resample(e["tonic"] - e["tonic"][:i0].mean(), length=length)
            raw.update(scr_amplitude=e["scr_amplitude"], scr_latency=e["scr_latency"], scr_present=e["scr_present"],
                       eda_tonic_change=e["tonic_change"])
            quality["eda"] = "ok"
        except ValueError as err:
            quality["eda"] = str(err)
    cardiac = "ecg" if "ecg" in signals else "ppg" if "ppg" in signals else None
    if cardiac:
        try:
            c = cardiac_features(signals[cardiac], sampling_rate=sampling_rate, onset=onset, kind=cardiac)
            series[2] = physio_resample((c["hr"] - c["hr_baseline"]) / 10.0, length=length)
            raw.update(hr_baseline=c["hr_baseline"], hr_change=c["hr_change"], hr_change_peak=c["hr_change_peak"],
                       hrv_rmssd=c["hrv_rmssd"])
            quality[cardiac] = "ok" if c["n_beats"] >= 3 else "fewer than 3 beats"
        except ValueError as err:
            quality[cardiac] = str(err)
    if "rsp" in signals:
        try:
            r = rsp_features(signals["rsp"], sampling_rate=sampling_rate, onset=onset)
            cleaned = r["cleaned"]
            sd = cleaned.std()
            series[3] = physio_resample((cleaned - cleaned.mean()) / (sd if sd > 0 else 1.0), length=length)
            amp = r["amplitude"]
            i0 = max(int(onset * sampling_rate), 1)
            base = np.nanmean(amp[:i0]) if np.isfinite(amp[:i0]).any() else np.nan
            if np.isfinite(base) and base > 0:
                series[4] = physio_resample(amp / base - 1.0, length=length)
            raw.update(rsp_rate=r["rate"], rsp_amplitude_change=r["amplitude_change"])
            quality["rsp"] = "ok" if np.isfinite(r["rate"]) else "flat signal"
        except ValueError as err:
            quality["rsp"] = str(err)

    vec = np.array([raw[k] for k in PHYSIO_FEATURES], dtype=np.float32)
    vec = np.nan_to_num(vec / _FEATURE_SCALE, nan=0.0, posinf=0.0, neginf=0.0)
    series = np.nan_to_num(np.clip(series, -20.0, 20.0), nan=0.0)
    return {"series": series, "features": vec, "raw": raw, "quality": quality}
