"""The public surface: every name re-exported from ``mmer`` resolves, and the CLI lists its commands."""

import subprocess
import sys

import pytest

import mmer


@pytest.mark.parametrize("name", [n for n in mmer.__all__ if n != "__version__"])
def test_public_name_resolves(name):
    assert getattr(mmer, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mmer.nope  # noqa: B018


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "mmer", "--help"], capture_output=True, text=True, check=True)
    for command in ("bench", "demo", "evaluate", "inspect", "live", "predict", "record", "replay",
                    "sensors", "spot", "stream", "synth", "train"):
        assert command in out.stdout
