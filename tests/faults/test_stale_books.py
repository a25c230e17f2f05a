"""Issue 12 #4 and #10: the public stream drops while the book moves, and a feed that looks alive
but never changes (freeze_feed) on one venue. The bot must not quote from a stale book: the stale
guard pulls its quotes there and nothing new goes out until the book moves again; the other venue
carries on. The venue's ledger is the truth (faults/invariants.py)."""

from __future__ import annotations

import asyncio

from live.live_sandbox import close_live, start_live, with_live

from faults.invariants import (
    assert_ledger_invariants,
    bounded,
    live_venue,
    step_until,
)

VENUES = ("bybit", "kraken")
STALE_MS = 3_000.0
FAST = dict(call_timeout_ms=1_000.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)


def resting(run, venue):
    return [o for o in run.sb[venue].account.orders.values() if not o.is_final]


def crossed_post_only(run, venue):
    """Our post-only orders the venue refused because they would have crossed its book: priced from a
    book that was not the venue's any more."""
    return [o.client_id for o in run.sb[venue].account.orders.values()
            if o.status == "rejected" and "post" in (o.reason or "")]


@bounded(60)
async def test_a_feed_that_never_changes_pulls_the_quotes_there_and_the_other_venue_carries_on(
        sb_cfg, busy_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = with_live(sb_cfg, **FAST, guards={"stale_book_ms": STALE_MS})
    run = await start_live(cfg, busy_store, tmp_path, venues=VENUES)
    sb, j = run.sb, run.session.journal
    try:
        run.start()
        await run.step(5)
        assert await step_until(run, lambda: bool(resting(run, "bybit") and resting(run, "kraken")), wall_s=0.05)
        frozen_at = sb.clock.data_now()
        kr_orders = len(sb["kraken"].account.orders)
        sb["bybit"].fault("freeze_feed")  # the stream stays connected; the book it shows never changes
        lv = live_venue(run, "bybit")
        assert await step_until(run, lambda: lv.stale, steps=10), (
            f"the frozen book never went stale: {run.runner.guards.stale.view(lv.id, sb.clock.data_now())} "
            f"{run.runner.feeds[0].stats}")
        assert sb.clock.data_now() - frozen_at <= (STALE_MS + 2_000) * 1e6, "found stale late"
        # the last book the bot took in: one the venue sent just before the freeze may arrive a step
        # later (stamped then), and the stale limit runs from there
        last_book = run.runner.guards.stale.last[lv.id]
        assert last_book - frozen_at <= 1e9, "books kept changing after the freeze"
        assert await step_until(run, lambda: not resting(run, "bybit"), steps=3), "quotes left at a frozen venue"
        await run.step(10)
        assert not resting(run, "bybit"), "a new quote went to the frozen venue"
        late = [i["client_id"] for i in j.intents() if i["venue"] == "bybit" and i["action"] == "new"
                and i["decided_ns"] > last_book + STALE_MS * 1e6]
        assert late == [], f"orders decided from a book older than the stale limit: {late}"
        assert len(sb["kraken"].account.orders) > kr_orders, "kraken did not quote while bybit was stale"
        sb["bybit"].fault("unfreeze_feed")
        assert await step_until(run, lambda: bool(resting(run, "bybit")), steps=15), "quotes did not come back"
        await run.stop()
        assert_ledger_invariants(run, VENUES)
        assert crossed_post_only(run, "bybit") == []
    finally:
        await close_live(run)


@bounded(60)
async def test_public_streams_dropping_while_the_book_moves_never_quote_a_crossed_price(
        sb_cfg, busy_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = with_live(sb_cfg, **FAST, guards={"stale_book_ms": STALE_MS})
    run = await start_live(cfg, busy_store, tmp_path, venues=VENUES)
    sb = run.sb
    try:
        run.start()
        await run.step(5)
        for _ in range(15):  # a drop every 3 s of market time for 45 s
            for v in VENUES:
                sb[v].fault("drop_ws", scope="public")
            for _ in range(3):
                await sb.step(1.0)
                await asyncio.sleep(0.1)
        assert all(f.stats.stream_errors > 0 for f in run.runner.feeds), "a drop went unnoticed"
        assert await step_until(run, lambda: all(resting(run, v) for v in VENUES), steps=20), "quoting did not come back"
        await run.stop()
        assert_ledger_invariants(run, VENUES)
        for v in VENUES:
            assert crossed_post_only(run, v) == [], f"{v}: quotes priced from a book that had moved"
    finally:
        await close_live(run)
