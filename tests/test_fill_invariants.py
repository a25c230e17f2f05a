"""The fill-log invariants checker (tests/fill_invariants.py) on hand-made logs: each check passes a
log that keeps it and fails one that breaks it."""

from __future__ import annotations

import polars as pl
import pytest
from fill_invariants import assert_fills_ok, check_fills
from reference_venue import MS, event_rows

from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE, to_polars

T0 = 1_751_500_000_000_000_000
BID, ASK = 1, -1
BUY, SELL = 1, -1


def at(ms):
    return T0 + int(ms * MS)


def row(ms, kind, side, price, size, venue=0, flags=0):
    return dict(kind=kind, side=side, price=price, size=size, venue=venue, flags=flags, exch_ts=at(ms))


def fills(*rows, venue=0):
    """rows: (order_id, side, ts_ms, arrival_ms, price, qty, liquidity)."""
    return pl.DataFrame({
        "ts": [at(r[2]) for r in rows], "arrival_ts": [at(r[3]) for r in rows],
        "local_ts": [at(r[2] + 1) for r in rows], "venue": [venue] * len(rows), "instrument": [0] * len(rows),
        "side": [r[1] for r in rows], "price": [r[4] for r in rows], "qty": [r[5] for r in rows],
        "fee": [0.0] * len(rows), "liquidity": [r[6] for r in rows], "order_id": [r[0] for r in rows],
        "tag": ["quote"] * len(rows),
    }, schema_overrides={"side": pl.Int8})


# a level of 3 restated three times, as in issue 7
RESTATED = event_rows([row(0, KIND_DEPTH, ASK, 101.0, 3.0), row(2, KIND_DEPTH, ASK, 100.0, 3.0),
                       row(3, KIND_DEPTH, ASK, 100.0, 3.0), row(4, KIND_QUOTE, ASK, 100.0, 3.0),
                       row(5, KIND_DEPTH, ASK, 100.0, 3.0)])


def kinds(violations):
    return sorted({v.split(":")[0] for v in violations})


def test_good_log_passes():
    log = fills((1, BUY, 2, 1, 100.0, 3.0, "maker"))
    assert check_fills(RESTATED, log) == []
    assert_fills_ok(to_polars(RESTATED), log)  # events as a polars frame too
    assert check_fills(RESTATED, log.clear()) == []


def test_lots_taken_twice_are_a_liquidity_violation():
    log = fills((1, BUY, 2, 1, 100.0, 3.0, "maker"), (1, BUY, 3, 1, 100.0, 3.0, "maker"),
                (1, BUY, 4, 1, 100.0, 3.0, "maker"), (1, BUY, 5, 1, 100.0, 1.0, "maker"))
    bad = check_fills(RESTATED, log)
    assert kinds(bad) == ["liquidity"] and "filled 10 at 100" in bad[0] and "at most 3" in bad[0]
    with pytest.raises(AssertionError, match="1 fill invariant violations"):
        assert_fills_ok(RESTATED, log)


def test_refreshed_liquidity_is_allowed():
    ev = event_rows([row(0, KIND_DEPTH, ASK, 101.0, 3.0), row(2, KIND_DEPTH, ASK, 100.0, 3.0),
                     row(3, KIND_DEPTH, ASK, 100.0, 5.0),            # +2
                     row(4, KIND_TRADE, BUY, 100.5, 1.0),            # through the crossing ask: +1
                     row(5, KIND_DEPTH, ASK, 100.0, 0.0), row(6, KIND_DEPTH, ASK, 100.0, 2.0),  # +2
                     row(7, KIND_TRADE, SELL, 99.5, 1.0),            # through our bid: +1
                     row(8, KIND_SNAPSHOT, ASK, 100.0, 1.0, flags=F_CLEAR | F_BATCH_END)])  # +1
    log = fills((1, BUY, 2, 1, 100.0, 3.0, "maker"), (1, BUY, 3, 1, 100.0, 2.0, "maker"),
                (1, BUY, 6, 1, 100.0, 3.0, "maker"), (1, BUY, 8, 1, 100.0, 2.0, "maker"))
    assert check_fills(ev, log) == []
    more = fills((1, BUY, 2, 1, 100.0, 3.0, "maker"), (1, BUY, 8, 1, 100.0, 8.0, "maker"))
    assert kinds(check_fills(ev, more)) == ["liquidity"]


def test_trades_before_arrival_do_not_count():
    ev = event_rows([row(0, KIND_DEPTH, ASK, 101.0, 1.0), row(5, KIND_TRADE, SELL, 100.0, 2.0),
                     row(12, KIND_TRADE, SELL, 100.0, 2.0)])
    ok = fills((1, BUY, 12, 11, 100.0, 2.0, "maker"))
    assert check_fills(ev, ok) == []
    # the trade at 5 ms filling an order that arrives at 11 ms (issue 7 item 1), with the fill
    # stamped at the trade's time or (hidden) at the arrival
    early = fills((1, BUY, 5, 11, 100.0, 2.0, "maker"))
    assert kinds(check_fills(ev, early)) == ["arrival"]
    hidden = fills((1, BUY, 11, 11, 100.0, 2.0, "maker"), (1, BUY, 12, 11, 100.0, 2.0, "maker"))
    assert kinds(check_fills(ev, hidden)) == ["liquidity"]


def test_taker_fill_bounded_by_displayed_size_at_arrival():
    ev = event_rows([row(0, KIND_DEPTH, ASK, 100.0, 3.0), row(0, KIND_DEPTH, ASK, 100.25, 1.0),
                     row(1, KIND_DEPTH, BID, 100.25, 5.0)])  # uncrosses both asks at 1 ms
    late = fills((1, BUY, 1, 1, 100.0, 3.0, "taker"), (1, BUY, 1, 1, 100.25, 1.0, "taker"))
    assert check_fills(ev, fills((1, BUY, 0, 0, 100.0, 3.0, "taker"), (1, BUY, 0, 0, 100.25, 1.0, "taker"))) == []
    assert kinds(check_fills(ev, late)) == ["liquidity"]  # at 1 ms the bid at 100.25 has removed them
    assert kinds(check_fills(ev, fills((1, BUY, 0, 0, 100.0, 4.0, "taker")))) == ["liquidity"]


def test_arrival_checks():
    ev = event_rows([row(0, KIND_TRADE, SELL, 100.0, 5.0), row(3, KIND_TRADE, SELL, 100.0, 5.0)])
    assert check_fills(ev, fills((1, BUY, 3, 2, 100.0, 1.0, "maker"))) == []
    assert kinds(check_fills(ev, fills((1, BUY, 3, 4, 100.0, 1.0, "maker")))) == ["arrival"]
    split = fills((1, BUY, 3, 2, 100.0, 1.0, "maker"), (1, BUY, 3, 1, 100.0, 1.0, "maker"))
    assert kinds(check_fills(ev, split)) == ["arrival"]


def test_halt_and_default_windows():
    ev = event_rows([row(k, KIND_TRADE, SELL, 100.0, 5.0, venue=1) for k in range(10)])
    log = fills((1, BUY, 2, 1, 100.0, 1.0, "maker"), (1, BUY, 5, 1, 100.0, 1.0, "maker"), venue=1)
    assert check_fills(ev, log, halts=[(1, at(3), at(5))], defaults=[(1, at(6)), (0, at(0))]) == []
    assert kinds(check_fills(ev, log, halts=[(1, at(5), at(6))])) == ["halt"]
    assert kinds(check_fills(ev, log, defaults=[(1, at(5))])) == ["default"]
    named = log.with_columns(pl.col("venue").replace_strict({1: "kraken"}, return_dtype=pl.String),
                             pl.lit("AAPLx").alias("instrument"))
    kw = dict(venues=["bybit", "kraken"], instruments=["AAPLx"])
    assert check_fills(ev, named, **kw) == []
    assert kinds(check_fills(ev, named, defaults=[("kraken", at(2))], **kw)) == ["default"]
    with pytest.raises(ValueError, match="pass venues="):
        check_fills(ev, named)


def test_orders_frame_checks():
    ev = event_rows([row(k, KIND_TRADE, SELL, 100.0, 5.0) for k in range(10)])
    log = fills((1, BUY, 2, 1, 100.0, 1.0, "maker"), (2, BUY, 5, 1, 100.0, 1.0, "maker"))
    good = pl.DataFrame({"order_id": [1, 2], "arrival_ts": [at(1), at(1)], "cancel_ts": [None, at(5)],
                         "state": ["filled", "cancelled"]})
    assert check_fills(ev, log, good) == []
    late = good.with_columns(pl.Series("cancel_ts", [None, at(4)]))
    assert kinds(check_fills(ev, log, late)) == ["cancel"]
    open_ = good.with_columns(pl.Series("state", ["filled", "open"]))
    assert kinds(check_fills(ev, log, open_)) == ["final"]
    moved = good.with_columns(pl.Series("arrival_ts", [at(1), at(0)]))
    assert kinds(check_fills(ev, log, moved)) == ["arrival"]
    assert kinds(check_fills(ev, log, good.filter(pl.col("order_id") == 1))) == ["orders"]


def test_prices_within_float_noise_are_the_same_level():
    # our limit comes off the tick grid (207.48000000000002), the data's prices are parsed (207.48)
    limit = 20748 * 0.01
    assert limit != 207.48
    ev = event_rows([row(0, KIND_DEPTH, BID, 207.47, 5.0), row(2, KIND_TRADE, BUY, 207.48, 3.0),
                     row(3, KIND_DEPTH, BID, 207.48, 2.0)])
    assert check_fills(ev, fills((1, SELL, 2, 1, limit, 3.0, "maker"))) == []
    assert check_fills(ev, fills((2, SELL, 4, 4, limit, 2.0, "taker"))) == []
    assert kinds(check_fills(ev, fills((1, SELL, 2, 1, limit, 4.0, "maker")))) == ["liquidity"]


def test_orders_parquet_columns():
    ev = event_rows([row(k, KIND_TRADE, SELL, 100.0, 5.0) for k in range(10)])
    log = fills((1, BUY, 2, 1, 100.0, 1.0, "maker"), (2, BUY, 5, 1, 100.0, 1.0, "maker"))
    orders = pl.DataFrame({"order_id": [1, 2], "arrival_ts": [at(1), at(1)], "final_ts": [at(2), at(5)],
                           "state": ["filled", "cancelled"], "reason": ["", "user"]})
    assert check_fills(ev, log, orders) == []
    early = orders.with_columns(pl.Series("final_ts", [at(2), at(4)]))
    assert kinds(check_fills(ev, log, early)) == ["cancel", "final"]
    ended = orders.with_columns(pl.Series("final_ts", [at(1), at(5)]))
    assert kinds(check_fills(ev, log, ended)) == ["final"]
