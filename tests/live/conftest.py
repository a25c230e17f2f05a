"""Fixtures of the live-side unit tests (tests/live/live_rig.py)."""

from __future__ import annotations

import pytest

from live.live_rig import Rig


@pytest.fixture
def rig(tmp_path) -> Rig:
    r = Rig(tmp_path)
    yield r
    r.journal.close()
