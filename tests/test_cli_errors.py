"""Inputs mmer refuses end as ``mmer COMMAND: error: ...`` with exit 2, never as a traceback."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from mmer.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replay import _write_tiny_part_a  # noqa: E402


def _refused(capsys, argv: list[str], match: str) -> dict | None:
    """Run the CLI in this process; assert exit 2, one error line naming ``match``, no traceback."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.startswith(f"mmer {argv[0]}: error: ")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err
    return json.loads(out.strip().splitlines()[-1]) if "--json" in argv else None


def test_lockstep_replay_with_no_consumer(capsys, tmp_path):
    _write_tiny_part_a(tmp_path)
    prefix = f"t{uuid.uuid4().hex[:6]}."
    summary = _refused(capsys, ["replay", "casme3", str(tmp_path), "--lockstep", "--timeout", "0.5", "--json",
                                "--prefix", prefix], "0 of 1 consumer(s) joined")
    assert summary["exit_code"] == 2 and "consumer" in summary["error"]
