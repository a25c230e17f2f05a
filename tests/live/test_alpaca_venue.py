"""The broker adapter (execution.alpaca_venue.AlpacaVenue) against the Alpaca emulator on loopback,
stepped clock, through the real alpaca-py clients. The emulator's ledger is the truth every answer
is compared with; every wait is bounded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import ccxt
import pytest
from sandbox.conftest import sandboxes, sb_cfg, sb_compiled, sb_store  # noqa: F401 - the sandbox fixtures
from sandbox.sandbox_helpers import step_until, subscribed, within

from execution.alpaca_venue import AlpacaVenue, fill_id, iso_ns
from execution.venue import StreamingVenueAdapter, is_definite_refusal

# the store's first day (Thu 2025-07-03, a half day), data start 00:00Z: +14 h = 10:00 New York (regular),
# +10 h = 06:00 (pre-market), +19 h = 15:00 (after the 13:00 close: after-hours), +2 h = overnight
REGULAR_H, PRE_H, AFTER_H, OVERNIGHT_H = 14, 10, 19, 2
SYM = "AAPL"


@pytest.fixture
async def broker(sandboxes, sb_cfg):  # noqa: F811
    """``await broker(hours, **adapter kwargs)`` -> (sandbox, sandbox venue, loaded adapter); adapters
    are closed (bounded) before the sandboxes stop."""
    made: list[AlpacaVenue] = []

    async def make(hours: float, **kw):
        sb = await sandboxes(["broker"], start_offset_h=hours)
        sv = sb["broker"]
        v = sb_cfg.venues["broker"]
        kw.setdefault("timeout_s", 5.0)
        ad = AlpacaVenue.from_sandbox(sv, symbols=[SYM], maker_fee_bps=v.maker_fee_bps, taker_fee_bps=v.taker_fee_bps,
                                      clock_ttl_s=0.0, **kw)
        made.append(ad)
        await within(10, ad.load_markets())
        return sb, sv, ad

    yield make
    for ad in made:
        await within(15, ad.close())
    # nothing of the adapters is left running: no REST threads, no stream or websocket tasks
    assert not [t.name for t in threading.enumerate() if t.name.startswith("alpaca-rest")]
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
            and any(k in repr(t.get_coro()) for k in ("_run_forever", "websockets", "_cancel_later", "_subscribe_when"))]
    assert not left, left


def top(sv):
    bids, asks = sv.emu.book(sv.emu.markets[SYM], 1)
    return bids[0], asks[0]


async def collect(fn, pred, seconds: float = 5.0) -> list:
    """Call a watch_* coroutine function until ``pred(everything so far)``; returns everything."""
    got: list = []

    async def run():
        while not pred(got):
            got.extend(await fn())
    await within(seconds, run())
    return got


async def test_markets_and_balance_are_the_brokers(broker, sb_cfg):  # noqa: F811
    sb, sv, ad = await broker(REGULAR_H)
    assert isinstance(ad, StreamingVenueAdapter) and ad.book_is_l1 is True
    m = ad.markets[SYM]
    v = sb_cfg.venues["broker"]
    assert (m["precision"]["price"], m["precision"]["amount"], m["limits"]["amount"]["min"]) == (v.tick_size, v.lot_size, v.lot_size)
    assert m["fractionable"] is (v.lot_size < 1) and m["active"] is True
    bal = await within(5, ad.fetch_balance())
    led = sv.account.balances
    for ccy in ("USD", "AAPL"):
        assert bal[ccy]["total"] == pytest.approx(led[ccy].total)
        assert bal[ccy]["free"] == pytest.approx(led[ccy].free)
    # an order locks cash: the balance's used is the ledger's locked
    bid, _ = top(sv)
    await within(5, ad.create_order(SYM, "limit", "buy", 3, round(bid[0] - 1, 2), {"clientOrderId": "sbbal1"}))
    bal = await within(5, ad.fetch_balance())
    assert bal["USD"]["used"] == pytest.approx(led["USD"].locked) and led["USD"].locked > 0
    assert bal["total"]["USD"] == pytest.approx(led["USD"].total)


async def test_create_fetch_cancel_by_client_id(broker):
    sb, sv, ad = await broker(REGULAR_H)
    bid, _ = top(sv)
    px = round(bid[0] - 1, 2)
    od = await within(5, ad.create_order(SYM, "limit", "buy", 2, px, {"clientOrderId": "sbcid1", "timeInForce": "GTC",
                                                                       "postOnly": False}))
    led = sv.account.by_client_id["sbcid1"]
    assert (od["id"], od["clientOrderId"], od["status"], od["price"], od["amount"]) == (led.order_id, "sbcid1", "open", px, 2.0)
    assert (led.alpaca_tif, led.extended_hours) == ("gtc", False)
    # fetch by client id: the order manager's lookup (its venue id unknown: the client id stands in)
    for ident in ("sbcid1", od["id"]):
        got = await within(5, ad.fetch_order(ident, SYM, {"clientOrderId": "sbcid1"}))
        assert (got["id"], got["status"], got["filled"]) == (led.order_id, "open", 0.0)
    assert [o["clientOrderId"] for o in await within(5, ad.fetch_open_orders(SYM))] == ["sbcid1"]
    assert (await within(5, ad.cancel_order(od["id"], SYM)))["id"] == led.order_id
    assert led.status == "cancelled"
    assert (await within(5, ad.fetch_order(od["id"], SYM)))["status"] == "canceled"
    assert await within(5, ad.fetch_open_orders(SYM)) == []
    with pytest.raises(ccxt.OrderNotFound) as e:
        await within(5, ad.fetch_order("sbnothere1", SYM, {"clientOrderId": "sbnothere1"}))
    assert is_definite_refusal(e.value)
    with pytest.raises(ccxt.OrderNotFound):  # a final order cannot be cancelled: the lookup path
        await within(5, ad.cancel_order(od["id"], SYM))
    # cancel by client id, and cancel_all
    await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbcid2"}))
    await within(5, ad.cancel_order("sbcid2", SYM, {"clientOrderId": "sbcid2"}))
    assert sv.account.by_client_id["sbcid2"].status == "cancelled"
    await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbcid3"}))
    done = await within(5, ad.cancel_all_orders())
    assert [o["clientOrderId"] for o in done] == ["sbcid3"] and sv.account.by_client_id["sbcid3"].status == "cancelled"


async def test_ioc_taking_the_ask_and_a_resting_fill_reach_both_streams_and_rest(broker):
    sb, sv, ad = await broker(REGULAR_H)
    assert await within(10, ad.start())
    await subscribed(sv.server, "trade_updates")
    since = sb.clock.to_wall(sb.clock.data_now()) // 1_000_000
    _, ask = top(sv)
    od = await within(5, ad.create_order(SYM, "limit", "buy", 1, ask[0], {"clientOrderId": "sbioc1", "timeInForce": "IOC"}))
    led = sv.account.by_client_id["sbioc1"]
    assert led.status == "filled" and od["id"] == led.order_id and led.alpaca_tif == "ioc"
    orders = await collect(ad.watch_orders, lambda g: any(o["id"] == led.order_id and o["status"] == "closed" for o in g))
    last = [o for o in orders if o["id"] == led.order_id][-1]
    assert (last["filled"], last["clientOrderId"]) == (led.filled, "sbioc1")
    trades = await collect(ad.watch_my_trades, lambda g: bool(g))
    f = led.fills[0]
    assert len(trades) == len(led.fills) == 1
    t = trades[0]
    assert t["id"] == fill_id(led.order_id, f.qty) and t["order"] == led.order_id and t["clientOrderId"] == "sbioc1"
    assert (t["side"], t["price"], t["amount"], t["takerOrMaker"]) == ("buy", f.price, f.qty, "taker")
    assert t["fee"]["cost"] == pytest.approx(f.fee, abs=1e-12) and t["fee"]["currency"] == f.fee_currency == "USD"
    assert f.fee > 0 and t["info"]["execution_id"] == f.trade_id
    assert t["timestamp"] == sb.clock.to_wall(f.ts) // 1_000_000
    # a resting buy at the bid fills later as maker (fee 0 in the demo config)
    bid, _ = top(sv)
    await within(5, ad.create_order(SYM, "limit", "buy", 1, bid[0], {"clientOrderId": "sbrest1"}))
    rest = sv.account.by_client_id["sbrest1"]
    await step_until(sb, lambda: rest.status == "filled", step_s=2)
    more = await collect(ad.watch_my_trades, lambda g: sum(x["amount"] for x in g) >= rest.qty)
    assert [(x["price"], x["amount"], x["takerOrMaker"]) for x in more] == [(x.price, x.qty, "maker" if x.maker else "taker")
                                                                              for x in rest.fills]
    assert [x["fee"]["cost"] for x in more] == pytest.approx([x.fee for x in rest.fills], abs=1e-12)
    # REST gives the same fills under the same ids (so the order manager books each once)
    rest_fills = await within(5, ad.fetch_my_trades(SYM, since))
    want = {(fill_id(x.order_id, sum(y.qty for y in sv.account.orders[x.order_id].fills if y.seq <= x.seq)), x.price, x.qty)
            for x in sv.account.fills}
    assert {(x["id"], x["price"], x["amount"]) for x in rest_fills} == want
    assert {x["id"] for x in rest_fills} == {x["id"] for x in trades + more}


async def test_extended_hours_follow_the_session(broker):
    sb, sv, ad = await broker(PRE_H, extended_ioc_cancel_s=0.05)
    bid, _ = top(sv)
    px = round(bid[0] - 1, 2)
    od = await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbpre1", "timeInForce": "GTC"}))
    led = sv.account.by_client_id["sbpre1"]
    assert (led.extended_hours, led.alpaca_tif, led.status, od["extendedHours"], od["timeInForce"]) == (True, "day", "new", True, "DAY")
    # an IOC in pre-market: a DAY limit whose rest is cancelled right after
    await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbpre2", "timeInForce": "IOC"}))
    ioc = sv.account.by_client_id["sbpre2"]
    assert ioc.extended_hours and ioc.alpaca_tif == "day"

    async def cancelled():
        while ioc.status != "cancelled":
            await asyncio.sleep(0.01)
    await within(5, cancelled())
    with pytest.raises(ccxt.InvalidOrder):  # no market orders in extended hours: refused here
        await within(5, ad.create_order(SYM, "market", "buy", 1, None, {"clientOrderId": "sbpre3"}))
    with pytest.raises(ccxt.MarketClosed) as e:  # a regular-hours order in pre-market: the broker says no
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbpre4", "extendedHours": False}))
    assert is_definite_refusal(e.value)
    assert "sbpre3" not in sv.account.by_client_id and "sbpre4" not in sv.account.by_client_id

    sb, sv, ad = await broker(AFTER_H)
    await within(5, ad.create_order(SYM, "limit", "sell", 1, round(top(sv)[1][0] + 1, 2), {"clientOrderId": "sbaft1"}))
    assert (sv.account.by_client_id["sbaft1"].extended_hours, sv.account.by_client_id["sbaft1"].alpaca_tif) == (True, "day")

    sb, sv, ad = await broker(OVERNIGHT_H)
    with pytest.raises(ccxt.MarketClosed) as e:
        await within(5, ad.create_order(SYM, "limit", "buy", 1, 100.0, {"clientOrderId": "sbnight1"}))
    assert is_definite_refusal(e.value) and not sv.account.orders

    # in regular hours an order goes out as asked; extendedHours=True makes it a DAY extended order
    sb, sv, ad = await broker(REGULAR_H, session_state=lambda: "regular")
    px = round(top(sv)[0][0] - 1, 2)
    await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbreg1", "timeInForce": "GTC"}))
    await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbreg2", "extendedHours": True}))
    got = {c: (sv.account.by_client_id[c].extended_hours, sv.account.by_client_id[c].alpaca_tif) for c in ("sbreg1", "sbreg2")}
    assert got == {"sbreg1": (False, "gtc"), "sbreg2": (True, "day")}
    ad.session_state = lambda: "overnight"  # a session the caller knows is closed: refused without a call
    with pytest.raises(ccxt.MarketClosed):
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sbreg3"}))
    assert "sbreg3" not in sv.account.by_client_id


async def test_errors_map_to_ccxt_classes(broker):
    sb, sv, ad = await broker(REGULAR_H, timeout_s=1.0)
    bid, ask = top(sv)
    px = round(bid[0] - 1, 2)
    with pytest.raises(ccxt.InsufficientFunds) as e:
        await within(5, ad.create_order(SYM, "limit", "buy", 10_000, px, {"clientOrderId": "sberr1"}))
    assert is_definite_refusal(e.value)
    with pytest.raises(ccxt.InsufficientFunds):
        await within(5, ad.create_order(SYM, "limit", "sell", 10_000, ask[0] + 1, {"clientOrderId": "sberr2"}))
    with pytest.raises(ccxt.InvalidOrder):
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px + 0.001, {"clientOrderId": "sberr3"}))
    with pytest.raises(ccxt.NotSupported):
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sberr4", "postOnly": True}))
    sv.fault("http_error", status=503, count=1)  # the order call itself gets the 5xx: outcome unknown
    with pytest.raises(ccxt.ExchangeNotAvailable) as e:
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sberr5", "extendedHours": False}))
    assert isinstance(e.value, ccxt.NetworkError) and not is_definite_refusal(e.value)
    sv.fault("http_error", status=502, count=1)  # the session lookup before it fails: nothing sent, a definite no
    with pytest.raises(ccxt.OperationRejected) as e:
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sberr7"}))
    assert is_definite_refusal(e.value) and "sberr7" not in sv.account.by_client_id
    sv.fault("rate_limit", count=1)
    with pytest.raises(ccxt.RateLimitExceeded):
        await within(5, ad.fetch_balance())
    sv.fault("timeout", count=1)
    t0 = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout) as e:
        await within(5, ad.fetch_open_orders(SYM))
    assert time.monotonic() - t0 < 3 and not is_definite_refusal(e.value)
    # a create whose answer is lost: unknown to the caller, found by its client id
    sv.fault("lose", what="ack", count=1)
    with pytest.raises(ccxt.RequestTimeout):
        await within(5, ad.create_order(SYM, "limit", "buy", 1, px, {"clientOrderId": "sberr6"}))
    found = await within(5, ad.fetch_order("sberr6", SYM, {"clientOrderId": "sberr6"}))
    assert found["id"] == sv.account.by_client_id["sberr6"].order_id and found["status"] == "open"
    # wrong secret: an authentication error that does not carry the secret
    bad = AlpacaVenue.from_keys(sv.api_key, "not-the-secret-x9", rest_url=sv.urls()["rest"], symbols=[SYM], timeout_s=2)
    try:
        with pytest.raises(ccxt.AuthenticationError) as e:
            await within(5, bad.fetch_balance())
        text = f"{e.value!r} {e.value} {bad!r} {ad!r}"
        assert "not-the-secret-x9" not in text and sv.secret not in text
    finally:
        await within(5, bad.close())


async def test_order_book_and_trades_are_the_emulators(broker):
    sb, sv, ad = await broker(REGULAR_H)
    m = sv.emu.markets[SYM]
    ob = await within(5, ad.watch_order_book(SYM))
    seq, ts, bids, asks = sv.emu.shown_book(m, 1)
    assert (ob["bids"], ob["asks"]) == ([list(bids[0])], [list(asks[0])])
    assert ob["timestamp"] == sb.clock.to_wall(ts) // 1_000_000 and ob["symbol"] == SYM
    # the next change of the top: step the market until the emulator shows another one
    first = (bids[0], asks[0])
    await step_until(sb, lambda: sv.emu.book(m, 1) != ([first[0]], [first[1]]), step_s=1)
    b2, a2 = sv.emu.book(m, 1)

    async def latest():
        while True:
            book = await ad.watch_order_book(SYM)
            if (book["bids"], book["asks"]) == ([list(b2[0])], [list(a2[0])]):
                return book
    await within(5, latest())
    tape = asyncio.ensure_future(ad.watch_trades(SYM))
    await subscribed(sv.server, f"trades:{SYM}")
    await step_until(sb, tape.done, step_s=5)
    trades = tape.result()
    printed = {(t.price, t.size) for t in m.trades}
    assert trades and all((t["price"], t["amount"]) in printed and t["side"] is None for t in trades)


async def test_a_dropped_private_stream_raises_once_then_flows_again(broker, caplog):
    caplog.set_level(logging.DEBUG)  # websockets logs every frame at DEBUG, the authentication frame included
    sb, sv, ad = await broker(REGULAR_H)
    assert await within(10, ad.start())
    await subscribed(sv.server, "trade_updates")
    pending = asyncio.ensure_future(ad.watch_orders())
    await asyncio.sleep(0.05)
    sv.fault("drop_ws", scope="private")
    with pytest.raises(ccxt.NetworkError):
        await within(5, pending)

    async def reconnected():
        while ad.connects["trading"] < 2:
            await asyncio.sleep(0.02)
    await within(10, reconnected())
    await subscribed(sv.server, "trade_updates")
    await within(5, ad.create_order(SYM, "limit", "buy", 1, round(top(sv)[0][0] - 1, 2), {"clientOrderId": "sbdrop1"}))
    got = await collect(ad.watch_orders, lambda g: any(o["clientOrderId"] == "sbdrop1" for o in g))
    assert got[-1]["status"] == "open"
    assert "authenticate" in caplog.text and sv.secret not in caplog.text and sv.api_key not in caplog.text


async def test_order_manager_end_to_end_against_the_broker(broker, tmp_path):
    """The order manager drives the adapter: an IOC hedge and a resting order fill (one fill update
    lost on the stream and booked from REST), the journal's fills are the ledger's."""
    from live.scripted_venue import RecordingCore

    from execution.journal import Journal
    from execution.order_manager import OrderManager, OrderState
    from execution.venue import VenueLink
    from stockbridge.core.actions import new_actions
    from stockbridge.core.order_codes import ACT_NEW, FILLED, GTC, IOC, REP_DONE, REP_FILL, TAG_HEDGE
    from stockbridge.trader import cid_text

    sb, sv, ad = await broker(REGULAR_H)
    V, INS = 2, 0
    link = VenueLink("broker", ad, symbols={INS: SYM}, instrument_names={INS: "AAPL"}, base_currency={INS: "AAPL"},
                     quote_currency={INS: "USD"})
    core = RecordingCore()
    wall = lambda: sb.clock.to_wall(sb.clock.data_now())  # noqa: E731 - the venue's time is the run's
    journal = Journal(tmp_path)
    om = OrderManager(core, journal, {V: link}, clock=wall, call_timeout_s=5)
    assert await within(10, ad.start())
    await subscribed(sv.server, "trade_updates")

    async def pump(watch, on):
        while True:
            for d in await watch():
                on(V, d)

    pumps = [asyncio.create_task(pump(ad.watch_orders, om.on_order)), asyncio.create_task(pump(ad.watch_my_trades, om.on_trade))]
    try:
        bid, ask = top(sv)
        acts = new_actions(2)
        c1, c2 = (91 << 44) | (1 << 12), (91 << 44) | (2 << 12) | 1
        acts[0] = (c1, wall(), ask[0], 2.0, ACT_NEW, 1, IOC, 0, TAG_HEDGE, V, INS)
        acts[1] = (c2, wall(), bid[0], 1.0, ACT_NEW, 1, GTC, 0, TAG_HEDGE, V, INS)
        await within(10, om.submit(acts))
        o1, o2 = om.orders[cid_text(c1)], om.orders[cid_text(c2)]
        l1, l2 = sv.account.by_client_id[o1.client_id], sv.account.by_client_id[o2.client_id]
        sv.fault("lose", what="fill", count=1)  # the resting order's fill event never arrives
        await step_until(sb, lambda: l2.status == "filled", step_s=2)

        async def settled(order, led):
            while order.booked < led.filled - 1e-9 or not order.final:
                await asyncio.sleep(0.01)
        await within(5, settled(o1, l1))
        assert o1.state == (OrderState.FILLED if l1.filled >= l1.qty - 1e-9 else OrderState.CANCELLED)
        await within(5, asyncio.sleep(0.2))
        assert o2.booked < l2.filled  # the stream lost it ...
        assert await within(10, om.sync_fills(V)) >= 1  # ... REST finds it, under the id the stream would use
        assert o2.state == OrderState.FILLED and o2.booked == pytest.approx(l2.filled)
        assert await within(10, om.sync_fills(V)) == 0  # booked once
        assert om.counts["duplicate_fills"] >= len(l1.fills)  # REST's copies of the streamed fills, recognised
        fills = journal.fills("broker")
        led = sorted(((f.order_id, f.price, f.qty, f.fee) for f in sv.account.fills))
        got = sorted(((f["venue_order_id"], f["price"], f["qty"], f["fee"]) for f in fills))
        assert [g[:3] for g in got] == [x[:3] for x in led]
        assert [g[3] for g in got] == pytest.approx([x[3] for x in led], abs=1e-12)
        assert [len(core.of(c, REP_FILL)) for c in (c1, c2)] == [len(l1.fills), len(l2.fills)]
        assert core.of(c2, REP_DONE)[0][2] == FILLED
        bal = om.on_balance(V, await within(5, ad.fetch_balance()))
        assert bal["AAPL"]["total"] == pytest.approx(sv.account.balances["AAPL"].total)
        assert bal["USD"]["total"] == pytest.approx(sv.account.balances["USD"].total)
    finally:
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        journal.close()


def test_rfc3339_with_nanoseconds():
    assert iso_ns("2021-05-05T17:20:39.143123543Z") == 1620235239 * 10**9 + 143123543
    assert iso_ns("2021-05-05T13:20:39-04:00") == 1620235239 * 10**9
    assert iso_ns("2021-05-05T17:20:39.5+00:00") == 1620235239 * 10**9 + 500_000_000


class _ActivitiesBroker:
    """A TradingClient stand-in for the part the emulator does not serve: /v2/account/activities."""

    OID = "6f1c2a3b-0000-4000-8000-00000000abcd"

    def __init__(self):
        self.calls = []

    def get(self, path, data=None):
        self.calls.append((path, dict(data or {})))
        if path == "/account/activities/FILL":
            return [{"id": "20250703140000000::a", "activity_type": "FILL", "transaction_time": "2025-07-03T14:00:00.001Z",
                     "type": "partial_fill", "price": "100.01", "qty": "1", "side": "buy", "symbol": "AAPL",
                     "leaves_qty": "2", "order_id": self.OID, "cum_qty": "1", "order_status": "partially_filled"},
                    {"id": "20250703140001000::b", "activity_type": "FILL", "transaction_time": "2025-07-03T14:00:01Z",
                     "type": "fill", "price": "100.02", "qty": "2", "side": "buy", "symbol": "AAPL",
                     "leaves_qty": "0", "order_id": self.OID, "cum_qty": "3", "order_status": "filled"}]
        if path == f"/orders/{self.OID}":
            return {"id": self.OID, "client_order_id": "sbact1", "symbol": "AAPL", "side": "buy", "type": "limit",
                    "order_type": "limit", "time_in_force": "gtc", "limit_price": "100.02", "qty": "3", "filled_qty": "3",
                    "status": "filled", "submitted_at": "2025-07-03T13:59:59Z", "created_at": "2025-07-03T13:59:59Z"}
        raise AssertionError(path)


async def test_fills_from_account_activities_carry_the_streams_ids():
    tc = _ActivitiesBroker()
    ad = AlpacaVenue(tc, symbols=[SYM], taker_fee_bps=0.5)
    try:
        got = await within(5, ad.fetch_my_trades(SYM, 1751551199000))
        assert [(t["id"], t["clientOrderId"], t["price"], t["amount"]) for t in got] == [
            (fill_id(tc.OID, 1), "sbact1", 100.01, 1.0), (fill_id(tc.OID, 3), "sbact1", 100.02, 2.0)]
        # below its limit: it crossed (taker); at its limit after it was submitted: it rested (maker)
        assert [t["takerOrMaker"] for t in got] == ["taker", "maker"]
        assert [t["fee"]["cost"] for t in got] == pytest.approx([100.01 * 0.5e-4, 0.0])
        assert tc.calls[0][1]["after"].startswith("2025-07-03T13:59:58.999")
    finally:
        await within(5, ad.close())


class _OrdersOnlyBroker(_ActivitiesBroker):
    """A broker without activities (as the emulator): fills come from the orders' filled_qty."""

    def get(self, path, data=None):
        from types import SimpleNamespace

        from alpaca.common.exceptions import APIError

        if path == "/account/activities/FILL":
            raise APIError("404: Not Found", SimpleNamespace(response=SimpleNamespace(status_code=404)))
        if path == "/orders":
            o = super().get(f"/orders/{self.OID}")
            return [{**o, "filled_avg_price": "100.0166666667", "updated_at": "2025-07-03T14:00:01Z",
                     "filled_at": "2025-07-03T14:00:01Z"}]
        return super().get(path, data)


async def test_late_stream_fills_after_an_aggregate_rest_fill_are_not_counted_twice():
    tc = _OrdersOnlyBroker()
    ad = AlpacaVenue(tc, symbols=[SYM])
    try:
        ad._trade_feeds[None] = feed = __import__("execution.alpaca_venue", fromlist=["_Feed"])._Feed()
        order = {**tc.get(f"/orders/{tc.OID}"), "status": "partially_filled", "filled_qty": "1"}
        ad._apply_trade_update({"event": "partial_fill", "order": order, "price": "100.01", "qty": "1",
                                "timestamp": "2025-07-03T14:00:00.001Z", "execution_id": "e1"})
        got = await within(5, ad.fetch_my_trades(SYM, None))
        # the streamed fill keeps its id; the rest of the order's filled size is one fill at the remaining average
        assert [(t["id"], t["amount"]) for t in got] == [(fill_id(tc.OID, 1), 1.0), (fill_id(tc.OID, 3), 2.0)]
        assert got[1]["price"] == pytest.approx((3 * 100.0166666667 - 100.01) / 2)
        assert sum(t["amount"] for t in got) == 3.0
        # REST answered first when there are no activities: a late stream fill inside the aggregate is dropped
        tc2 = _OrdersOnlyBroker()
        ad2 = AlpacaVenue(tc2, symbols=[SYM])
        ad2._trade_feeds[None] = feed2 = type(feed)()
        agg = await within(5, ad2.fetch_my_trades(SYM, None))
        assert [(t["id"], t["amount"]) for t in agg] == [(fill_id(tc2.OID, 3), 3.0)]
        ad2._apply_trade_update({"event": "partial_fill", "order": order, "price": "100.01", "qty": "1",
                                 "timestamp": "2025-07-03T14:00:00.001Z", "execution_id": "e1"})
        assert not feed2.items
        await within(5, ad2.close())
        assert [t["id"] for t in await within(1, feed.take())] == [fill_id(tc.OID, 1)]
    finally:
        await within(5, ad.close())
