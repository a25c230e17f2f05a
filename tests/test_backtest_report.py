"""The HTML report: self-contained, has its charts and tables, and stays small for a week of samples."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from backtest.charts import downsample_minmax, nice_ticks
from backtest.metrics import summarize
from backtest.report import SESSION_SHADES, session_bands, write_report
from stockbridge.sessions import SessionCalendar

NS = 1_000_000_000
START = 1_751_500_800 * NS  # 2025-07-03 00:00 UTC: half day, holiday, weekend, Monday
VENUES = ["bybit", "kraken", "broker"]


@pytest.fixture(scope="module")
def week():
    """A synthetic week: 60 s samples, 1 s fair track, 3000 fills; shapes only, values arbitrary."""
    rng = np.random.default_rng(3)
    ts = START + np.arange(0, 7 * 86400, 60, dtype=np.int64) * NS
    session = SessionCalendar(int(ts[0]), int(ts[-1])).state_at(ts)
    fair = 210.0 + np.cumsum(rng.normal(0, 0.05, len(ts)))
    cols = {
        "ts": ts,
        "session": pl.Series(session, dtype=pl.Int8),
        "fair": fair,
        "fair_share": fair,
        "equity_raw": 300_000 + np.cumsum(rng.normal(0.1, 2, len(ts))),
        "net_delta": np.cumsum(rng.normal(0, 1, len(ts))),
        "pnl_inventory_cum": np.zeros(len(ts)),
    }
    cols["equity_haircut"] = cols["equity_raw"] * 0.95
    for v in VENUES:
        quoted = v != "broker"
        half = np.where(session == 2, 0.05, 0.2)
        cols |= {
            f"pos_{v}": np.cumsum(rng.normal(0, 1, len(ts))),
            f"cash_{v}": np.full(len(ts), 100_000.0),
            f"exposure_{v}": 100_000 + np.cumsum(rng.normal(0, 50, len(ts))),
            f"cap_{v}": np.full(len(ts), 150_000.0 if quoted else np.inf),
            f"bid_{v}": fair - half if quoted else np.full(len(ts), np.nan),
            f"ask_{v}": fair + half if quoted else np.full(len(ts), np.nan),
            f"mkt_bid_{v}": fair - 0.08,
            f"mkt_ask_{v}": fair + 0.08,
        }
    timeseries = pl.DataFrame(cols)
    track_ts = START + np.arange(0, 7 * 86400, 1, dtype=np.int64) * NS
    fair_track = pl.DataFrame({"ts": track_ts, "fair": np.interp(track_ts, ts, fair)}).with_columns(
        pl.col("fair").alias("fair_share")
    )
    n = 3000
    fts = np.sort(rng.integers(START, int(ts[-1]), n))
    side = rng.choice([-1, 1], n)
    ffair = np.interp(fts, ts, fair)
    venue = rng.choice(VENUES, n)
    fills = pl.DataFrame(
        {
            "ts": fts,
            "local_ts": fts + 10_000_000,
            "venue": venue,
            "instrument": np.where(venue == "broker", "AAPL", "AAPLx"),
            "side": pl.Series(side, dtype=pl.Int8),
            "price": ffair - side * 0.03,
            "qty": rng.uniform(0.1, 5, n),
            "fee": rng.normal(0.01, 0.02, n),
            "liquidity": rng.choice(["maker", "taker"], n),
            "order_id": np.arange(n, dtype=np.int64),
            "tag": np.where(venue == "broker", "hedge", "quote"),
            "fair": ffair,
            "multiplier": np.ones(n),
        }
    )
    totals = {
        "events": 5_000_000, "simulated_seconds": 7 * 86400.0, "wall_seconds": 12.0,
        "equity_initial_raw": 300_000.0, "equity_final_raw": float(cols["equity_raw"][-1]),
        "equity_final_after_haircut": float(cols["equity_haircut"][-1]), "pnl_inventory": 0.0,
        "borrow_cost": 1.5, "default_loss": 0.0, "venues": VENUES, "seed": 7, "config": "configs/demo.toml",
    }
    return fills, timeseries, fair_track, summarize(fills, timeseries, fair_track, totals)


@pytest.fixture(scope="module")
def html(week, tmp_path_factory):
    fills, timeseries, fair_track, summary = week
    path = write_report(tmp_path_factory.mktemp("r") / "out" / "report.html", summary, fills, timeseries, fair_track, "demo")
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(html):
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_report_has_every_chart_and_table(html):
    for title in (
        "PnL decomposition",
        "Equity (quote ccy)",
        "Token fair value and our token fills",
        "Inventory per venue",
        "Exposure at bybit against its cap",
        "Exposure at kraken against its cap",
        "Exposure at broker against its cap",
        "Median spread by session",
        "Markouts",
    ):
        assert title in html, title
    assert html.count("<svg") == 9
    assert html.count("<table") == 3
    assert "<th>venue</th>" in html and "<th>session</th>" in html
    for name in VENUES + ["regular", "overnight", "closed"]:
        assert f"<td>{name}</td>" in html
    # session shading is drawn: the week has regular, extended, overnight and closed time
    for color in set(SESSION_SHADES.values()):
        assert f'fill="{color}"' in html


def test_long_series_are_thinned(html):
    # 10,080 samples and 604,800 fair-track points; each polyline carries at most ~2000 points
    counts = [len(m.split()) for m in re.findall(r'<polyline points="([^"]*)"', html)]
    assert counts and max(counts) <= 2000
    assert len(html) < 1_500_000


def test_downsample_keeps_extremes_and_order():
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    y[31_337] = 9.0
    y[77_777] = -9.0
    xs, ys = downsample_minmax(x, y, 2000)
    assert len(xs) <= 2000 and np.all(np.diff(xs) > 0)
    assert ys.max() == 9.0 and ys.min() == -9.0
    short_x, short_y = downsample_minmax(x[:50], y[:50], 2000)
    assert len(short_x) == 50


def test_nice_ticks():
    assert nice_ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    # range 0.28 / 5 ticks = 0.056 -> the next round step is 0.1
    assert nice_ticks(99.93, 100.21) == pytest.approx([100.0, 100.1, 100.2])


def test_session_bands_follow_runs_of_states():
    ts = pl.DataFrame({"ts": [0, 60, 120, 180, 240], "session": pl.Series([2, 2, 3, 3, 0], dtype=pl.Int8)})
    bands = session_bands(ts)
    assert [(b.x0, b.x1, b.color) for b in bands] == [
        (0, 120, SESSION_SHADES[2]),
        (120, 240, SESSION_SHADES[3]),
        (240, 240, SESSION_SHADES[0]),
    ]
