"""Physiological features around a micro-expression onset, NeuroKit2 style.

One verb_noun function per signal, each taking a plain 1-D array, its sampling rate and the onset
time (seconds from the start of the array) and returning plain arrays and dicts:

- :func:`eda_features` - phasic/tonic split, skin-conductance response (SCR) amplitude, latency
  and steepest rise;
- :func:`cardiac_features` - heart rate over time and HRV (RMSSD) from ECG or PPG, and the PPG
  pulse amplitude;
- :func:`rsp_features` - respiration rate, how breathing speeds up, slows or pauses after onset;
- :func:`physio_process` - all of the above over a window (``onset - pre`` .. ``onset + post``),
  with the resampled segments the models read.

Why these: an SCR follows an emotional stimulus after about 1-3 s and lasts several seconds, heart
rate accelerates or decelerates over 2-6 s, peripheral vasoconstriction shrinks the PPG pulse,
and breathing pauses on surprise, so each carries partial class information a few seconds *after*
the ME; the response's time course (when, not only how much) separates classes too, hence the
features over successive sub-windows.

Cost: a fused decision runs these per candidate, so they use NeuroKit2's building blocks
(``eda_clean``, ``signal_filter``, ``ecg_clean``/``ecg_findpeaks``, ``ppg_clean``/
``ppg_findpeaks``, ``rsp_clean``) and plain array statistics rather than the ``*_process`` and
``*_peaks`` pipelines, which build DataFrames and compute far more than the models read. Signals
that neurokit2 cannot process (flat, too short, no beats found) give NaN features and are reported
in ``quality``, never an exception mid-run.
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
PHYSIO_SERIES: tuple[str, ...] = ("eda_phasic", "eda_tonic", "hr", "rsp", "rsp_speed", "ppg_amplitude")

#: Seconds after onset over which the time course of a response is summarised.
_SPANS: tuple[tuple[float, float], ...] = ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0))

#: Entries of the scalar feature vector, in order, with the divisor that brings each to order 1
#: for the networks (units: µS, s, bpm, ms, breaths/min; ``*_change`` of amplitudes and speeds
#: are relative changes).
_FEATURE_SCALES: dict[str, float] = {
    "scr_amplitude": 0.3,
    "scr_latency": 3.0,
    "scr_present": 1.0,
    "scr_peak_time": 3.0,
    "scr_slope": 0.3,
    "scr_slope_time": 3.0,
    "eda_slope_pre": 0.1,
    "eda_tonic_change": 0.3,
    "hr_baseline": 100.0,
    "hr_change_0_2": 5.0,
    "hr_change_2_4": 5.0,
    "hr_change_4_6": 5.0,
    "hr_change_min": 5.0,
    "hr_change_max": 5.0,
    "hrv_rmssd": 100.0,
    "ppg_amplitude_change_0_2": 0.2,
    "ppg_amplitude_change_2_4": 0.2,
    "ppg_amplitude_change_4_6": 0.2,
    "rsp_rate": 30.0,
    "rsp_rate_change_0_3": 10.0,
    "rsp_rate_change_3_6": 10.0,
    "rsp_speed_change_0_2": 1.0,
    "rsp_speed_change_2_4": 1.0,
    "rsp_speed_change_4_6": 1.0,
    "rsp_stillness": 1.0,
}
PHYSIO_FEATURES: tuple[str, ...] = tuple(_FEATURE_SCALES)
_FEATURE_SCALE = np.array(list(_FEATURE_SCALES.values()), dtype=np.float32)

#: Rate the slow signals (EDA, RSP, pulse amplitude) are analysed at after neurokit2's low-pass.
_SLOW_RATE = 25.0


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


def _span_means(x: np.ndarray, t: np.ndarray, onset: float, spans, base: float) -> list[float]:
    """Mean of ``x`` over each ``(a, b)`` seconds after onset, minus ``base`` (NaN where empty)."""
    out = []
    for a, b in spans:
        sel = (t >= onset + a) & (t < onset + b)
        out.append(float(x[sel].mean() - base) if sel.any() else float("nan"))
    return out


def _slow(x: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, float]:
    """Decimate a low-passed signal to about :data:`_SLOW_RATE` Hz (its content is below 3 Hz)."""
    step = max(int(sampling_rate // _SLOW_RATE), 1)
    return x[::step], sampling_rate / step


def eda_features(
    eda: np.ndarray,
    *,
    sampling_rate: float,
    onset: float,
    window: float = 6.0,
    min_amplitude: float = 0.02,
) -> dict:
    """Decompose EDA and measure the SCR that follows ``onset``.

    The SCR is the largest trough-to-peak rise of the cleaned signal within ``window`` seconds
    after onset; it starts where the rise first reaches 10 % of its amplitude. A trough-to-peak measure needs no
    peak detector, which over an 8 s window is unreliable and costs more than everything else.

    Parameters
    ----------
    eda : ndarray, shape (n,)
        Skin conductance in microsiemens.
    sampling_rate : float
        Hz.
    onset : float
        ME onset in seconds from the first sample.
    window : float
        Seconds after onset searched for the response.
    min_amplitude : float
        Smallest SCR in µS; below it there is no response.

    Returns
    -------
    dict
        ``phasic``, ``tonic`` (arrays, n); ``scr_amplitude`` (µS, 0 without SCR),
        ``scr_latency`` (s from ME onset to SCR onset, NaN without SCR), ``scr_present`` (0/1),
        ``scr_peak_time`` (s from ME onset to the SCR peak, NaN without SCR), ``scr_slope``
        (steepest rise after onset, µS/s), ``scr_slope_time`` (when, s after onset),
        ``eda_slope_pre`` (mean slope before onset, µS/s: recovery from an earlier response) and
        ``tonic_change`` (mean tonic level after minus before onset, µS).
    """
    nk = _nk()
    x = _check_signal(eda, sampling_rate, "EDA")
    cleaned = np.asarray(_quiet(nk.eda_clean, x, sampling_rate=sampling_rate), dtype=float)
    # what eda_phasic(method="highpass") does, without building its DataFrame
    phasic = np.asarray(_quiet(nk.signal_filter, cleaned, sampling_rate=sampling_rate, lowcut=0.05,
                               method="butterworth", order=2), dtype=float)
    tonic = cleaned - phasic
    slow, rate = _slow(cleaned, sampling_rate)
    t = np.arange(slow.size) / rate
    slope = np.gradient(slow, 1.0 / rate)
    pre = t < onset
    post = (t >= onset) & (t <= onset + window)
    out = {"phasic": phasic, "tonic": tonic, "scr_amplitude": 0.0, "scr_latency": float("nan"),
           "scr_present": 0.0, "scr_peak_time": float("nan"), "scr_slope": float("nan"),
           "scr_slope_time": float("nan"),
           "eda_slope_pre": float(slope[pre].mean()) if pre.any() else float("nan")}
    if post.sum() > 1:
        seg = slow[post]
        rise = seg - np.minimum.accumulate(seg)
        peak = int(np.argmax(rise))
        t0 = float(t[post][0]) - onset
        if rise[peak] >= min_amplitude:
            trough = int(np.argmin(seg[: peak + 1]))
            # the response starts where the rise first reaches 10 % of its amplitude (a slow drift
            # before it would otherwise pull the start back to the trough)
            start = trough + int(np.argmax(seg[trough : peak + 1] - seg[trough] >= 0.1 * rise[peak]))
            out.update(scr_amplitude=float(rise[peak]), scr_latency=t0 + start / rate, scr_present=1.0,
                       scr_peak_time=t0 + peak / rate)
        k = int(np.argmax(slope[post]))
        out.update(scr_slope=float(slope[post][k]), scr_slope_time=t0 + k / rate)
    i0 = int(onset * sampling_rate)
    before = tonic[: max(i0, 1)].mean()
    after = tonic[i0:].mean() if i0 < tonic.size else before
    out["tonic_change"] = float(after - before)
    return out


def cardiac_features(signal: np.ndarray, *, sampling_rate: float, onset: float, kind: str = "ecg") -> dict:
    """Heart rate around ``onset`` and HRV over the whole segment, from ECG or PPG.

    Returns
    -------
    dict
        ``hr`` (bpm, interpolated to every sample), ``hr_baseline`` (mean bpm before onset),
        ``hr_change`` (mean bpm minus baseline over 0-2, 2-4 and 4-6 s after onset),
        ``hr_change_min`` and ``hr_change_max`` (extremes after onset), ``hrv_rmssd`` (ms),
        ``n_beats``; NaN where fewer than 3 beats are found. For PPG also ``amplitude`` (pulse
        amplitude relative to its pre-onset mean, minus 1, at every sample) and
        ``amplitude_change`` (its mean over the same sub-windows).
    """
    nk = _nk()
    if kind not in ("ecg", "ppg"):
        raise ValueError(f"kind must be 'ecg' or 'ppg', got {kind!r}")
    x = _check_signal(signal, sampling_rate, kind.upper())
    n = x.size
    nan3 = [float("nan")] * len(_SPANS)
    nan = {"hr": np.full(n, np.nan), "hr_baseline": np.nan, "hr_change": nan3, "hr_change_min": np.nan,
           "hr_change_max": np.nan, "hrv_rmssd": np.nan, "n_beats": 0}
    if kind == "ppg":
        nan.update(amplitude=np.full(n, np.nan), amplitude_change=nan3)
    try:
        if kind == "ecg":
            cleaned = _quiet(nk.ecg_clean, x, sampling_rate=sampling_rate)
            peaks = _quiet(nk.ecg_findpeaks, cleaned, sampling_rate=sampling_rate)["ECG_R_Peaks"]
        else:
            cleaned = _quiet(nk.ppg_clean, x, sampling_rate=sampling_rate)
            peaks = _quiet(nk.ppg_findpeaks, cleaned, sampling_rate=sampling_rate)["PPG_Peaks"]
        peaks = np.asarray(peaks, dtype=int)
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
    after = t >= onset
    baseline = float(hr[pre].mean()) if pre.any() else float(hr.mean())
    rr = ibi[ok] * 1000.0
    out = {
        "hr": hr,
        "hr_baseline": baseline,
        "hr_change": _span_means(hr, t, onset, _SPANS, baseline),
        "hr_change_min": float(hr[after].min() - baseline) if after.any() else float("nan"),
        "hr_change_max": float(hr[after].max() - baseline) if after.any() else float("nan"),
        "hrv_rmssd": float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size > 2 else float("nan"),
        "n_beats": int(peaks.size),
    }
    if kind == "ppg":
        # pulse amplitude: each peak above the lowest point since the previous peak
        troughs = np.array([cleaned[a:b].min() for a, b in zip(peaks[:-1], peaks[1:])])
        amp = cleaned[peaks[1:]] - troughs
        amplitude = np.interp(t, peaks[1:] / sampling_rate, amp)
        base = float(amplitude[pre].mean()) if pre.any() else float(amplitude.mean())
        rel = amplitude / base - 1.0 if base > 0 else np.full(n, np.nan)
        out.update(amplitude=rel, amplitude_change=_span_means(rel, t, onset, _SPANS, 0.0))
    return out


def rsp_features(rsp: np.ndarray, *, sampling_rate: float, onset: float) -> dict:
    """Respiration rate, and how fast breathing moves after ``onset`` compared with before.

    Breath-by-breath peak detection is unreliable over an 8 s window (two or three breaths), so the
    rate is the dominant frequency of the cleaned signal in 6-60 breaths/min, its change after
    onset comes from the instantaneous frequency (analytic-signal phase), and a pause shows as a
    drop of the breathing *speed* (absolute derivative of the z-scored signal).

    Returns
    -------
    dict
        ``cleaned`` and ``speed`` (arrays, n; speed relative to its pre-onset mean, minus 1),
        ``rate`` (breaths/min), ``rate_change`` (median instantaneous rate over 0-3 and 3-6 s
        after onset minus before, breaths/min), ``speed_change`` (mean relative speed over 0-2,
        2-4 and 4-6 s) and ``stillness`` (lowest 0.8 s mean speed within 0.3-3.5 s after onset,
        relative to before: near 0 for a pause).
    """
    from scipy.signal import hilbert

    nk = _nk()
    x = _check_signal(rsp, sampling_rate, "RSP")
    cleaned = np.asarray(_quiet(nk.rsp_clean, x, sampling_rate=sampling_rate), dtype=float)
    n = x.size
    nan2, nan3 = [float("nan")] * 2, [float("nan")] * len(_SPANS)
    sd = cleaned.std()
    if not sd > 0:
        return {"cleaned": cleaned, "speed": np.full(n, np.nan), "rate": float("nan"), "rate_change": nan2,
                "speed_change": nan3, "stillness": float("nan")}
    z, rate_hz = _slow((cleaned - cleaned.mean()) / sd, sampling_rate)
    t = np.arange(z.size) / rate_hz
    nfft = max(8 * z.size, int(120 * rate_hz))
    spectrum = np.abs(np.fft.rfft(z * np.hanning(z.size), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate_hz)
    band = (freqs >= 0.1) & (freqs <= 1.0)
    rate = float(freqs[band][np.argmax(spectrum[band])] * 60.0)
    inst = np.gradient(np.unwrap(np.angle(hilbert(z))), 1.0 / rate_hz) * 60.0 / (2 * np.pi)
    pre = t < onset
    base_rate = float(np.median(inst[pre])) if pre.any() else rate
    rate_change = []
    for a, b in ((0.0, 3.0), (3.0, 6.0)):
        sel = (t >= onset + a) & (t < onset + b)
        rate_change.append(float(np.median(inst[sel]) - base_rate) if sel.any() else float("nan"))
    speed = np.abs(np.gradient(z, 1.0 / rate_hz))
    base = float(speed[pre].mean()) if pre.any() else float(speed.mean())
    rel = speed / base - 1.0 if base > 0 else np.zeros_like(speed)
    win = max(int(0.8 * rate_hz), 1)
    smooth = np.convolve(rel + 1.0, np.ones(win) / win, mode="same")
    sel = (t >= onset + 0.3) & (t < onset + 3.5)
    return {
        "cleaned": cleaned,
        "speed": np.interp(np.arange(n) / sampling_rate, t, rel),
        "rate": rate,
        "rate_change": rate_change,
        "speed_change": _span_means(rel, t, onset, _SPANS, 0.0),
        "stillness": float(smooth[sel].min()) if sel.any() else float("nan"),
    }


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


def _spans(prefix: str, values) -> dict:
    return {f"{prefix}_{int(a)}_{int(b)}": v for (a, b), v in zip(_SPANS, values)}


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
        when present, else from PPG; the pulse amplitude from PPG.
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
        pre-onset mean, HR minus baseline (bpm/10), cleaned RSP (z-scored), breathing speed and
        PPG pulse amplitude relative to before onset), ``features`` (float32,
        ``(len(PHYSIO_FEATURES),)``, each divided by its scale in ``_FEATURE_SCALES``; NaN set to
        0), ``raw`` (the named values before scaling) and ``quality`` (channel -> ``ok`` or why
        not).
    """
    unknown = set(signals) - {"eda", "ecg", "ppg", "rsp"}
    if unknown:
        raise ValueError(f"unknown physiological channels {sorted(unknown)}; use eda, ecg, ppg, rsp")
    if length < 8:
        raise ValueError(f"length must be >= 8, got {length}")
    series = np.zeros((len(PHYSIO_SERIES), length), dtype=np.float32)
    raw = {k: float("nan") for k in PHYSIO_FEATURES}
    quality: dict[str, str] = {}
    i0 = max(int(onset * sampling_rate), 1)

    if "eda" in signals:
        try:
            e = eda_features(signals["eda"], sampling_rate=sampling_rate, onset=onset)
            series[0] = physio_resample(e["phasic"], length=length)
            series[1] = physio_resample(e["tonic"] - e["tonic"][:i0].mean(), length=length)
            raw.update({k: e[k] for k in ("scr_amplitude", "scr_latency", "scr_present", "scr_peak_time", "scr_slope",
                                          "scr_slope_time", "eda_slope_pre")}, eda_tonic_change=e["tonic_change"])
            quality["eda"] = "ok"
        except ValueError as err:
            quality["eda"] = str(err)
    for kind in ("ecg", "ppg"):
        if kind not in signals:
            continue
        hr_source = kind == "ecg" or "ecg" not in signals
        try:
            c = cardiac_features(signals[kind], sampling_rate=sampling_rate, onset=onset, kind=kind)
        except ValueError as err:
            quality[kind] = str(err)
            continue
        quality[kind] = "ok" if c["n_beats"] >= 3 else "fewer than 3 beats"
        if hr_source:
            series[2] = physio_resample((c["hr"] - c["hr_baseline"]) / 10.0, length=length)
            raw.update(hr_baseline=c["hr_baseline"], hr_change_min=c["hr_change_min"],
                       hr_change_max=c["hr_change_max"], hrv_rmssd=c["hrv_rmssd"], **_spans("hr_change", c["hr_change"]))
        if kind == "ppg":
            series[5] = physio_resample(c["amplitude"], length=length)
            raw.update(_spans("ppg_amplitude_change", c["amplitude_change"]))
    if "rsp" in signals:
        try:
            r = rsp_features(signals["rsp"], sampling_rate=sampling_rate, onset=onset)
            cleaned = r["cleaned"]
            sd = cleaned.std()
            series[3] = physio_resample((cleaned - cleaned.mean()) / (sd if sd > 0 else 1.0), length=length)
            series[4] = physio_resample(r["speed"], length=length)
            raw.update(rsp_rate=r["rate"], rsp_rate_change_0_3=r["rate_change"][0], rsp_rate_change_3_6=r["rate_change"][1],
                       rsp_stillness=r["stillness"], **_spans("rsp_speed_change", r["speed_change"]))
            quality["rsp"] = "ok" if np.isfinite(r["rate"]) else "flat signal"
        except ValueError as err:
            quality["rsp"] = str(err)

    vec = np.array([raw[k] for k in PHYSIO_FEATURES], dtype=np.float32)
    vec = np.clip(np.nan_to_num(vec / _FEATURE_SCALE, nan=0.0, posinf=0.0, neginf=0.0), -20.0, 20.0)
    series = np.nan_to_num(np.clip(series, -20.0, 20.0), nan=0.0)
    return {"series": series, "features": vec, "raw": raw, "quality": quality}
