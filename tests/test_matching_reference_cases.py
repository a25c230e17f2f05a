"""Minimal scenarios where the compiled venues and the written rules (issue 7, backtest.consumed)
disagreed, found while checking the engine against tests/reference_venue.py: each is the smallest
case that shows it. An open one is a strict xfail (fixing it turns the xfail into a failure: then
drop the marker); a fixed one stays as a regression test."""

from __future__ import annotations

import numpy as np
from reference_venue import MS, event_rows

from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import VENUE_HALTED, VENUE_OK, venue_set_status, venues_advance
from backtest.orders import GTC, IOC, submit_order
from backtest.simvenue import new_sim
from data.schema import KIND_DEPTH, KIND_TRADE

T0 = 1_751_500_000_000_000_000


def at(ms):
    return T0 + int(ms * MS)


def _sim():
    sim = new_sim(1, 1, fee_table([0.0], [0.0], [0.0]), latency_table([0.0], [0.0], 0.0), book_levels=16,
                  order_capacity=64, fill_capacity=1024, queue_capacity=256)
    sim.final[0] = 1
    return sim


def test_trade_during_halt_still_refreshes_consumed_liquidity():
    """Found failing (matching._on_trade returned before traded_through while halted); fixed on main."""
    # ask 100 x 3; we take all 3 at 1 ms; the venue is halted 2-4 ms, during which the data prints a
    # buy of 3 at 100 (rule 2: consumed[100] -= 3 for every data trade at or through it); the data
    # restates ask 100 x 3 at 5 ms: those are new lots, our take at 6 ms should get them
    ev = event_rows([dict(kind=KIND_DEPTH, side=-1, price=100.0, size=3.0, exch_ts=at(0)),
                     dict(kind=KIND_TRADE, side=1, price=100.0, size=3.0, exch_ts=at(3)),
                     dict(kind=KIND_DEPTH, side=-1, price=100.0, size=3.0, exch_ts=at(5))])
    sim = _sim()
    venues_advance(sim, ev, at(1))
    submit_order(sim, 0, 0, 1, 100.0, 3.0, IOC, 0, 0, at(1))
    venues_advance(sim, ev, at(2) - 1)
    venue_set_status(sim, 0, VENUE_HALTED, at(2))
    venues_advance(sim, ev, at(4) - 1)
    venue_set_status(sim, 0, VENUE_OK, at(4))
    venues_advance(sim, ev, at(6))
    submit_order(sim, 0, 0, 1, 100.0, 3.0, IOC, 0, 0, at(6))
    venues_advance(sim, ev, at(100))
    fills = sim.fills[: sim.fill_n[0]]
    got = [(int(f["order_id"]), (int(f["ts_venue"]) - T0) / MS, float(f["qty"])) for f in fills]
    assert got == [(1, 1.0, 3.0), (2, 6.0, 3.0)]
    assert np.all(fills["ts_arrival"] <= fills["ts_venue"])


def test_unsided_trade_at_the_level_we_took_refreshes_it():
    """Found failing (the print was classified against the venue book after our takes, and dropped);
    fixed on main."""
    # bid 99 x 1, ask 100 x 3; we take the 3 at 1 ms (the venue's ask side is now empty); the data
    # prints a trade of 3 at 100 with no side at 2 ms: by the data's book (ask 100) a buy, so
    # consumed[100] -= 3 (rule 2); the data restates ask 100 x 3 at 3 ms: new lots for our take at 4 ms
    ev = event_rows([dict(kind=KIND_DEPTH, side=1, price=99.0, size=1.0, exch_ts=at(0)),
                     dict(kind=KIND_DEPTH, side=-1, price=100.0, size=3.0, exch_ts=at(0)),
                     dict(kind=KIND_TRADE, side=0, price=100.0, size=3.0, exch_ts=at(2)),
                     dict(kind=KIND_DEPTH, side=-1, price=100.0, size=3.0, exch_ts=at(3))])
    sim = _sim()
    venues_advance(sim, ev, at(1))
    submit_order(sim, 0, 0, 1, 100.0, 3.0, IOC, 0, 0, at(1))
    venues_advance(sim, ev, at(4))
    submit_order(sim, 0, 0, 1, 100.0, 3.0, IOC, 0, 0, at(4))
    venues_advance(sim, ev, at(100))
    fills = sim.fills[: sim.fill_n[0]]
    got = [(int(f["order_id"]), (int(f["ts_venue"]) - T0) / MS, float(f["qty"])) for f in fills]
    assert got == [(1, 1.0, 3.0), (2, 4.0, 3.0)]


def test_level_restated_over_a_stale_opposite_level_removes_it():
    """Found failing (the uncrossed level kept what we took, and a restated level at effective 0 did
    not uncross: the stale ask filled us); fixed on main."""
    # bid 99 x 1; we sell 1 into it at 1 ms (consumed[bid 99] = 1); an ask at 98.5 appears at 2 ms: the
    # data book drops the bid 99 (uncrossed); at 3 ms the data shows bid 99 x 1 again: new lots, and the
    # ask at 98.5 is now stale (the book is uncrossed: stockbridge.core.book); our buy at 4 ms finds no ask
    ev = event_rows([dict(kind=KIND_DEPTH, side=1, price=99.0, size=1.0, exch_ts=at(0)),
                     dict(kind=KIND_DEPTH, side=-1, price=98.5, size=5.0, exch_ts=at(2)),
                     dict(kind=KIND_DEPTH, side=1, price=99.0, size=1.0, exch_ts=at(3))])
    sim = _sim()
    venues_advance(sim, ev, at(1))
    submit_order(sim, 0, 0, -1, 99.0, 1.0, IOC, 0, 0, at(1))
    venues_advance(sim, ev, at(4))
    submit_order(sim, 0, 0, 1, 99.0, 1.0, IOC, 0, 0, at(4))
    venues_advance(sim, ev, at(100))
    fills = sim.fills[: sim.fill_n[0]]
    got = [(int(f["order_id"]), (int(f["ts_venue"]) - T0) / MS, float(f["price"]), float(f["qty"])) for f in fills]
    assert got == [(1, 1.0, 99.0, 1.0)]


def test_unsided_trade_sees_a_level_we_emptied_after_a_refresh():
    # ask 100 x 1; we take it at 1 ms; a buy of 1 at 100 prints at 2 ms (consumed[100] back to 0, but
    # the data has not restated the level: the venue still shows nothing there, the data shows ask
    # 100); our sell 1 @ 100.5 rests from 3 ms; an unsided print at 100.75 at 4 ms: by the data's book
    # (ask 100, no bids) a buy, through our ask: we sell 1 @ 100.5
    ev = event_rows([dict(kind=KIND_DEPTH, side=-1, price=100.0, size=1.0, exch_ts=at(0)),
                     dict(kind=KIND_TRADE, side=1, price=100.0, size=1.0, exch_ts=at(2)),
                     dict(kind=KIND_TRADE, side=0, price=100.75, size=1.0, exch_ts=at(4))])
    sim = _sim()
    venues_advance(sim, ev, at(1))
    submit_order(sim, 0, 0, 1, 100.0, 1.0, IOC, 0, 0, at(1))
    venues_advance(sim, ev, at(3))
    submit_order(sim, 0, 0, -1, 100.5, 1.0, GTC, 0, 0, at(3))
    venues_advance(sim, ev, at(100))
    fills = sim.fills[: sim.fill_n[0]]
    got = [(int(f["order_id"]), (int(f["ts_venue"]) - T0) / MS, float(f["price"]), float(f["qty"])) for f in fills]
    assert got == [(1, 1.0, 100.0, 1.0), (2, 4.0, 100.5, 1.0)]  # the engine gives only the first
