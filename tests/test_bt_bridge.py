"""backtrader bridge: the fill-log cross-check and the bar-resolution engine, on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from numba import njit

from backtest.bt_bridge import BARS_LIMITATIONS, crosscheck_with_backtrader, run_backtrader_bars
from stockbridge.config import RiskConfig
from stockbridge.errors import DataError
from stockbridge.instruments import Venue

NS = 1_000_000_000
B = 1_751_896_800 * NS  # Mon 2025-07-07 14:00 UTC = 10:00 New York, regular session


def _fills(rows):
    cols = ["t", "venue", "instrument", "side", "price", "qty", "fee"]
    df = pl.DataFrame([dict(zip(cols, r)) for r in rows])
    return df.select(
        (B + pl.col("t") * NS).cast(pl.Int64).alias("ts"),
        "venue",
        "instrument",
        pl.col("side").cast(pl.Int8),
        pl.col("price").cast(pl.Float64),
        pl.col("qty").cast(pl.Float64),
        pl.col("fee").cast(pl.Float64),
    )


# bybit (cash 1000): buy 2 @ 100 (rebate 0.02), sell 3 @ 100.5 (fee 0.10, crosses through zero),
#   sell 0.5 @ 101 (rebate 0.005) -> cash 1000 - 200 + 0.02 + 301.5 - 0.10 + 50.5 + 0.005 = 1151.925,
#   position -1.5, value at mark 102: 1151.925 - 153 = 998.925
# kraken (cash 50): buy 1 @ 100 (fee 0.26) at the same ts as bybit's first fill -> cash -50.26,
#   then sell 0.4 @ 99 (fee 0.1) -> cash -50.26 + 39.6 - 0.1 = -10.76; position 0.6; value -10.76 + 61.2 = 50.44
# broker (cash 10): sell 1 AAPL @ 50 (fee 0.05), buy 1 @ 49 (fee 0.01) -> 10.94, flat, value 10.94
FILLS = _fills(
    [
        (0, "bybit", "AAPLx", 1, 100.0, 2.0, -0.02),
        (0, "kraken", "AAPLx", 1, 100.0, 1.0, 0.26),
        (0, "bybit", "AAPLx", -1, 100.5, 3.0, 0.10),
        (2, "broker", "AAPL", -1, 50.0, 1.0, 0.05),
        (3, "bybit", "AAPLx", -1, 101.0, 0.5, -0.005),
        (4, "kraken", "AAPLx", -1, 99.0, 0.4, 0.1),
        (5, "broker", "AAPL", 1, 49.0, 1.0, 0.01),
    ]
)
CASH = {"bybit": 1000.0, "kraken": 50.0, "broker": 10.0}
MARKS = {"AAPLx": 102.0, "AAPL": 51.0}
HAND = {
    "bybit": (1151.925, {"AAPLx": -1.5}, 998.925),
    "kraken": (-10.76, {"AAPLx": 0.6}, 50.44),
    "broker": (10.94, {"AAPL": 0.0}, 10.94),
}
REPORTED = {v: {"cash": cash, "positions": pos} for v, (cash, pos, _) in HAND.items()}


def test_backtrader_agrees_with_our_accounting_and_the_hand_figures():
    r = crosscheck_with_backtrader(FILLS, CASH, MARKS, reported=REPORTED)
    assert r["agrees"] and r["max_abs_diff"] < 1e-6
    for venue, (cash, positions, value) in HAND.items():
        block = r["venues"][venue]
        assert block["fills_executed_by_backtrader"] == block["fills"]
        assert block["cash"]["backtrader"] == pytest.approx(cash, abs=1e-9)
        assert block["cash"]["ours"] == pytest.approx(cash, abs=1e-9)
        assert block["value"]["backtrader"] == pytest.approx(value, abs=1e-9)
        for inst, q in positions.items():
            assert block["positions"][inst]["backtrader"] == pytest.approx(q, abs=1e-12)
    json.dumps(r, allow_nan=False)


def test_a_tampered_fill_is_reported_as_a_difference():
    # the fill log loses 0.25 on kraken's sale: the balances the engine reported no longer match it
    tampered = FILLS.with_columns(pl.when(pl.col("venue").eq("kraken") & pl.col("side").eq(-1)).then(98.375).otherwise(pl.col("price")).alias("price"))
    r = crosscheck_with_backtrader(tampered, CASH, MARKS, reported=REPORTED)
    assert not r["agrees"]
    kraken = r["venues"]["kraken"]
    assert kraken["cash"]["diff_reported"] == pytest.approx(-0.25, abs=1e-9)
    assert kraken["value"]["diff_reported"] == pytest.approx(-0.25, abs=1e-9)
    assert abs(r["venues"]["bybit"]["cash"]["diff_reported"]) < 1e-9
    assert r["max_abs_diff"] == pytest.approx(0.25, abs=1e-9)


def test_a_tampered_fee_or_size_is_reported_too():
    fee = FILLS.with_columns(pl.when(pl.col("venue") == "broker").then(pl.col("fee") * 2).otherwise(pl.col("fee")).alias("fee"))
    r = crosscheck_with_backtrader(fee, CASH, MARKS, reported=REPORTED)
    assert not r["agrees"] and r["venues"]["broker"]["cash"]["diff_reported"] == pytest.approx(-0.06, abs=1e-9)
    size = FILLS.with_columns(pl.when(pl.col("qty") == 0.5).then(0.6).otherwise(pl.col("qty")).alias("qty"))
    r = crosscheck_with_backtrader(size, CASH, MARKS, reported=REPORTED)
    assert r["venues"]["bybit"]["positions"]["AAPLx"]["diff_reported"] == pytest.approx(-0.1, abs=1e-12)


def test_missing_cash_or_mark_is_a_one_line_error():
    with pytest.raises(DataError, match=r"row 4: field 'venue': venue 'broker' has no initial cash"):
        crosscheck_with_backtrader(FILLS, {"bybit": 1.0, "kraken": 1.0}, MARKS)
    with pytest.raises(DataError, match="AAPL"):
        crosscheck_with_backtrader(FILLS, CASH, {"AAPLx": 1.0})
    with pytest.raises(DataError, match=r"row 2: field 'qty'"):
        crosscheck_with_backtrader(FILLS.with_columns(pl.when(pl.col("venue") == "kraken").then(0.0).otherwise(pl.col("qty")).alias("qty")), CASH, MARKS)


# -- bar engine --------------------------------------------------------------------------------


@njit(cache=True)
def one_point_quoter(ctx, params, quotes, takes):
    """Bid fair - params[0], ask fair + params[0], params[1] tokens, on venue 0."""
    quotes[0, 0, 0, 0] = ctx.fair - params[0]
    quotes[0, 0, 0, 1] = params[1]
    quotes[0, 1, 0, 0] = ctx.fair + params[0]
    quotes[0, 1, 0, 1] = params[1]
    return 0


@njit(cache=True)
def ask_taker(ctx, params, quotes, takes):
    """Buys params[1] tokens at the book's ask on every decision."""
    takes[0, 0] = 0.0
    takes[0, 1] = 1.0
    takes[0, 2] = ctx.ask[0]
    takes[0, 3] = params[1]
    return 1


VENUE = Venue(kind="cex_spot", instruments={"AAPLx": "AAPLX/USDT"}, maker_fee_bps=-1.0, taker_fee_bps=10.0,
              tick_size=0.01, lot_size=1.0, min_notional=0.0)


def _bars(rows):
    o, h, l, c = (np.array(x, dtype=np.float64) for x in zip(*rows))
    return pl.DataFrame({"ts": B + np.arange(len(rows)) * 60 * NS, "open": o, "high": h, "low": l, "close": c, "volume": np.full(len(rows), 5.0)})


# Decisions at each bar's close from bar 1 on (bar 0 has no move to measure sigma from):
#   bar 1 close 100   -> bid 99,  ask 101
#   bar 2 low 98.9    -> buy 1 @ 99 (marked at close 99.5);        next bid 98.5, ask 100.5
#   bar 3 open 100.6  -> sell 1 @ 100.6, opened through the ask (marked at close 100.2); next 99.2 / 101.2
#   bar 4             -> nothing;                                   next 99.1 / 101.1
#   bar 5 low 99.0    -> buy 1 @ 99.1 (marked at close 99.3)
# maker rebate 1 bp: 0.0099 + 0.01006 + 0.00991 = 0.02987
BARS = _bars(
    [
        (100.0, 100.2, 99.8, 100.0),
        (100.0, 100.2, 99.8, 100.0),
        (100.0, 100.5, 98.9, 99.5),
        (100.6, 100.8, 100.0, 100.2),
        (100.2, 100.4, 100.0, 100.1),
        (100.1, 100.3, 99.0, 99.3),
    ]
)


def test_bar_engine_fills_where_the_bar_range_reaches_the_quotes():
    params = np.array([1.0, 1.0])
    r = run_backtrader_bars(BARS, one_point_quoter, params, VENUE, RiskConfig(), venue_name="bybit", spread_z=0.0)
    fills = r.pop("fills")
    assert fills.select("side", "qty", "liquidity", "tag").rows() == [
        (1, 1.0, "maker", "quote"),
        (-1, 1.0, "maker", "quote"),
        (1, 1.0, "maker", "quote"),
    ]
    assert fills["price"].to_list() == pytest.approx([99.0, 100.6, 99.1], abs=1e-12)
    assert fills["ts"].to_list() == [B + 180 * NS, B + 240 * NS, B + 360 * NS]
    assert fills["fee"].to_list() == pytest.approx([-0.0099, -0.01006, -0.00991])
    assert fills["fair"].to_list() == [99.5, 100.2, 99.3]
    assert r["decisions"] == 5 and r["fills_count"] == 3
    assert r["spread_capture"] == pytest.approx(0.5 + 0.4 + 0.2)
    assert r["position_final"] == 1.0
    assert r["cash_final"] == pytest.approx(100_000 - 99.0 + 100.6 - 99.1 + 0.02987)
    assert r["pnl_total"] == pytest.approx(1.1 + 0.7 + 0.02987)  # edge + inventory (99.5 -> 100.2 held) + rebates
    assert r["limitations"] == list(BARS_LIMITATIONS) and len(r["limitations"]) >= 5
    assert any("queue" in s for s in r["limitations"]) and any("latency" in s for s in r["limitations"])
    series = r.pop("series")  # one row per decision: what the report and summarize() need
    assert series["position"].to_list()[-1] == 1.0 and series.height == len(BARS)
    json.dumps(r, allow_nan=False)


def test_bar_engine_takes_pay_the_taker_fee_and_fill_at_the_next_open():
    # crude ask at bar 1's close: 100 + (100.2 - 99.8)/2 = 100.2; bar 2 opens at 100.0 <= 100.2: buy @ 100.0
    bars = BARS.head(3)
    r = run_backtrader_bars(bars, ask_taker, np.array([0.0, 2.0]), VENUE, RiskConfig(), spread_z=0.0)
    fills = r.pop("fills")
    assert fills.select("side", "price", "qty", "liquidity").rows() == [(1, 100.0, 2.0, "taker")]
    assert fills["fee"][0] == pytest.approx(200.0 * 10e-4)


def test_bar_engine_respects_the_core_position_bound():
    # every bar takes 2 tokens; max_position 3 lets the core send 2, then 1, then nothing
    bars = _bars([(100.0, 100.2, 99.8, 100.0)] * 6)
    r = run_backtrader_bars(bars, ask_taker, np.array([0.0, 2.0]), VENUE, RiskConfig(max_position=3.0), spread_z=0.0)
    assert r["fills"]["qty"].to_list() == [2.0, 1.0] and r["position_final"] == 3.0


def test_bad_bars_are_one_line_errors():
    with pytest.raises(DataError, match=r"bars.parquet: row 3: field 'high'"):
        run_backtrader_bars(BARS.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(98.0).otherwise(pl.col("high")).alias("high")),
                            one_point_quoter, np.array([1.0, 1.0]), VENUE, RiskConfig(), source="bars.parquet")
    with pytest.raises(DataError, match=r"row 2: field 'ts'"):
        run_backtrader_bars(BARS.with_columns(pl.lit(B).alias("ts")), one_point_quoter, np.array([1.0, 1.0]), VENUE, RiskConfig())
    with pytest.raises(DataError, match="field 'volume': missing column"):
        run_backtrader_bars(BARS.drop("volume"), one_point_quoter, np.array([1.0, 1.0]), VENUE, RiskConfig())
