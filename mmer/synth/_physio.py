"""Physiology coupled to facial events: neurokit2 baselines, event-locked responses, artifacts.

Baselines come from neurokit2's simulators (``ecg_simulate``, ``ppg_simulate``, ``rsp_simulate``,
``eda_simulate``). Events change them the way the psychophysiology literature describes:

* a skin-conductance response (SCR, Bateman shape) 1-3 s after onset,
* a heart-rate change over 2-6 s, applied by time-warping the ECG and PPG so beats stay beats,
* a respiration pause (the breathing phase stalls) after surprise, faster or slower breathing for
  other classes,
* a PPG amplitude drop (peripheral vasoconstriction) for fear and anger.

Amplitude, latency and sign depend on the emotion (:data:`COUPLING`), each event is jittered,
and spontaneous SCRs unrelated to any event are added, so physiology carries real but partial
class information.
"""

from __future__ import annotations

import warnings

import numpy as np

from mmer.synth._config import SynthConfig

__all__ = ["COUPLING", "KIND_GAIN", "simulate_physio"]

#: Per-emotion response: SCR amplitude (uS), SCR latency (s), heart-rate change (bpm) and its
#: peak time (s), relative breathing-rate change, respiration pause (s), relative PPG amplitude
#: change.
COUPLING: dict[str, dict[str, float]] = {
    "happy": dict(scr=0.15, latency=2.0, hr=4.0, hr_peak=3.0, rsp_rate=0.10, pause=0.0, ppg=0.0),
    "surprise": dict(scr=0.35, latency=1.2, hr=-6.0, hr_peak=2.5, rsp_rate=0.0, pause=2.5, ppg=-0.10),
    "fear": dict(scr=0.45, latency=1.5, hr=8.0, hr_peak=4.0, rsp_rate=0.25, pause=0.0, ppg=-0.30),
    "anger": dict(scr=0.30, latency=2.0, hr=6.0, hr_peak=4.5, rsp_rate=0.15, pause=0.0, ppg=-0.20),
    "disgust": dict(scr=0.20, latency=2.5, hr=-4.0, hr_peak=3.5, rsp_rate=-0.10, pause=1.0, ppg=-0.05),
    "sad": dict(scr=0.08, latency=3.0, hr=-3.0, hr_peak=5.0, rsp_rate=-0.15, pause=0.0, ppg=0.0),
    "others": dict(scr=0.10, latency=2.0, hr=1.0, hr_peak=3.0, rsp_rate=0.0, pause=0.0, ppg=0.0),
}

#: Response gain per event kind (blinks leave no trace).
KIND_GAIN = {"me": 1.0, "mae": 1.6, "blink": 0.0}

CHANNELS = ("ecg", "ppg", "rsp", "eda")


def _bump(tau: np.ndarray, peak: float) -> np.ndarray:
    """Gamma-like bump: 0 before 0, 1 at ``peak``, back near 0 by about ``3 * peak``."""
    x = np.clip(tau, 0, None) / peak
    return np.where(tau > 0, x**2 * np.exp(2 * (1 - x)), 0.0)


def _bateman(tau: np.ndarray, rise: float = 0.75, decay: float = 2.5) -> np.ndarray:
    x = np.clip(tau, 0, None)
    shape = np.exp(-x / decay) - np.exp(-x / rise)
    grid = np.linspace(0, 10 * decay, 2000)
    peak = (np.exp(-grid / decay) - np.exp(-grid / rise)).max()
    return np.where(tau > 0, shape / peak, 0.0)


def _warp(signal: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """Play ``signal`` with a time-varying speed (1 = as simulated); returns len(speed) samples."""
    phase = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    return np.interp(phase, np.arange(len(signal)), signal)


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    if n < 2:
        return x
    k = np.hanning(n)
    k /= k.sum()
    pad = np.pad(x, (n, n), mode="edge")
    return np.convolve(pad, k, mode="same")[n:-n]


def simulate_physio(
    rng: np.random.Generator,
    *,
    start: float,
    stop: float,
    rate: float,
    events: list[dict],
    jerks: list[float],
    cfg: SynthConfig,
) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict]]:
    """Simulate ECG, PPG, RSP and EDA from ``start`` to ``stop`` seconds (video time).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (neurokit2 gets seeds drawn from it).
    start, stop : float
        Time span in seconds relative to the first video frame (``start`` may be negative).
    rate : float
        Sampling rate in Hz.
    events : list of dict
        ``{"t": onset s, "kind": "me"|"mae", "emotion": str}`` for every expression.
    jerks : list of float
        Head-jerk times in seconds (motion artifacts).
    cfg : SynthConfig
        Coupling and artifact knobs.

    Returns
    -------
    times : ndarray, shape (n,)
        Sample times in seconds (video time).
    signals : dict of str to ndarray (float32)
        ``ecg`` (mV), ``ppg`` and ``rsp`` (normalised), ``eda`` (microsiemens).
    artifacts : list of dict
        ``{"type", "channel", "t0", "t1"}`` for each motion spike and dropped-electrode segment.
    """
    n = int(round((stop - start) * rate))
    if n < 2:
        raise ValueError(f"physiology span too short: {stop - start:.3f} s at {rate} Hz")
    t = start + np.arange(n) / rate
    seconds = n / rate
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=4)]
    hr0 = float(rng.uniform(62, 82))
    rr0 = float(rng.uniform(12, 18))
    tonic = float(rng.uniform(2.0, 8.0))

    hr = np.full(n, hr0)
    rsp_speed = np.ones(n)
    ppg_gain = np.ones(n)
    scr = np.zeros(n)
    pause = np.zeros(n)
    c = cfg.physio_coupling
    for ev in events:
        gain = KIND_GAIN.get(ev["kind"], 0.0) * c
        if gain <= 0:
            continue
        k = COUPLING[ev["emotion"]]
        tau = t - ev["t"]
        amp = gain * float(rng.lognormal(0.0, 0.35))
        latency = float(np.clip(k["latency"] + rng.uniform(-0.4, 0.4), 1.0, 3.0))
        scr += amp * k["scr"] * _bateman(tau - latency)
        hr_peak = float(np.clip(k["hr_peak"] + rng.uniform(-0.5, 0.5), 2.0, 5.0))
        hr += amp * k["hr"] * _bump(tau - 0.5, hr_peak - 0.5)
        rsp_speed += amp * k["rsp_rate"] * _bump(tau - 1.0, 3.0)
        ppg_gain += amp * k["ppg"] * _bump(tau - 1.0, 3.0)
        if k["pause"] > 0:
            length = k["pause"] * min(gain, 1.5) * float(rng.uniform(0.7, 1.3))
            pause = np.maximum(pause, ((tau > 0.3) & (tau < 0.3 + length)).astype(float))
    rsp_speed = np.clip(rsp_speed, 0.3, 2.0) * (1 - 0.95 * _smooth(pause, int(0.4 * rate)))
    ppg_gain = np.clip(ppg_gain, 0.3, 1.5)

    # neurokit2 simulates at integer rates; the warp resamples to ``rate`` at the same time.
    nk_rate = max(1, int(round(rate)))
    ratio = nk_rate / rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import neurokit2 as nk

        speed = hr / hr0
        span = float(speed.sum() / rate) + 5.0
        ecg = nk.ecg_simulate(
            duration=int(np.ceil(span)), sampling_rate=nk_rate, heart_rate=hr0, heart_rate_std=2,
            noise=0.02, method="ecgsyn", random_state=seeds[0],
        )
        ppg = nk.ppg_simulate(
            duration=int(np.ceil(span)), sampling_rate=nk_rate, heart_rate=hr0, motion_amplitude=0.05,
            powerline_amplitude=0.0, ibi_randomness=0.05, random_state=seeds[1],
        )
        rsp = nk.rsp_simulate(
            duration=int(np.ceil(float(rsp_speed.sum() / rate) + 5.0)), sampling_rate=nk_rate,
            respiratory_rate=rr0, noise=0.02, method="breathmetrics", random_state=seeds[2],
        )
        n_spont = int(rng.poisson(cfg.spontaneous_scr_per_min * seconds / 60.0))
        eda_base = nk.eda_simulate(
            duration=int(np.ceil(seconds)) + 1, sampling_rate=nk_rate, scr_number=n_spont, drift=-0.01,
            noise=0.0, random_state=seeds[3],
        )
    ecg = _warp(np.asarray(ecg, float), speed * ratio)
    transit = int(0.25 * rate)
    ppg = _warp(np.asarray(ppg, float), np.concatenate([np.ones(transit), speed])[:n] * ratio) * ppg_gain
    rsp = _warp(np.asarray(rsp, float), rsp_speed * ratio)
    eda = tonic + 0.25 * _warp(np.asarray(eda_base, float), np.full(n, ratio)) + scr
    eda += rng.normal(0, 0.005, n)

    artifacts: list[dict] = []
    if cfg.motion_artifacts:
        for tj in jerks:
            i0 = int(round((tj - start) * rate))
            if not 0 <= i0 < n:
                continue
            m = min(n, i0 + int(0.6 * rate)) - i0
            tau = np.arange(m) / rate
            env = np.exp(-tau / 0.15)
            ecg[i0 : i0 + m] += float(rng.uniform(0.5, 1.5)) * env * rng.normal(0, 1, m)
            ppg[i0 : i0 + m] += float(rng.uniform(1.0, 3.0)) * env * np.sign(rng.normal())
            eda[i0 : i0 + m] += float(rng.uniform(0.05, 0.2)) * env
            rsp[i0 : i0 + m] += float(rng.uniform(0.2, 0.5)) * env
            artifacts.append({"type": "motion", "channel": "all", "t0": float(tj), "t1": float(tj + 0.6)})
    if rng.random() < cfg.electrode_drop and seconds > 8:
        channel = ("ecg", "eda", "ppg")[int(rng.integers(3))]
        length = float(rng.uniform(2.0, 5.0))
        t0 = float(rng.uniform(start + 1.0, stop - length - 1.0))
        sel = (t >= t0) & (t < t0 + length)
        sig = {"ecg": ecg, "eda": eda, "ppg": ppg}[channel]
        sig[sel] = rng.normal(0, 0.002, int(sel.sum()))
        artifacts.append({"type": "electrode_drop", "channel": channel, "t0": t0, "t1": t0 + length})

    signals = {name: np.asarray(sig, np.float32) for name, sig in zip(CHANNELS, (ecg, ppg, rsp, eda))}
    return t, signals, artifacts
