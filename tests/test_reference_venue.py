"""The reference venue model (tests/reference_venue.py) against hand-computed answers, so that the
differential test compares the compiled matcher with something known to be right."""

from __future__ import annotations

import math

import pytest
from reference_venue import IOC, MS, Cancel, ReferenceVenues, Submit, event_rows

from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE

T0 = 1_751_500_000_000_000_000
BID, ASK = 1, -1
BUY, SELL = 1, -1


def at(ms):
    return T0 + int(ms * MS)


def depth(ms, side, price, size, venue=0, feed_ms=0.0, flags=0, kind=KIND_DEPTH):
    return dict(kind=kind, side=side, price=price, size=size, venue=venue, flags=flags,
                exch_ts=at(ms), local_ts=at(ms + feed_ms))


def quote(ms, side, price, size, **kw):
    return depth(ms, side, price, size, kind=KIND_QUOTE, **kw)


def trade(ms, aggressor, price, size, **kw):
    return depth(ms, aggressor, price, size, kind=KIND_TRADE, **kw)


def ref(n_venues=1, maker_bps=0.0, taker_bps=0.0, gas=0.0, order_ms=1.0, response_ms=1.0):
    def per(x):
        return list(x) if isinstance(x, (list, tuple)) else [x] * n_venues
    return ReferenceVenues(n_venues, 1, per(maker_bps), per(taker_bps), per(gas), per(order_ms), per(response_ms))


def summary(fills):
    return [(f.order_id, (f.ts_venue - T0) / MS, f.price, f.qty, f.maker) for f in fills]


def test_level_of_3_restated_is_consumed_once():
    # a 10-token bid at 100 rests (asks at 101); the ask level 100 x 3 crosses it, then is restated
    rows = [depth(0, ASK, 101.0, 3.0),
            depth(2, ASK, 100.0, 3.0),   # crosses: fill 3
            depth(3, ASK, 100.0, 3.0),   # same 3 lots restated: nothing
            quote(4, ASK, 100.0, 3.0),   # again, as an L1 quote: nothing
            depth(5, ASK, 100.0, 5.0),   # 2 more than we took: fill 2
            trade(6, BUY, 100.0, 1.0),   # someone bought 1 at 100: 1 of what we took is refreshed
            depth(7, ASK, 100.0, 5.0),   # fill 1
            depth(8, ASK, 100.0, 0.0),   # level gone: consumed dropped
            depth(9, ASK, 100.0, 2.0),   # fill 2
            depth(10, ASK, 100.0, 2.0, flags=F_CLEAR | F_BATCH_END, kind=KIND_SNAPSHOT)]  # snapshot: fill 2
    fills = ref().run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 10.0)])
    assert summary(fills) == [(1, 2, 100.0, 3.0, 1), (1, 5, 100.0, 2.0, 1), (1, 7, 100.0, 1.0, 1),
                              (1, 9, 100.0, 2.0, 1), (1, 10, 100.0, 2.0, 1)]
    assert all(f.ts_arrival == at(1) and f.ts_local == f.ts_venue + MS for f in fills)


def test_restated_level_is_not_taken_twice_by_two_takes():
    rows = [depth(0, ASK, 100.0, 3.0), depth(5, ASK, 100.0, 3.0), depth(10, ASK, 100.0, 4.0)]
    acts = [Submit(at(1), 0, 0, BUY, 100.0, 3.0, IOC), Submit(at(6), 0, 0, BUY, 100.0, 3.0, IOC),
            Submit(at(11), 0, 0, BUY, 100.0, 3.0, IOC)]
    fills = ref(order_ms=0.0).run(event_rows(rows), acts)
    assert summary(fills) == [(1, 1, 100.0, 3.0, 0), (3, 11, 100.0, 1.0, 0)]


def test_order_reaching_the_venue_after_a_trade_is_not_filled_by_it():
    # sent at T, order latency 11 ms: the sell printed at T+5 ms cannot fill it, the one at T+12 can
    rows = [depth(0, BID, 99.0, 1.0), depth(0, ASK, 101.0, 1.0),
            trade(5, SELL, 100.0, 2.0), trade(12, SELL, 100.0, 2.0)]
    fills = ref(order_ms=11.0).run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 3.0)])
    assert summary(fills) == [(1, 12, 100.0, 2.0, 1)]
    assert fills[0].ts_arrival == at(11)


def test_each_venue_on_its_own_clock():
    # venue 1's feed is 2.5 s late: its rows come last in local order, but its book at venue time is
    # what our order meets; venue 0's rows never touch venue 1's orders
    rows = [depth(0, ASK, 100.0, 2.0, venue=1, feed_ms=2500.0),
            depth(20, ASK, 100.0, 0.0, venue=1, feed_ms=2500.0),
            depth(0, ASK, 99.0, 5.0, venue=0),
            trade(15, SELL, 99.0, 5.0, venue=0)]
    acts = [Submit(at(1), 1, 0, BUY, 100.0, 5.0, IOC),   # arrives at venue 1 at 11 ms: takes 2
            Submit(at(1), 1, 0, BUY, 100.0, 5.0, IOC)]   # right behind it: nothing left
    fills = ref(n_venues=2, order_ms=[1.0, 10.0]).run(event_rows(rows), acts)
    assert summary(fills) == [(1, 11, 100.0, 2.0, 0)]
    assert fills[0].venue == 1


def test_market_row_goes_first_at_equal_time():
    rows = [depth(0, ASK, 100.0, 2.0), depth(5, ASK, 100.0, 0.0)]
    fills = ref(order_ms=5.0).run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 1.0, IOC)])
    assert fills == []


def test_queue_ahead_eaten_by_trades_then_through():
    rows = [depth(0, BID, 100.0, 5.0), depth(0, ASK, 101.0, 5.0),
            trade(2, SELL, 100.0, 3.0),     # 5 ahead -> 2
            depth(3, BID, 100.0, 1.0),      # the level shrank to 1: at most 1 ahead
            trade(4, SELL, 100.0, 2.0),     # 1 ahead eaten, we get 1
            trade(5, SELL, 99.75, 5.0)]     # through our price: the rest (1)
    fills = ref().run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 2.0)])
    assert summary(fills) == [(1, 4, 100.0, 1.0, 1), (1, 5, 100.0, 1.0, 1)]


def test_level_growing_does_not_put_more_ahead_and_quote_away_clears_queue():
    rows = [quote(0, BID, 100.0, 5.0), quote(0, ASK, 101.0, 5.0),
            quote(2, BID, 100.0, 50.0),     # conservative: new size joined behind us
            quote(3, BID, 99.75, 4.0),      # best bid moved below us: nobody ahead at 100
            trade(4, SELL, 100.0, 1.0)]
    fills = ref().run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 2.0)])
    assert summary(fills) == [(1, 4, 100.0, 1.0, 1)]


def test_trade_shared_in_price_time_priority():
    rows = [depth(0, ASK, 100.5, 1.0), depth(0, BID, 99.0, 1.0), trade(5, BUY, 100.5, 4.0)]
    acts = [Submit(at(0), 0, 0, SELL, 100.5, 2.0),   # at the trade price, 1 ahead
            Submit(at(1), 0, 0, SELL, 100.25, 2.0),  # better price: first in line, through
            Submit(at(2), 0, 0, SELL, 100.5, 5.0)]   # behind order 1
    fills = ref().run(event_rows(rows), acts)
    # 4 traded: order 2 (through) takes 2; order 1 has 1 ahead: 4 - 1 - 2 = 1; order 3 (1 ahead): 0
    assert summary(fills) == [(2, 5, 100.25, 2.0, 1), (1, 5, 100.5, 1.0, 1)]


def test_fees_in_bps_gas_once_per_walk_and_maker_rebate():
    rows = [depth(0, ASK, 100.0, 1.0), depth(0, ASK, 100.25, 5.0), depth(0, BID, 99.0, 1.0),
            trade(10, SELL, 98.0, 10.0)]
    acts = [Submit(at(0), 0, 0, BUY, math.inf, 4.0, IOC),   # market buy walks two levels
            Submit(at(0), 0, 0, BUY, 99.5, 2.0)]            # rests, filled by the sell through it
    fills = ref(maker_bps=-1.0, taker_bps=10.0, gas=0.25).run(event_rows(rows), acts)
    assert summary(fills) == [(1, 1, 100.0, 1.0, 0), (1, 1, 100.25, 3.0, 0), (2, 10, 99.5, 2.0, 1)]
    assert [f.fee for f in fills] == pytest.approx([100.0 * 0.001 + 0.25, 300.75 * 0.001, -199.0 * 0.0001 + 0.25])


def test_post_only_cross_rejected_ioc_remainder_and_cancel():
    rows = [depth(0, ASK, 100.0, 1.0), depth(0, BID, 99.0, 1.0),
            trade(20, SELL, 98.0, 10.0), trade(40, BUY, 101.0, 10.0)]
    acts = [Submit(at(0), 0, 0, BUY, 100.0, 1.0, post_only=True),  # would cross: rejected
            Submit(at(0), 0, 0, BUY, 100.0, 3.0, IOC),              # takes 1, rest cancelled
            Submit(at(0), 0, 0, BUY, 99.5, 1.0),                    # rests, cancelled at 11 ms
            Submit(at(0), 0, 0, SELL, 100.5, 1.0),                  # rests; cancel at 41 ms is too late
            Cancel(at(10), 2), Cancel(at(40), 3)]
    fills = ref().run(event_rows(rows), acts)
    assert summary(fills) == [(2, 1, 100.0, 1.0, 0), (4, 40, 100.5, 1.0, 1)]


def test_crossing_level_fills_in_priority_at_own_price():
    rows = [depth(0, ASK, 101.0, 1.0), depth(0, BID, 98.0, 1.0),
            depth(5, ASK, 99.5, 3.0)]  # an ask through both our bids
    acts = [Submit(at(0), 0, 0, BUY, 99.5, 2.0), Submit(at(0), 0, 0, BUY, 100.0, 2.0)]
    fills = ref().run(event_rows(rows), acts)
    assert summary(fills) == [(2, 5, 100.0, 2.0, 1), (1, 5, 99.5, 1.0, 1)]


def test_unknown_aggressor_inferred_from_book():
    rows = [depth(0, ASK, 101.0, 1.0), depth(0, BID, 99.0, 1.0),
            trade(5, 0, 99.0, 2.0),    # at the best bid: a sell
            trade(6, 0, 100.5, 2.0)]   # above the mid: a buy
    acts = [Submit(at(0), 0, 0, BUY, 99.25, 1.0), Submit(at(0), 0, 0, SELL, 100.5, 1.0)]
    fills = ref().run(event_rows(rows), acts)
    assert summary(fills) == [(1, 5, 99.25, 1.0, 1), (2, 6, 100.5, 1.0, 1)]


def test_snapshot_keeps_queue_until_batch_end():
    rows = [depth(0, BID, 100.0, 5.0), depth(0, ASK, 101.0, 5.0),
            depth(5, BID, 100.0, 4.0, flags=F_CLEAR, kind=KIND_SNAPSHOT),
            depth(5, ASK, 101.0, 5.0, flags=F_BATCH_END, kind=KIND_SNAPSHOT),
            trade(6, SELL, 100.0, 5.0)]  # 4 ahead after the snapshot: we get 1
    fills = ref().run(event_rows(rows), [Submit(at(0), 0, 0, BUY, 100.0, 2.0)])
    assert summary(fills) == [(1, 6, 100.0, 1.0, 1)]


def test_halt_rejects_new_orders_refuses_cancels_and_fills_nothing():
    from reference_venue import HALTED, OK

    rows = [depth(0, ASK, 101.0, 5.0), depth(0, BID, 98.0, 1.0),
            trade(3, SELL, 99.0, 5.0),            # halted: fills nothing
            depth(4, ASK, 99.5, 1.0),             # halted: crosses our bid, no fill
            trade(12, SELL, 99.0, 5.0)]           # open again: fills the bid whose cancel was refused
    acts = [Submit(at(0), 0, 0, BUY, 99.5, 2.0),  # rests at 1 ms
            Submit(at(2), 0, 0, BUY, 99.5, 1.0),  # arrives at 3 ms, halted: rejected
            Cancel(at(4), 0),                     # arrives at 5 ms, halted: refused (we learn it at 6 ms)
            Cancel(at(5), 0)]                     # sent before the refusal reached us: not sent at all
    fills = ref().run(event_rows(rows), acts, status=[(0, at(2), HALTED), (0, at(10), OK)])
    assert summary(fills) == [(1, 12, 99.5, 2.0, 1)]
    # a cancel sent after we learnt of the refusal goes out, and the venue is open again by then
    acts[3] = Cancel(at(10), 0)
    assert ref().run(event_rows(rows), acts, status=[(0, at(2), HALTED), (0, at(10), OK)]) == []


def test_default_loses_every_order():
    from reference_venue import DEFAULTED, OK

    rows = [depth(0, ASK, 101.0, 5.0), trade(5, SELL, 99.0, 5.0), depth(6, ASK, 99.0, 5.0)]
    acts = [Submit(at(0), 0, 0, BUY, 99.5, 2.0),                 # resting at the default
            Submit(at(3), 0, 0, BUY, 99.5, 2.0),                 # in flight at the default
            Submit(at(4), 0, 0, BUY, math.inf, 1.0, IOC)]        # arrives after it
    fills = ref(order_ms=[1.0]).run(event_rows(rows), acts, status=[(0, at(4), DEFAULTED), (0, at(4.5), OK)])
    assert fills == []


def test_trade_while_halted_refreshes_what_we_took():
    from reference_venue import HALTED, OK

    rows = [depth(0, ASK, 100.0, 3.0), trade(3, BUY, 100.0, 3.0), depth(5, ASK, 100.0, 3.0)]
    acts = [Submit(at(1), 0, 0, BUY, 100.0, 3.0, IOC), Submit(at(6), 0, 0, BUY, 100.0, 3.0, IOC)]
    fills = ref(order_ms=0.0).run(event_rows(rows), acts, status=[(0, at(2), HALTED), (0, at(4), OK)])
    assert summary(fills) == [(1, 1, 100.0, 3.0, 0), (2, 6, 100.0, 3.0, 0)]


def test_data_book_uncrosses_and_classifies():
    """The cases of tests/test_matching_reference_cases.py: a restated level uncrosses the other side
    even when our takes leave it at 0, and forgets what we took there; an unsided trade is classified
    against the data's book (which still shows the level we emptied)."""
    stale = [depth(0, BID, 99.0, 1.0), depth(2, ASK, 98.5, 5.0), depth(3, BID, 99.0, 1.0)]
    acts = [Submit(at(1), 0, 0, SELL, 99.0, 1.0, IOC), Submit(at(4), 0, 0, BUY, 99.0, 1.0, IOC)]
    assert summary(ref(order_ms=0.0).run(event_rows(stale), acts)) == [(1, 1, 99.0, 1.0, 0)]
    unsided = [depth(0, BID, 99.0, 1.0), depth(0, ASK, 100.0, 3.0), trade(2, 0, 100.0, 3.0), depth(3, ASK, 100.0, 3.0)]
    acts = [Submit(at(1), 0, 0, BUY, 100.0, 3.0, IOC), Submit(at(4), 0, 0, BUY, 100.0, 3.0, IOC)]
    assert summary(ref(order_ms=0.0).run(event_rows(unsided), acts)) == [(1, 1, 100.0, 3.0, 0), (2, 4, 100.0, 3.0, 0)]


def test_unsided_trade_sees_a_level_we_emptied_after_a_refresh():
    rows = [depth(0, ASK, 100.0, 1.0), trade(2, BUY, 100.0, 1.0), trade(4, 0, 100.75, 1.0)]
    acts = [Submit(at(1), 0, 0, BUY, 100.0, 1.0, IOC), Submit(at(3), 0, 0, SELL, 100.5, 1.0)]
    fills = ref(order_ms=0.0).run(event_rows(rows), acts)
    assert summary(fills) == [(1, 1, 100.0, 1.0, 0), (2, 4, 100.5, 1.0, 1)]
