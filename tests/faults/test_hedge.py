"""Issue 12 #7: the hedge venue (the equity broker) refuses the hedge; the delta stays outstanding,
nothing is sent twice, and the hedge goes out once the broker takes orders again. The venues'
ledgers are the truth (faults/invariants.py)."""

from __future__ import annotations

from live.live_sandbox import close_live, start_live, with_live

from faults.invariants import assert_ledger_invariants, bounded, step_until

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
