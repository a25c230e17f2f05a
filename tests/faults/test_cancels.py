"""Issue 12 #3: a cancel whose reply is lost, and an order that fills while its cancel is on the way.
Against the emulators on a stepped clock; the venue's ledger is the truth (faults/invariants.py)."""

from __future__ import annotations

import asyncio

from live.live_sandbox import close_live, start_live, with_live

from faults.invariants import (
    assert_ledger_invariants,
    assert_orders_converge,
    bounded,
    live_venue,
    step_until,
)

FAST = dict(call_timeout_ms=500.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)


def resting(run, venue):
    return [o for o in run.sb[venue].account.orders.values() if not o.is_final]


@bounded(60)
async def test_cancels_whose_replies_are_lost_are_known_cancelled_from_the_venue(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                  tmp_path):
    """A frozen book makes the stale guard pull every quote there (and send nothing new); every one
    of those cancel calls goes through at the venue and is never answered."""
    cfg = with_live(sb_cfg, **FAST, guards={"stale_book_ms": 3_000.0})
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit",))
    em = run.sb["bybit"]
    om = run.runner.om
    try:
        run.start()
        await run.step(10)
        pulled = resting(run, "bybit")
        assert pulled, "nothing quoted before the fault"
        em.fault("freeze_feed")
        em.fault("lose", what="ack", count=len(pulled))
        assert await step_until(run, lambda: not resting(run, "bybit"), steps=10), "the stale guard pulled nothing"
        assert em.emu.faults.lose_n["ack"] == 0, "a cancel was answered: the fault did not bite"
        # the bot learns each outcome from the venue (order stream or a lookup), not from the reply
        assert await step_until(run, lambda: all(om.orders[o.client_id].final for o in pulled), steps=10), \
            f"orders cancelled at the venue still live in the bot: {[om.orders[o.client_id].state.value for o in pulled]}"
        for o in pulled:
            assert om.orders[o.client_id].state.value == em.account.by_client_id[o.client_id].status
        await assert_orders_converge(run, ("bybit",))
        em.fault("unfreeze_feed")
        assert await step_until(run, lambda: bool(resting(run, "bybit")), steps=15), "quotes did not come back"
        await run.stop()
        assert_ledger_invariants(run, ("bybit",))
    finally:
        await close_live(run)


@bounded(60)
async def test_an_order_that_fills_while_its_cancel_is_on_the_way_is_booked_once(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                 tmp_path):
    """The market trades through a quote; before the bot has heard of the fill it pulls the quote
    (the stale-book path of the runner: ``om.cancel_all(venue)``). The cancel meets a filled (or part
    filled) order; the fill arrives after the cancel went out. Done on both exchanges, until it has
    happened three times."""
    cfg = with_live(sb_cfg, **FAST)
    venues = ("bybit", "kraken")
    run = await start_live(cfg, sb_store, tmp_path, venues=venues)
    sb, om = run.sb, run.runner.om
    raced = []
    try:
        run.start()
        await run.step(5)
        for _ in range(150):
            n = {v: len(sb[v].account.fills) for v in venues}
            sb.clock.step(1.0)
            for v in venues:  # the market moves; our quotes may fill; the bot has not heard yet
                sb[v].emu.advance()
            for v in venues:
                new = sb[v].account.fills[n[v]:]
                if new:
                    lv = live_venue(run, v)
                    hit = om.orders.get(new[0].client_id)
                    if hit is not None and not hit.final and hit.state.value != "pending_cancel":
                        raced.append((v, hit.client_id))
                        run.runner._spawn(om.cancel_all(lv.id))  # no await in between: the fill is unheard
            await run.settle()
            await asyncio.sleep(0.05)
            if len(raced) >= 3:
                break
        assert len(raced) >= 3, f"quotes filled only {len(raced)} times in 150 s"
        await step_until(run, lambda: all(om.orders[c].final for _, c in raced), steps=10)
        for v, c in raced:
            bot, venue_order = om.orders[c], sb[v].account.by_client_id[c]
            assert bot.state.value == venue_order.status, f"{v} {c}: bot {bot.state.value}, venue {venue_order.status}"
            assert bot.booked == venue_order.filled
        await assert_orders_converge(run, venues)
        await run.stop()
        assert_ledger_invariants(run, venues)
    finally:
        await close_live(run)
