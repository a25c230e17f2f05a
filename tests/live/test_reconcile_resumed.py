"""Reconciliation asked again after it was cut short (a timeout at start-up or at exit): what the first
attempt already journalled must not hide what it had not got to yet."""

from __future__ import annotations

from types import SimpleNamespace

import ccxt
import numpy as np

from execution.journal import Journal
from execution.reconcile import reconcile_venue
from execution.runner import LiveVenue
from live.live_rig import AAPLX, SYMBOL, link
from live.scripted_venue import ScriptedVenue

MS_NS = 1_000_000


def intent(client_id: str, cid: int) -> dict:
    return {"cid": cid, "client_id": client_id, "action": "new", "venue": "alpha", "instrument": "AAPLx",
            "symbol": SYMBOL, "side": 1, "price": 99.95, "qty": 2.0, "tif": "GTC", "post_only": 1, "tag": "quote",
            "decided_ns": 1, "state": "pending_new"}


async def test_an_order_whose_fills_the_journal_lacks_has_them_fetched_from_before_a_later_cursor(tmp_path):
    venue = ScriptedVenue()
    a, b = "sb000000000000a", "sb000000000000b"
    od_a = await venue.create_order(SYMBOL, "limit", "buy", 2.0, 99.95, {"clientOrderId": a})
    od_b = await venue.create_order(SYMBOL, "limit", "buy", 2.0, 99.95, {"clientOrderId": b})
    t_a = venue.fill(a, 2.0)  # A fills first ...
    venue.clock_ms += 5_000
    t_b = venue.fill(b, 2.0)  # ... B 5 s after it
    assert t_a["timestamp"] < t_b["timestamp"]
    with Journal(tmp_path) as j:
        j.record_intents([intent(a, 1), intent(b, 2)], local_ns=1)
        # the first attempt looked A up (the venue says: filled 2) and was cut short before its fills;
        # B's fill was journalled by the stream, so the cursor is past A's fill
        j.record_event("alpha", "reconcile", 2, client_id=a, state="filled", filled=2.0, venue_order_id=od_a["id"],
                       venue_created_ns=od_a["timestamp"] * MS_NS)
        j.record_event("alpha", "ack", 2, client_id=b, state="filled", filled=2.0, venue_order_id=od_b["id"],
                       venue_created_ns=od_b["timestamp"] * MS_NS)
        j.record_fill({"venue": "alpha", "trade_id": t_b["id"], "client_id": b, "cid": 2, "venue_order_id": od_b["id"],
                       "instrument": "AAPLx", "side": 1, "price": 99.95, "qty": 2.0, "fee": -0.02, "fee_cost": -0.02,
                       "fee_currency": "USDT", "liquidity": "maker", "tag": "quote", "arrival_ns": None,
                       "venue_ns": t_b["timestamp"] * MS_NS, "local_ns": 3, "fair": 100.0, "multiplier": 1.0,
                       "booked": True})
        assert j.cursor("alpha") == (t_b["timestamp"] * MS_NS, t_b["id"])
        lv = LiveVenue(id=0, name="alpha", link=link(venue), instrument=AAPLX, symbol=SYMBOL, base="AAPLX",
                       quote="USDT")
        core = SimpleNamespace(tr=SimpleNamespace(kpos=np.zeros((1, 2)), kcash=np.zeros(1)))
        rec = await reconcile_venue(lv, j, core, own_ids=set(), now=4)
        assert rec.fills_recovered == 1
        assert j.trade_ids("alpha") == {("alpha", t_a["id"]), ("alpha", t_b["id"])}


async def test_a_fill_whose_trade_names_only_the_venue_order_id_is_matched_through_the_venue_order(tmp_path):
    """Kraken's trade history gives a fill's ordertxid and no client id: an order whose create went
    unanswered and that the lookup by client id could not find is matched by asking the venue for the
    order the fill names, and its fill is journalled (it had been dropped as someone else's)."""
    venue = ScriptedVenue()
    a = "sb000000000000c"
    await venue.create_order(SYMBOL, "limit", "buy", 2.0, 99.95, {"clientOrderId": a})
    other = await venue.create_order(SYMBOL, "limit", "buy", 1.0, 99.90, {"clientOrderId": "someone-else"})
    t_a = venue.fill(a, 2.0)
    venue.fill("someone-else", 1.0)
    for t in venue.trades:
        del t["info"]["orderLinkId"]  # as Kraken's TradesHistory: no client id
    by_id = venue.fetch_order

    async def fetch_order(id, symbol=None, params={}):
        if id == a:  # the lookup by client id does not answer
            raise ccxt.RequestTimeout("no answer")
        return await by_id(id, symbol, params)

    venue.fetch_order = fetch_order
    with Journal(tmp_path) as j:
        j.record_intents([intent(a, 1)], local_ns=1)
        lv = LiveVenue(id=0, name="alpha", link=link(venue), instrument=AAPLX, symbol=SYMBOL, base="AAPLX",
                       quote="USDT")
        core = SimpleNamespace(tr=SimpleNamespace(kpos=np.zeros((1, 2)), kcash=np.zeros(1)))
        rec = await reconcile_venue(lv, j, core, own_ids=set(), now=4)
        assert rec.fills_recovered == 1
        assert j.trade_ids("alpha") == {("alpha", t_a["id"])}  # the other account holder's fill is not ours
        [f] = j.fills("alpha")
        assert (f["client_id"], f["qty"], f["venue_order_id"]) == (a, 2.0, t_a["order"])
        assert other["id"] != t_a["order"]
