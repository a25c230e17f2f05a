"""The ``garbage`` fault on the emulators' side: what it accepts, and that each hostile message goes
out in the venue's wire format (read here off the raw websocket and REST, not through ccxt) and is
logged. What the bot does with them: tests/faults/test_market_data_fuzz.py."""

from __future__ import annotations

import json

import aiohttp
import pytest

from execution.sandbox.faults import GARBAGE, FaultError, Faults
from execution.sandbox.garbage import ENORMOUS_BYTES
from sandbox.sandbox_helpers import within


def test_garbage_params_are_checked_counted_and_cleared():
    f = Faults()
    with pytest.raises(FaultError):
        f.record("garbage", {"what": "crossed_book", "channel": "trade"}, 0)  # a trade is not a book
    with pytest.raises(FaultError):
        f.record("garbage", {"what": "bogus"}, 0)
    rec = f.record("garbage", {"what": "nan_strings", "count": 2}, 5)
    assert rec.params == {"what": "nan_strings", "channel": "book", "count": 2} and rec.data_ns == 5
    assert [f.take_garbage("book"), f.take_garbage("book"), f.take_garbage("book")] == ["nan_strings"] * 2 + [None]
    f.record("garbage", {"what": "enormous", "channel": "rest"}, 0)
    f.record("clear", {}, 0)
    assert f.take_garbage("rest") is None


async def _frames(ws, n: int, seconds: float = 5.0) -> list[str]:
    out = []
    while len(out) < n:
        msg = await within(seconds, ws.receive())
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(msg.data)
    return out


@pytest.mark.parametrize("what", GARBAGE)
async def test_bybit_book_garbage_goes_out_before_the_real_delta(sandboxes, what):
    sb = await sandboxes(["bybit"])
    sv = sb["bybit"]
    topic = "orderbook.50.AAPLXUSDT"
    async with aiohttp.ClientSession() as s, s.ws_connect(sv.urls()["ws_public"], max_msg_size=0) as ws:
        await ws.send_json({"op": "subscribe", "args": [topic]})
        _, snap = await _frames(ws, 2)  # the answer, the snapshot
        best_ask = float(json.loads(snap)["data"]["a"][0][0])
        sv.fault("garbage", what=what)
        for _ in range(60):  # the garbage goes with the next change of the book
            if sv.emu.faults.garbage_sent[("book", what)]:
                break
            await sb.step(1.0)
        bad, real = await _frames(ws, 2)
    assert json.loads(real)["type"] == "delta"
    if what == "truncated_json":
        with pytest.raises(ValueError):
            json.loads(bad)
        return
    msg = json.loads(bad)
    assert msg["topic"] == topic
    b = msg["data"]["b"]
    if what == "nan_strings":
        assert b == [["NaN", "NaN"]]
    elif what == "negative_size":
        assert float(b[0][1]) < 0
    elif what == "crossed_book":
        assert float(b[0][0]) == pytest.approx(best_ask + 0.05)  # CROSS_TICKS above the ask the client holds
    elif what == "wrong_symbol":
        assert msg["data"]["s"] == "MSFTXUSDT" and msg["type"] == "snapshot"
    elif what == "enormous":
        assert len(bad) > ENORMOUS_BYTES
    log = [r for r in sv.emu.faults.log if r.kind == "garbage_sent"]
    assert log and log[-1].params["what"] == what and log[-1].params["channel"] == "book"


@pytest.mark.parametrize("venue,path", [("bybit", "/v5/market/orderbook?category=spot&symbol=AAPLXUSDT&limit=25"),
                                        ("kraken", "/0/public/Depth?pair=AAPLxUSD&count=25")])
async def test_rest_book_garbage_replaces_one_answer(sandboxes, venue, path):
    sb = await sandboxes([venue])
    sv = sb[venue]
    url = sv.urls()["rest"] + path
    async with aiohttp.ClientSession() as s:
        sv.fault("garbage", what="truncated_json", channel="rest")
        sv.fault("garbage", what="wrong_symbol", channel="rest")
        cut = await (await s.get(url)).text()
        wrong = await (await s.get(url)).json()
        good = await (await s.get(url)).json()
    with pytest.raises(ValueError):
        json.loads(cut)
    if venue == "bybit":
        assert wrong["result"]["s"] == "MSFTXUSDT" and good["result"]["s"] == "AAPLXUSDT"
        assert float(wrong["result"]["b"][0][0]) == pytest.approx(3 * float(good["result"]["b"][0][0]), rel=1e-3)
    else:
        assert list(wrong["result"]) == ["MSFTxUSD"] and list(good["result"]) == ["AAPLxUSD"]
    assert sv.emu.faults.garbage_sent[("rest", "truncated_json")] == 1
