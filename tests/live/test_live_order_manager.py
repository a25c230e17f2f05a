"""The order manager against the scripted venue (a test double, tests/live/scripted_venue.py):
lifecycles, what the core is told and when, dedupe, unknown-order recovery, cancels that fail,
illegal transitions. Reports are read from a RecordingCore that forgets an order on DONE, as the
trader core does."""

from __future__ import annotations

import asyncio
import math
import os

import ccxt
import pytest

import execution.journal as journal_module
import live.scripted_venue as sv
from execution.order_manager import (
    FINAL,
    TRANSITIONS,
    IllegalTransition,
    Order,
    OrderState,
)
from execution.venue import StreamingVenueAdapter, VenueAdapter
from live.live_rig import ALPHA, MS, NS, SYMBOL, Rig, cancel, cid, new
from stockbridge.core.order_codes import (
    CANCELLED,
    FILLED,
    IOC,
    REJECTED,
    REP_ACK,
    REP_CANCEL_REJECT,
    REP_DONE,
    REP_FILL,
    TAG_HEDGE,
)
from stockbridge.trader import cid_text

S = OrderState


def kinds(rig: Rig, c: int) -> list[int]:
    return [r[0] for r in rig.core.of(c)]


# -- the Protocol ------------------------------------------------------------------------------


def test_ccxt_pro_exchanges_and_the_scripted_venue_satisfy_the_adapter_protocol():
    import inspect

    import ccxt.pro

    for ex in (ccxt.pro.bybit(), ccxt.pro.kraken()):
        assert isinstance(ex, StreamingVenueAdapter)
        for name in ("create_order", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_my_trades", "fetch_balance"):
            ours = list(inspect.signature(getattr(VenueAdapter, name)).parameters)[1:]
            theirs = list(inspect.signature(getattr(ex, name)).parameters)
            assert theirs == ours, name
    assert isinstance(sv.ScriptedVenue(), VenueAdapter)
    assert not isinstance(object(), VenueAdapter)


# -- lifecycles --------------------------------------------------------------------------------


async def test_a_quote_is_journalled_before_it_is_sent_then_acked_filled_cancelled(rig):
    c = cid(1)
    seen_at_send = []
    rig.venue.on_create = lambda call: seen_at_send.append(rig.journal.order(call["params"]["clientOrderId"]))
    await rig.om.submit(new(c))
    assert seen_at_send[0] is not None and seen_at_send[0]["state"] == "pending_new"  # the intent was committed first
    call = rig.venue.create_calls[0]
    assert call == {"symbol": SYMBOL, "type": "limit", "side": "buy", "amount": 2.0, "price": 99.95,
                    "params": {"clientOrderId": cid_text(c), "timeInForce": "GTC", "postOnly": True}}
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.OPEN and kinds(rig, c) == [REP_ACK]
    rig.pump()  # the stream's copy of the ack: nothing new
    rig.venue.fill(cid_text(c), 0.5)
    rig.pump()
    assert order.state == S.PARTIALLY_FILLED
    assert rig.core.of(c, REP_FILL) == [(REP_FILL, c, 0, 99.95, 0.5, pytest.approx(-0.0001 * 99.95 * 0.5))]
    await rig.om.submit(cancel(c))
    assert order.state == S.CANCELLED  # the cancel reply carried the final status
    rig.pump()
    assert kinds(rig, c) == [REP_ACK, REP_FILL, REP_DONE]
    assert rig.core.of(c, REP_DONE)[0][2] == CANCELLED
    assert order.history == [S.PENDING_NEW, S.OPEN, S.PARTIALLY_FILLED, S.PENDING_CANCEL]
    assert rig.journal.open_orders() == []
    assert [i["action"] for i in rig.journal.intents()] == ["new", "cancel"]
    (fill,) = rig.journal.fills()
    assert fill["trade_id"] == "T1" and fill["client_id"] == cid_text(c) and fill["booked"] == 1


async def test_an_intent_leaves_only_once_the_wal_holding_it_is_fsynced(rig, monkeypatch):
    real, synced, seen = os.fsync, [], []

    def fsync(fd):
        real(fd)
        synced.append(os.fstat(fd).st_ino)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    wal = os.stat(f"{rig.journal.path}-wal").st_ino
    rig.venue.on_create = lambda call: seen.append(list(synced))
    await rig.om.submit(new(cid(1)))
    assert seen and wal in seen[0]  # the create left after the fsync of the WAL that holds its intent


async def test_a_create_reply_with_only_an_id_is_an_ack_and_an_ioc_fill_then_expiry_is_done_cancelled(rig):
    c = cid(2)
    rig.venue.create_script.append(sv.ACCEPT_BARE)
    await rig.om.submit(new(c, side=-1, price=99.90, qty=3.0, tif=IOC, post_only=0, tag=TAG_HEDGE))
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.OPEN and order.venue_order_id is not None
    assert rig.venue.create_calls[0]["params"]["timeInForce"] == "IOC"
    rig.venue.fill(cid_text(c), 1.0, maker=False)
    rig.venue.finish(cid_text(c), "expired")
    rig.pump()
    assert order.state == S.EXPIRED
    assert kinds(rig, c) == [REP_ACK, REP_FILL, REP_DONE]
    assert rig.core.of(c, REP_DONE)[0][2] == CANCELLED  # the core's word for an expired remainder
    assert rig.journal.fills()[0]["liquidity"] == "taker"


async def test_a_market_order_goes_out_as_ccxt_market_without_a_price(rig):
    await rig.om.submit(new(cid(3), price=math.inf, tif=IOC, post_only=0))
    call = rig.venue.create_calls[0]
    assert call["type"] == "market" and call["price"] is None


async def test_done_waits_until_every_fill_the_venue_counts_is_booked(rig):
    c = cid(4)
    await rig.om.submit(new(c, qty=2.0))
    rig.venue.fill(cid_text(c), 1.2)
    rig.venue.fill(cid_text(c), 0.8)
    msgs = rig.venue.stream()
    orders = [d for k, d in msgs if k == "order"]
    trades = [d for k, d in msgs if k == "trade"]
    rig.om.on_order(ALPHA, orders[-1])  # "closed, 2.0 filled" before either trade
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.FILLED and kinds(rig, c) == [REP_ACK]
    rig.om.on_trade(ALPHA, trades[1])
    assert kinds(rig, c) == [REP_ACK, REP_FILL]  # 0.8 of 2.0 booked: not done yet
    rig.om.on_trade(ALPHA, trades[0])
    assert kinds(rig, c) == [REP_ACK, REP_FILL, REP_FILL, REP_DONE]
    assert rig.core.of(c, REP_DONE)[0][2] == FILLED


async def test_a_fill_from_the_stream_before_the_create_reply_is_booked_once_the_order_is_known(rig):
    # the venue takes the order and never answers the call: our own timeout makes it UNKNOWN; its
    # fill arrives with a venue order id we have not been told yet
    c2 = cid(6)
    rig.venue.create_script.append(sv.HANG)
    rig.om.call_timeout_s = 0.05
    await rig.om.submit(new(c2))
    rig.venue.stream()  # the stream's copy of the acceptance is lost
    order2 = rig.om.orders[cid_text(c2)]
    assert order2.state == S.UNKNOWN and order2.venue_order_id is None
    trade = rig.venue.fill(cid_text(c2), 0.5)
    trade.pop("info")  # this venue's trades carry no client id: the trade names only the venue order id
    assert not rig.om.on_trade(ALPHA, trade)  # unmatched: kept
    assert rig.core.of(c2) == []
    rig.om.on_order(ALPHA, rig.venue._dict(rig.venue.by_client(cid_text(c2))))  # the stream shows the order
    assert order2.state == S.PARTIALLY_FILLED
    assert kinds(rig, c2) == [REP_ACK, REP_FILL]
    assert len(rig.venue.create_calls) == 1


async def test_a_fill_seen_on_the_stream_and_again_by_rest_is_booked_once(rig):
    c = cid(7)
    await rig.om.submit(new(c))
    rig.venue.fill(cid_text(c), 1.0)
    rig.pump()
    rig.pump()
    assert await rig.om.sync_fills(ALPHA) == 0  # REST returns the same trade: already booked
    assert len(rig.core.of(c, REP_FILL)) == 1 and len(rig.journal.fills()) == 1
    assert rig.om.counts["duplicate_fills"] == 1
    assert rig.journal.cursor("alpha") == (rig.venue.trades[0]["timestamp"] * MS, "T1")


async def test_a_restarted_manager_on_the_same_journal_books_no_fill_twice(rig, tmp_path):
    c = cid(8)
    await rig.om.submit(new(c))
    rig.venue.fill(cid_text(c), 1.0)
    rig.pump()
    await asyncio.sleep(0)  # the loop goes on: what it handled is committed (Journal group commit)
    again = Rig(tmp_path)  # same directory: same journal file
    again.venue = rig.venue
    again.om.venues[ALPHA] = rig.om.venues[ALPHA]
    assert not again.om.on_trade(ALPHA, rig.venue.trades[0])
    assert again.core.reports == []


async def test_fills_missing_from_the_streams_are_fetched_by_rest_and_then_the_order_is_done(rig):
    c = cid(9)
    await rig.om.submit(new(c, qty=1.0))
    rig.venue.fill(cid_text(c), 1.0)
    orders = [d for k, d in rig.venue.stream() if k == "order"]
    rig.om.on_order(ALPHA, orders[-1])  # the trade message was lost
    assert rig.om.orders[cid_text(c)].state == S.FILLED and not rig.core.of(c, REP_DONE)
    assert [o.client_id for o in rig.om.awaiting_fills()] == [cid_text(c)]
    await rig.om.poll()
    assert kinds(rig, c) == [REP_ACK, REP_FILL, REP_DONE]


async def test_a_fee_in_the_base_asset_is_valued_at_the_fill_price_and_a_third_asset_is_not_guessed(rig):
    c = cid(10)
    await rig.om.submit(new(c, price=100.0, qty=2.0))
    rig.venue.fill(cid_text(c), 1.0, fee=0.001, fee_currency="AAPLX")
    rig.venue.fill(cid_text(c), 1.0, fee=0.5, fee_currency="MNT")
    rig.pump()
    fees = [r[5] for r in rig.core.of(c, REP_FILL)]
    assert fees == [pytest.approx(0.1), 0.0]
    assert rig.om.counts["fees_not_valued"] == 1
    assert [(f["fee_cost"], f["fee_currency"]) for f in rig.journal.fills()] == [(0.001, "AAPLX"), (0.5, "MNT")]


# -- refusals ------------------------------------------------------------------------------------


async def test_a_create_the_venue_refuses_is_rejected_without_an_ack_and_the_reason_is_journalled(rig):
    c = cid(11)
    rig.venue.create_script.append(sv.REJECT)
    await rig.om.submit(new(c))
    assert rig.om.orders[cid_text(c)].state == S.REJECTED
    assert rig.core.of(c) == [(REP_DONE, c, REJECTED, 0.0, 0.0, 0.0)]
    ev = rig.journal.events(cid_text(c))[-2]
    assert ev["kind"] == "reject" and "InvalidOrder" in ev["detail"]


async def test_a_new_order_a_guard_holds_back_is_never_sent_and_the_core_frees_it(rig):
    c = cid(12)
    rig.om.refuse(new(c), "stale book at alpha")
    assert rig.venue.create_calls == []
    assert rig.core.of(c) == [(REP_DONE, c, REJECTED, 0.0, 0.0, 0.0)]
    assert rig.journal.intents()[0]["client_id"] == cid_text(c)
    assert "guard" in rig.journal.events(cid_text(c))[0]["detail"]
    with pytest.raises(ValueError, match="never holds back a cancel"):
        rig.om.refuse(cancel(c), "x")


# -- unknown orders ----------------------------------------------------------------------------


async def test_a_create_that_timed_out_after_the_venue_took_it_is_found_by_client_id_not_resent(rig):
    c = cid(13)
    rig.venue.create_script.append(sv.TIMEOUT_AFTER_ACCEPT)
    await rig.om.submit(new(c))
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.UNKNOWN and rig.core.of(c) == []
    assert rig.journal.order(cid_text(c))["state"] == "unknown"
    await rig.om.submit(cancel(c))  # the core gives up on it meanwhile: the cancel waits for the lookup
    assert rig.venue.cancel_calls == []
    rig.clock.advance(NS)
    await rig.om.poll()
    assert rig.venue.fetch_calls[0] == "fetch_order"
    assert len(rig.venue.create_calls) == 1  # never sent again
    assert order.venue_order_id is not None and order.state == S.CANCELLED
    assert rig.venue.cancel_calls == [order.venue_order_id]
    assert kinds(rig, c) == [REP_ACK, REP_DONE]


async def test_an_unknown_order_the_stream_shows_is_resolved_without_a_lookup(rig):
    c = cid(14)
    rig.venue.create_script.append(sv.TIMEOUT_AFTER_ACCEPT)
    await rig.om.submit(new(c))
    rig.pump()
    assert rig.om.orders[cid_text(c)].state == S.OPEN and kinds(rig, c) == [REP_ACK]
    rig.clock.advance(NS)
    await rig.om.poll()
    assert rig.venue.fetch_calls == []  # nothing left to look up


async def test_an_order_refused_with_the_refusal_lost_is_found_absent_after_the_grace_and_dropped(rig):
    c = cid(15)
    rig.venue.create_script.append(sv.TIMEOUT_LOST)
    await rig.om.submit(new(c))
    order = rig.om.orders[cid_text(c)]
    rig.clock.advance(NS)
    assert not await rig.om.lookup(order)  # not found, but within the grace: it may still land
    assert order.state == S.UNKNOWN and rig.core.of(c) == []
    rig.clock.advance(2 * NS)
    assert await rig.om.lookup(order)
    assert order.state == S.REJECTED and order.presumed_absent
    # dropped, not re-sent: the core frees it and decides again under a new client id of its own
    assert rig.core.of(c) == [(REP_DONE, c, REJECTED, 0.0, 0.0, 0.0)]
    assert len(rig.venue.create_calls) == 1
    assert "dropped" in rig.journal.events(cid_text(c))[-2]["detail"]


async def test_a_lookup_that_cannot_answer_keeps_the_order_unknown_even_after_the_grace(rig):
    c = cid(16)
    rig.venue.create_script.append(sv.TIMEOUT_LOST)
    await rig.om.submit(new(c))
    order = rig.om.orders[cid_text(c)]
    rig.clock.advance(10 * NS)
    rig.venue.fetch_errors.append(ccxt.RequestTimeout("GET /order timed out"))
    assert not await rig.om.lookup(order)
    assert order.state == S.UNKNOWN
    rig.venue.fetch_order_supported = False  # no by-client-id lookup at this venue: never "absent"
    assert not await rig.om.lookup(order)
    assert order.state == S.UNKNOWN and rig.core.of(c) == []
    rig.venue.fetch_order_supported = True
    assert await rig.om.lookup(order) and order.state == S.REJECTED


async def test_an_order_found_absent_that_shows_up_later_is_cancelled_and_its_fills_kept_as_orphans(rig):
    c = cid(17)
    rig.venue.create_script.append(sv.TIMEOUT_LOST)
    await rig.om.submit(new(c))
    order = rig.om.orders[cid_text(c)]
    rig.clock.advance(3 * NS)
    await rig.om.lookup(order)
    assert order.state == S.REJECTED
    n_reports = len(rig.core.reports)
    # the request had been stuck in the venue's queue: it lands now and fills a little
    rig.venue.create_script.append(sv.ACCEPT)
    await rig.venue.create_order(SYMBOL, "limit", "buy", 2.0, 99.95, {"clientOrderId": cid_text(c)})
    rig.venue.fill(cid_text(c), 0.5)
    rig.pump()
    await rig.om.drain()
    assert order.zombie and order.state == S.CANCELLED
    assert len(rig.venue.cancel_calls) == 1
    assert len(rig.core.reports) == n_reports  # the core was told it was done; it hears nothing more
    assert [f["qty"] for f in rig.om.orphan_fills] == [0.5] and rig.journal.fills()[0]["booked"] == 0
    assert rig.om.counts["zombies"] == 1


# -- cancels ---------------------------------------------------------------------------------------


async def test_a_refused_cancel_keeps_the_order_live_and_it_can_still_fill(rig):
    c = cid(18)
    await rig.om.submit(new(c))
    rig.venue.cancel_script.append(sv.CANCEL_REFUSED)
    await rig.om.submit(cancel(c))
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.OPEN and kinds(rig, c) == [REP_ACK, REP_CANCEL_REJECT]
    rig.venue.fill(cid_text(c), 2.0)
    rig.pump()
    assert order.state == S.FILLED and kinds(rig, c) == [REP_ACK, REP_CANCEL_REJECT, REP_FILL, REP_DONE]


async def test_a_cancel_that_timed_out_but_went_through_is_settled_by_the_lookup(rig):
    c = cid(19)
    await rig.om.submit(new(c))
    rig.venue.fill(cid_text(c), 0.5)
    rig.pump()
    rig.venue.cancel_script.append(sv.CANCEL_TIMEOUT_AFTER)
    await rig.om.submit(cancel(c))
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.PARTIALLY_FILLED  # no answer: still live as far as we know
    rig.venue.stream()  # the stream's word is lost too
    rig.clock.advance(NS)
    await rig.om.poll()
    assert order.state == S.CANCELLED
    assert kinds(rig, c) == [REP_ACK, REP_FILL, REP_CANCEL_REJECT, REP_DONE]


async def test_a_cancel_not_found_of_an_order_that_filled_meanwhile_ends_filled(rig):
    c = cid(20)
    await rig.om.submit(new(c, qty=1.0))
    trade = rig.venue.fill(cid_text(c), 1.0)
    rig.venue.stream()  # we have not heard yet
    await rig.om.submit(cancel(c))
    order = rig.om.orders[cid_text(c)]
    assert order.state == S.OPEN and order.next_lookup_ns > 0
    rig.clock.advance(NS)
    await rig.om.poll()
    assert order.state == S.FILLED and kinds(rig, c) == [REP_ACK, REP_CANCEL_REJECT, REP_FILL, REP_DONE]
    assert rig.journal.fills()[0]["trade_id"] == trade["id"]


async def test_cancel_all_cancels_live_orders_and_the_unknown_one_once_it_is_found(rig):
    a, b, u = cid(21), cid(22, 1), cid(23, 2)
    await rig.om.submit(new(a))
    await rig.om.submit(new(b, side=-1, price=100.05))
    rig.venue.create_script.append(sv.TIMEOUT_AFTER_ACCEPT)
    await rig.om.submit(new(u, price=99.90))
    await rig.om.cancel_all()
    assert len(rig.venue.cancel_calls) == 2
    rig.clock.advance(NS)
    await rig.om.poll()
    assert len(rig.venue.cancel_calls) == 3
    assert {o.state for o in rig.om.orders.values()} == {S.CANCELLED}


# -- illegal transitions -------------------------------------------------------------------------


def test_the_transition_table_has_no_way_out_of_a_final_state_and_none_back_to_pending_new():
    assert all(TRANSITIONS[s] == frozenset() for s in FINAL)
    assert all(S.PENDING_NEW not in to for to in TRANSITIONS.values())
    assert S.UNKNOWN in TRANSITIONS[S.PENDING_NEW] and all(S.UNKNOWN not in TRANSITIONS[s] for s in S if s != S.PENDING_NEW)


def _order(**kw) -> Order:
    base = dict(cid=cid(1), client_id=cid_text(cid(1)), venue=ALPHA, instrument=1, symbol=SYMBOL, side=1, price=99.0,
                qty=2.0, tif=0, post_only=True, tag=0, decided_ns=0)
    return Order(**(base | kw))


def test_illegal_transitions_raise():
    o = _order()
    o.venue_update("open", 0.0)
    with pytest.raises(IllegalTransition, match="open -> unknown"):
        o._move(S.UNKNOWN)
    with pytest.raises(IllegalTransition, match="found absent while open"):
        o.found_absent()
    o.trade("T1", 1.0)
    with pytest.raises(IllegalTransition, match="rejected after filling"):
        o.venue_update("rejected", None)
    with pytest.raises(IllegalTransition, match="exceed its size"):
        o.trade("T2", 1.5)
    with pytest.raises(IllegalTransition, match="booked twice"):
        o.trade("T1", 0.1)
    o.venue_update("closed", 1.0)  # closed with 1 of 2 filled: the rest was cancelled
    assert o.state == S.CANCELLED
    o.venue_update("open", 0.5)  # a stale snapshot: ignored
    assert o.state == S.CANCELLED
    with pytest.raises(IllegalTransition, match="cancelled, then the venue says expired"):
        o.venue_update("expired", 1.0)
    with pytest.raises(IllegalTransition, match="pending_cancel"):
        o.cancel_sent()
    with pytest.raises(IllegalTransition, match="unknown venue status"):
        _order().venue_update("triggered", 0.0)
    with pytest.raises(IllegalTransition, match="venue says 3.0 filled of 2.0"):
        _order().venue_update("open", 3.0)


async def test_a_reused_client_id_a_cancel_of_a_stranger_and_a_fill_of_the_wrong_side_raise(rig):
    c = cid(24)
    await rig.om.submit(new(c))
    with pytest.raises(IllegalTransition, match="reused"):
        await rig.om.submit(new(c))
    with pytest.raises(IllegalTransition, match="never sent"):
        await rig.om.submit(cancel(cid(99)))
    trade = rig.venue.fill(cid_text(c), 1.0)
    with pytest.raises(IllegalTransition, match="a sell fill of a buy order"):
        rig.om.on_trade(ALPHA, trade | {"side": "sell"})


async def test_orders_that_are_not_ours_are_left_alone_and_ours_by_prefix_are_listed(rig):
    assert rig.om.on_order(ALPHA, {"id": "1", "clientOrderId": "someone-else", "status": "open", "filled": 0}) is None
    assert rig.om.on_order(ALPHA, {"id": "2", "clientOrderId": cid_text(cid(50)), "status": "open", "filled": 0}) is None
    assert [d["id"] for _, d in rig.om.strangers] == ["2"]
    assert not rig.om.on_trade(ALPHA, {"id": "X1", "order": "1", "price": 1.0, "amount": 1.0})


async def test_an_api_secret_in_a_venue_error_never_reaches_the_journal(tmp_path):
    secret = "k3y-DO-NOT-LEAK-0123456789"
    rig = Rig(tmp_path, redact=[secret])
    c = cid(25)

    async def leaky_create(*args, **kwargs):
        raise ccxt.AuthenticationError(f"bybit invalid api key {secret}")

    rig.venue.create_order = leaky_create
    await rig.om.submit(new(c))
    assert rig.om.orders[cid_text(c)].state == S.REJECTED
    rig.journal.close()
    assert secret.encode() not in (tmp_path / "journal.sqlite").read_bytes()
    for p in tmp_path.iterdir():
        assert secret.encode() not in p.read_bytes(), p.name
