"""Issue 12 #5, #6 and #8: a rate-limit storm, 5xx answers and timeouts on REST, the venues' clock
skewed by 2 s either way, and a venue that defaults mid-session while the other carries on. The
venue's ledger is the truth (faults/invariants.py)."""

from __future__ import annotations

from live.live_sandbox import close_live, start_live, with_live

from faults.invariants import (
    assert_ledger_invariants,
    assert_orders_converge,
    bounded,
    live_venue,
    orders_agree,
    step_until,
)

VENUES = ("bybit", "kraken")
FAST = dict(call_timeout_ms=1_000.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)


def resting(run, venue):
    return [o for o in run.sb[venue].account.orders.values() if not o.is_final]


def quoting_again(run, venues=VENUES):
    """A new order of ours was taken by each venue since this was called (predicate factory)."""
    n = {v: len(run.sb[v].account.orders) for v in venues}
    return lambda: all(len(run.sb[v].account.orders) > n[v] for v in venues)


def unresolved(run):
    return [(o.client_id, o.state.value) for o in run.runner.om.orders.values() if o.state.value in ("unknown", "pending_new")]


@bounded(60)
async def test_a_rate_limit_storm_then_5xx_and_timeouts_leave_the_books_whole(sb_cfg, busy_store, sb_compiled,  # noqa: F811
                                                                               tmp_path):
    run = await start_live(with_live(sb_cfg, **FAST), busy_store, tmp_path, venues=VENUES)
    sb = run.sb
    try:
        run.start()
        await run.step(5)
        sb["bybit"].fault("rate_limit", count=40)   # every REST call answers the venue's rate-limit error
        sb["kraken"].fault("http_error", status=503, count=25)
        sb["kraken"].fault("timeout", count=3)
        storm = lambda: all(sb[v].emu.faults.rate_limit_n == sb[v].emu.faults.http_error_n == 0  # noqa: E731
                            for v in VENUES)
        assert await step_until(run, storm, steps=40, wall_s=0.2), "the bot stopped calling the venues"
        back = quoting_again(run)
        assert await step_until(run, back, steps=20), "quoting did not come back after the storm"
        assert await step_until(run, lambda: not unresolved(run) and orders_agree(run, VENUES), steps=30), \
            f"orders still unresolved after the storm: {unresolved(run)}"
        await run.stop()
        assert_ledger_invariants(run, VENUES)
    finally:
        await close_live(run)


@bounded(60)
async def test_the_venues_clock_two_seconds_ahead_then_behind(sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    """One replay clock serves both emulators: the skew moves both venues' clocks."""
    run = await start_live(with_live(sb_cfg, **FAST), sb_store, tmp_path, venues=VENUES)
    sb = run.sb
    try:
        run.start()
        await run.step(5)
        for ms in (2_000.0, -2_000.0):
            sb["bybit"].fault("skew_clock", ms=ms)
            assert await step_until(run, quoting_again(run), steps=20, wall_s=0.1), \
                f"no order taken with the venues' clock {ms:+.0f} ms off: " + str(
                    [(e["venue"], e["kind"], e["detail"]) for e in run.session.journal.events()
                     if "rate limit queue" not in str(e["detail"])][-6:]) + str(
                    {v: len(sb[v].account.orders) for v in VENUES}) + str(run.runner.guards.snapshot(sb.clock.data_now()))
            await assert_orders_converge(run, VENUES)
        sb["bybit"].fault("clear")
        await run.stop()
        assert_ledger_invariants(run, VENUES)
    finally:
        await close_live(run)


@bounded(60)
async def test_a_venue_that_defaults_mid_session_stops_there_and_the_other_carries_on(sb_cfg, busy_store,  # noqa: F811
                                                                                       sb_compiled, tmp_path):
    cfg = with_live(sb_cfg, **FAST, guards={"stale_book_ms": 3_000.0})
    run = await start_live(cfg, busy_store, tmp_path, venues=VENUES)
    sb, j = run.sb, run.session.journal
    try:
        run.start()
        await run.step(5)
        assert await step_until(run, lambda: bool(resting(run, "bybit")), wall_s=0.05)
        defaulted_at = sb.clock.data_now()
        sb["bybit"].fault("default")  # every call fails, its streams close, its orders are gone
        lv = live_venue(run, "bybit")
        assert await step_until(run, lambda: lv.stale, steps=10), "the dead venue's book never went stale"
        stale_at = sb.clock.data_now()
        back = quoting_again(run, ("kraken",))
        assert await step_until(run, back, steps=20), "kraken stopped quoting when bybit defaulted"
        late = [i["client_id"] for i in j.intents() if i["venue"] == "bybit" and i["action"] == "new"
                and i["decided_ns"] > stale_at]
        assert late == [], f"new orders decided for the defaulted venue: {late}"
        assert not run.task.done(), "the bot stopped"
        await assert_orders_converge(run, ("kraken",))
        ledger = len(sb["bybit"].account.fills)
        await run.stop()
        assert_ledger_invariants(run, ("kraken",))
        # what bybit booked before it went is in the journal once; nothing after
        assert len(sb["bybit"].account.fills) == ledger and all(f.ts <= defaulted_at for f in sb["bybit"].account.fills)
        from faults.invariants import (
            assert_journal_is_the_ledger,
            assert_position_is_the_venues,
        )
        assert_journal_is_the_ledger(run, "bybit")
        assert_position_is_the_venues(run, "bybit")
    finally:
        await close_live(run)
