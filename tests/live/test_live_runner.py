"""The live bot (execution.runner through execution.live) against the in-process emulators, with the
real clients (ccxt.pro, alpaca-py) on loopback and a stepped clock. The emulator's ledger is the
truth every check compares with: its fills, its open orders, its balances."""

from __future__ import annotations

import math

import pytest
from faults.invariants import assert_journal_is_the_ledger, base_quote, bounded
from sandbox.conftest import sb_cfg, sb_compiled, sb_store  # noqa: F401 - the sandbox fixtures

from live.live_sandbox import (
    close_live,
    start_live,
    with_live,
)
from stockbridge.core import trader as T


def assert_books_are_the_venues(run, venue):
    """The core's position is the venue's balance less the baseline (plus base-asset fees, which the
    core books in quote currency); no order of ours is left open at the venue or in the bot."""
    lv = next(v for v in run.runner.venues.values() if v.name == venue)
    acct = run.sb[venue].account
    base, _ = base_quote(run, venue)
    fee_tokens = sum(f.fee for f in acct.fills if f.fee_currency == base)
    core_pos = float(run.runner.core.tr.kpos[lv.id, lv.instrument])
    assert core_pos == pytest.approx(acct.balance(base).total - lv.baseline + fee_tokens, abs=1e-9)
    assert [o.client_id for o in acct.orders.values() if not o.is_final] == []
    assert [o.client_id for o in run.runner.om.orders.values() if not o.final and o.venue == lv.id] == []


@bounded(300)
async def test_the_bot_quotes_fills_hedges_and_its_journal_is_the_ledger(sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    # a narrow hedge band: the first fills already call for a hedge at the broker
    cfg = sb_cfg.model_copy(update={"risk": sb_cfg.risk.model_copy(update={"hedge_band": 1.0})})
    run = await start_live(cfg, sb_store, tmp_path)
    try:
        run.start()
        await run.step(150)
        reason = await run.stop()
        assert reason == "test"
        intents = {i["client_id"] for i in run.session.journal.intents() if i["action"] == "new"}
        fills = 0
        for venue in ("bybit", "kraken", "broker"):
            assert_journal_is_the_ledger(run, venue)
            assert_books_are_the_venues(run, venue)
            acct = run.sb[venue].account
            # every order the venue saw was decided by the core and journalled before it went out
            assert {o.client_id for o in acct.orders.values()} <= intents
            # and none went out twice for one intent
            ids = [o.client_id for o in acct.orders.values()]
            assert len(ids) == len(set(ids))
            fills += len(acct.fills)
        assert sum(len(run.sb[v].account.fills) for v in ("bybit", "kraken")) > 0, "no quote filled in 150 s"
        assert len(run.sb["broker"].account.fills) > 0, "nothing hedged in a regular session"
        # quotes went to both exchanges, never to the venue with no adapter
        venues = {i["venue"] for i in run.session.journal.intents()}
        assert {"bybit", "kraken", "broker"} <= venues and "solana_dex" not in venues
        assert fills == len(run.session.journal.fills())
        # hedged: the net delta the core sees is back inside its band (shares)
        assert abs(run.runner.core.valuation(run.sb.clock.data_now())["net_delta"]) <= 1.0 + 1.0
    finally:
        await close_live(run)


@bounded(300)
async def test_a_stale_book_pulls_the_quotes_there_and_they_come_back(sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = with_live(sb_cfg, guards={"stale_book_ms": 3_000.0})
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit", "kraken"))
    try:
        run.start()
        acct = run.sb["bybit"].account
        resting = lambda: [o for o in acct.orders.values() if not o.is_final]  # noqa: E731
        await run.step(20)
        for _ in range(20):  # quotes are replaced as the book moves: wait for an instant one rests
            if resting():
                break
            await run.step(1)
        assert resting(), "no quote resting at bybit"
        run.sb["bybit"].fault("freeze_feed")
        await run.step(8)
        lv = next(v for v in run.runner.venues.values() if v.name == "bybit")
        left = [(o.client_id, run.runner.om.orders[o.client_id].state.value if o.client_id in run.runner.om.orders else None)
                for o in resting()]
        assert left == [], (f"quotes left resting at a venue whose book is stale: {left}; stale={lv.stale} "
                            f"guard={run.runner.guards.stale.view(lv.id, run.sb.clock.data_now())} "
                            f"{[(e['kind'], e['local_ns'], e['detail']) for e in run.session.journal.events(left[0][0])] if left else ''}"
                            f" now={run.sb.clock.data_now()}")
        assert lv.stale and int(run.runner.core.tr.vstatus[lv.id]) == T.VENUE_HALTED
        kr = run.sb["kraken"].account
        assert [o for o in kr.orders.values() if not o.is_final], "kraken must carry on quoting"
        n_orders = len(acct.orders)
        await run.step(5)
        assert len(acct.orders) == n_orders, "a new order went to a stale venue"
        run.sb["bybit"].fault("unfreeze_feed")
        for _ in range(30):
            await run.step(1)
            if resting():
                break
        assert resting(), ("quotes did not come back after the book did: "
                           f"stale={lv.stale} vstatus={int(run.runner.core.tr.vstatus[lv.id])} "
                           f"guards={run.runner.guards.snapshot(run.sb.clock.data_now())['venues']['bybit']} "
                           f"books={run.runner.feeds[0].stats} "
                           f"refusals={[e['detail'] for e in run.session.journal.events() if e['kind'] == 'reject'][-3:]}")
        await run.stop()
        assert_journal_is_the_ledger(run, "bybit")
        assert_books_are_the_venues(run, "bybit")
    finally:
        await close_live(run)


@bounded(300)
async def test_a_create_whose_reply_is_lost_is_known_from_the_venue_and_not_sent_again(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                        tmp_path):
    """The venue takes the first order call but never answers it; its private streams and REST still
    tell the truth. The bot must learn the order from them (the order stream, or a lookup by client
    id when the stream is silent too) and never send it again."""
    cfg = with_live(sb_cfg, call_timeout_ms=500.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit",))
    try:
        acct = run.sb["bybit"].account
        run.sb["bybit"].fault("lose", what="ack", count=1)
        run.start()
        await run.step(30)
        first = next(iter(acct.orders.values()))  # the call that got no answer
        lost = run.runner.om.orders[first.client_id]
        assert lost.venue_order_id == first.order_id, "the bot learned the venue's order id"
        assert lost.state.value not in ("pending_new", "unknown") and not lost.presumed_absent
        ids = [o.client_id for o in acct.orders.values()]
        assert len(ids) == len(set(ids)), "an order went out twice"
        news = [i["client_id"] for i in run.session.journal.intents() if i["action"] == "new"]
        assert len(news) == len(set(news))
        await run.stop()
        assert_journal_is_the_ledger(run, "bybit")
        assert_books_are_the_venues(run, "bybit")
    finally:
        await close_live(run)


@bounded(300)
async def test_start_up_cancels_what_an_earlier_run_left_and_keeps_the_baseline_across_restarts(
        sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    symbol = sb_cfg.venues["bybit"].instruments["AAPLx"]

    async def leave_orders(sb, adapters):
        ex = adapters["bybit"]
        bids = (await ex.fetch_order_book(symbol))["bids"]
        px = round(bids[0][0] - 1.0, 2)
        await ex.create_order(symbol, "limit", "buy", 0.5, px, {"clientOrderId": "sb0000000000001"})  # ours, earlier
        await ex.create_order(symbol, "limit", "buy", 0.5, px, {"clientOrderId": "manual-order-1"})  # someone else's

    run = await start_live(sb_cfg, sb_store, tmp_path, venues=("bybit",), before=leave_orders)
    acct = run.sb["bybit"].account
    try:
        (rec,) = run.session.reconciliation
        assert rec.leftover_cancelled == ["sb0000000000001"] and rec.foreign == 1
        assert acct.by_client_id["sb0000000000001"].status == "cancelled"
        assert acct.by_client_id["manual-order-1"].status not in ("cancelled", "filled")
        base, _ = base_quote(run, "bybit")
        baseline = rec.baseline
        assert baseline == pytest.approx(acct.balance(base).total)
        run.start()
        await run.step(30)
        await run.stop()
        assert acct.by_client_id["manual-order-1"].status not in ("cancelled", "filled"), "a foreign order was touched"
        assert_journal_is_the_ledger(run, "bybit")
        first_fills = len(acct.fills)
    finally:
        await close_live(run, stop_sandbox=False)
    # a restart on the same journal keeps the baseline; the books agree, so quoting goes on
    again = await start_live(sb_cfg, sb_store, tmp_path, venues=("bybit",), sandbox=run.sb)
    try:
        (rec2,) = again.session.reconciliation
        assert rec2.baseline == baseline and rec2.stopped is None
        assert rec2.position == pytest.approx(rec2.expected_position, abs=1e-9)
        lv = next(iter(again.runner.venues.values()))
        assert float(again.runner.core.tr.kpos[lv.id, lv.instrument]) == pytest.approx(
            acct.balance(base).total - baseline + sum(f.fee for f in acct.fills if f.fee_currency == base), abs=1e-9)
        assert math.isfinite(first_fills)
    finally:
        await close_live(again, stop_sandbox=False)
    # tokens moved at the venue behind the bot's back: the next start stops quoting there, saying why
    acct.balance(base).total += 3.0
    third = await start_live(sb_cfg, sb_store, tmp_path, venues=("bybit",), sandbox=run.sb)
    try:
        (rec3,) = third.session.reconciliation
        assert rec3.stopped is not None and "bybit" in rec3.stopped and "differs from the journal" in rec3.stopped
        third.start()
        await third.step(10)
        assert not [o for o in acct.orders.values() if not o.is_final and o.client_id.startswith("sb")
                    and o.client_id in third.runner.om.orders], "quoted at a venue whose books disagree"
        await third.stop()
    finally:
        await close_live(third)


def test_our_resting_quotes_are_taken_out_of_the_book_the_core_reads():
    """A venue's book shows our acknowledged quotes; the core must read the market without them (an
    order not yet acknowledged is not in the venue's book yet and is not taken out)."""
    from types import SimpleNamespace

    import numpy as np

    from execution.market_data import Book
    from execution.runner import LiveRunner
    from stockbridge.core import order_codes as oc
    from stockbridge.core.context import MAX_LEVELS, MAX_VENUES
    from stockbridge.core.working import new_working

    wo, _ = new_working(8)
    qslot = np.full((MAX_VENUES, 2, MAX_LEVELS), -1, dtype=np.int64)
    for slot, (side, price, leaves, state) in enumerate([(0, 99.9, 2.0, oc.OPEN), (1, 100.2, 5.0, oc.PENDING_CANCEL),
                                                         (1, 100.3, 1.0, oc.PENDING_NEW)]):
        wo[slot]["price"], wo[slot]["leaves"], wo[slot]["state"] = price, leaves, state
        qslot[1, side, slot] = slot
    me = SimpleNamespace(core=SimpleNamespace(tr=SimpleNamespace(qslot=qslot, wo=wo)))
    book = Book(1, 0, np.array([[100.0, 3.0], [99.9, 2.5]]), np.array([[100.2, 5.0], [100.3, 4.0]]), None, 0, False, "stream")
    out = LiveRunner.without_our_orders(me, book)
    assert out.bids.tolist() == [[100.0, 3.0], [99.9, 0.5]]
    assert out.asks.tolist() == [[100.3, 4.0]]   # our 5 at 100.2 were the whole level; 100.3 not acked yet
    assert out.bids.flags["C_CONTIGUOUS"] and out.asks.flags["C_CONTIGUOUS"]
    other = Book(0, 0, book.bids, book.asks, None, 0, False, "stream")
    assert LiveRunner.without_our_orders(me, other) is other
