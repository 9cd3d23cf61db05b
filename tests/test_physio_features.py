"""Physiological features on signals with known content."""

import neurokit2 as nk
import numpy as np
import pytest

from mmer.features.physio import (
    PHYSIO_FEATURES,
    PHYSIO_SERIES,
    cardiac_features,
    eda_features,
    physio_process,
    physio_resample,
    rsp_features,
)

FS = 200


def scr_signal(onset_s: float, amplitude: float, n_s: float = 8.0) -> np.ndarray:
    t = np.arange(int(n_s * FS)) / FS
    tau = np.clip(t - onset_s, 0, None)
    shape = np.where(t > onset_s, np.exp(-tau / 2.5) - np.exp(-tau / 0.75), 0.0)
    return 5.0 + 0.02 * t + amplitude * shape / shape.max()


def test_eda_finds_the_scr_after_onset():
    eda = scr_signal(onset_s=3.8, amplitude=0.4)  # ME onset at 2 s -> SCR onset ~1.8 s later
    out = eda_features(eda, sampling_rate=FS, onset=2.0)
    assert out["scr_present"] == 1.0
    assert 1.3 < out["scr_latency"] < 2.3
    assert 0.2 < out["scr_amplitude"] < 0.6
    assert out["scr_latency"] < out["scr_peak_time"] < out["scr_latency"] + 4.0
    assert out["scr_slope"] > 0 and out["scr_latency"] <= out["scr_slope_time"] <= out["scr_peak_time"]
    assert out["phasic"].shape == eda.shape
    flat = eda_features(np.full(1600, 5.0), sampling_rate=FS, onset=2.0)
    assert flat["scr_present"] == 0.0 and np.isnan(flat["scr_latency"])


def test_heart_rate_from_ecg_and_ppg():
    ecg = nk.ecg_simulate(duration=8, sampling_rate=FS, heart_rate=72, random_state=0)
    out = cardiac_features(ecg, sampling_rate=FS, onset=2.0, kind="ecg")
    assert out["hr_baseline"] == pytest.approx(72, abs=6)
    assert len(out["hr_change"]) == 3 and max(abs(v) for v in out["hr_change"]) < 6
    assert out["n_beats"] >= 8 and np.isfinite(out["hrv_rmssd"])
    ppg = nk.ppg_simulate(duration=8, sampling_rate=FS, heart_rate=80, random_state=0)
    out = cardiac_features(ppg, sampling_rate=FS, onset=2.0, kind="ppg")
    assert out["hr_baseline"] == pytest.approx(80, abs=8)
    assert out["amplitude"].shape == ppg.shape and max(abs(v) for v in out["amplitude_change"]) < 0.3
    with pytest.raises(ValueError, match="kind"):
        cardiac_features(ecg, sampling_rate=FS, onset=2.0, kind="emg")


def test_heart_rate_deceleration_and_pulse_amplitude_drop():
    t = np.arange(int(8 * FS)) / FS
    rate = np.where(t < 3.0, 75.0, 60.0)  # bpm falls 1 s after the onset at 2 s
    phase = 2 * np.pi * np.cumsum(rate / 60.0) / FS
    gain = np.where(t < 3.0, 1.0, 0.6)  # and the pulse shrinks (vasoconstriction)
    ppg = gain * (np.sin(phase) + 0.3 * np.sin(2 * phase))
    out = cardiac_features(ppg, sampling_rate=FS, onset=2.0, kind="ppg")
    assert out["hr_baseline"] == pytest.approx(75, abs=3)
    assert out["hr_change"][2] == pytest.approx(-15, abs=3) and out["hr_change_min"] < -10
    assert out["amplitude_change"][2] == pytest.approx(-0.4, abs=0.1)


def test_respiration_rate_and_pause():
    t = np.arange(int(8 * FS)) / FS
    breathing = np.sin(2 * np.pi * 0.25 * t)  # 15 breaths/min
    breathing[(t > 2.5) & (t < 5.5)] *= 0.1  # a pause after the onset
    out = rsp_features(breathing, sampling_rate=FS, onset=2.0)
    assert out["rate"] == pytest.approx(15, abs=3)
    assert out["stillness"] < 0.3 and out["speed_change"][1] < -0.3
    steady = rsp_features(np.sin(2 * np.pi * 0.25 * t), sampling_rate=FS, onset=2.0)
    assert steady["stillness"] > 0.35 and abs(steady["speed_change"][0]) < 0.3
    faster = np.sin(2 * np.pi * np.cumsum(np.where(t < 2.0, 0.25, 0.4)) / FS)  # 15 -> 24 breaths/min
    assert rsp_features(faster, sampling_rate=FS, onset=2.0)["rate_change"][1] > 4.0
    assert max(abs(v) for v in steady["rate_change"]) < 2.0


def test_physio_process_shapes_masks_and_bad_channels():
    sig = {"eda": scr_signal(3.5, 0.3), "ecg": nk.ecg_simulate(duration=8, sampling_rate=FS, random_state=1),
           "ppg": nk.ppg_simulate(duration=8, sampling_rate=FS, random_state=1),
           "rsp": nk.rsp_simulate(duration=8, sampling_rate=FS, random_state=1)}
    out = physio_process(sig, sampling_rate=FS, onset=2.0, length=32)
    assert out["series"].shape == (len(PHYSIO_SERIES), 32) and out["features"].shape == (len(PHYSIO_FEATURES),)
    assert np.isfinite(out["series"]).all() and np.isfinite(out["features"]).all()
    assert out["quality"] == {"eda": "ok", "ecg": "ok", "ppg": "ok", "rsp": "ok"}
    assert np.isfinite([out["raw"][k] for k in PHYSIO_FEATURES if k != "scr_latency"]).all()
    no_ppg = physio_process({k: sig[k] for k in ("eda", "ecg", "rsp")}, sampling_rate=FS, onset=2.0, length=32)
    assert not no_ppg["series"][PHYSIO_SERIES.index("ppg_amplitude")].any()  # absent channel stays zero
    assert no_ppg["raw"]["hr_baseline"] == out["raw"]["hr_baseline"]  # heart rate comes from the ECG
    nan_eda = sig["eda"].copy()
    nan_eda[100:140] = np.nan  # a short dropout is interpolated, not fatal
    assert physio_process({"eda": nan_eda}, sampling_rate=FS, onset=2.0)["quality"]["eda"] == "ok"
    short = physio_process({"eda": np.ones(100)}, sampling_rate=FS, onset=0.2)
    assert "at least 2 s" in short["quality"]["eda"]
    with pytest.raises(ValueError, match="unknown physiological channels"):
        physio_process({"emg": np.ones(2000)}, sampling_rate=FS, onset=2.0)


def test_resample():
    assert np.allclose(physio_resample(np.linspace(0, 1, 100), length=5), [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    assert physio_resample(np.full(10, np.nan), length=4).tolist() == [0, 0, 0, 0]
