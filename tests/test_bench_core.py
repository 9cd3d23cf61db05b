"""The streaming benchmarks run end to end with tiny settings and return the agreed JSON keys."""

from __future__ import annotations

import argparse
import json

import pytest

from mmer.bench import buffer, soak, sync, transport
from mmer.cli import main


def _args(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_bench_sync_meets_its_target_on_a_short_run(capsys):
    assert main(["bench", "sync", "--json", "--seconds", "30"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    err = result["error_ms"]
    assert set(err) == {"p50", "p99", "max"}
    assert 0 <= err["p50"] <= err["p99"] <= err["max"]
    assert err["p99"] < 1.0  # the corrections work: raw stamps are off by 250 ms and more
    assert result["uncorrected_error_ms"]["p50"] > 200
    assert result["drops_counted"] == result["drops_injected"] > 0
    assert result["clock_resets_detected"] == 1 and result["data_resets_detected"] == 1


def test_bench_sync_follows_its_settings():
    clean = sync.run(_args(sync, ["--seconds", "20", "--drop", "0", "--offset-ms", "0", "--drift-ppm", "0"]))
    assert clean["drops_injected"] == clean["drops_counted"] == 0
    assert clean["error_ms"]["p99"] < 1.0 and clean["membership_errors"] == 0
    assert clean["settings"]["seconds"] == 20


@pytest.mark.slow
def test_bench_transport_shape():
    result = transport.run(_args(transport, ["--frames", "14", "--warmup", "4", "--sizes", "640x480"]))
    for kind in ("zmq", "lsl"):
        row = result[kind]["640x480"]
        assert set(row) >= {"p50_ms", "p95_ms", "p99_ms"}
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] < 5000
        assert row["received"] == 14


@pytest.mark.slow
def test_bench_buffer_shape():
    result = buffer.run(_args(buffer, ["--duration", "0.6", "--warmup", "0.3", "--seconds", "5", "--rounds", "1"]))
    rates = result["samples_per_s"]
    assert set(rates) == {"mmer", "mne_lsl", "pylsl_list"}
    assert all(v > 0 for v in rates.values())


@pytest.mark.slow
def test_bench_soak_shape():
    result = soak.run(_args(soak, ["--minutes", "0.1", "--source", "builtin", "--warmup", "2"]))
    assert set(result) >= {"physio_lost", "frames_dropped", "frames_total", "rss_mb_start", "rss_mb_end"}
    assert result["physio_lost"] == 0
    assert result["frames_total"] > 100
    # Loopback over a few seconds: at most 1% of the frames due may be lost (0 in a quiet run).
    assert result["frames_dropped"] <= 0.01 * result["frames_total"], result
    assert result["rss_mb_end"] > 0
