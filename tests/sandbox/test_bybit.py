"""The Bybit v5 emulator driven by the real, unmodified ccxt.pro bybit client (loopback only).

Every expectation is the emulator's own state (its shown book, its ledger) or a known answer (the
config's grid, Bybit's error classes as ccxt maps them)."""

from __future__ import annotations

import asyncio

import ccxt
import pytest
from sandbox.sandbox_helpers import step_until, within

from execution.sandbox.clients import ccxt_exchange

SYMBOL = "AAPLX/USDT"
MID = "AAPLXUSDT"


@pytest.fixture
async def bybit(sandboxes, sb_cfg):
    """(sandbox, its bybit venue, a ccxt.pro bybit pointed at it with markets loaded)."""
    sb = await sandboxes(["bybit"])
    sv = sb["bybit"]
    ex = ccxt_exchange(sb_cfg.venues["bybit"], sv, timeout=3000)
    await within(10, ex.load_markets())
    yield sb, sv, ex
    await within(10, ex.close())


def book_of(ob, depth=50):
    return [tuple(x) for x in ob["bids"][:depth]], [tuple(x) for x in ob["asks"][:depth]]


async def test_every_url_points_at_the_sandbox(bybit):
    sb, sv, ex = bybit

    def leaves(t):
        return [x for v in t.values() for x in (leaves(v) if isinstance(v, dict) else [v])]

    urls = leaves(ex.urls["api"])
    assert urls and all(u.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")) for u in urls)


async def test_load_markets_has_the_configured_grid(bybit, sb_cfg):
    sb, sv, ex = bybit
    v = sb_cfg.venues["bybit"]
    m = ex.market(SYMBOL)
    assert (m["id"], m["base"], m["quote"], m["spot"]) == (MID, "AAPLX", "USDT", True)
    assert m["precision"]["price"] == v.tick_size
    assert m["precision"]["amount"] == v.lot_size
    assert m["limits"]["amount"]["min"] == v.lot_size
    assert m["limits"]["cost"]["min"] == v.min_notional


async def test_fetch_order_book_is_the_emulators_book(bybit):
    sb, sv, ex = bybit
    await sb.step(30)
    ob = await within(5, ex.fetch_order_book(SYMBOL, 50))
    m = sv.emu.markets[MID]
    seq, ts, bids, asks = sv.emu.shown_book(m, 50)
    assert bids and asks
    assert book_of(ob) == (bids, asks)
    assert ob["timestamp"] == sb.clock.wall_ms(ts)


async def test_watched_book_equals_the_emulators_book_at_the_same_seq(bybit):
    """ccxt builds its book from one snapshot and then deltas; after each step it must equal what the
    emulator showed at the sequence number it last sent, our own resting order included."""
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    await within(5, ex.watch_order_book(SYMBOL))
    checked = 0
    seqs = set()
    for k in range(12):
        await sb.step(7)
        if k == 5:  # our own order rests in the spread: the venue shows it
            bids, asks = sv.emu.book(m)
            px = round(bids[0][0] + 0.01, 2)
            assert px < asks[0][0]
            await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.5, px, {"clientOrderId": "own-level"}))
        seq, ts, bids, asks = sv.emu.shown_book(m, 50)
        want = sv.emu.book_at(m, seq)
        assert want is not None

        async def caught_up():
            while True:  # the book ccxt keeps, built from the messages it has received so far
                ob = ex.orderbooks[SYMBOL]
                if ob["timestamp"] == sb.clock.wall_ms(ts) and book_of(ob) == (bids, asks):
                    return ob
                await asyncio.sleep(0.01)
        ob = await within(5, caught_up())
        assert book_of(ob) == ([tuple(x) for x in want[0][:50]], [tuple(x) for x in want[1][:50]])
        seqs.add(seq)
        checked += 1
    assert checked == 12 and len(seqs) >= 6  # the book moved between steps: deltas were applied
    ob = ex.orderbooks[SYMBOL]
    assert any(abs(p - px) < 1e-9 and abs(q - 0.5) < 1e-9 for p, q in ob["bids"])


async def test_watch_trades_are_the_recorded_prints(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    watch = asyncio.ensure_future(ex.watch_trades(SYMBOL))
    await asyncio.sleep(0.2)
    before = len(m.trades)
    await step_until(sb, lambda: len(m.trades) > before)
    trades = await within(5, watch)
    tape = list(m.trades)[before:]
    got = [(t["id"], t["price"], t["amount"], t["side"], t["timestamp"]) for t in trades]
    want = [(t.id, t.price, t.size, "buy" if t.side > 0 else "sell", sb.clock.wall_ms(t.ts)) for t in tape[: len(got)]]
    assert got == want


async def test_create_fetch_cancel_by_client_id(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    bid = sv.emu.book(m)[0][0][0]
    px = round(bid - 0.5, 2)  # well below the touch: it rests
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, px, {"clientOrderId": "cid-1"}))
    assert o["clientOrderId"] == "cid-1"
    opened = await within(5, ex.fetch_open_orders(SYMBOL, params={"orderLinkId": "cid-1"}))
    assert [(x["id"], x["clientOrderId"], x["status"], x["price"], x["amount"]) for x in opened] == [
        (o["id"], "cid-1", "open", px, 1.0)]
    led = sv.account.by_client_id["cid-1"]
    assert led.order_id == o["id"] and led.status == "new"
    bal = await within(5, ex.fetch_balance())
    assert bal["USDT"]["used"] == pytest.approx(px * 1.0)
    await within(5, ex.cancel_order(None, SYMBOL, {"orderLinkId": "cid-1"}))
    assert led.status == "cancelled" and led.reason == "user"
    closed = await within(5, ex.fetch_canceled_and_closed_orders(SYMBOL, params={"orderLinkId": "cid-1"}))
    assert [(x["id"], x["status"]) for x in closed] == [(o["id"], "canceled")]
    assert await within(5, ex.fetch_open_orders(SYMBOL)) == []
    bal = await within(5, ex.fetch_balance())
    assert bal["USDT"]["used"] == 0 and bal["USDT"]["total"] == pytest.approx(sv.account.balances["USDT"].total)


async def test_passive_fill_reaches_watch_and_fetch_with_the_ledgers_numbers(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    my_trades = asyncio.ensure_future(ex.watch_my_trades(SYMBOL))
    orders = asyncio.ensure_future(ex.watch_orders(SYMBOL))
    await asyncio.sleep(0.2)
    bid = sv.emu.book(m)[0][0][0]
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid, {"clientOrderId": "maker-1"}))
    led = sv.account.orders[o["id"]]
    await step_until(sb, lambda: led.status == "filled")
    trades = await within(5, my_trades)
    fills = led.fills
    assert len(trades) == len(fills) >= 1
    for t, f in zip(trades, fills):
        assert (t["id"], t["order"], t["price"], t["amount"], t["takerOrMaker"]) == (f.trade_id, o["id"], f.price, f.qty, "maker")
        assert t["fee"]["cost"] == pytest.approx(f.fee, abs=1e-9) and t["fee"]["currency"] == f.fee_currency
        assert t["timestamp"] == sb.clock.wall_ms(f.ts)
    # the backtest's maker fee (negative: a rebate) on the same fill
    assert fills[0].fee_quote == pytest.approx(fills[0].price * fills[0].qty * sb.cfg.venues["bybit"].maker_fee_bps / 1e4)
    fetched = await within(5, ex.fetch_my_trades(SYMBOL))
    assert [(t["id"], t["order"], t["price"], t["amount"], t["fee"]["currency"]) for t in fetched] == [
        (f.trade_id, o["id"], f.price, f.qty, f.fee_currency) for f in fills]
    assert [t["fee"]["cost"] for t in fetched] == pytest.approx([f.fee for f in fills])
    seen = await within(5, orders)
    while seen[-1]["status"] != "closed":
        seen = await within(5, ex.watch_orders(SYMBOL))
    assert (seen[-1]["id"], seen[-1]["filled"], seen[-1]["status"]) == (o["id"], 1.0, "closed")
    bal = await within(5, ex.fetch_balance())
    for ccy in ("USDT", "AAPLX"):
        assert bal[ccy]["total"] == pytest.approx(sv.account.balances[ccy].total, abs=1e-9)


async def test_taker_fill_pays_the_taker_fee_in_the_base_token(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    ask_px, ask_q = sv.emu.book(m)[1][0]
    before = sv.account.balances["AAPLX"].total
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, ask_px, {"clientOrderId": "taker-1"}))
    led = sv.account.orders[o["id"]]
    assert led.status == "filled" and len(led.fills) == 1 and not led.fills[0].maker
    f = led.fills[0]
    taker = sb.cfg.venues["bybit"].taker_fee_bps / 1e4
    assert f.fee_currency == "AAPLX" and f.fee == pytest.approx(1.0 * taker)  # fee_quote / price = qty * rate
    assert sv.account.balances["AAPLX"].total == pytest.approx(before + 1.0 - f.fee)
    fetched = await within(5, ex.fetch_my_trades(SYMBOL))
    assert [(t["id"], t["takerOrMaker"], t["fee"]["currency"]) for t in fetched] == [(f.trade_id, "taker", "AAPLX")]
    assert fetched[0]["fee"]["cost"] == pytest.approx(f.fee)
    # the visible book lost what we took
    assert sv.emu.book(m)[1][0] != (ask_px, ask_q)


async def test_fetch_my_trades_since_a_cursor(bybit):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    ask = sv.emu.book(m)[1][0][0]
    await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.5, ask, {"clientOrderId": "t-a"}))
    await sb.step(60)
    ask = sv.emu.book(m)[1][0][0]
    await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.5, ask, {"clientOrderId": "t-b"}))
    fills = sv.account.fills
    assert len(fills) >= 2
    since = sb.clock.wall_ms(fills[0].ts) + 1
    later = await within(5, ex.fetch_my_trades(SYMBOL, since=since))
    assert [t["id"] for t in later] == [f.trade_id for f in fills if sb.clock.wall_ms(f.ts) >= since]
    assert fills[0].trade_id not in [t["id"] for t in later]


async def test_errors_map_to_ccxt_exception_classes(bybit, sb_cfg):
    sb, sv, ex = bybit
    m = sv.emu.markets[MID]
    bid = sv.emu.book(m)[0][0][0]
    ask = sv.emu.book(m)[1][0][0]

    def raw(**kw):
        body = {"category": "spot", "symbol": MID, "side": "Buy", "orderType": "Limit", "qty": "1", "price": f"{bid - 1:.2f}"}
        body.update(kw)
        return ex.privatePostV5OrderCreate(body)

    with pytest.raises(ccxt.InvalidOrder):  # 170121 Invalid symbol
        await within(5, raw(symbol="NOPEUSDT"))
    with pytest.raises(ccxt.InvalidOrder):  # 170134 price off the tick grid
        await within(5, raw(price=f"{bid - 1:.2f}5"))
    with pytest.raises(ccxt.InvalidOrder):  # 170136 qty below the minimum
        await within(5, raw(qty="0.001"))
    with pytest.raises(ccxt.InvalidOrder):  # 170140 order value below the minimum
        await within(5, raw(qty="0.01"))
    with pytest.raises(ccxt.InvalidOrder):  # 170218 post-only that would cross
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, ask, {"postOnly": True}))
    with pytest.raises(ccxt.InsufficientFunds):  # 170131
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1000.0, bid - 1))
    with pytest.raises(ccxt.OrderNotFound):  # 170213
        await within(5, ex.cancel_order("12345", SYMBOL))
    await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "dup"}))
    with pytest.raises(ccxt.InvalidOrder):  # 170141 duplicate client id
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "dup"}))
    # the post-only order reached the venue and was rejected there, by the matching engine
    assert [o.reason for o in sv.account.orders.values() if o.status == "rejected"] == ["post_only"]

    bad = ccxt_exchange(sb_cfg.venues["bybit"], sv, timeout=3000)
    bad.secret = "0" * len(sv.secret)
    try:
        with pytest.raises(ccxt.AuthenticationError):  # 10004 bad signature
            await within(5, bad.fetch_balance())
        bad.apiKey = "not-a-key"
        with pytest.raises(ccxt.AuthenticationError):  # 10003 unknown key
            await within(5, bad.fetch_balance())
    finally:
        await bad.close()
    with pytest.raises(ccxt.AuthenticationError):  # private websocket auth with a bad signature
        other = ccxt_exchange(sb_cfg.venues["bybit"], sv, timeout=3000)
        other.secret = "1" * len(sv.secret)
        try:
            await within(5, other.watch_orders(SYMBOL))
        finally:
            await other.close()


async def test_keys_and_secrets_stay_out_of_reprs_logs_and_errors(bybit, sb_cfg, caplog):
    sb, sv, ex = bybit
    bid = sv.emu.book(sv.emu.markets[MID])[0][0][0]
    await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "k"}))
    sv.fault("rate_limit", count=1)
    with pytest.raises(ccxt.RateLimitExceeded) as err:
        await within(5, ex.fetch_balance())
    bad = ccxt_exchange(sb_cfg.venues["bybit"], sv, timeout=3000)
    bad.secret = "0" * len(sv.secret)
    try:
        with pytest.raises(ccxt.AuthenticationError) as auth:
            await within(5, bad.fetch_balance())
    finally:
        await bad.close()
    shown = " ".join([repr(sv.account), repr(list(sv.account.orders.values())), repr(sv), caplog.text,
                      str(err.value), str(auth.value)])
    assert sv.api_key not in shown and sv.secret not in shown
