"""The demo's filter for native start-up chatter: known lines go, everything else stays."""

from __future__ import annotations

import subprocess
import sys

from mmer.live._quiet import is_chatter

CHATTER = [
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "W0000 00:00:1795250066.139522   28779 inference_feedback_manager.cc:114] Feedback manager requires a model "
    "with a single signature inference. Disabling support for feedback tensors.",
    "W0000 00:00:1795250053.796940   28541 landmark_projection_calculator.cc:186] Using NORM_RECT without "
    "IMAGE_DIMENSIONS is only supported for the square ROI. Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX.",
]
KEPT = [
    "2026-11-21 08:35:26.163 (  76.116s) [R_mmer.rgb      ]      data_receiver.cpp:375    ERR| Stream "
    "transmission broke off (Input stream error.); re-connecting...",
    "E0000 00:00:1795250053.796940   28541 calculator_graph.cc:887] INVALID_ARGUMENT: something real",
    "WARNING: a real warning",
]


def test_only_known_chatter_is_recognised():
    assert all(is_chatter(line + "\n") for line in CHATTER)
    assert not any(is_chatter(line) for line in KEPT)


def test_filter_drops_native_chatter_and_keeps_the_rest():
    script = f"""
import logging, os, subprocess, sys
logging.basicConfig()
from mmer.live._quiet import NativeChatterFilter
lines = {CHATTER + KEPT!r}
with NativeChatterFilter():
    for line in lines:
        os.write(2, (line + "\\n").encode())
    logging.getLogger("x").warning("logged before the end")
    print("python stderr", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "import os; os.write(2, {CHATTER[0]!r}.encode() + b'\\\\nchild line\\\\n')"])
print("after", file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stderr.splitlines()
    assert not [line for line in out if is_chatter(line)], out
    for line in [*KEPT, "WARNING:x:logged before the end", "python stderr", "child line", "after"]:
        assert line in out, (line, out)
