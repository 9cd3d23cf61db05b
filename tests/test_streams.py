"""configure_lsl writes its lsl_api.cfg where no other local user can redirect it."""

from __future__ import annotations

import os
import stat
import tempfile
import uuid
from pathlib import Path

import pytest

from mmer.streams import configure_lsl


def test_a_planted_link_at_the_old_path_is_not_followed(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLAPICFG", os.environ.get("LSLAPICFG", ""))
    session = f"planted-{uuid.uuid4().hex[:8]}"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = Path(tempfile.gettempdir()) / f"mmer-lsl-{session}.cfg"
    link.symlink_to(victim)
    try:
        path = Path(configure_lsl(session))
    finally:
        link.unlink()
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and os.environ["LSLAPICFG"] == str(path)
    assert f"SessionID = {session}" in path.read_text()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("session", ["../escape", "a/b", "", "x\nSessionID = other", "-lead"])
def test_session_ids_that_are_not_plain_names_are_refused(monkeypatch, session):
    monkeypatch.setenv("LSLAPICFG", os.environ.get("LSLAPICFG", ""))
    with pytest.raises(ValueError, match="session id"):
        configure_lsl(session)
