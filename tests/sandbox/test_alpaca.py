"""The Alpaca emulator driven by the real, unmodified alpaca-py clients: TradingClient (sync, called in
a thread so the loopback server keeps running), TradingStream and StockDataStream."""

from __future__ import annotations

import asyncio

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from sandbox.sandbox_helpers import step_until, subscribed, within

from execution.sandbox.clients import alpaca_clients
from stockbridge.sessions import REGULAR

# the store's first day (Thu 2025-07-03, a half day): data start 00:00Z; +14 h = 10:00 New York (regular),
# +10 h = 06:00 (pre-market), +19 h = 15:00 (after the 13:00 close: after-hours), +2 h = overnight
REGULAR_H, PRE_H, AFTER_H, OVERNIGHT_H = 14, 10, 19, 2


def run(fn, *a, **kw):
    return within(10, asyncio.to_thread(fn, *a, **kw))


@pytest.fixture
async def broker(sandboxes):
    async def make(hours: float):
        sb = await sandboxes(["broker"], start_offset_h=hours)
        sv = sb["broker"]
        return sb, sv, alpaca_clients(sv)
    return make


async def test_clock_and_calendar_follow_the_session_calendar(broker):
    sb, sv, cl = await broker(REGULAR_H)
    tc = cl["trading"]
    clock = await run(tc.get_clock)
    now = sb.clock.data_now()
    cal = sv.emu.sessions
    assert clock.is_open is True and cal.state_at(now) == REGULAR
    close = int(cal.next_close(now))
    assert int(clock.next_close.timestamp() * 1e3) == sb.clock.to_wall(close) // 1_000_000
    # the half day closes at 13:00 New York (3 h after 10:00); the next open is Monday 09:30 (Fri Jul 4 is a holiday)
    assert (close - now) == 3 * 3600 * 10**9
    assert (clock.next_open - clock.next_close).total_seconds() == pytest.approx((3 * 24 + 20.5) * 3600, abs=1)
    days = await run(tc.get_calendar)
    # days are the wall dates the sessions map to, times the session table's New York times (so they
    # never cross midnight, whatever the wall time): the replayed half day is 3.5 h long (09:30-13:00),
    # a full day 6.5 h
    lengths = sorted({(d.close - d.open).total_seconds() / 3600 for d in days})
    assert lengths == [3.5, 6.5]
    sb2, sv2, cl2 = await broker(OVERNIGHT_H)
    assert (await run(cl2["trading"].get_clock)).is_open is False


async def test_account_assets_positions_are_the_ledger(broker, sb_cfg):
    sb, sv, cl = await broker(REGULAR_H)
    tc = cl["trading"]
    acc = await run(tc.get_account)
    led = sv.account
    assert float(acc.cash) == pytest.approx(led.balances["USD"].total) == sb_cfg.backtest.initial_cash
    assets = await run(tc.get_all_assets)
    assert [(a.symbol, a.tradable, a.price_increment) for a in assets] == [("AAPL", True, sb_cfg.venues["broker"].tick_size)]
    pos = await run(tc.get_all_positions)
    assert [(p.symbol, float(p.qty)) for p in pos] == [("AAPL", led.balances["AAPL"].total)]


async def test_orders_by_client_id_fills_and_streams(broker):
    sb, sv, cl = await broker(REGULAR_H)
    tc = cl["trading"]
    m = sv.emu.markets["AAPL"]
    updates, quotes, trades = [], [], []

    async def on_update(u):
        updates.append(u)

    async def on_quote(q):
        quotes.append(q)

    async def on_trade(t):
        trades.append(t)

    ts, ds = cl["trade_stream"], cl["data_stream"]
    ts.subscribe_trade_updates(on_update)
    ds.subscribe_quotes(on_quote, "AAPL")
    ds.subscribe_trades(on_trade, "AAPL")
    tasks = [asyncio.create_task(ts._run_forever()), asyncio.create_task(ds._run_forever())]
    try:
        await subscribed(sv.server, "trade_updates")
        await subscribed(sv.server, "quotes:AAPL")
        bid = sv.emu.book(m)[0][0][0]
        far = await run(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                                            time_in_force=TimeInForce.DAY, limit_price=round(bid - 1, 2),
                                                            client_order_id="far"))
        assert (await run(tc.get_order_by_client_id, "far")).id == far.id
        opened = await run(tc.get_orders, GetOrdersRequest(status="open"))
        assert [o.client_order_id for o in opened] == ["far"]
        await run(tc.cancel_order_by_id, far.id)
        assert (await run(tc.get_order_by_id, far.id)).status == OrderStatus.CANCELED
        assert sv.account.by_client_id["far"].reason == "user"

        o = await run(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                          time_in_force=TimeInForce.DAY, limit_price=bid, client_order_id="near"))
        led = sv.account.orders[str(o.id)]
        await step_until(sb, lambda: led.status == "filled", step_s=2)

        async def got_fill():
            while not any(u.event == "fill" and str(u.order.id) == led.order_id for u in updates):
                await asyncio.sleep(0.01)
        await within(5, got_fill())
        fill = next(u for u in updates if u.event == "fill")
        f = led.fills[0]
        assert (str(fill.execution_id), fill.price, fill.qty, fill.order.status) == (f.trade_id, f.price, f.qty, OrderStatus.FILLED)
        assert [u.event for u in updates if str(u.order.id) == str(far.id)] == ["new", "canceled"]
        assert f.fee == pytest.approx(f.price * f.qty * sb.cfg.venues["broker"].maker_fee_bps / 1e4)
        pos = await run(tc.get_open_position, "AAPL")
        assert float(pos.qty) == pytest.approx(sv.account.balances["AAPL"].total)
        acc = await run(tc.get_account)
        assert float(acc.cash) == pytest.approx(sv.account.balances["USD"].total)
        # market data: the top of the shown book, and the tape
        top = sv.emu.book(m, 1)

        async def quoted():
            while not quotes or (quotes[-1].bid_price, quotes[-1].ask_price) != (top[0][0][0], top[1][0][0]):
                await asyncio.sleep(0.01)
        await within(5, quoted())
        assert quotes[-1].bid_size == top[0][0][1]
        await step_until(sb, lambda: bool(trades), step_s=2)
        tape = {(t.price, t.size) for t in m.trades}
        assert all((t.price, t.size) in tape for t in trades)
    finally:
        await ts.stop_ws()
        await ds.stop_ws()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_sessions_and_errors_as_alpaca_answers(broker):
    sb, sv, cl = await broker(PRE_H)
    tc = cl["trading"]
    m = sv.emu.markets["AAPL"]
    bid = sv.emu.book(m)[0][0][0]
    with pytest.raises(APIError) as e:  # pre-market: only extended-hours DAY limit orders
        await run(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                                      limit_price=bid - 1))
    assert e.value.status_code == 403 and e.value.code == 40310000
    with pytest.raises(APIError) as e:
        await run(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                                       extended_hours=True))
    assert e.value.status_code == 422 and e.value.code == 42210000
    ok = await run(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                                       limit_price=bid - 1, extended_hours=True))
    assert ok.extended_hours is True and sv.account.orders[str(ok.id)].status == "new"
    with pytest.raises(APIError) as e:
        await run(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=10_000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                                      limit_price=bid - 1, extended_hours=True))
    assert e.value.status_code == 403 and "buying power" in str(e.value)
    with pytest.raises(APIError) as e:
        await run(tc.get_order_by_client_id, "nope")
    assert e.value.status_code == 404
    sb2, sv2, cl2 = await broker(OVERNIGHT_H)
    with pytest.raises(APIError) as e:  # outside the asset's sessions: refused
        await run(cl2["trading"].submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                                  time_in_force=TimeInForce.DAY, limit_price=100.0, extended_hours=True))
    assert e.value.status_code == 403 and "market is closed" in str(e.value)
    from alpaca.trading.client import TradingClient

    bad = TradingClient(sv.api_key, "wrong", paper=True, url_override=sv.urls()["rest"])
    with pytest.raises(APIError) as e:
        await run(bad.get_account)
    assert e.value.status_code == 401
