"""Every fault kind on the Bybit emulator, seen through the unmodified ccxt.pro bybit client: the client
sees what it would see from the real venue (its exception classes, missing messages), while the
venue's ledger shows what really happened."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import ccxt
import pytest
from sandbox.sandbox_helpers import step_until, within

from execution.sandbox.clients import ccxt_exchange

SYMBOL = "AAPLX/USDT"
MID = "AAPLXUSDT"


@pytest.fixture
async def bybit(sandboxes, sb_cfg):
    sb = await sandboxes(["bybit"])
    sv = sb["bybit"]
    ex = ccxt_exchange(sb_cfg.venues["bybit"], sv, timeout=3000)
    await within(10, ex.load_markets())
    yield sb, sv, ex
    await within(10, ex.close())


def touch(sv):
    bids, asks = sv.emu.book(sv.emu.markets[MID])
    return bids[0][0], asks[0][0]


async def test_drop_ws_closes_the_stream_and_a_resubscribe_gets_a_fresh_snapshot(bybit):
    sb, sv, ex = bybit
    await within(5, ex.watch_order_book(SYMBOL))
    pending = asyncio.ensure_future(ex.watch_order_book(SYMBOL))
    await asyncio.sleep(0.1)
    rec = sv.fault("drop_ws", scope="public")
    with pytest.raises(ccxt.NetworkError):
        await within(5, pending)
    assert rec.kind == "drop_ws" and rec.wall_ns > 0 and rec.data_ns == sb.clock.data_now()
    await sb.step(10)
    ob = await within(5, ex.watch_order_book(SYMBOL))
    seq, ts, bids, asks = sv.emu.shown_book(sv.emu.markets[MID], 50)
    assert [tuple(x) for x in ob["bids"][:50]] == bids


async def test_delayed_ack_arrives_late_and_the_order_stands(bybit):
    sb, sv, ex = bybit
    bid, _ = touch(sv)
    sv.fault("delay", what="ack", seconds=0.6)
    t = time.monotonic()
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "slow"}))
    assert time.monotonic() - t >= 0.6
    assert sv.account.orders[o["id"]].status == "new"


async def test_lost_ack_times_out_but_the_order_is_at_the_venue(bybit):
    sb, sv, ex = bybit
    bid, _ = touch(sv)
    sv.fault("lose", what="ack", count=1)
    with pytest.raises(ccxt.RequestTimeout):
        await within(10, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "lost-ack"}))
    found = await within(5, ex.fetch_open_orders(SYMBOL, params={"orderLinkId": "lost-ack"}))
    assert [o["clientOrderId"] for o in found] == ["lost-ack"]
    assert sv.account.by_client_id["lost-ack"].status == "new"


async def test_lost_fill_message_is_missing_from_the_stream_but_not_from_rest(bybit):
    sb, sv, ex = bybit
    orders = asyncio.ensure_future(ex.watch_orders(SYMBOL))
    mine = asyncio.ensure_future(ex.watch_my_trades(SYMBOL))
    await asyncio.sleep(0.2)
    sv.fault("lose", what="fill", count=1)  # the next fill message (execution topic) is lost
    _, ask = touch(sv)
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.5, ask, {"clientOrderId": "lost-fill"}))
    led = sv.account.orders[o["id"]]
    assert led.status == "filled" and len(led.fills) == 1
    seen = await within(5, orders)
    while seen[-1]["status"] != "closed":
        seen = await within(5, ex.watch_orders(SYMBOL))
    await asyncio.sleep(0.2)
    assert not mine.done()  # the execution message never came
    mine.cancel()
    fetched = await within(5, ex.fetch_my_trades(SYMBOL))
    assert [t["id"] for t in fetched] == [led.fills[0].trade_id]


async def test_delayed_fill_message_arrives_late(bybit):
    sb, sv, ex = bybit
    mine = asyncio.ensure_future(ex.watch_my_trades(SYMBOL))
    await asyncio.sleep(0.2)
    sv.fault("delay", what="fill", seconds=0.5)
    _, ask = touch(sv)
    t = time.monotonic()
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.5, ask))
    trades = await within(5, mine)
    assert time.monotonic() - t >= 0.5
    assert trades[0]["id"] == sv.account.orders[o["id"]].fills[0].trade_id


async def test_server_error_timeout_and_rate_limit(bybit):
    sb, sv, ex = bybit
    sv.fault("http_error", status=503, count=1)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await within(5, ex.fetch_balance())
    await within(5, ex.fetch_balance())  # one call only
    sv.fault("timeout", count=1)
    with pytest.raises(ccxt.RequestTimeout):
        await within(10, ex.fetch_order_book(SYMBOL))
    sv.fault("rate_limit", count=2)
    with pytest.raises(ccxt.RateLimitExceeded):
        await within(5, ex.fetch_balance())
    with pytest.raises(ccxt.RateLimitExceeded):
        await within(5, ex.fetch_open_orders(SYMBOL))
    await within(5, ex.fetch_balance())
    assert [r.kind for r in sv.emu.faults.log] == ["http_error", "timeout", "rate_limit"]


async def test_halt_refuses_orders_and_cancels_and_nothing_fills(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    bid, _ = touch(sv)
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid, {"clientOrderId": "halted"}))
    led = sv.account.orders[o["id"]]
    sv.fault("halt", symbol=MID)
    with pytest.raises(ccxt.InvalidOrder):
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1))
    with pytest.raises(ccxt.InvalidOrder):
        await within(5, ex.cancel_order(o["id"], SYMBOL))
    n = len(m.trades)
    # the recorded market trades through our price; a halted venue fills nothing
    await step_until(sb, lambda: any(t.price <= bid for t in list(m.trades)[n:]), step_s=10)
    assert led.status == "new" and led.filled == 0
    sv.fault("resume", symbol=MID)
    await within(5, ex.cancel_order(o["id"], SYMBOL))
    assert led.status == "cancelled"


async def test_default_loses_orders_freezes_balances_and_every_call_fails(bybit):
    sb, sv, ex = bybit
    bid, _ = touch(sv)
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1))
    stream = asyncio.ensure_future(ex.watch_order_book(SYMBOL))
    await within(5, stream)
    stream = asyncio.ensure_future(ex.watch_order_book(SYMBOL))
    await asyncio.sleep(0.1)
    balances = {c: (b.total, b.locked) for c, b in sv.account.balances.items()}
    sv.fault("default")
    led = sv.account.orders[o["id"]]
    assert (led.status, led.reason) == ("cancelled", "defaulted")
    for call in (ex.fetch_balance(), ex.fetch_order_book(SYMBOL), ex.fetch_open_orders(SYMBOL),
                 ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1)):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await within(5, call)
    try:  # the book lost our order: that last delta may still arrive before the close
        await within(5, stream)
    except ccxt.NetworkError:
        pass
    with pytest.raises(ccxt.NetworkError):  # the venue is gone: reconnecting fails
        await within(5, ex.watch_order_book(SYMBOL))
    await sb.step(600)
    assert {c: b.total for c, b in sv.account.balances.items()} == {c: t for c, (t, _) in balances.items()}
    assert sv.account.frozen


async def test_frozen_feed_shows_a_stale_book_while_the_market_moves(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    sv.fault("freeze_feed")
    before = await within(5, ex.fetch_order_book(SYMBOL))
    real_before = m.sim.book()
    await step_until(sb, lambda: m.sim.book() != real_before, step_s=5)
    stale = await within(5, ex.fetch_order_book(SYMBOL))
    assert (stale["bids"], stale["asks"], stale["timestamp"]) == (before["bids"], before["asks"], before["timestamp"])
    sv.fault("unfreeze_feed")
    fresh = await within(5, ex.fetch_order_book(SYMBOL, 50))
    assert [tuple(x) for x in fresh["bids"]] == sv.emu.book(m, 50)[0]


async def test_skewed_clock_fails_the_recv_window_and_shows_in_server_time(bybit):
    sb, sv, ex = bybit
    sv.fault("skew_clock", ms=60_000)
    with pytest.raises(ccxt.InvalidNonce):  # 10002: the request's timestamp is outside the recv window
        await within(5, ex.fetch_balance())
    server = await within(5, ex.fetch_time())
    assert server - ex.milliseconds() == pytest.approx(60_000, abs=2_000)
    sv.fault("clear")
    await within(5, ex.fetch_balance())


async def test_control_api_over_http(bybit):
    sb, sv, ex = bybit
    async with aiohttp.ClientSession() as http:
        base = sv.server.http_url
        async with http.post(f"{base}/sandbox/faults", json={"kind": "rate_limit", "count": 1}) as r:
            assert r.status == 200 and (await r.json())["kind"] == "rate_limit"
        async with http.post(f"{base}/sandbox/faults", json={"kind": "nonsense"}) as r:
            assert r.status == 400
        with pytest.raises(ccxt.RateLimitExceeded):
            await within(5, ex.fetch_balance())
        async with http.post(f"{base}/sandbox/step", json={"seconds": 30}) as r:
            assert (await r.json())["data_ns"] == sb.clock.data_now()
        async with http.get(f"{base}/sandbox/faults") as r:
            log = await r.json()
        assert [x["kind"] for x in log] == ["rate_limit"] and log[0]["wall_ns"] > 0
        async with http.get(f"{base}/sandbox/info") as r:
            info = await r.json()
        assert info["venue"] == "bybit" and MID in info["markets"]
