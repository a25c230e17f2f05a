"""Fixtures of the live-side unit tests (tests/live/live_rig.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_rig import Rig  # noqa: E402


@pytest.fixture
def rig(tmp_path) -> Rig:
    r = Rig(tmp_path)
    yield r
    r.journal.close()
