"""Fixtures of the sandbox tests: one small synthetic store per session, a stepped sandbox per test.

Everything runs on loopback (127.0.0.1, free ports); each sandbox is stopped by its fixture, and
every wait is bounded (``within``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from execution.sandbox.sandbox import Sandbox
from execution.sandbox.venue import data_start
from stockbridge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
HOUR_NS = 3600 * 10**9


@pytest.fixture(scope="session")
def sb_cfg():
    return load_config(ROOT / "configs" / "demo.toml")


@pytest.fixture(scope="session")
def sb_store(tmp_path_factory, sb_cfg) -> Path:
    """One day of the demo's synthetic market (Thu 2025-07-03: a half trading day)."""
    from data.synth import synthesize

    out = tmp_path_factory.mktemp("sandbox-store")
    synthesize(sb_cfg, out, days=1)
    return out


@pytest.fixture(scope="session")
def sb_compiled(sb_cfg, sb_store) -> None:
    """Compile (or load from numba's cache) every matching function the emulators call, before any
    test starts a server: from a cold cache that takes longer than the clients' 5 s bounds, and it
    would land inside the first create_order a test awaits."""
    from backtest.orders import GTC, IOC
    from execution.sandbox.market import MarketSim
    from execution.sandbox.venue import market_chunks

    v = sb_cfg.venues["bybit"]
    ms = MarketSim(market_chunks(sb_store, sb_cfg, "bybit", "AAPLx"), v.maker_fee_bps, v.taker_fee_bps, v.gas_per_trade)
    t = ms.first_ts() + 3600 * 10**9
    ms.advance(t)
    bids, asks = ms.book()
    slot, sim_id, _ = ms.submit(1, bids[0][0], 1.0, GTC, True, t)
    ms.submit(-1, bids[0][0], 1.0, IOC, False, t)
    ms.cancel(slot, sim_id, t)
    ms.walk(1, asks[0][0], 1.0)
    ms.advance(t + 60 * 10**9)


@pytest.fixture
async def sandboxes(sb_cfg, sb_store, sb_compiled):
    """``await sandboxes(venues, start_offset_h=1.0)``: a started, stepped sandbox starting that many
    hours into the store; stopped (servers closed) when the test ends."""
    made: list[Sandbox] = []

    async def make(venues: list[str], start_offset_h: float = 1.0) -> Sandbox:
        t0 = data_start(sb_store, sb_cfg, venues)
        sb = Sandbox(sb_cfg, sb_store, stepped=True, start_ns=t0 + int(start_offset_h * HOUR_NS), venues=venues)
        made.append(sb)
        return await sb.start()

    yield make
    for sb in made:
        await asyncio.wait_for(sb.stop(), 10)
