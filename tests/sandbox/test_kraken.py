"""The Kraken emulator driven by the real, unmodified ccxt.pro kraken client (loopback only)."""

from __future__ import annotations

import asyncio
import json
import zlib

import aiohttp
import ccxt
import pytest
from sandbox.sandbox_helpers import step_until, subscribed, within

from execution.sandbox.clients import ccxt_exchange
from execution.venue import is_definite_refusal, mentions_client_id, orders_skip_the_queue

SYMBOL = "AAPLX/USD"
MID = "AAPLxUSD"


@pytest.fixture
async def kraken(sandboxes, sb_cfg):
    sb = await sandboxes(["kraken"])
    sv = sb["kraken"]
    # ccxt throttles Kraken private calls client-side (seconds each); the emulator has its own rate-limit fault
    ex = ccxt_exchange(sb_cfg.venues["kraken"], sv, timeout=3000, enableRateLimit=False)
    await within(10, ex.load_markets())
    yield sb, sv, ex
    await within(10, ex.close())


async def test_markets_list_the_tokenized_stock_with_the_configured_grid(kraken, sb_cfg):
    sb, sv, ex = kraken
    m = ex.market(SYMBOL)
    v = sb_cfg.venues["kraken"]
    assert (m["id"], m["base"], m["quote"]) == (MID, "AAPLX", "USD")
    assert m["info"]["aclass_base"] == "tokenized_asset" and m["info"]["base"] == "AAPLx"
    assert (m["precision"]["price"], m["precision"]["amount"], m["limits"]["amount"]["min"]) == (v.tick_size, v.lot_size, v.lot_size)
    assert m["maker"] == pytest.approx(v.maker_fee_bps / 1e4) and m["taker"] == pytest.approx(v.taker_fee_bps / 1e4)


async def test_fetch_and_watch_book_equal_the_emulators_book(kraken):
    sb, sv, ex = kraken
    m = sv.emu.markets[MID]
    ob = await within(5, ex.fetch_order_book(SYMBOL, 25))
    _, _, bids, asks = sv.emu.shown_book(m, 25)
    assert [tuple(x[:2]) for x in ob["bids"]] == bids and [tuple(x[:2]) for x in ob["asks"]] == asks
    await within(5, ex.watch_order_book(SYMBOL, 25))
    seqs = set()
    for _ in range(8):
        await sb.step(9)
        seq, _, bids, asks = sv.emu.shown_book(m, 25)
        seqs.add(seq)

        async def caught_up():
            while True:
                book = ex.orderbooks[SYMBOL]
                if [tuple(x) for x in book["bids"]] == bids and [tuple(x) for x in book["asks"]] == asks:
                    return
                await asyncio.sleep(0.01)
        await within(5, caught_up())
        assert sv.emu.book_at(m, seq)[0][:25] == bids
    assert len(seqs) >= 4


async def test_book_messages_carry_krakens_checksum(kraken):
    """A raw v2 client: the checksum of every book message matches the book it leaves (Kraken's rule:
    CRC32 of the top 10 asks then bids, price and qty without the point and leading zeros)."""
    sb, sv, ex = kraken
    m = sv.emu.markets[MID]

    def crc(bids, asks):
        def lv(p, q):
            return f"{p:.2f}".replace(".", "").lstrip("0") + f"{q:.3f}".replace(".", "").lstrip("0")
        top = sorted(asks)[:10], sorted(bids, reverse=True)[:10]
        return zlib.crc32(("".join(lv(p, q) for p, q in top[0]) + "".join(lv(p, q) for p, q in top[1])).encode())

    async with aiohttp.ClientSession() as http, http.ws_connect(sv.urls()["ws_public"]) as ws:
        await ws.send_json({"method": "subscribe", "params": {"channel": "book", "symbol": [SYMBOL], "depth": 10}, "req_id": 7})
        book = {"bids": {}, "asks": {}}
        checked = 0
        stepper = asyncio.ensure_future(asyncio.sleep(0))
        while checked < 6:
            msg = json.loads((await within(5, ws.receive())).data)
            if msg.get("channel") != "book":
                if msg.get("method") == "subscribe":
                    assert msg["success"] and msg["req_id"] == 7
                continue
            row = msg["data"][0]
            if msg["type"] == "snapshot":
                book = {"bids": {}, "asks": {}}
            for side in ("bids", "asks"):
                for lv in row[side]:
                    if lv["qty"] == 0:
                        book[side].pop(lv["price"], None)
                    else:
                        book[side][lv["price"]] = lv["qty"]
            assert row["checksum"] == crc(book["bids"].items(), book["asks"].items())
            checked += 1
            await stepper
            stepper = asyncio.ensure_future(sb.step(9))
        await stepper
    assert checked == 6


async def test_trades_snapshot_then_updates_are_the_tape(kraken):
    sb, sv, ex = kraken
    m = sv.emu.markets[MID]
    first = await within(5, ex.watch_trades(SYMBOL))
    assert [t["price"] for t in first] == [t.price for t in list(m.trades)[-50:]]
    n = len(m.trades)
    nxt = asyncio.ensure_future(ex.watch_trades(SYMBOL))
    await asyncio.sleep(0.1)
    await step_until(sb, lambda: len(m.trades) > n)
    got = await within(5, nxt)
    tape = list(m.trades)[n:]
    assert [(t["price"], t["amount"], t["timestamp"]) for t in got[-len(tape):]][:1] == [
        (tape[0].price, tape[0].size, sb.clock.wall_ms(tape[0].ts))]


async def test_order_lifecycle_by_client_id_and_fill_matches_the_ledger(kraken):
    sb, sv, ex = kraken
    m = sv.emu.markets[MID]
    bid = sv.emu.book(m)[0][0][0]
    far = round(bid - 1, 2)
    o1 = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, far, {"clientOrderId": "k-rest"}))
    opened = await within(5, ex.fetch_open_orders(SYMBOL, params={"clientOrderId": "k-rest"}))
    assert [(x["id"], x["clientOrderId"], x["price"], x["amount"]) for x in opened] == [(o1["id"], "k-rest", far, 1.0)]
    bal = await within(5, ex.fetch_balance())
    assert bal["USD"]["used"] == pytest.approx(far)
    await within(5, ex.cancel_order(None, SYMBOL, {"clientOrderId": "k-rest"}))
    assert sv.account.by_client_id["k-rest"].status == "cancelled"
    assert (await within(5, ex.fetch_order(o1["id"])))["status"] == "canceled"

    mine = asyncio.ensure_future(ex.watch_my_trades(SYMBOL))
    await subscribed(sv.server, "executions")
    o2 = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid, {"clientOrderId": "k-fill"}))
    led = sv.account.orders[o2["id"]]
    await step_until(sb, lambda: led.status == "filled")
    got = await within(5, mine)
    f = led.fills[0]
    assert (got[0]["id"], got[0]["order"], got[0]["price"], got[0]["amount"], got[0]["takerOrMaker"]) == (
        f.trade_id, o2["id"], f.price, f.qty, "maker")
    assert got[0]["fee"]["cost"] == pytest.approx(f.fee) and got[0]["fee"]["currency"] == "USD" == f.fee_currency
    assert f.fee == pytest.approx(f.price * f.qty * sb.cfg.venues["kraken"].maker_fee_bps / 1e4)
    fetched = await within(5, ex.fetch_my_trades(SYMBOL))
    assert [(t["id"], t["order"], t["price"], t["amount"], t["fee"]["currency"]) for t in fetched] == [
        (x.trade_id, x.order_id, x.price, x.qty, x.fee_currency) for x in sv.account.fills]
    assert [t["fee"]["cost"] for t in fetched] == pytest.approx([x.fee for x in sv.account.fills])
    since = sb.clock.wall_ms(f.ts) + 1000  # Kraken's cursor is in seconds
    assert await within(5, ex.fetch_my_trades(SYMBOL, since=since)) == []
    bal = await within(5, ex.fetch_balance())
    assert bal["USD"]["total"] == pytest.approx(sv.account.balances["USD"].total)
    assert bal["AAPLX"]["total"] == pytest.approx(sv.account.balances["AAPLX"].total)


async def test_closed_orders_come_50_a_page_newest_first_after_start(kraken):
    sb, sv, ex = kraken
    far = round(sv.emu.book(sv.emu.markets[MID])[0][0][0] - 5, 2)
    ids = []
    for k in range(55):
        o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 0.05, far, {"clientOrderId": f"k-page{k}"}))
        await within(5, ex.cancel_order(o["id"], SYMBOL))
        ids.append(o["id"])
        if k == 49:
            await sb.step(2)  # the last five close two seconds later
    first = await within(5, ex.fetch_closed_orders(SYMBOL))
    second = await within(5, ex.fetch_closed_orders(SYMBOL, None, None, {"ofs": 50}))
    # (ccxt sorts a page by time)
    assert (sorted(x["id"] for x in first), sorted(x["id"] for x in second)) == (sorted(ids[5:]), sorted(ids[:5]))
    later = sb.clock.wall_ms(sv.account.orders[ids[49]].updated) + 1000  # Kraken's start is in seconds, exclusive
    assert sorted(x["id"] for x in await within(5, ex.fetch_closed_orders(SYMBOL, later))) == sorted(ids[50:])


async def test_post_only_that_would_take_is_cancelled_as_kraken_does(kraken):
    sb, sv, ex = kraken
    ask = sv.emu.book(sv.emu.markets[MID])[1][0][0]
    o = await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, ask, {"postOnly": True}))
    led = sv.account.orders[o["id"]]
    assert (led.status, led.reason, led.filled) == ("rejected", "post_only", 0.0)
    got = await within(5, ex.fetch_order(o["id"]))
    assert got["status"] == "canceled" and got["info"]["reason"] == "Post only order"


async def test_errors_are_krakens_own(kraken, sb_cfg):
    sb, sv, ex = kraken
    bid = sv.emu.book(sv.emu.markets[MID])[0][0][0]

    def raw(**kw):
        body = {"pair": MID, "type": "buy", "ordertype": "limit", "volume": "1", "price": f"{bid - 1:.2f}"}
        body.update(kw)
        return ex.privatePostAddOrder(body)

    with pytest.raises(ccxt.BadSymbol):  # EQuery:Invalid asset pair
        await within(5, raw(pair="NOPEUSD"))
    with pytest.raises(ccxt.InvalidOrder):  # EGeneral:Invalid arguments:price (off the tick grid)
        await within(5, raw(price=f"{bid - 1:.2f}5"))
    with pytest.raises(ccxt.InvalidOrder):  # EOrder:Order minimum not met
        await within(5, raw(volume="0.0001"))
    with pytest.raises(ccxt.InsufficientFunds):  # EOrder:Insufficient funds
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1000.0, bid - 1))
    with pytest.raises(ccxt.OrderNotFound):  # EOrder:Unknown order
        await within(5, ex.cancel_order("OAAAAA-BBBBB-CCCCCC", SYMBOL))
    with pytest.raises(ccxt.InvalidNonce):  # EAPI:Invalid nonce: a nonce that does not grow
        ex.incrementing_nonce = lambda: 1  # type: ignore[method-assign]
        try:
            await within(5, ex.fetch_balance())
        finally:
            del ex.incrementing_nonce
    # an order sent with a nonce that does not grow is refused before it is placed: a definite no,
    # which the order manager takes as a rejection (not an unknown order to look up)
    ex.incrementing_nonce = lambda: 1  # type: ignore[method-assign]
    try:
        with pytest.raises(ccxt.InvalidNonce) as refused:
            await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1, {"clientOrderId": "sbnonce00000001"}))
    finally:
        del ex.incrementing_nonce
    assert is_definite_refusal(refused.value)
    assert not [o for o in await within(5, ex.fetch_open_orders(SYMBOL)) if mentions_client_id(o, "sbnonce00000001")]
    bad = ccxt_exchange(sb_cfg.venues["kraken"], sv, timeout=3000)
    try:
        bad.apiKey = "not-a-key"
        with pytest.raises(ccxt.AuthenticationError):  # EAPI:Invalid key
            await within(5, bad.fetch_balance())
        bad.apiKey = sv.api_key
        bad.secret = "AAAA" + sv.secret[4:]
        with pytest.raises(ccxt.ExchangeError, match="EAPI:Invalid signature"):  # unmapped by ccxt: ExchangeError
            await within(5, bad.fetch_balance())
    finally:
        await bad.close()
    sv.fault("rate_limit", count=1)
    with pytest.raises(ccxt.DDoSProtection):  # EAPI:Rate limit exceeded
        await within(5, ex.fetch_balance())
    sv.fault("halt", symbol=MID)
    with pytest.raises(ccxt.OnMaintenance):  # EService:Market in cancel_only mode
        await within(5, ex.create_order(SYMBOL, "limit", "buy", 1.0, bid - 1))


async def test_a_late_nonce_within_the_keys_window_is_taken_once(kraken):
    """Kraken's nonce window (the API key setting it recommends at 10-15 s): a nonce below the highest
    seen is taken if it is within the window and was never used, as when two requests signed in
    order reach the venue in the other order; a replayed one and one older than the window are not."""
    sb, sv, ex = kraken
    top = ex.milliseconds() + 60_000
    window = sv.server.nonce_window
    assert window == 10_000
    for nonce, taken in ((top, True), (top - 5, True), (top - 5, False), (top - window - 1, False), (top + 1, True)):
        ex.incrementing_nonce = lambda n=nonce: n  # type: ignore[method-assign]
        try:
            if taken:
                assert "total" in await within(5, ex.fetch_balance())
            else:
                with pytest.raises(ccxt.InvalidNonce):
                    await within(5, ex.fetch_balance())
        finally:
            del ex.incrementing_nonce


async def test_orders_do_not_wait_behind_queries_in_ccxts_rate_limiter(kraken, sb_cfg):
    """With ccxt's limiter on, a query that has spent the budget makes the next query wait (here
    6 s: Balance costs 3 at 2 s a unit); an order sent meanwhile leaves at once (orders_skip_the_queue:
    Kraken does not count orders against the call counter), where ccxt's one queue held it behind."""
    sb, sv, _ = kraken
    ex = orders_skip_the_queue(ccxt_exchange(sb_cfg.venues["kraken"], sv, timeout=3000, enableRateLimit=True,
                                             rateLimit=2000))
    try:
        await within(10, ex.load_markets())
        await within(5, ex.fetch_balance())
        queued = asyncio.ensure_future(ex.fetch_balance())
        await asyncio.sleep(0.05)
        far = round(sv.emu.book(sv.emu.markets[MID])[0][0][0] - 1, 2)
        placed = await within(2, ex.create_order(SYMBOL, "limit", "buy", 1.0, far, {"clientOrderId": "sbqueue00000001"}))
        await within(2, ex.cancel_order(placed["id"], SYMBOL))
        assert not queued.done()  # the query is still waiting for its budget
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
    finally:
        await within(10, ex.close())
