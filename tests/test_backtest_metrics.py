"""Summary metrics on a hand-made two-venue run whose every figure is worked out by hand below.

Run: bybit quotes AAPLx (multiplier 2), broker hedges in AAPL. Token fair 100 for t < 5 s,
100.5 for 5 s <= t < 30 s, 101 after (share fair = token / 2). Start cash 1000 at each venue.

fill  t(s)  venue   side  price  qty  fee    tag    fair   edge
 1     0    bybit   buy   99.9    2   -0.02  quote  100    +0.2
 2     2    bybit   sell  100.2   1    0     quote  100    +0.2
 3     3    broker  sell  49.9    1    0.05  hedge  50     -0.1
 4    10    bybit   sell  100.4   1    0.30  arb    100.5  -0.1
 5   100    bybit   buy   100.9   1    0.01  quote  101    +0.1

Cash: bybit 1000 - 199.8 + 0.02 + 100.2 + 100.4 - 0.3 - 100.9 - 0.01 = 899.61, position 1 token;
broker 1000 + 49.9 - 0.05 - 0.01 (borrow) = 1049.84, position -1 share.
Final equity 899.61 + 101 + 1049.84 - 50.5 = 1999.95, so pnl_total = -0.05.
Inventory: bybit holds 1 token through the 100 -> 100.5 step (+0.5); the broker is short 1 share
through 50 -> 50.25 -> 50.5 (-0.5): pnl_inventory = 0.
Identity: 0.5 - 0.1 - 0.1 + 0 - 0.34 fees - 0.01 borrow - 0 default = -0.05.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from backtest.metrics import max_drawdown, sharpe, summarize

NS = 1_000_000_000
B = 1_751_896_800 * NS  # 2025-07-07 14:00:00 UTC
NAN = float("nan")


def _fills(rows):
    cols = ["t", "venue", "instrument", "side", "price", "qty", "fee", "liquidity", "tag", "fair", "multiplier"]
    df = pl.DataFrame([dict(zip(cols, r)) for r in rows])
    return df.select(
        (B + pl.col("t") * NS).cast(pl.Int64).alias("ts"),
        (B + pl.col("t") * NS + 5_000_000).cast(pl.Int64).alias("local_ts"),
        "venue",
        "instrument",
        pl.col("side").cast(pl.Int8),
        pl.col("price").cast(pl.Float64),
        pl.col("qty").cast(pl.Float64),
        pl.col("fee").cast(pl.Float64),
        "liquidity",
        pl.int_range(pl.len(), dtype=pl.Int64).alias("order_id"),
        "tag",
        pl.col("fair").cast(pl.Float64),
        pl.col("multiplier").cast(pl.Float64),
    )


FILLS = _fills(
    [
        (0, "bybit", "AAPLx", 1, 99.9, 2, -0.02, "maker", "quote", 100.0, 2.0),
        (2, "bybit", "AAPLx", -1, 100.2, 1, 0.0, "maker", "quote", 100.0, 2.0),
        (3, "broker", "AAPL", -1, 49.9, 1, 0.05, "taker", "hedge", 50.0, 1.0),
        (10, "bybit", "AAPLx", -1, 100.4, 1, 0.30, "taker", "arb", 100.5, 2.0),
        (100, "bybit", "AAPLx", 1, 100.9, 1, 0.01, "maker", "quote", 101.0, 2.0),
    ]
)


def _fair_track():
    k = np.arange(121)
    fair = np.where(k < 5, 100.0, np.where(k < 30, 100.5, 101.0))
    return pl.DataFrame({"ts": B + k * NS, "fair": fair, "fair_share": fair / 2})


def _timeseries():
    return pl.DataFrame(
        {
            "ts": B + np.arange(0, 121, 30) * NS,
            "session": pl.Series([2, 2, 2, 3, 3], dtype=pl.Int8),
            "fair": [100.0, 101.0, 101.0, 101.0, 101.0],
            "fair_share": [50.0, 50.5, 50.5, 50.5, 50.5],
            "equity_raw": [2000.0, 2000.3, 1999.9, 2000.1, 1999.95],
            "equity_haircut": [1930.0, 1930.3, 1929.9, 1930.1, 1929.92],
            "net_delta": [4.0, -1.0, -1.0, -1.0, 1.0],
            "pnl_inventory_cum": [0.0, 0.0, 0.0, 0.0, 0.0],
            "pos_bybit": [2.0, 0.0, 0.0, 0.0, 1.0],
            "cash_bybit": [800.22, 1000.52, 1000.52, 1000.52, 899.61],
            "exposure_bybit": [1000.0, 1000.5, 999.5, 1000.2, 1000.61],
            "cap_bybit": [60000.0] * 5,
            "bid_bybit": [99.9, 100.4, NAN, 100.9, 100.8],
            "ask_bybit": [100.1, 100.6, NAN, 101.1, 101.2],
            "mkt_bid_bybit": [99.8, 100.3, 100.5, 100.8, 100.7],
            "mkt_ask_bybit": [100.2, 100.7, 100.5, 101.2, 101.3],
            "pos_broker": [0.0, -1.0, -1.0, -1.0, -1.0],
            "cash_broker": [1000.0, 1049.85, 1049.85, 1049.85, 1049.84],
            "exposure_broker": [1000.0, 999.35, 999.35, 999.35, 999.34],
            "cap_broker": [math.inf] * 5,
            "bid_broker": [NAN] * 5,
            "ask_broker": [NAN] * 5,
            "mkt_bid_broker": [50.0] * 5,
            "mkt_ask_broker": [50.005] * 5,
        }
    )


TOTALS = {
    "events": 12_000,
    "simulated_seconds": 120.0,
    "wall_seconds": 0.5,
    "equity_initial_raw": 2000.0,
    "equity_final_raw": 1999.95,
    "equity_final_after_haircut": 1929.92,
    "pnl_inventory": 0.0,
    "borrow_cost": 0.01,
    "default_loss": 0.0,
    "venues": ["bybit", "broker"],
    "seed": 7,
    "config": "configs/demo.toml",
}


@pytest.fixture(scope="module")
def summary():
    return summarize(FILLS, _timeseries(), _fair_track(), TOTALS)


def test_pnl_decomposition_adds_up_to_the_cent(summary):
    assert summary["pnl_total"] == pytest.approx(-0.05, abs=1e-9)
    assert summary["pnl_spread_capture"] == pytest.approx(0.5, abs=1e-9)
    assert summary["pnl_arb"] == pytest.approx(-0.1, abs=1e-9)
    assert summary["pnl_hedge"] == pytest.approx(-0.1, abs=1e-9)
    assert summary["fees_paid"] == pytest.approx(0.34, abs=1e-9)
    assert summary["borrow_cost"] == 0.01 and summary["default_loss"] == 0.0
    assert abs(summary["pnl_residual"]) < 1e-9
    assert summary["haircut_charge"] == pytest.approx(70.03, abs=1e-9)


def test_residual_reports_what_the_fills_do_not_explain():
    off = dict(TOTALS, equity_final_raw=1999.95 + 1.25)
    assert summarize(FILLS, _timeseries(), _fair_track(), off)["pnl_residual"] == pytest.approx(1.25, abs=1e-9)


def test_counts_volume_and_throughput(summary):
    assert (summary["fills"], summary["fills_maker"], summary["fills_taker"]) == (5, 3, 2)
    assert (summary["fills_hedge"], summary["fills_arb"]) == (1, 1)
    assert summary["volume"] == pytest.approx(6.0)
    assert summary["notional"] == pytest.approx(199.8 + 100.2 + 49.9 + 100.4 + 100.9)
    assert summary["events_per_second"] == pytest.approx(24_000.0)


def test_markouts_use_the_share_fair_for_hedges_and_skip_horizons_past_the_track(summary):
    # 1 s: 0.1*2 + 0.2 - 0.1 - 0.1 + 0.1 = 0.3 over 6 units
    assert summary["markout_1s"] == pytest.approx(0.3 / 6)
    # 10 s: 0.6*2 - 0.3 - (50.25-49.9) - 0.1 + 0.1 = 0.55 over 6 units
    assert summary["markout_10s"] == pytest.approx(0.55 / 6)
    # 60 s: fill 5 is left out (t + 60 s is past the 120 s track): 2.2 - 0.8 - 0.6 - 0.6 = 0.2 over 5
    assert summary["markout_60s"] == pytest.approx(0.2 / 5)
    assert summary["by_venue"]["broker"]["markout_10s"] == pytest.approx(-0.35)


def test_drawdown_from_the_equity_series(summary):
    assert summary["max_drawdown"] == pytest.approx(0.4)
    assert summary["max_drawdown_frac"] == pytest.approx(0.4 / 2000.3)


def test_sharpe_is_annualised_per_sample():
    ts = np.arange(4) * 30 * NS
    # returns +10 %, -10 %, +10 %: mean/std = sqrt(3)/6; 30 s samples -> 1,051,920 per year
    got = sharpe(ts, np.array([100.0, 110.0, 99.0, 108.9]))
    assert got == pytest.approx(math.sqrt(3) / 6 * math.sqrt(365.25 * 86400 / 30))
    assert sharpe(ts, np.full(4, 100.0)) is None


def test_max_drawdown_helper():
    assert max_drawdown(np.array([10.0, 12.0, 9.0, 13.0, 11.0])) == (3.0, 0.25)


def test_by_venue(summary):
    bybit, broker = summary["by_venue"]["bybit"], summary["by_venue"]["broker"]
    assert list(summary["by_venue"]) == ["bybit", "broker"]
    assert (bybit["fills"], broker["fills"]) == (4, 1)
    assert bybit["fees"] == pytest.approx(0.29) and broker["fees"] == pytest.approx(0.05)
    assert bybit["spread_capture"] == pytest.approx(0.5) and bybit["edge"] == pytest.approx(0.4)
    assert bybit["position_final"] == 1.0 and broker["position_final"] == -1.0
    assert bybit["exposure_max"] == pytest.approx(1000.61)
    assert bybit["exposure_max_frac_of_cap"] == pytest.approx(1000.61 / 60000)
    assert broker["exposure_cap"] is None and broker["exposure_max_frac_of_cap"] is None
    assert bybit["quote_uptime"] == pytest.approx(0.8) and broker["quote_uptime"] == 0.0


def test_by_session_spreads_are_pooled_over_quoted_venues(summary):
    reg, after = summary["by_session"]["regular"], summary["by_session"]["after"]
    assert (reg["fills"], after["fills"]) == (4, 1)
    assert reg["spread_capture"] == pytest.approx(0.4) and after["spread_capture"] == pytest.approx(0.1)
    assert reg["fees"] == pytest.approx(0.33) and after["fees"] == pytest.approx(0.01)
    assert reg["time_share"] == pytest.approx(0.6) and after["time_share"] == pytest.approx(0.4)
    assert reg["quoted_spread_bps_median"] == pytest.approx((20.0 + 0.2 / 100.5 * 1e4) / 2)
    assert after["quoted_spread_bps_median"] == pytest.approx((0.2 / 101 + 0.4 / 101) / 2 * 1e4)
    # broker's 1 bp market is not pooled: we never quoted there
    assert reg["market_spread_bps_median"] == pytest.approx(0.4 / 100.5 * 1e4)
    assert after["market_spread_bps_median"] == pytest.approx((0.4 / 101 + 0.6 / 101) / 2 * 1e4)
    closed = summary["by_session"]["closed"]
    assert closed["fills"] == 0 and closed["time_share"] == 0.0 and closed["quoted_spread_bps_median"] is None


def test_summary_is_json_ready_and_stable(summary):
    text = json.dumps(summary, allow_nan=False)
    again = json.dumps(summarize(FILLS, _timeseries(), _fair_track(), TOTALS), allow_nan=False)
    assert text == again
    assert list(summary)[:3] == ["config", "seed", "venues"]


def test_no_fills():
    empty = FILLS.clear()
    s = summarize(empty, _timeseries(), _fair_track(), dict(TOTALS, equity_final_raw=2000.0, borrow_cost=0.0))
    assert s["fills"] == 0 and s["pnl_spread_capture"] == 0.0 and s["markout_1s"] is None
    assert s["pnl_residual"] == 0.0
