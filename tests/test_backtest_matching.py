"""Simulated venue: books, queue position, aggressive walks, fees, latency effects, halts, defaults,
and the order state machine, against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stockbridge.core.book import depth_walk, new_book, set_level
from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import (
    NEED_FILL_ROOM,
    NEED_REPORT_ROOM,
    VENUE_DEFAULTED,
    VENUE_HALTED,
    VENUE_OK,
    venue_on_event,
    venue_process_actions,
    venue_set_status,
)
from backtest.orders import (
    CANCELLED,
    FILLED,
    FREE,
    GTC,
    IOC,
    KNOWN_TRANSITIONS,
    OC_NFREE,
    OC_NREST,
    OPEN,
    PENDING_CANCEL,
    PENDING_NEW,
    REASON_DEFAULTED,
    REASON_HALTED,
    REASON_INVALID,
    REASON_IOC,
    REASON_POST_ONLY,
    REASON_USER,
    REJECTED,
    TAG_ARB,
    TAG_QUOTE,
    TRANSITIONS,
    next_report_time,
    request_cancel,
    set_state,
    submit_order,
    take_report,
)
from backtest.pending import AUX, FEE, NEVER, OID, PRICE, QTY, REP_ACK, REP_CANCEL_REJECT, REP_DONE, REP_FILL, SLOT, T
from backtest.rng import RNG_QUEUE, new_rng, uniform
from backtest.simvenue import flush_fills, flush_orders, grow_queues, new_sim
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE, empty

MS = 1_000_000
T0 = 1_751_500_000_000_000_000
BUY, SELL = 1, -1


def make_sim(n_venues=1, maker_bps=-1.0, taker_bps=10.0, gas=0.0, order_ms=1.0, resp_ms=1.0, jitter_ms=0.0, **kw):
    fees = fee_table([maker_bps] * n_venues, [taker_bps] * n_venues, [gas] * n_venues)
    lat = latency_table([order_ms] * n_venues, [resp_ms] * n_venues, [jitter_ms] * n_venues)
    kw.setdefault("book_levels", 16)
    kw.setdefault("order_capacity", 64)
    kw.setdefault("fill_capacity", 1024)
    kw.setdefault("queue_capacity", 256)
    return new_sim(n_venues, 1, fees, lat, **kw)


class Venue:
    """Drives a sim the way the engine loop does: before a market event of venue v at exch time t,
    our messages due at v before t are carried out and reports due by t reach us. Feed latency 0."""

    def __init__(self, sim):
        self.sim = sim
        self.reports = []
        self.order_log = []
        self._i = np.zeros(6, dtype=np.int64)
        self._f = np.zeros(3, dtype=np.float64)

    def receive(self, until):
        self.order_log.append(flush_orders(self.sim))  # as the runner does: the log never fills up
        while next_report_time(self.sim) <= until:
            kind = take_report(self.sim, self._i, self._f)
            i, f = self._i, self._f
            self.reports.append((int(kind), int(i[T]), int(i[SLOT]), int(i[OID]), int(i[AUX]), f[PRICE], f[QTY], f[FEE]))

    def at(self, t):
        for v in range(int(self.sim.dims[0])):
            assert venue_process_actions(self.sim, v, t) >= 0
        self.receive(t)

    def event(self, kind, side, price, size, t, venue=0, flags=0):
        self.at(t)
        ev = empty(1)
        ev[0] = (kind, side, venue, 0, flags, t, t, price, size, 0)
        n = venue_on_event(self.sim, ev, 0)
        assert n >= 0
        return n

    def depth(self, side, price, size, t, venue=0, flags=0):
        return self.event(KIND_DEPTH, side, price, size, t, venue, flags)

    def trade(self, aggressor, price, size, t, venue=0):
        return self.event(KIND_TRADE, aggressor, price, size, t, venue)

    def quote(self, side, price, size, t, venue=0):
        return self.event(KIND_QUOTE, side, price, size, t, venue)

    def submit(self, side, price, qty, t, tif=GTC, post_only=0, tag=TAG_QUOTE, venue=0):
        self.at(t)
        slot = submit_order(self.sim, venue, 0, side, price, qty, tif, post_only, tag, t)
        assert slot >= 0
        return slot

    def cancel(self, slot, t):
        self.at(t)
        return request_cancel(self.sim, slot, t)

    def settle(self):
        self.at(NEVER - 1)

    def fills(self):
        return self.sim.fills[: self.sim.fill_n[0]]

    def book(self, side, b=0):
        s = 0 if side == BUY else 1
        n = self.sim.nlev[b, s]
        return [(float(p), float(q)) for p, q in zip(self.sim.px[b, s, :n], self.sim.qty[b, s, :n])]


def two_sided(venue, bid=100.00, bid_size=5.0, ask=100.05, ask_size=5.0, t=T0 - MS):
    venue.depth(BUY, bid, bid_size, t)
    venue.depth(SELL, ask, ask_size, t)


# ---------------------------------------------------------------- books


def test_book_rebuilt_from_snapshot_and_updates_matches_hand_written_book():
    v = Venue(make_sim())
    t = T0
    snap = [(BUY, 100.00, 5.0), (BUY, 99.99, 3.0), (BUY, 99.98, 1.0), (SELL, 100.01, 4.0), (SELL, 100.02, 2.0)]
    for k, (side, p, q) in enumerate(snap):
        flags = (F_CLEAR if k == 0 else 0) | (F_BATCH_END if k == len(snap) - 1 else 0)
        v.event(KIND_SNAPSHOT, side, p, q, t, flags=flags)
    assert v.book(BUY) == [(100.00, 5.0), (99.99, 3.0), (99.98, 1.0)]
    assert v.book(SELL) == [(100.01, 4.0), (100.02, 2.0)]
    v.depth(BUY, 99.99, 0.0, t + 1)       # delete
    v.depth(SELL, 100.03, 7.0, t + 2)     # new deeper level
    v.depth(BUY, 100.00, 6.0, t + 3)      # resize
    v.depth(BUY, 99.985, 2.5, t + 4)      # insert between levels
    assert v.book(BUY) == [(100.00, 6.0), (99.985, 2.5), (99.98, 1.0)]
    assert v.book(SELL) == [(100.01, 4.0), (100.02, 2.0), (100.03, 7.0)]
    v.quote(BUY, 99.985, 4.0, t + 5)      # L1 row: an L1 feed shows one level, 99.985 is the whole side
    assert v.book(BUY) == [(99.985, 4.0)]
    v.quote(SELL, 100.02, 1.0, t + 6)
    assert v.book(SELL) == [(100.02, 1.0)]
    v.depth(BUY, 100.02, 3.0, t + 7)      # a bid at 100.02 leaves asks at or below it stale
    assert v.book(BUY) == [(100.02, 3.0), (99.985, 4.0)]
    assert v.book(SELL) == []
    # a new snapshot replaces everything
    v.event(KIND_SNAPSHOT, BUY, 99.50, 1.0, t + 8, flags=F_CLEAR)
    v.event(KIND_SNAPSHOT, SELL, 99.60, 2.0, t + 8, flags=F_BATCH_END)
    assert v.book(BUY) == [(99.50, 1.0)]
    assert v.book(SELL) == [(99.60, 2.0)]


def test_depth_walk_and_capacity():
    px, qty, nlev, dropped = new_book(1, capacity=3)
    for p, q in ((100.01, 2.0), (100.02, 3.0), (100.03, 4.0)):
        set_level(px, qty, nlev, dropped, 0, 1, p, q)
    # 5 tokens up to 100.02: 2 @ 100.01 + 3 @ 100.02
    filled, notional, levels = depth_walk(px, qty, nlev, 0, 1, 100.02, 5.0)
    assert (filled, levels) == (5.0, 2)
    assert notional == pytest.approx(2 * 100.01 + 3 * 100.02, abs=1e-9)
    filled, notional, levels = depth_walk(px, qty, nlev, 0, 1, np.inf, 100.0)
    assert (filled, levels) == (9.0, 3)
    set_level(px, qty, nlev, dropped, 0, 1, 100.04, 1.0)   # worse than the worst kept: not stored
    set_level(px, qty, nlev, dropped, 0, 1, 100.00, 1.0)   # better: pushes 100.03 out
    assert list(px[0, 1, : nlev[0, 1]]) == [100.00, 100.01, 100.02]
    assert dropped[0] == 2


# ---------------------------------------------------------------- passive fills and queue position


def test_maker_fill_behind_known_queue():
    v = Venue(make_sim())
    two_sided(v)                                      # 5 bid at 100.00 ahead of us
    slot = v.submit(BUY, 100.00, 2.0, T0, post_only=1)
    v.trade(SELL, 100.00, 3.0, T0 + 2 * MS)
    assert len(v.fills()) == 0
    assert v.sim.orders[slot]["queue_ahead"] == 2.0
    v.depth(BUY, 100.00, 2.0, T0 + 3 * MS)            # the data catches up with the trade
    assert v.sim.orders[slot]["queue_ahead"] == 2.0
    v.trade(SELL, 100.00, 4.0, T0 + 4 * MS)
    f = v.fills()
    assert len(f) == 1
    assert (f[0]["price"], f[0]["qty"], f[0]["maker"], f[0]["leaves"]) == (100.00, 2.0, 1, 0.0)
    assert f[0]["fee"] == pytest.approx(-0.02, abs=1e-12)       # -1 bps of 200.00
    assert (f[0]["ts_venue"], f[0]["ts_local"]) == (T0 + 4 * MS, T0 + 5 * MS)
    assert v.sim.orders[slot]["state"] == FILLED
    v.settle()
    kinds = [(r[0], r[1]) for r in v.reports]
    assert kinds == [(REP_ACK, T0 + 2 * MS), (REP_FILL, T0 + 5 * MS), (REP_DONE, T0 + 5 * MS)]
    assert v.reports[-1][4] == FILLED
    assert v.sim.orders[slot]["known_state"] == FREE      # slot released after the done report


def _queue_setup(model, seed=1):
    v = Venue(make_sim(queue_model=model, seed=seed))
    two_sided(v)
    slot = v.submit(BUY, 100.00, 2.0, T0)
    v.depth(BUY, 100.00, 9.0, T0 + 2 * MS)   # 4 more join behind us
    assert v.sim.orders[slot]["queue_ahead"] == 5.0
    return v, slot


def _first_queue_draw(seed):
    return uniform(new_rng(seed), RNG_QUEUE)


P_AHEAD = 25.0 / 41.0   # 5^2 / (5^2 + 4^2): 5 ahead, 4 behind, n = 2


def _seeds_by_branch():
    ahead = next(s for s in range(1, 200) if _first_queue_draw(s) < P_AHEAD)
    behind = next(s for s in range(1, 200) if _first_queue_draw(s) >= P_AHEAD)
    return ahead, behind


def test_conservative_depletion_assumes_cancels_behind():
    v, slot = _queue_setup("conservative")
    v.depth(BUY, 100.00, 7.0, T0 + 3 * MS)     # 2 cancelled somewhere
    assert v.sim.orders[slot]["queue_ahead"] == 5.0
    v.depth(BUY, 100.00, 3.0, T0 + 4 * MS)     # level below our estimate: at most 3 ahead
    assert v.sim.orders[slot]["queue_ahead"] == 3.0
    v.trade(SELL, 100.00, 4.0, T0 + 5 * MS)    # 3 ahead, then 1 for us
    assert list(v.fills()["qty"]) == [1.0]
    assert v.sim.orders[slot]["leaves"] == 1.0


@pytest.mark.parametrize("branch", ["ahead", "behind"])
def test_probabilistic_depletion_follows_power_prob_draw(branch):
    seed_ahead, seed_behind = _seeds_by_branch()
    seed = seed_ahead if branch == "ahead" else seed_behind
    v, slot = _queue_setup("probabilistic", seed)
    v.depth(BUY, 100.00, 7.0, T0 + 3 * MS)     # 2 cancelled: ahead of us with probability 25/41
    expected = 3.0 if branch == "ahead" else 5.0
    assert v.sim.orders[slot]["queue_ahead"] == expected
    v.trade(SELL, 100.00, 4.0, T0 + 5 * MS)
    assert list(v.fills()["qty"]) == ([1.0] if branch == "ahead" else [])


@pytest.mark.parametrize("branch", ["ahead", "behind"])
def test_probabilistic_decrease_larger_than_behind_moves_us_up(branch):
    seed_ahead, seed_behind = _seeds_by_branch()
    v, slot = _queue_setup("probabilistic", seed_ahead if branch == "ahead" else seed_behind)
    v.depth(BUY, 100.00, 2.0, T0 + 3 * MS)     # 7 gone, only 4 were behind: at least 3 were ahead
    assert v.sim.orders[slot]["queue_ahead"] == (0.0 if branch == "ahead" else 2.0)


def test_probabilistic_frequency_matches_power_function():
    hits = 0
    n = 1000
    for seed in range(n):
        v, slot = _queue_setup("probabilistic", seed)
        v.depth(BUY, 100.00, 7.0, T0 + 3 * MS)
        hits += v.sim.orders[slot]["queue_ahead"] == 3.0
    assert abs(hits / n - P_AHEAD) < 0.05   # 3.2 standard errors


@pytest.mark.parametrize("model", ["conservative", "probabilistic"])
def test_trade_then_depth_update_is_not_counted_twice(model):
    v, slot = _queue_setup(model, seed=3)
    v.trade(SELL, 100.00, 3.0, T0 + 3 * MS)
    assert v.sim.orders[slot]["queue_ahead"] == 2.0
    rng_before = v.sim.rng.copy()
    v.depth(BUY, 100.00, 6.0, T0 + 4 * MS)     # the same 3 leave the book: no cancel to attribute
    assert v.sim.orders[slot]["queue_ahead"] == 2.0
    assert np.array_equal(v.sim.rng, rng_before)


def test_trade_through_our_price_fills_up_to_trade_size_in_price_priority():
    v = Venue(make_sim())
    two_sided(v, ask=100.03, ask_size=5.0)
    a = v.submit(SELL, 100.01, 1.0, T0)
    b = v.submit(SELL, 100.02, 2.0, T0)
    v.trade(BUY, 100.03, 2.5, T0 + 2 * MS)     # buyer went through both our prices
    f = v.fills()
    assert [(x["order_id"], x["price"], x["qty"]) for x in f] == [
        (v.sim.orders[a]["id"], 100.01, 1.0),
        (v.sim.orders[b]["id"], 100.02, 1.5),
    ]
    assert v.sim.orders[b]["leaves"] == 0.5


def test_level_moving_away_leaves_nobody_ahead_and_crossing_level_fills_us():
    v = Venue(make_sim())
    two_sided(v, bid=100.00, bid_size=5.0, ask=100.02, ask_size=3.0)
    v.depth(BUY, 99.99, 4.0, T0 - MS)
    slot = v.submit(BUY, 100.00, 2.0, T0)
    v.at(T0 + 2 * MS)
    assert v.sim.orders[slot]["queue_ahead"] == 5.0
    v.quote(BUY, 99.99, 4.0, T0 + 3 * MS)      # best bid now 99.99: the 100.00 level is gone
    assert v.sim.orders[slot]["queue_ahead"] == 0.0
    v.depth(SELL, 99.995, 1.5, T0 + 4 * MS)    # an ask through our bid would have hit us
    f = v.fills()
    assert [(x["price"], x["qty"], x["maker"]) for x in f] == [(100.00, 1.5, 1)]
    assert v.book(SELL) == [(100.02, 3.0)]     # our fill took the crossing size
    assert v.sim.orders[slot]["leaves"] == 0.5


# ---------------------------------------------------------------- aggressive orders


def _three_level_asks(v):
    v.depth(BUY, 100.00, 5.0, T0 - MS)
    for p, q in ((100.01, 2.0), (100.02, 3.0), (100.03, 4.0), (100.05, 10.0)):
        v.depth(SELL, p, q, T0 - MS)


def test_taker_walks_three_levels_exact_vwap_and_fees():
    v = Venue(make_sim(taker_bps=10.0))
    _three_level_asks(v)
    slot = v.submit(BUY, 100.04, 8.0, T0, tif=IOC, tag=TAG_ARB)
    v.settle()
    f = v.fills()
    assert [(x["price"], x["qty"]) for x in f] == [(100.01, 2.0), (100.02, 3.0), (100.03, 3.0)]
    vwap = (f["price"] * f["qty"]).sum() / f["qty"].sum()
    assert vwap == pytest.approx(800.17 / 8.0, abs=1e-12)
    assert list(f["fee"]) == pytest.approx([0.20002, 0.30006, 0.30009], abs=1e-12)
    assert list(f["leaves"]) == [6.0, 3.0, 0.0]
    assert set(f["maker"]) == {0} and set(f["tag"]) == {TAG_ARB}
    assert v.sim.orders[slot]["state"] == FREE and v.reports[-1][4] == FILLED
    assert v.book(SELL) == [(100.03, 1.0), (100.05, 10.0)]


def test_ioc_remainder_cancelled_and_gtc_remainder_rests():
    v = Venue(make_sim())
    _three_level_asks(v)
    ioc = v.submit(BUY, 100.04, 12.0, T0, tif=IOC)
    v.at(T0 + MS + 1)                                  # at the venue; its reports are still on the way
    assert sum(v.fills()["qty"]) == 9.0
    assert v.sim.orders[ioc]["state"] == CANCELLED and v.sim.orders[ioc]["reason"] == REASON_IOC
    assert v.sim.orders[ioc]["leaves"] == 3.0

    v2 = Venue(make_sim())
    _three_level_asks(v2)
    gtc = v2.submit(BUY, 100.04, 12.0, T0)
    v2.at(T0 + 2 * MS)
    o = v2.sim.orders[gtc]
    assert (o["state"], o["leaves"], o["queue_ahead"]) == (OPEN, 3.0, 0.0)
    assert v2.book(SELL) == [(100.05, 10.0)]
    v2.settle()
    assert [r[0] for r in v2.reports] == [REP_FILL, REP_FILL, REP_FILL, REP_ACK]
    assert v2.sim.orders[gtc]["known_state"] == OPEN and v2.sim.orders[gtc]["known_leaves"] == 3.0


def test_post_only_that_would_cross_is_rejected():
    v = Venue(make_sim())
    two_sided(v, ask=100.01)
    slot = v.submit(BUY, 100.01, 1.0, T0, post_only=1)
    ok = v.submit(BUY, 100.00, 1.0, T0, post_only=1)
    v.settle()
    assert v.sim.orders[slot]["reason"] == REASON_POST_ONLY
    done = [r for r in v.reports if r[0] == REP_DONE]
    assert [(r[2], r[4]) for r in done] == [(slot, REJECTED)]
    assert v.sim.orders[ok]["state"] == OPEN and len(v.fills()) == 0
    assert v.book(SELL) == [(100.01, 5.0)]


def test_invalid_order_rejected_at_venue():
    v = Venue(make_sim())
    two_sided(v)
    bad = v.submit(BUY, np.inf, 1.0, T0)          # a resting order needs a finite price
    zero = v.submit(SELL, 100.10, 0.0, T0)
    v.settle()
    assert [v.sim.orders[s]["reason"] for s in (bad, zero)] == [REASON_INVALID, REASON_INVALID]


# ---------------------------------------------------------------- latency


def test_order_arriving_after_the_price_moved_does_not_fill_at_the_old_price():
    fast = Venue(make_sim(order_ms=0.0, resp_ms=0.0))
    slow = Venue(make_sim(order_ms=25.0, resp_ms=25.0))
    for v in (fast, slow):
        two_sided(v, ask=100.01)
        v.submit(BUY, 100.01, 1.0, T0, tif=IOC)
        v.quote(SELL, 100.03, 5.0, T0 + 10 * MS)   # the ask moves away before a 25 ms order lands
        v.settle()
    assert [(x["price"], x["qty"], x["ts_venue"]) for x in fast.fills()] == [(100.01, 1.0, T0)]
    assert len(slow.fills()) == 0
    assert slow.reports[-1][0] == REP_DONE and slow.reports[-1][4] == CANCELLED
    assert slow.reports[-1][1] == T0 + 50 * MS     # 25 ms there + 25 ms back


def test_ioc_market_order_finds_a_worse_book_after_latency():
    v = Venue(make_sim(order_ms=25.0, resp_ms=25.0))
    two_sided(v, ask=100.01)
    v.depth(SELL, 100.04, 5.0, T0 - MS)
    v.submit(BUY, np.inf, 6.0, T0, tif=IOC)
    v.depth(SELL, 100.01, 0.0, T0 + 10 * MS)   # the best ask is taken away and a new one shows
    v.depth(SELL, 100.03, 2.0, T0 + 10 * MS)
    v.settle()
    f = v.fills()
    assert [(x["price"], x["qty"]) for x in f] == [(100.03, 2.0), (100.04, 4.0)]
    assert (f[0]["ts_venue"], f[0]["ts_local"]) == (T0 + 25 * MS, T0 + 50 * MS)


def test_trade_before_our_order_arrives_does_not_fill_it():
    v = Venue(make_sim(order_ms=25.0, resp_ms=25.0))
    two_sided(v)
    slot = v.submit(SELL, 100.02, 1.0, T0)
    v.trade(BUY, 100.05, 3.0, T0 + 20 * MS)       # would go through 100.02, but we are not there yet
    v.at(T0 + 30 * MS)
    assert v.sim.orders[slot]["state"] == OPEN and len(v.fills()) == 0


def test_fill_while_cancel_in_flight():
    v = Venue(make_sim(order_ms=5.0, resp_ms=5.0))
    two_sided(v, ask=100.03)
    slot = v.submit(SELL, 100.02, 2.0, T0)
    v.at(T0 + 11 * MS)
    assert v.sim.orders[slot]["known_state"] == OPEN
    assert v.cancel(slot, T0 + 20 * MS) == 1
    assert v.cancel(slot, T0 + 20 * MS) == 0                 # one cancel at a time
    assert v.sim.orders[slot]["state"] == PENDING_CANCEL
    v.trade(BUY, 100.02, 5.0, T0 + 22 * MS)                  # the cancel lands at +25 ms: too late
    assert v.sim.orders[slot]["state"] == FILLED
    v.settle()
    assert [(r[0], r[1]) for r in v.reports[1:]] == [(REP_FILL, T0 + 27 * MS), (REP_DONE, T0 + 27 * MS)]
    assert v.fills()[0]["qty"] == 2.0


def test_partial_fill_while_cancel_in_flight_then_cancelled():
    v = Venue(make_sim(order_ms=5.0, resp_ms=5.0))
    two_sided(v, ask=100.03)
    slot = v.submit(SELL, 100.02, 2.0, T0)
    v.cancel(slot, T0 + 20 * MS)
    v.trade(BUY, 100.02, 0.5, T0 + 22 * MS)
    v.settle()
    assert [(r[0], r[1], r[4]) for r in v.reports] == [
        (REP_ACK, T0 + 10 * MS, 0),
        (REP_FILL, T0 + 27 * MS, 1),
        (REP_DONE, T0 + 30 * MS, CANCELLED),
    ]
    assert v.sim.orders[slot]["reason"] == REASON_USER and v.sim.orders[slot]["leaves"] == 1.5
    assert v.fills()[0]["leaves"] == 1.5


def test_cancel_sent_before_ack_cancels_on_arrival():
    v = Venue(make_sim(order_ms=5.0, resp_ms=5.0))
    two_sided(v)
    slot = v.submit(BUY, 99.90, 1.0, T0)
    assert v.cancel(slot, T0 + 1 * MS) == 1                   # still in flight
    v.at(T0 + 5 * MS + 1)
    assert v.sim.orders[slot]["state"] == PENDING_CANCEL      # resting, cancel on its way
    v.settle()
    assert [r[0] for r in v.reports] == [REP_ACK, REP_DONE]
    assert v.reports[-1][4] == CANCELLED and v.reports[-1][1] == T0 + 11 * MS


# ---------------------------------------------------------------- fees


def test_fees_maker_rebate_and_dex_gas_once_per_trade():
    cex = Venue(make_sim(maker_bps=-1.0, taker_bps=10.0))
    two_sided(cex)
    cex.submit(SELL, 100.05, 3.0, T0)                  # joins 5 at 100.05
    cex.trade(BUY, 100.05, 6.0, T0 + 2 * MS)           # 5 ahead, 1 for us
    assert cex.fills()[0]["fee"] == pytest.approx(100.05 * 1.0 * -1e-4, abs=1e-12)

    dex = Venue(make_sim(maker_bps=0.0, taker_bps=25.0, gas=0.02))
    two_sided(dex, ask=100.01, ask_size=1.0)
    dex.depth(SELL, 100.02, 5.0, T0 - MS)
    dex.submit(BUY, 100.02, 2.0, T0, tif=IOC)          # one swap over two levels: gas once
    dex.submit(SELL, 100.50, 1.0, T0)
    dex.trade(BUY, 100.60, 1.0, T0 + 2 * MS)           # a maker fill is its own trade: gas
    f = dex.fills()
    assert list(f["fee"]) == pytest.approx(
        [100.01 * 1.0 * 0.0025 + 0.02, 100.02 * 1.0 * 0.0025, 0.0 + 0.02], abs=1e-12
    )
    assert list(f["maker"]) == [0, 0, 1]


# ---------------------------------------------------------------- halts and defaults


def test_halt_blocks_fills_cancels_and_new_orders():
    v = Venue(make_sim())
    two_sided(v)
    slot = v.submit(SELL, 100.02, 1.0, T0)
    v.at(T0 + 2 * MS)
    assert venue_set_status(v.sim, 0, VENUE_HALTED, T0 + 3 * MS) == 0
    v.trade(BUY, 100.05, 5.0, T0 + 4 * MS)
    assert len(v.fills()) == 0
    v.cancel(slot, T0 + 5 * MS)
    late = v.submit(BUY, 99.0, 1.0, T0 + 5 * MS)
    v.at(T0 + 20 * MS)
    assert v.sim.orders[slot]["state"] == OPEN and v.sim.orders[slot]["known_state"] == OPEN
    assert v.reports[-2][0] == REP_CANCEL_REJECT
    assert v.sim.orders[late]["reason"] == REASON_HALTED and v.reports[-1][4] == REJECTED
    venue_set_status(v.sim, 0, VENUE_OK, T0 + 21 * MS)
    v.trade(BUY, 100.05, 5.0, T0 + 22 * MS)
    assert list(v.fills()["qty"]) == [1.0]


def test_default_loses_open_and_in_flight_orders_and_stops_the_venue():
    v = Venue(make_sim(order_ms=5.0, resp_ms=5.0))
    two_sided(v)
    resting = v.submit(SELL, 100.02, 1.0, T0)
    v.at(T0 + 6 * MS)
    flying = v.submit(BUY, 99.98, 1.0, T0 + 7 * MS)
    assert venue_set_status(v.sim, 0, VENUE_DEFAULTED, T0 + 8 * MS) == 2
    for s in (resting, flying):
        assert v.sim.orders[s]["state"] == CANCELLED and v.sim.orders[s]["reason"] == REASON_DEFAULTED
    assert v.sim.oc[OC_NREST] == 0
    v.trade(BUY, 100.05, 5.0, T0 + 9 * MS)
    after = v.submit(BUY, 99.0, 1.0, T0 + 10 * MS)
    v.settle()
    assert len(v.fills()) == 0
    assert v.sim.orders[after]["reason"] == REASON_DEFAULTED
    assert venue_set_status(v.sim, 0, VENUE_OK, T0 + 30 * MS) == 0
    assert v.sim.status[0] == VENUE_DEFAULTED
    assert v.sim.oc[OC_NFREE] == v.sim.orders.shape[0]          # every slot came back


# ---------------------------------------------------------------- room in the output arrays


def test_full_fill_array_stops_before_changing_anything():
    sim = make_sim(fill_capacity=16, book_levels=16, order_capacity=8, queue_capacity=64)
    v = Venue(sim)
    for k in range(14):
        v.depth(BUY, 99.0 - 0.01 * k, 1.0, T0 - MS)
    slot = v.submit(SELL, 90.0, 20.0, T0, tif=IOC)
    sim.fill_n[0] = 10                                 # 6 rows free, the walk may need 14
    before = (sim.px.copy(), sim.qty.copy(), sim.nlev.copy(), sim.pq_n.copy())
    assert venue_process_actions(sim, 0, NEVER) == NEED_FILL_ROOM
    assert sim.orders[slot]["state"] == PENDING_NEW
    assert all(np.array_equal(a, b) for a, b in zip(before, (sim.px, sim.qty, sim.nlev, sim.pq_n)))
    flushed = flush_fills(sim)
    assert len(flushed) == 10 and sim.fill_n[0] == 0
    assert venue_process_actions(sim, 0, NEVER) == 1
    assert sim.fill_n[0] == 14 and sim.orders[slot]["leaves"] == 6.0


def test_full_report_queue_is_reported_and_growing_it_resumes():
    sim = make_sim(fill_capacity=64, book_levels=4, order_capacity=4, queue_capacity=8)
    v = Venue(sim)
    two_sided(v)
    for k in range(4):
        v.submit(SELL, 100.02 + 0.01 * k, 1.0, T0)
    v.at(T0 + 2 * MS - 1)
    assert sim.oc[OC_NREST] == 4
    ev = empty(1)
    ev[0] = (KIND_TRADE, BUY, 0, 0, 0, T0 + 2 * MS, T0 + 2 * MS, 100.10, 10.0, 0)
    assert venue_on_event(sim, ev, 0) == NEED_REPORT_ROOM    # 4 acks in flight, 8 reports needed
    sim = grow_queues(sim, 16)
    assert venue_on_event(sim, ev, 0) == 4


# ---------------------------------------------------------------- the state machine


def test_illegal_transitions_raise():
    sim = make_sim()
    sim.orders[0]["state"] = FILLED
    with pytest.raises(AssertionError):
        set_state(sim.orders, 0, OPEN)
    for a in range(7):
        for b in range(7):
            if TRANSITIONS[a, b]:
                assert KNOWN_TRANSITIONS[a, b]
    assert TRANSITIONS.sum() == 1 + 5 + 3 + 3 + 3


_submit = st.tuples(st.just("submit"), st.sampled_from([BUY, SELL]), st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.5]),
                    st.sampled_from([GTC, GTC, IOC]), st.sampled_from([0, 1]))
_trade = st.tuples(st.just("trade"), st.sampled_from([BUY, SELL, 0]), st.integers(-3, 3), st.sampled_from([0.5, 1.0, 4.0]))
_op = st.one_of(
    _submit,
    _submit,
    _trade,
    _trade,
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("depth"), st.sampled_from([BUY, SELL]), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 3.0, 8.0])),
    st.tuples(st.just("quote"), st.sampled_from([BUY, SELL]), st.integers(-3, 3), st.sampled_from([0.0, 2.0, 6.0])),
    st.tuples(st.just("halt"), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 40)),
)


def _price(side, k):
    """Order / book prices: k ticks from our side's touch around a 100.00 mid; trades: k ticks from the mid."""
    return round(100.0 - side * 0.01 + k * 0.01, 2)


def _run_ops(ops, seed, model="probabilistic"):
    sim = make_sim(order_ms=5.0, resp_ms=5.0, jitter_ms=3.0, queue_model=model, seed=seed,
                   order_capacity=16, queue_capacity=64, fill_capacity=256)
    v = Venue(sim)
    two_sided(v, bid=99.99, ask=100.01)
    t = T0
    for op in ops:
        t += 3 * MS
        if op[0] == "submit":
            _, side, k, q, tif, po = op
            v.at(t)
            submit_order(sim, 0, 0, side, _price(side, k), q, tif, po, TAG_QUOTE, t)
        elif op[0] == "cancel":
            v.at(t)
            live = [s for s in range(sim.orders.shape[0]) if sim.orders[s]["known_state"] in (PENDING_NEW, OPEN)]
            if live:
                request_cancel(sim, live[op[1] % len(live)], t)
        elif op[0] == "trade":
            v.trade(op[1], round(100.0 + op[2] * 0.01, 2), op[3], t)
        elif op[0] in ("depth", "quote"):
            v.event(KIND_DEPTH if op[0] == "depth" else KIND_QUOTE, op[1], _price(op[1], op[2]), op[3], t)
        elif op[0] == "halt":
            venue_set_status(sim, 0, VENUE_HALTED if op[1] else VENUE_OK, t)
        else:
            t += op[1] * MS
            v.at(t)
        _check_invariants(sim)
    return v


def _check_invariants(sim):
    o = sim.orders
    states = o["state"]
    resting = set(np.flatnonzero((states == OPEN) | (states == PENDING_CANCEL)))
    assert set(sim.rest[: sim.oc[OC_NREST]]) == resting
    assert set(sim.free[: sim.oc[OC_NFREE]]) == set(np.flatnonzero(o["known_state"] == FREE))
    assert np.all(o["leaves"] >= 0) and np.all(o["leaves"] <= o["qty"] + 1e-12)
    assert np.all(o["queue_ahead"] >= 0)
    assert np.all(o["leaves"][states == FILLED] == 0)
    n = sim.nlev[0]
    if n[0] and n[1]:
        assert sim.px[0, 0, 0] < sim.px[0, 1, 0]


@settings(max_examples=80, deadline=None)
@given(st.lists(_op, min_size=20, max_size=60), st.integers(0, 2**31))
def test_random_operation_sequences_keep_the_state_machine_consistent(ops, seed):
    v = _run_ops(ops, seed)
    sim = v.sim
    v.settle()
    _check_invariants(sim)
    o = sim.orders
    live = (o["state"] == OPEN) | (o["state"] == PENDING_CANCEL)
    # once every report is in, what we know is the truth
    assert np.array_equal(o["known_state"][live], o["state"][live])
    assert np.allclose(o["known_leaves"][live], o["leaves"][live])
    assert set(np.flatnonzero(o["known_state"] != FREE)) == set(np.flatnonzero(live))
    # every fill is accounted for in its order's leaves
    f = v.fills()
    for s in range(o.shape[0]):
        if o[s]["id"]:
            got = f["qty"][f["order_id"] == o[s]["id"]].sum()
            assert got == pytest.approx(o[s]["qty"] - o[s]["leaves"], abs=1e-9)
    fills_reported = sum(r[6] for r in v.reports if r[0] == REP_FILL)
    assert fills_reported == pytest.approx(f["qty"].sum(), abs=1e-9)


def test_same_seed_same_replay_and_other_seed_differs():
    rng = np.random.default_rng(11)
    ops = []
    for _ in range(600):
        r = rng.integers(0, 5)
        if r == 0:
            ops.append(("submit", int(rng.choice([BUY, SELL])), int(rng.integers(-2, 3)), 1.0, GTC, 1))
        elif r == 1:
            ops.append(("cancel", int(rng.integers(0, 8))))
        elif r == 2:
            ops.append(("trade", int(rng.choice([BUY, SELL])), int(rng.integers(-2, 3)), 2.0))
        elif r == 3:
            ops.append(("depth", int(rng.choice([BUY, SELL])), int(rng.integers(-2, 3)), float(rng.integers(0, 9))))
        else:
            ops.append(("wait", int(rng.integers(1, 20))))
    a, b, c = (_run_ops(ops, seed) for seed in (7, 7, 8))
    for v in (a, b, c):
        v.settle()
    assert len(a.fills()) > 10
    assert a.fills().tobytes() == b.fills().tobytes()
    assert a.reports == b.reports
    assert a.sim.orders.tobytes() == b.sim.orders.tobytes()
    assert a.fills().tobytes() != c.fills().tobytes()


def test_l1_quote_replaces_the_whole_side():
    # An L1 feed has no depth: when the best bid moves from 100.00 to 100.05 and back to 99.90, the
    # book must show only the latest bid, never 100.00 or 100.05 as phantom liquidity below it.
    from stockbridge.core.book import apply_quote, best_price, new_book

    px, qty, nlev, dropped = new_book(1, 8)
    for price in (100.00, 100.05, 99.90):
        apply_quote(px, qty, nlev, dropped, 0, 0, price, 3.0)
    assert nlev[0, 0] == 1 and best_price(px, nlev, 0, 0) == 99.90 and qty[0, 0, 0] == 3.0
    assert apply_quote(px, qty, nlev, dropped, 0, 0, 99.90, 5.0) == 3.0  # previous size at the price
    assert nlev[0, 0] == 1 and qty[0, 0, 0] == 5.0
