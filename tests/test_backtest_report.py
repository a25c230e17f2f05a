"""The HTML report: offline and self-contained, every chart has data, axis titles and a legend, the
figures carry exactly the data they were given, and (where Chromium is installed) the page renders."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest.charts import MAX_LINE_POINTS, VENUE_FAMILIES, downsample_minmax, drop_repeats, nice_axis
from backtest.metrics import daily_sharpe, summarize
from backtest.report import FORMATS, SESSION_SHADES, UNITS, fmt, session_runs, write_report
from backtest.report_page import read_figures
from stockbridge.sessions import STATE_NAMES, SessionCalendar

NS = 1_000_000_000
MS = 1_000_000
START = 1_751_500_800 * NS  # 2025-07-03 00:00 UTC: half day, holiday, weekend, Monday
VENUES = ["bybit", "kraken", "broker"]
TIME_CHARTS = ["equity", "fair", *(f"quotes-{v}" for v in VENUES), "inventory", "exposure"]
BAR_CHARTS = ["pnl", "spread", "markouts"]
CHROMIUM = Path("/usr/bin/chromium")


def _totals(equity_raw, equity_haircut, venues, seconds):
    return {
        "events": 5_000_000, "simulated_seconds": seconds, "wall_seconds": 12.0,
        "equity_initial_raw": float(equity_raw[0]), "equity_final_raw": float(equity_raw[-1]),
        "equity_final_after_haircut": float(equity_haircut[-1]), "pnl_inventory": 0.0,
        "borrow_cost": 1.5, "default_loss": 0.0, "venues": venues, "seed": 7, "config": "configs/demo.toml",
    }


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
    totals = _totals(cols["equity_raw"], cols["equity_haircut"], VENUES, 7 * 86400.0)
    return fills, timeseries, fair_track, summarize(fills, timeseries, fair_track, totals)


@pytest.fixture(scope="module")
def html(week, tmp_path_factory):
    fills, timeseries, fair_track, summary = week
    path = write_report(tmp_path_factory.mktemp("r") / "out" / "report.html", summary, fills, timeseries, fair_track, "demo")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def figures(html):
    return read_figures(html)


# --- a tiny hand-made run whose figure data is known exactly -------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Four 60 s samples at two venues and three fills; the fills frame has an extra column and its
    columns in another order than the engine writes them (the report must not care)."""
    ts = START + np.array([0, 60, 120, 180], dtype=np.int64) * NS
    series = pl.DataFrame({
        "ts": ts,
        "session": pl.Series([2, 2, 3, 3], dtype=pl.Int8),
        "fair": [100.0, 100.5, 100.5, 101.0],
        "fair_share": [100.0, 100.5, 100.5, 101.0],
        "equity_raw": [1000.0, 1001.0, 1003.0, 1002.0],
        "equity_haircut": [950.0, 951.0, 953.0, 952.0],
        "net_delta": [0.0, 1.0, 1.0, 0.5],
        "pnl_inventory_cum": [0.0, 0.0, 0.0, 0.0],
        "pos_bybit": [0.0, 1.0, 1.0, 0.5], "cash_bybit": [500.0] * 4,
        "exposure_bybit": [500.0, 600.0, 600.5, 550.0], "cap_bybit": [2000.0] * 4,
        "bid_bybit": [99.9, 100.4, 100.4, float("nan")], "ask_bybit": [100.1, 100.6, 100.7, 101.1],
        "mkt_bid_bybit": [99.95, 100.45, 100.45, 100.95], "mkt_ask_bybit": [100.05, 100.55, 100.6, 101.05],
        "pos_broker": [0.0, 0.0, 0.0, 0.0], "cash_broker": [500.0] * 4,
        "exposure_broker": [500.0] * 4, "cap_broker": [float("inf")] * 4,
        "bid_broker": [float("nan")] * 4, "ask_broker": [float("nan")] * 4,
        "mkt_bid_broker": [99.9, 100.4, 100.4, 100.9], "mkt_ask_broker": [100.1, 100.6, 100.6, 101.1],
    })
    fills = pl.DataFrame({
        "tag": ["quote", "quote", "hedge"],
        "arrival_ts": ts[[0, 1, 2]] + 5 * MS,
        "price": [100.4, 100.7, 100.6],
        "venue": ["bybit", "bybit", "broker"],
        "ts": ts[[1, 2, 2]] + np.array([10, 20, 30]) * NS,
        "side": pl.Series([1, -1, 1], dtype=pl.Int8),
        "qty": [1.0, 0.5, 0.25],
        "fee": [-0.01, 0.125, 0.02],
        "liquidity": ["maker", "maker", "taker"],
        "local_ts": ts[[1, 2, 2]] + 11 * NS,
        "instrument": ["AAPLx", "AAPLx", "AAPL"],
        "order_id": [1, 2, 3],
        "fair": [100.5, 100.5, 100.5],
        "multiplier": [1.0, 1.0, 1.0],
    })
    track = pl.DataFrame({"ts": ts, "fair": series["fair"], "fair_share": series["fair_share"]})
    summary = summarize(fills, series, track, _totals(series["equity_raw"], series["equity_haircut"], ["bybit", "broker"], 180.0))
    path = write_report(tmp_path_factory.mktemp("tiny") / "report.html", summary, fills, series, track, "tiny")
    text = path.read_text(encoding="utf-8")
    return text, read_figures(text), summary, ts


def _without_plotly_js(html):
    """The page without the inlined plotly.js (whose own text says all sorts of things)."""
    return re.sub(r"<script type=\"text/javascript\">/\*\*\s*\* plotly\.js v.*?</script>", "", html, count=1, flags=re.S)


def _trace(fig, name):
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, (name, [t.get("name") for t in fig["data"]])
    return found[0]


def _xy(trace):
    return np.asarray(trace["x"], dtype=np.float64), np.asarray(trace["y"], dtype=np.float64)


def test_quotes_view_carries_our_quotes_the_market_and_each_fill(tiny):
    _, figs, _, ts = tiny
    fig = figs["fig-quotes-bybit"]
    ms = ts / MS
    x, y = _xy(_trace(fig, "our bid"))
    # the repeated 100.4 is dropped (exact for a step line); the NaN gap stays
    np.testing.assert_array_equal(x, ms[[0, 1, 3]])
    np.testing.assert_array_equal(y, [99.9, 100.4, np.nan])
    assert _trace(fig, "our bid")["line"]["shape"] == "hv"
    x, y = _xy(_trace(fig, "our ask"))
    np.testing.assert_array_equal(x, ms)
    np.testing.assert_array_equal(y, [100.1, 100.6, 100.7, 101.1])
    x, y = _xy(_trace(fig, "market ask"))
    np.testing.assert_array_equal(y, [100.05, 100.55, 100.6, 101.05])
    x, y = _xy(_trace(fig, "market bid"))
    np.testing.assert_array_equal(x, ms[[0, 1, 3]])
    np.testing.assert_array_equal(y, [99.95, 100.45, 100.95])
    buy, sell = _trace(fig, "buy fill (maker, quote)"), _trace(fig, "sell fill (maker, quote)")
    np.testing.assert_array_equal(_xy(buy)[0], [(ts[1] + 10 * NS) / MS])
    np.testing.assert_array_equal(_xy(buy)[1], [100.4])
    np.testing.assert_array_equal(_xy(sell)[1], [100.7])
    np.testing.assert_allclose(np.asarray(sell["customdata"]), [[0.5, 0.125]])
    np.testing.assert_allclose(np.asarray(buy["customdata"]), [[1.0, -0.01]])
    assert buy["mode"] == "markers" and buy["marker"]["symbol"] != sell["marker"]["symbol"]
    assert buy["marker"]["color"] != sell["marker"]["color"]
    for part in ("qty", "fee", "maker", "customdata[0]", "customdata[1]", "%{y"):
        assert part in sell["hovertemplate"]
    # the hedge fill shows on the broker's view, hollow (taker), and the broker has no quotes of ours
    broker = figs["fig-quotes-broker"]
    hedge = _trace(broker, "buy fill (taker, hedge)")
    assert hedge["marker"]["symbol"].endswith("-open")
    np.testing.assert_array_equal(_xy(hedge)[1], [100.6])
    assert not [t for t in broker["data"] if t["name"].startswith("our ")]
    assert "no quotes of ours" in broker["layout"]["title"]["text"]


def test_equity_pnl_and_exposure_figures_equal_their_inputs(tiny):
    _, figs, summary, ts = tiny
    x, y = _xy(_trace(figs["fig-equity"], "raw"))
    np.testing.assert_array_equal(x, ts / MS)
    np.testing.assert_array_equal(y, [1000.0, 1001.0, 1003.0, 1002.0])
    np.testing.assert_array_equal(_xy(_trace(figs["fig-equity"], "after haircut"))[1], [950.0, 951.0, 953.0, 952.0])
    pnl = figs["fig-pnl"]["data"][0]
    assert list(pnl["x"])[0] == "spread" and list(pnl["x"])[-1] == "total"
    assert np.asarray(pnl["y"])[-1] == pytest.approx(summary["pnl_total"]) == pytest.approx(2.0)
    assert np.asarray(pnl["y"])[list(pnl["x"]).index("fees")] == pytest.approx(-summary["fees_paid"])
    expo = figs["fig-exposure"]
    exposure, cap = _trace(expo, "bybit exposure"), _trace(expo, "bybit cap")
    np.testing.assert_array_equal(_xy(exposure)[1], [500.0, 600.0, 600.5, 550.0])
    np.testing.assert_array_equal(_xy(cap)[1], [2000.0, 2000.0])  # constant: first and last sample
    assert cap["line"]["dash"] == "dash" and exposure["line"].get("dash") in (None, "solid")
    # the same colour family, two different colours; another family for the next venue
    assert (exposure["line"]["color"], cap["line"]["color"]) == VENUE_FAMILIES[0]
    assert _trace(expo, "broker exposure")["line"]["color"] == VENUE_FAMILIES[1][0]
    assert not [t for t in expo["data"] if t["name"] == "broker cap"]  # no cap: no line
    for key, axis in expo["layout"].items():
        if key.startswith("yaxis"):
            assert axis["rangemode"] == "tozero", key


def test_sessions_are_named_as_the_tables_name_them(tiny, html):
    text, figs, _, ts = tiny
    names = {s["name"] for s in figs["fig-equity"]["layout"]["shapes"] if s.get("showlegend")}
    assert names == {"session: regular", "session: after"}
    shapes = figs["fig-equity"]["layout"]["shapes"]
    assert [(s["x0"], s["x1"]) for s in shapes] == [(ts[0] / MS, ts[2] / MS), (ts[2] / MS, ts[3] / MS)]
    assert "extended" not in _without_plotly_js(html) and "extended" not in _without_plotly_js(text)
    assert {n.split(": ")[1] for f in read_figures(html).values() for s in f["layout"].get("shapes", []) if (n := s.get("name"))} <= set(STATE_NAMES)
    for name in STATE_NAMES:
        assert f"<td>{name}</td>" in html


def test_sharpe_needs_30_daily_returns(week, html):
    *_, summary = week
    # a week: 6 complete UTC days, too few; the per-sample annualised figure is not shown either
    assert "not shown (6 daily returns)" in html
    assert fmt(summary["sharpe"], "ratio") not in html
    rng = np.random.default_rng(1)
    r = rng.normal(0.001, 0.01, 40)
    equity = 1000.0 * np.cumprod(np.r_[1.0, 1.0 + r])
    days = START + np.arange(41, dtype=np.int64) * 86400 * NS
    # samples every 6 h; the mark of a day is the sample at its midnight
    ts = np.sort(np.r_[days, days[:-1] + 6 * 3600 * NS])
    eq = np.interp(ts, days, equity)
    value, n = daily_sharpe(ts, eq)
    assert n == 40
    assert value == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(365))
    assert daily_sharpe(ts[ts <= days[29]], eq[ts <= days[29]]) == (None, 29)


def test_every_table_column_has_its_unit_and_numbers_one_format_per_kind(html):
    tables = re.findall(r"<table>(.*?)</table>", html, re.S)
    assert len(tables) == 3
    summary_head = re.findall(r"<th>(.*?)</th>", tables[0])
    assert summary_head == ["metric", "value", "unit"]
    for row in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", tables[0]):
        assert row[2] in UNITS.values(), row
    for table, first in ((tables[1], "venue"), (tables[2], "session")):
        head = re.findall(r"<th>(.*?)</th>", table)
        assert head[0] == first
        for h in head[1:]:
            assert re.search(r"\((quote ccy|tokens/shares|bps|%|count|s|quote ccy/unit)\)$", h), h
    assert fmt(1234.5, "money") == "1,234.50" and fmt(0.12345, "per_unit") == "0.1235"
    assert fmt(0.421, "share") == "42.1%" and fmt(12.34, "bps") == "12.3" and fmt(20985, "count") == "20,985"
    assert fmt(None, "money") == "-" and fmt(float("nan"), "bps") == "-"
    assert fmt(-4e-10, "money") == "0.00" and fmt(-0.004, "share") == "-0.4%"
    assert set(FORMATS) >= set(UNITS)


def test_a_run_without_samples_or_fills_still_writes_a_page(tiny, tmp_path):
    """No samples and no fills (a run cut to nothing): every chart says "no data", nothing raises."""
    _, _, summary, _ = tiny
    empty_fills = pl.DataFrame(schema={"ts": pl.Int64, "venue": pl.String, "side": pl.Int8, "price": pl.Float64,
                                       "qty": pl.Float64, "fee": pl.Float64, "liquidity": pl.String, "tag": pl.String})
    empty_series = pl.DataFrame(schema={"ts": pl.Int64, "session": pl.Int8, "equity_raw": pl.Float64})
    track = pl.DataFrame(schema={"ts": pl.Int64, "fair": pl.Float64, "fair_share": pl.Float64})
    text = write_report(tmp_path / "r.html", summary, empty_fills, empty_series, track, "empty").read_text()
    assert "Equity: no data." in text and "Quotes, market and fills at bybit: no data." in text
    assert "not shown (0 daily returns)" in text
    assert sorted(read_figures(text)) == ["fig-markouts", "fig-pnl", "fig-spread"]  # from the summary alone


def test_report_is_self_contained_and_offline(html):
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]*\ssrc\s*=", html)
    assert "<link" not in html and "@import" not in html
    assert len(re.findall(r"\*\s*plotly\.js v\d", html)) == 1  # plotly.js inlined exactly once


def test_every_chart_has_points_axis_titles_and_a_legend(figures):
    assert sorted(figures) == sorted(f"fig-{name}" for name in TIME_CHARTS + BAR_CHARTS)
    for fig_id, fig in figures.items():
        layout = fig["layout"]
        assert layout["title"]["text"], fig_id
        assert layout["showlegend"] is True, fig_id
        traces = fig["data"]
        assert traces, fig_id
        for t in traces:
            assert t.get("name"), (fig_id, t)
        assert any(np.isfinite(np.asarray(t["y"], dtype=np.float64)).any() for t in traces), fig_id
        yaxes = {k: v for k, v in layout.items() if k.startswith("yaxis")}
        xaxes = {k: v for k, v in layout.items() if k.startswith("xaxis")}
        assert yaxes and all(a.get("title", {}).get("text") for a in yaxes.values()), fig_id
        titled = [a for a in xaxes.values() if a.get("title", {}).get("text")]
        assert titled, fig_id
        if fig_id.removeprefix("fig-") in TIME_CHARTS:
            assert titled[0]["title"]["text"] == "time (UTC)"
            assert all(a["type"] == "date" for a in xaxes.values()), fig_id
            assert any("rangeselector" in a for a in xaxes.values()), fig_id
            # stacked panels share one time axis (zoom one panel, all follow)
            assert len({a.get("matches", "x" + k[5:]) for k, a in xaxes.items()}) == 1, fig_id
    assert figures["fig-equity"]["layout"]["xaxis"]["rangeslider"]["visible"] is True


def test_time_charts_start_on_the_run_and_cover_their_data(week, figures):
    _, timeseries, _, _ = week
    span = [timeseries["ts"][0] / MS, timeseries["ts"][-1] / MS]
    for name in TIME_CHARTS:
        fig = figures[f"fig-{name}"]
        assert fig["layout"]["xaxis"]["range"] == span, name


def _on_tick(v, step):
    return abs(v / step - round(v / step)) < 1e-9


def test_every_y_axis_ends_on_ticks_and_holds_its_data(figures):
    """No line below the lowest tick or above the highest: each y range ends on a tick and holds its traces."""
    for fig_id, fig in figures.items():
        layout = fig["layout"]
        for key, axis in layout.items():
            if not key.startswith("yaxis"):
                continue
            lo, hi = axis["range"]
            assert axis["tickmode"] == "linear" and _on_tick(lo, axis["dtick"]) and _on_tick(hi, axis["dtick"]), (fig_id, key)
            ref = "y" + key[5:]
            ys = [np.asarray(t["y"], dtype=np.float64) for t in fig["data"] if t.get("yaxis", "y") == ref]
            ys = np.concatenate(ys)
            ys = ys[np.isfinite(ys)]
            assert lo < ys.min() or (lo == 0 == ys.min()), (fig_id, key, lo, ys.min())
            assert ys.max() < hi, (fig_id, key, hi, ys.max())
            assert 3 <= (hi - lo) / axis["dtick"] <= 12, (fig_id, key)


def test_nice_axis():
    assert nice_axis(0.0, 9.0) == {"range": [-2.0, 10.0], "tickmode": "linear", "tick0": 0.0, "dtick": 2.0}
    assert nice_axis(20_000.0, 26_000.0, from_zero=True)["range"] == [0.0, 30_000.0]
    assert nice_axis(0.0, 60_000.0, from_zero=True)["range"] == [0.0, 80_000.0]  # the cap is not drawn on the frame
    r = nice_axis(209.07, 211.31)
    assert r["dtick"] == 0.5 and r["range"] == [209.0, 211.5]
    assert nice_axis(5.0, 5.0)["range"][0] < 5.0 < nice_axis(5.0, 5.0)["range"][1]
    assert nice_axis(-323.3, 1824.4, from_zero=True) == {"range": [-500.0, 2000.0], "tickmode": "linear", "tick0": 0.0, "dtick": 500.0}


def test_long_series_are_thinned(figures, html):
    # 10,080 samples and 604,800 fair-track points: at most MAX_LINE_POINTS a line
    lines = [t for f in figures.values() for t in f["data"] if t.get("mode") == "lines"]
    assert lines and max(len(t["x"]) for t in lines) <= MAX_LINE_POINTS
    data = sum(len(m) for m in re.findall(r'class="sb-figure"[^>]*>(.*?)</script>', html, re.S))
    assert data < 1_500_000


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


def test_drop_repeats_is_exact_for_a_step_line():
    x = np.arange(10.0)
    y = np.array([1, 1, 2, 2, 2, np.nan, np.nan, 3, 3, 3], dtype=np.float64)
    xs, ys = drop_repeats(x, y)
    np.testing.assert_array_equal(xs, [0, 2, 5, 7, 9])
    # the step line through the kept points has the original value at every original sample
    idx = np.searchsorted(xs, x, side="right") - 1
    np.testing.assert_array_equal(ys[idx], y)


def test_session_runs_follow_runs_of_states():
    ts = pl.DataFrame({"ts": [0, 60, 120, 180, 240], "session": pl.Series([2, 2, 3, 3, 0], dtype=pl.Int8)})
    assert [(r.start, r.end, r.state) for r in session_runs(ts)] == [(0, 120, 2), (120, 240, 3), (240, 240, 0)]
    assert set(SESSION_SHADES) == set(range(len(STATE_NAMES)))
    assert len(set(SESSION_SHADES.values())) == len(STATE_NAMES)


# --- in a real browser ------------------------------------------------------------------------------

_PROBE = """<script>
setTimeout(function () {
  var out = {charts: {}};
  document.querySelectorAll('div.sb-chart').forEach(function (d) {
    out.charts[d.id] = {rendered: d.classList.contains('js-plotly-plot'), svgs: d.querySelectorAll('svg.main-svg').length,
                        points: d.querySelectorAll('g.trace path, g.trace .point, g.points path').length};
  });
  Plotly.relayout(document.getElementById('fig-quotes-bybit'), {'xaxis.range': [%(a)f, %(b)f]}).then(function () {
    setTimeout(function () {
      out.ranges = {}; out.y = {};
      document.querySelectorAll('div.sb-chart[data-time="1"]').forEach(function (d) {
        out.ranges[d.id] = d.layout.xaxis.range.map(function (v) { return typeof v === 'number' ? v : Date.parse(v.replace(' ', 'T') + 'Z'); });
        out.y[d.id] = Object.keys(d.layout).filter(function (k) { return /^yaxis/.test(k); }).map(function (k) {
          return [d.layout[k].range[0], d.layout[k].range[1], d.layout[k].dtick]; });
      });
      var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    }, 500);
  });
}, 1000);
</script>"""


def _headless_dom(page: Path, timeout_s: float = 180) -> tuple[str, str]:
    """The DOM of ``page`` after its scripts ran, from headless Chromium in a throwaway profile; on
    timeout the browser's whole process group (it was started in its own session) is killed."""
    with tempfile.TemporaryDirectory(prefix="sb-chromium-") as profile:
        proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            return proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"headless Chromium did not finish within {timeout_s} s")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian package chromium)")
def test_report_renders_in_headless_chromium(html, tmp_path):
    """Every figure is drawn (Plotly's svg.main-svg inside each chart div) and zooming one time chart
    to an hour moves all of them (the page's linking script ran)."""
    a = START / MS + 30 * 3600 * 1000
    b = a + 3600 * 1000
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", _PROBE % {"a": a, "b": b} + "</body>"), encoding="utf-8")
    stdout, stderr = _headless_dom(page)
    m = re.search(r'<pre id="probe">(.*?)</pre>', stdout, re.S)
    assert m, stderr[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert sorted(probe["charts"]) == sorted(f"fig-{n}" for n in TIME_CHARTS + BAR_CHARTS)
    for fig_id, c in probe["charts"].items():
        assert c["rendered"] and c["svgs"] >= 2 and c["points"] > 0, (fig_id, c)
    for fig_id, r in probe["ranges"].items():
        assert r == pytest.approx([a, b], abs=1), fig_id
    # and each y axis was refitted to the hour, again ending on ticks
    for fig_id, axes in probe["y"].items():
        for lo, hi, step in axes:
            assert _on_tick(lo, step) and _on_tick(hi, step) and 3 <= (hi - lo) / step <= 12, (fig_id, lo, hi, step)
    before = read_figures(html)["fig-inventory"]["layout"]["yaxis"]["range"]
    after = probe["y"]["fig-inventory"][0]
    assert after[1] - after[0] < before[1] - before[0]
