"""Fixtures of the fault-injection suite: the sandbox tests' config, store and compiled matching, and
a busier store (the same day with 30x the token trades) where a scenario needs fills to happen."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox.conftest import sb_cfg, sb_compiled, sb_store  # noqa: F401 - shared with tests/sandbox

BUSY_TRADES_PER_MIN = 180.0


@pytest.fixture(scope="session")
def busy_store(tmp_path_factory, sb_cfg) -> Path:  # noqa: F811
    """One day of the demo's synthetic market with ``BUSY_TRADES_PER_MIN`` token trades a minute in
    regular hours: our quotes fill every few seconds, so a fault meets fills within a short run."""
    from data.synth import synthesize

    cfg = sb_cfg.model_copy(update={"synth": sb_cfg.synth.model_copy(update={"trade_rate_per_min": BUSY_TRADES_PER_MIN})})
    out = tmp_path_factory.mktemp("busy-store")
    synthesize(cfg, out, days=1)
    return out


@pytest.fixture(scope="session", autouse=True)
def _trader_compiled(sb_cfg, sb_store, sb_compiled, tmp_path_factory) -> None:  # noqa: F811
    """Build one live session (and drop it) before any test: that compiles the trader core's entry
    points and the strategy kernel, or loads them from numba's cache. From a cold cache (after any
    edit of the sources, stockbridge/_cache.py) that takes a minute, which must not land inside the
    first test's 60 s bound."""
    import asyncio

    from live.live_sandbox import close_live, start_live

    async def once() -> None:
        run = await start_live(sb_cfg, sb_store, tmp_path_factory.mktemp("warm-up"), venues=("bybit",))
        await close_live(run)

    asyncio.run(once())
