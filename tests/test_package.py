"""The public surface: every name re-exported from ``mmer`` resolves, and the CLI lists its commands."""

import subprocess
import sys

import pytest

import mmer


@pytest.mark.parametrize("name", [n for n in mmer.__all__ if n != "__version__"])
def test_public_name_resolves(name):
    # Every export is a class or function defined under its own name (an alias or a module-level
    # value left behind by a rename would fail here), and it is listed by dir().
    obj = getattr(mmer, name)
    assert callable(obj) and obj.__name__ == name and obj.__module__.startswith("mmer.")
    assert name in dir(mmer)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mmer.nope  # noqa: B018


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "mmer", "--help"], capture_output=True, text=True, check=True)
    for command in ("bench", "demo", "evaluate", "inspect", "live", "predict", "record", "replay",
                    "sensors", "spot", "stream", "synth", "train"):
        assert command in out.stdout
