"""Session config: the example is valid and shipped, and bad files name the field and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmer.cli import main
from mmer.config import ConfigError, SessionConfig, example_config, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_is_valid_and_commented():
    text = example_config()
    cfg = parse_config(yaml.safe_load(text), source="example")
    assert isinstance(cfg, SessionConfig)
    assert [s.adapter for s in cfg.sensors] == ["synthetic-camera", "synthetic-physio"]
    assert cfg.buffer.physio_window_s == (-2.0, 6.0)
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith("#")) >= 15


def test_examples_file_matches_cli_output(capsys):
    assert main(["live", "--example-config"]) == 0
    printed = capsys.readouterr().out
    assert printed == example_config()
    assert (ROOT / "examples" / "session.yaml").read_text(encoding="utf-8") == printed


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"outputs": {"status": "maybe"}}, ["outputs.status", "'auto'"]),
        ({"buffer": {"stall_timeout_s": -1}}, ["buffer.stall_timeout_s", "greater than 0"]),
        ({"recording": {"codec": "x"}}, ["recording.codec", "unknown field", "rgb_codec"]),
        ({"recording": {"rgb_codec": "h265"}}, ["recording.rgb_codec", "'mp4v'", "'ffv1'"]),
        ({"sensors": [{"adapter": "webcam"}]}, ["sensors.0.adapter", "camera", "synthetic-physio"]),
        ({"sensors": [{"adapter": "camera", "options": {"sorce": 0}}]}, ["sensors.0", "sorce", "source"]),
        ({"spotter": {"foo": 1}}, ["spotter", "foo", "max_me_s"]),
        ({"spotter": {"p": 2}}, ["spotter", "p must be in"]),
        ({"buffer": {"physio_window_s": [3, 1]}}, ["buffer.physio_window_s", "before end"]),
        ({"buffer": {"seconds": 5}}, ["buffer", "must exceed the physio window"]),
        ({"replay": {"kind": "casme2", "path": "x"}}, ["replay.kind", "'casme3'", "'xdf'"]),
        ({"bogus": 1}, ["bogus", "unknown field", "sensors"]),
        ({"buffer": {"seconds": float("nan")}}, ["buffer.seconds", "finite number"]),
        ({"duration_s": float("inf")}, ["duration_s", "finite number"]),
        ({"recording": {"min_free_mb": float("inf")}}, ["recording.min_free_mb", "finite number"]),
        ({"spotter": {"min_score": float("nan")}}, ["spotter", "min_score is nan"]),
        ({"sensors": [{"adapter": "synthetic-physio", "options": {"rate": float("inf")}}]},
         ["sensors.0", "options.rate is inf"]),
        ({"sensors": [{"adapter": "synthetic-physio", "options": {"channels": [float("nan")]}}]},
         ["options.channels[0] is nan"]),
        ({"session_id": "../x"}, ["session_id", "should match pattern"]),
    ],
)
def test_invalid_fields_are_named_with_allowed_values(data, needles):
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="s.yaml")
    msg = str(info.value)
    assert msg.startswith("s.yaml: invalid session config")
    for needle in needles:
        assert needle in msg, msg


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({"outputs": {"status": "x"}, "buffer": {"stall_timeout_s": 0}}, source="s.yaml")
    assert "outputs.status" in str(info.value) and "buffer.stall_timeout_s" in str(info.value)


def test_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sensors: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_config(empty) == SessionConfig()


def test_cli_reports_invalid_config(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("outputs: {status: loud}\n", encoding="utf-8")
    assert main(["live", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mmer live: error:" in err and "outputs.status: Input should be 'auto' (got 'loud') | " in err


def test_yaml_nan_and_inf_are_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("buffer: {stall_timeout_s: .nan}\ninputs: {resolve_timeout_s: .inf}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "buffer.stall_timeout_s" in str(info.value) and "inputs.resolve_timeout_s" in str(info.value)

