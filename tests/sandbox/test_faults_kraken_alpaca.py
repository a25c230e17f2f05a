"""Faults seen through the Kraken and Alpaca clients (the fault machinery is shared; these show each
venue's own answer reaches its client)."""

from __future__ import annotations

import asyncio

import ccxt
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest

from execution.sandbox.clients import alpaca_clients, ccxt_exchange
from sandbox.sandbox_helpers import step_until, subscribed, within

SYMBOL = "AAPLX/USD"
MID = "AAPLxUSD"


async def test_kraken_drop_ws_timeout_and_default(sandboxes, sb_cfg):
    sb = await sandboxes(["kraken"])
    sv = sb["kraken"]
    ex = ccxt_exchange(sb_cfg.venues["kraken"], sv, timeout=2000, enableRateLimit=False)
    try:
        await within(10, ex.load_markets())
        await within(5, ex.watch_order_book(SYMBOL))
        pending = asyncio.ensure_future(ex.watch_order_book(SYMBOL))
        await asyncio.sleep(0.1)
        sv.fault("drop_ws", scope="public")
        with pytest.raises(ccxt.NetworkError):
            await within(5, pending)
        sv.fault("timeout", count=1)
        with pytest.raises(ccxt.RequestTimeout):
            await within(10, ex.fetch_balance())
        bid = sv.emu.book(sv.emu.markets[MID])[0][0][0]
        o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, round(bid - 1, 2)))
        sv.fault("default")
        assert sv.account.orders[o["id"]].reason == "defaulted"
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await within(5, ex.fetch_balance())
    finally:
        await within(10, ex.close())


async def test_alpaca_lost_fill_update_server_error_and_halt(sandboxes):
    sb = await sandboxes(["broker"], start_offset_h=14)  # 10:00 New York: regular hours
    sv = sb["broker"]
    cl = alpaca_clients(sv)
    tc, ts = cl["trading"], cl["trade_stream"]
    updates = []

    async def on_update(u):
        updates.append(u)

    ts.subscribe_trade_updates(on_update)
    task = asyncio.create_task(ts._run_forever())
    try:
        await subscribed(sv.server, "trade_updates")
        m = sv.emu.markets["AAPL"]
        sv.fault("lose", what="fill", count=1)
        bid = sv.emu.book(m)[0][0][0]
        o = await within(10, asyncio.to_thread(tc.submit_order, LimitOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=bid)))
        led = sv.account.orders[str(o.id)]
        await step_until(sb, lambda: led.status == "filled", step_s=2)
        await asyncio.sleep(0.3)
        assert [u.event for u in updates] == ["new"]  # the fill event was lost ...
        got = await within(10, asyncio.to_thread(tc.get_order_by_id, o.id))
        assert float(got.filled_qty) == 1.0  # ... REST tells the truth
        sv.fault("http_error", status=503, count=1)
        with pytest.raises(APIError) as e:
            await within(10, asyncio.to_thread(tc.get_account))
        assert e.value.status_code == 503
        sv.fault("halt", symbol="AAPL")
        with pytest.raises(APIError) as e:
            await within(10, asyncio.to_thread(tc.submit_order, LimitOrderRequest(
                symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=bid - 1)))
        assert e.value.status_code == 403 and "halted" in str(e.value)
        assets = await within(10, asyncio.to_thread(tc.get_all_assets))
        assert assets[0].tradable is False
    finally:
        await ts.stop_ws()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
