"""Shared fixtures.

Every test process gets its own LSL SessionID, so concurrent test runs on one host (and any lab
software running beside them) never see each other's streams.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mmer.streams import configure_lsl

configure_lsl(f"mmer-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real annotation, XDF, face and video files)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED_DATA}; CI places ../shared beside the clone")
    return SHARED_DATA


@pytest.fixture(scope="session")
def faces_dir(shared_data: Path) -> Path:
    """Real face photographs used as synthetic subjects."""
    return shared_data / "faces"
