"""Issue 12 #7: the hedge venue (the equity broker) refuses the hedge, or fills half of it, or closes
with the delta outstanding. The delta stays outstanding until the broker can take the hedge, nothing
is sent twice or while its market is closed, and the hedge goes out once it trades again (the next
open). The venues' ledgers are the truth (faults/invariants.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from live.live_sandbox import close_live, start_live, with_live

from faults.conftest import BUSY_TRADES_PER_MIN
from faults.invariants import assert_ledger_invariants, bounded, step_until

NS = 1_000_000_000

BAND = 1.0  # shares


@bounded(60)
async def test_a_hedge_the_broker_refuses_goes_out_when_it_trades_again(sb_cfg, busy_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = sb_cfg.model_copy(update={"risk": sb_cfg.risk.model_copy(update={"hedge_band": BAND})})
    cfg = with_live(cfg, call_timeout_ms=1_000.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)
    run = await start_live(cfg, busy_store, tmp_path, venues=("bybit", "broker"))
    sb, j = run.sb, run.session.journal
    broker = sb["broker"]
    symbol = next(iter(broker.emu.markets))
    delta = lambda: float(run.runner.core.valuation(sb.clock.data_now())["net_delta"])  # noqa: E731
    refused = lambda: [e for e in j.events() if e["venue"] == "broker" and e["kind"] == "reject"]  # noqa: E731
    try:
        broker.fault("halt", symbol=symbol)  # the broker refuses every order from the start
        run.start()
        assert await step_until(run, lambda: bool(refused()), steps=90, wall_s=0.05), \
            f"no hedge was tried while the broker was halted (net delta {delta():.2f})"
        assert broker.account.fills == []
        await step_until(run, lambda: False, steps=5, wall_s=0.05)
        assert abs(delta()) > BAND, "the delta went back inside the band without a hedge"
        broker.fault("resume", symbol=symbol)
        assert await step_until(run, lambda: bool(broker.account.fills), steps=30, wall_s=0.1), \
            "the hedge did not go out after the broker came back"
        await step_until(run, lambda: abs(delta()) <= 2 * BAND, steps=20, wall_s=0.1)
        await run.stop()
        assert_ledger_invariants(run, ("bybit", "broker"))
        assert abs(delta()) <= 2 * BAND, f"net delta {delta():.2f} still outside the band after the hedge"
    finally:
        await close_live(run)


@bounded(60)
async def test_a_hedge_the_broker_half_fills_has_its_rest_sent_once(sb_cfg, busy_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = sb_cfg.model_copy(update={"risk": sb_cfg.risk.model_copy(update={"hedge_band": BAND})})
    cfg = with_live(cfg, call_timeout_ms=1_000.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)
    run = await start_live(cfg, busy_store, tmp_path, venues=("bybit", "broker"))
    sb = run.sb
    broker = sb["broker"]
    orders = lambda: list(broker.account.orders.values())  # noqa: E731 - the broker's own record, in order
    delta = lambda: float(run.runner.core.valuation(sb.clock.data_now())["net_delta"])  # noqa: E731
    try:
        broker.fault("partial_fill", fraction=0.5, count=1)  # the first hedge finds half its size
        run.start()
        assert await step_until(run, lambda: any(o.is_final for o in orders()), steps=90, wall_s=0.05), \
            f"no hedge went out (net delta {delta():.2f})"
        first = orders()[0]
        assert first.status == "cancelled" and 0 < first.filled < first.qty, \
            f"the first hedge was not half filled: {first.status} {first.filled}/{first.qty}"
        assert first.filled == pytest.approx(first.qty // 2, abs=1e-9)  # shares, the broker's lot is 1
        assert await step_until(run, lambda: len(orders()) >= 2 and orders()[1].is_final, steps=30, wall_s=0.1), \
            f"the rest of the half-filled hedge never went out (net delta {delta():.2f})"
        await step_until(run, lambda: abs(delta()) <= 2 * BAND, steps=20, wall_s=0.1)
        await run.stop()
        assert_ledger_invariants(run, ("bybit", "broker"))
        assert abs(delta()) <= 2 * BAND, f"net delta {delta():.2f} still outside the band after the rest"
        # the rest went out for what was left, not for the whole delta again
        second = orders()[1]
        assert second.side == first.side and second.qty <= first.qty - first.filled + 2 * BAND, \
            f"the second hedge ({second.side} {second.qty}) re-sent the filled half of the first ({first.qty})"
    finally:
        await close_live(run)


MONDAY_CLOSE = datetime(2025, 7, 7, 20, 0, tzinfo=timezone.utc)   # 16:00 New York (EDT)
TUESDAY_OPEN = datetime(2025, 7, 8, 13, 30, tzinfo=timezone.utc)  # 09:30 New York


@pytest.fixture(scope="module")
def two_days(tmp_path_factory, sb_cfg) -> Path:  # noqa: F811
    """The busy market over Mon 2025-07-07 and Tue 2025-07-08: a regular close, a night, an open."""
    from data.synth import synthesize

    synth = sb_cfg.synth.model_copy(update={"trade_rate_per_min": BUSY_TRADES_PER_MIN, "start": "2025-07-07T00:00:00Z"})
    out = tmp_path_factory.mktemp("two-days")
    synthesize(sb_cfg.model_copy(update={"synth": synth}), out, days=2)
    return out


@bounded(150)
async def test_a_delta_left_at_the_close_is_hedged_at_the_next_open_and_not_before(sb_cfg, two_days, sb_compiled, tmp_path):  # noqa: F811
    cfg = sb_cfg.model_copy(update={"risk": sb_cfg.risk.model_copy(update={"hedge_band": BAND})})
    cfg = with_live(cfg, call_timeout_ms=1_000.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)
    close_ns, open_ns = (int(t.timestamp()) * NS for t in (MONDAY_CLOSE, TUESDAY_OPEN))
    run = await start_live(cfg, two_days, tmp_path, venues=("bybit", "broker"), start_h=19.75)  # 19:45 UTC
    sb, j = run.sb, run.session.journal
    broker = sb["broker"]
    cal = broker.emu.sessions
    assert (int(cal.next_close(sb.clock.data_now())), int(cal.next_open(close_ns))) == (close_ns, open_ns)
    symbol, token = next(iter(broker.emu.markets)), next(iter(sb["bybit"].emu.markets))
    delta = lambda: float(run.runner.core.valuation(sb.clock.data_now())["net_delta"])  # noqa: E731
    sent = lambda lo, hi: [i for i in j.intents() if i["venue"] == "broker" and i["action"] == "new"  # noqa: E731
                           and lo <= i["local_ns"] < hi]
    try:
        broker.fault("halt", symbol=symbol)  # no hedge fills before the close: the delta is carried
        run.start()
        assert await step_until(run, lambda: abs(delta()) > BAND, steps=600, wall_s=0.02), \
            "the bybit quotes never built a delta outside the band before the close"
        # bybit halts too, so no token fill takes the delta back inside the band (the skew would)
        sb["bybit"].fault("halt", symbol=token)
        assert sb.clock.data_now() < close_ns - 30 * NS, "the delta came too late to be carried over the close"
        await step_until(run, lambda: sb.clock.data_now() >= close_ns, steps=900, wall_s=0.02)
        broker.fault("resume", symbol=symbol)  # the broker would take orders again: nothing may go
        carried = delta()
        assert abs(carried) > BAND, f"the delta ({carried:.2f}) went inside the band before the close"
        while sb.clock.data_now() < open_ns - 60 * NS:  # the night, ten minutes of market a step
            await step_until(run, lambda: False, steps=1, seconds=min(600.0, (open_ns - 60 * NS - sb.clock.data_now()) / NS),
                             wall_s=0.02)
        assert sent(close_ns, open_ns) == [], "a hedge was sent while the broker's market was closed"
        assert broker.account.fills == []
        assert await step_until(run, lambda: bool(broker.account.fills), steps=120, wall_s=0.05), \
            f"the carried delta ({delta():.2f}) was not hedged after the open"
        assert broker.account.fills[0].ts >= open_ns
        await step_until(run, lambda: abs(delta()) <= 2 * BAND, steps=20, wall_s=0.1)
        sb["bybit"].fault("resume", symbol=token)
        await run.stop()
        assert_ledger_invariants(run, ("bybit", "broker"))
        assert abs(delta()) <= 2 * BAND, f"net delta {delta():.2f} still outside the band after the open"
    finally:
        await close_live(run)
