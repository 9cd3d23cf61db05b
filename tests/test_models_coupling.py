"""The physiology-coupling control of the fusion experiments: at C = 0 physiology holds no emotion."""

import numpy as np
import pytest

from mmer.cli import main
from mmer.synth import SynthConfig
from mmer.synth._physio import simulate_physio


def _physio(coupling: float, emotions: list[str]) -> dict[str, np.ndarray]:
    events = [{"t": 2.0 + 4.0 * i, "kind": kind, "emotion": e}
              for i, (kind, e) in enumerate(zip(["me", "mae"] * 3, emotions))]
    cfg = SynthConfig(physio_coupling=coupling, motion_artifacts=False, electrode_drop=0.0)
    _, signals, _ = simulate_physio(np.random.default_rng(5), start=-1.0, stop=26.0, rate=50.0, events=events,
                                    jerks=[], cfg=cfg)
    return signals


@pytest.mark.slow
def test_zero_coupling_makes_physiology_independent_of_the_emotion():
    a = ["happy", "surprise", "fear", "sad", "anger", "disgust"]
    b = ["surprise", "sad", "happy", "anger", "disgust", "fear"]
    for name, sig in _physio(0.0, a).items():  # same events, other emotions: the very same signals
        assert np.array_equal(sig, _physio(0.0, b)[name]), name
    for coupling in (0.25, 1.0):  # any coupling > 0 lets the emotion change the signals
        one, other = _physio(coupling, a), _physio(coupling, b)
        assert any(not np.allclose(one[k], other[k]) for k in one), coupling


def test_synth_cli_takes_the_coupling(tmp_path, capsys):
    assert main(["synth", "casme3", str(tmp_path / "s"), "--subjects", "1", "--videos", "1", "--seconds", "2",
                 "--size", "160x120", "--no-depth", "--physio-coupling", "-1"]) == 2
    assert "physio_coupling" in capsys.readouterr().err



@pytest.mark.slow
def test_fusion_gain_vanishes_without_physiology_information_and_shows_with_it():
    from mmer.bench.recognition import fusion_gain

    rng = np.random.default_rng(0)
    n, k = 240, 4
    y = np.arange(n) % k
    faces = np.repeat([f"f{i}" for i in range(6)], n // 6)
    sessions = np.repeat([f"s{i}" for i in range(12)], n // 12)
    video = rng.dirichlet(np.ones(k), n)
    video[np.arange(n), y] += 0.3  # a weak but real video model
    video /= video.sum(1, keepdims=True)
    noise = rng.normal(0, 1, (n, 5))
    null = fusion_gain(video, noise, y, faces=faces, sessions=sessions, classes=list("abcd"), n_boot=100)
    assert null["physio_uf1"] < 0.4 and abs(null["gain"]) <= 0.03
    assert null["gain_ci95"][0] <= 0.0 <= null["gain_ci95"][1]
    informative = noise + np.eye(k)[y] @ rng.normal(0, 2, (k, 5))
    real = fusion_gain(video, informative, y, faces=faces, sessions=sessions, classes=list("abcd"), n_boot=100)
    assert real["physio_uf1"] > 0.6 and real["gain"] > 0.05 and real["gain_ci95"][0] > 0.0
    assert real["n_sessions"] == 12 and real["n_faces"] == 6
