"""Property: whatever order the venue's messages arrive in, however often each is repeated,
whether or not the create call's reply is lost and whether the order stream is lost altogether
(then the housekeeping calls, poll and check_live, must find out by REST), the core hears each fill exactly once, at most one
ack (before any fill), exactly one DONE (last, and only once the order is final), and the order ends
in the state the venue's history says.

The venue's history of one order is drawn first (fills in lots of 0.25 tokens, then filled /
cancelled / expired / closed with a remainder / still resting); its messages are the order
snapshot after each step and one trade dict per fill, as watch_orders / watch_my_trades / REST
would give them. The double below answers the create call and the lookups from that history.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import ccxt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution.journal import Journal
from execution.order_manager import OrderManager, OrderState
from live.live_rig import ALPHA, NS, SYMBOL, Clock, cid, link, new
from live.scripted_venue import RecordingCore
from stockbridge.core.order_codes import CANCELLED, FILLED, REP_ACK, REP_DONE, REP_FILL
from stockbridge.trader import cid_text

S = OrderState
LOT = 0.25
QTY_LOTS = 8  # 2.0 tokens
C = cid(1)
TEXT = cid_text(C)

ENDINGS = ("filled", "canceled", "expired", "closed_partial", "resting")
EXPECTED = {"filled": S.FILLED, "canceled": S.CANCELLED, "expired": S.EXPIRED, "closed_partial": S.CANCELLED}
CORE = {"filled": FILLED, "canceled": CANCELLED, "expired": CANCELLED, "closed_partial": CANCELLED}


def history(fill_lots: list[int], ending: str) -> tuple[list[dict], list[dict], dict]:
    """(order snapshots in venue order, trade dicts, final snapshot) of the drawn history."""
    t = 1_751_896_800_000
    snap = {"id": "V1", "clientOrderId": TEXT, "symbol": SYMBOL, "side": "buy", "price": 99.95, "amount": QTY_LOTS * LOT,
            "filled": 0.0, "status": "open", "timestamp": t, "lastUpdateTimestamp": t}
    snaps, trades = [dict(snap)], []
    for k, lots in enumerate(fill_lots):
        t += 1
        trades.append({"id": f"T{k}", "order": "V1", "timestamp": t, "symbol": SYMBOL, "side": "buy", "price": 99.95,
                       "amount": lots * LOT, "takerOrMaker": "maker", "fee": {"cost": 0.0, "currency": "USDT"},
                       "info": {"orderLinkId": TEXT}})
        snap["filled"] += lots * LOT
        snap["lastUpdateTimestamp"] = t
        if ending == "filled" and k == len(fill_lots) - 1:
            snap["status"] = "closed"
        snaps.append(dict(snap))
    if ending in ("canceled", "expired"):
        snap["status"] = ending
        snaps.append(dict(snap))
    elif ending == "closed_partial":
        snap["status"] = "closed"
        snaps.append(dict(snap))
    return snaps, trades, dict(snap)


@st.composite
def scenarios(draw):
    ending = draw(st.sampled_from(ENDINGS))
    if ending == "filled":
        cuts = sorted(draw(st.sets(st.integers(1, QTY_LOTS - 1), max_size=3)))
        edges = [0, *cuts, QTY_LOTS]
        fill_lots = [b - a for a, b in zip(edges, edges[1:])]
    else:
        n = draw(st.integers(1 if ending == "closed_partial" else 0, 3))
        fill_lots = draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
    snaps, trades, final = history(fill_lots, ending)
    create = draw(st.sampled_from(("reply", "bare", "timeout")))
    # the order stream lost entirely: only the lookups and the REST check of resting orders can tell
    drop_updates = draw(st.booleans())
    msgs = [("trade", t) for t in trades] + ([] if drop_updates else [("order", s) for s in snaps])
    order = draw(st.permutations(range(len(msgs))))
    dups = draw(st.lists(st.integers(0, max(len(msgs) - 1, 0)), max_size=6)) if msgs else []
    seq = list(order)
    for k, d in enumerate(dups):
        pos = draw(st.integers(0, len(seq)))
        seq.insert(pos, d)
    before_reply = draw(st.integers(0, len(seq)))
    return ending, fill_lots, snaps, trades, final, create, [msgs[i] for i in seq], before_reply


class HistoryVenue:
    """A venue double answering from one drawn history (create reply, fetch_order, open orders, trades)."""

    def __init__(self, create, snaps, trades, final, gate):
        self.create, self.snaps, self.trades, self.final, self.gate = create, snaps, trades, final, gate

    async def create_order(self, symbol, type, side, amount, price=None, params={}):
        await self.gate.wait()
        if self.create == "timeout":
            raise ccxt.RequestTimeout("POST /order timed out")
        if self.create == "bare":
            return {"id": "V1"}
        return dict(self.snaps[0])

    async def cancel_order(self, id, symbol=None, params={}):
        raise AssertionError("no cancel in this property")

    async def fetch_order(self, id, symbol=None, params={}):
        return dict(self.final)

    async def fetch_open_orders(self, symbol=None, since=None, limit=None, params={}):
        return [dict(self.final)] if self.final["status"] == "open" else []

    async def fetch_my_trades(self, symbol=None, since=None, limit=None, params={}):
        return [dict(t) for t in self.trades]

    async def fetch_balance(self, params={}):
        return {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sc=scenarios())
def test_any_arrival_order_and_duplication_books_each_fill_once_and_ends_as_the_venue_says(tmp_path_factory, sc):
    ending, fill_lots, snaps, trades, final, create, seq, before_reply = sc
    journal = Journal(tmp_path_factory.mktemp("j"))
    core = RecordingCore()
    clock = Clock()

    async def run():
        gate = asyncio.Event()
        venue = HistoryVenue(create, snaps, trades, final, gate)
        om = OrderManager(core, journal, {ALPHA: link(venue)}, clock=clock, unknown_grace_ns=NS, lookup_interval_ns=NS)
        sending = asyncio.create_task(om.submit(new(C, qty=QTY_LOTS * LOT)))
        await asyncio.sleep(0)

        def deliver(msgs):
            for kind, d in msgs:
                (om.on_order if kind == "order" else om.on_trade)(ALPHA, dict(d))

        deliver(seq[:before_reply])  # the streams can beat the create call's reply
        gate.set()
        await sending
        deliver(seq[before_reply:])
        for _ in range(4):  # the housekeeping timer: lookups of a lost create, fills not yet seen
            clock.advance(20 * NS)
            await om.poll()
            await om.check_live(ALPHA)
        return om

    om = asyncio.run(run())
    order = om.orders[TEXT]
    reports = core.reports
    kinds = [r[0] for r in reports]
    fills = [r[4] for r in reports if r[0] == REP_FILL]
    assert Counter(fills) == Counter(lots * LOT for lots in fill_lots)
    assert len(journal.fills()) == len(fill_lots)
    assert kinds.count(REP_ACK) <= 1
    if fills or ending == "resting":
        assert kinds.count(REP_ACK) == 1 and kinds.index(REP_ACK) < min(
            (k for k, x in enumerate(kinds) if x == REP_FILL), default=len(kinds))
    if ending == "resting":
        assert order.state == (S.PARTIALLY_FILLED if fill_lots else S.OPEN)
        assert REP_DONE not in kinds
    else:
        assert order.state == EXPECTED[ending]
        assert kinds.count(REP_DONE) == 1 and kinds[-1] == REP_DONE
        assert reports[-1][2] == CORE[ending]
    assert journal.order(TEXT)["state"] == order.state.value
    journal.close()
