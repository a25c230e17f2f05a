"""A run that did little says why: warnings in summary.json and on the console (backtest.diagnostics)."""

from __future__ import annotations

import numpy as np
import polars as pl
from engine_fixtures import ALPHA, BROKER, MS, NS, QUOTE, T0, make_config, quote, run, script, write_store

from backtest.diagnostics import quoting_warnings


def _rows(t_to_ms: int = 3000) -> list[tuple]:
    rows = []
    for t in range(T0, T0 + t_to_ms * MS, 100 * MS):
        rows += quote(BROKER, t, 99.99, 500.0, 100.01, 500.0) + quote(ALPHA, t + 1 * MS, 99.98, 5.0, 100.02, 5.0)
    return rows


def test_a_quote_venue_without_data_and_a_run_without_fills_are_warned_about(tmp_path):
    # alpha and beta are both quotable; the store holds alpha and the broker only. The scripted quotes
    # sit far outside alpha's market: nothing fills, and they never came within its best.
    cfg = make_config(tmp_path / "c.toml")
    params = script((T0 - NS, T0 + 10 * NS, ALPHA, 1, 99.00, 1.0, QUOTE), (T0 - NS, T0 + 10 * NS, ALPHA, -1, 101.00, 1.0, QUOTE))
    summary, _ = run(cfg, write_store(tmp_path / "s", _rows()), params)
    w = summary["warnings"]
    assert "beta: configured to quote but the store has no data for it" in w
    assert "no fills at all in this run" in w
    never = [x for x in w if x.startswith("alpha: our quotes never came within the market's best")]
    assert len(never) == 1
    # ours 99.00 / 101.00 around 100: 200 bps; market 99.98 / 100.02: 4 bps
    assert "ours 200 bps, market 4 bps" in never[0]


def test_quotes_at_the_touch_raise_no_warning():
    ts = pl.DataFrame({"bid_v": [99.98, np.nan], "ask_v": [100.05, 100.05], "mkt_bid_v": [99.98, 99.97], "mkt_ask_v": [100.02, 100.02]})
    assert quoting_warnings(ts, ["v"]) == []
    far = ts.with_columns(pl.col("bid_v") - 1.0)
    assert len(quoting_warnings(far, ["v"])) == 1
    never = ts.with_columns(pl.lit(np.nan).alias("bid_v"), pl.lit(np.nan).alias("ask_v"))
    assert quoting_warnings(never, ["v"])[0].startswith("v: no quote rested there")
