"""The backtest report: one self-contained, offline, interactive HTML page (Plotly, script inlined).

Charts: PnL decomposition; equity raw and after haircut (with a range slider); token fair value with
our token fills; per venue, our quotes against the market's best bid/ask with every fill; inventory
per venue and net delta; exposure per venue against its cap (y from 0); median spread by session;
markouts at 1/10/60 s. Time charts are shaded by session, zoom and pan together (range buttons for
1 h, 6 h, 1 d) and show values on hover. Tables: summary, per venue, per session, with the unit of
every column in its header and one number format per kind of figure (:data:`UNITS`, ``FORMATS``).

Thinning (see :mod:`backtest.charts`): sampled lines keep only the samples where the value changes
when drawn as steps, then at most ``MAX_LINE_POINTS`` points each (bucket first/min/max); each venue's
quotes view carries every fill up to ``MAX_VENUE_FILLS`` (beyond that every k-th, and its title says
so); the fair-value chart carries at most ``MAX_FAIR_FILLS`` fills. The full data is in the Parquet
files next to the report.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backtest.charts import (
    D3_FORMAT,
    MARKET_COLOR,
    Panel,
    SessionRun,
    bar_figure,
    fill_markers,
    session_shapes,
    time_figure,
    time_line,
    venue_colors,
)
from backtest.metrics import MARKOUT_HORIZONS_S, column, daily_sharpe
from backtest.report_page import figure_block, page
from stockbridge.sessions import AFTER, CLOSED, OVERNIGHT, PRE, REGULAR, STATE_NAMES

# Session shading, named as the tables name sessions (stockbridge.sessions.STATE_NAMES).
SESSION_SHADES = {REGULAR: "#e3f2e1", PRE: "#fdf3d7", AFTER: "#f9e2cf", OVERNIGHT: "#e2ebf6", CLOSED: "#eeeeee"}
MAX_VENUE_FILLS = 20_000
MAX_FAIR_FILLS = 2_000
SHARPE_MIN_DAILY_RETURNS = 30

# kind -> unit; the same format string serves Python's format() in tables and d3-format in hovers.
UNITS = {
    "money": "quote ccy", "price": "quote ccy", "qty": "tokens/shares", "bps": "bps", "per_unit": "quote ccy/unit",
    "share": "%", "count": "count", "seconds": "s", "ratio": "ratio", "rate": "events/s",
}
FORMATS = {**D3_FORMAT, "count": ",", "seconds": ",.1f", "ratio": ",.2f", "rate": ",.0f"}

_SUMMARY_ROWS = (
    ("pnl_total", "PnL total", "money"),
    ("pnl_spread_capture", "spread capture", "money"),
    ("pnl_arb", "arbitrage edge", "money"),
    ("pnl_hedge", "hedge edge", "money"),
    ("pnl_inventory", "inventory", "money"),
    ("fees_paid", "fees paid (incl. gas)", "money"),
    ("borrow_cost", "borrow cost", "money"),
    ("default_loss", "default loss", "money"),
    ("pnl_residual", "residual", "money"),
    ("equity_initial_raw", "equity initial", "money"),
    ("equity_final_raw", "equity final (raw)", "money"),
    ("equity_final_after_haircut", "equity final (after haircut)", "money"),
    ("haircut_charge", "haircut charge", "money"),
    ("max_drawdown", "max drawdown", "money"),
    ("max_drawdown_frac", "max drawdown (of peak)", "share"),
    ("fills", "fills", "count"),
    ("fills_maker", "maker fills", "count"),
    ("fills_taker", "taker fills", "count"),
    ("fills_hedge", "hedge fills", "count"),
    ("fills_arb", "arb fills", "count"),
    ("volume", "volume", "qty"),
    ("notional", "notional", "money"),
    ("markout_1s", "markout 1 s", "per_unit"),
    ("markout_10s", "markout 10 s", "per_unit"),
    ("markout_60s", "markout 60 s", "per_unit"),
    ("events", "events", "count"),
    ("simulated_seconds", "simulated time", "seconds"),
    ("compile_seconds", "compile time", "seconds"),
    ("wall_seconds", "replay wall time", "seconds"),
    ("events_per_second", "replay speed", "rate"),
)

_VENUE_COLS = (
    ("fills", "fills", "count"), ("volume", "volume", "qty"), ("notional", "notional", "money"),
    ("fees", "fees", "money"), ("spread_capture", "spread capture", "money"), ("edge", "edge (all)", "money"),
    ("markout_1s", "mo 1 s", "per_unit"), ("markout_10s", "mo 10 s", "per_unit"), ("markout_60s", "mo 60 s", "per_unit"),
    ("position_final", "final position", "qty"), ("exposure_max", "max exposure", "money"),
    ("exposure_cap", "cap", "money"), ("exposure_max_frac_of_cap", "max / cap", "share"),
    ("quote_uptime", "quote uptime", "share"), ("quoted_spread_bps_median", "our spread", "bps"),
    ("market_spread_bps_median", "market spread", "bps"),
)

_SESSION_COLS = (
    ("time_share", "time share", "share"), ("fills", "fills", "count"), ("volume", "volume", "qty"),
    ("spread_capture", "spread capture", "money"), ("fees", "fees", "money"),
    ("quoted_spread_bps_median", "our spread", "bps"), ("market_spread_bps_median", "market spread", "bps"),
)


def write_report(
    path: str | Path,
    summary: dict[str, Any],
    fills: pl.DataFrame,
    timeseries: pl.DataFrame,
    fair_track: pl.DataFrame,
    config_name: str,
    kind: str = "backtest",
) -> Path:
    """Write the report for one run (``summary`` from :func:`backtest.metrics.summarize`); returns the path."""
    venues = list(summary["venues"])
    colors = venue_colors(venues)
    ts = column(timeseries, "ts")
    frame = dict(
        shapes=session_shapes(session_runs(timeseries), STATE_NAMES, SESSION_SHADES),
        span_ns=(int(ts[0]), int(ts[-1])) if len(ts) else None,
    )
    charts: list[tuple[str, str, Any, bool]] = [
        ("pnl", "PnL decomposition", _pnl_chart(summary), False),
        ("equity", "Equity", _equity_chart(timeseries, frame), True),
        ("fair", "Token fair value and our token fills", _fair_chart(fills, fair_track, frame), True),
        *(
            (f"quotes-{v}", f"Quotes, market and fills at {v}", _quotes_chart(v, fills, timeseries, frame), True)
            for v in venues
        ),
        ("inventory", "Inventory and net delta", _inventory_chart(venues, timeseries, colors, frame), True),
        ("exposure", "Exposure against caps", _exposure_chart(venues, timeseries, colors, frame), True),
        ("spread", "Median spread by session", _spread_chart(summary), False),
        ("markouts", "Markouts", _markout_chart(summary, colors), False),
    ]
    blocks = [
        figure_block(f"fig-{fid}", fig, time_axis=is_time) if fig is not None else f"<p class=\"note\">{escape(label)}: no data.</p>"
        for fid, label, fig, is_time in charts
    ]
    sharpe, n_daily = daily_sharpe(ts, column(timeseries, "equity_raw"))
    body = [
        f"<h1>stockbridge {escape(kind)}: {escape(config_name)}</h1>",
        f'<p class="meta">{escape(_meta(summary, timeseries))}</p>',
        "<h2>Summary</h2>",
        _summary_table(summary, sharpe, n_daily),
        f'<p class="note">{escape(sharpe_note(sharpe, n_daily))}</p>',
        "<h2>Charts</h2>",
        '<p class="note">Drag to zoom, double-click to reset; the time charts zoom and pan together and their '
        "y axes follow the visible window. Background: session (click a session in a legend to hide it). "
        "Lines are thinned for plotting (changes only, then at most a few thousand points per line); "
        "the full data is in fills.parquet and timeseries.parquet.</p>",
        *blocks,
        "<h2>Per venue</h2>",
        _table("venue", summary["by_venue"], _VENUE_COLS),
        "<h2>Per session</h2>",
        _table("session", summary["by_session"], _SESSION_COLS),
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(f"stockbridge {kind}: {config_name}", body), encoding="utf-8")
    return out


def session_runs(timeseries: pl.DataFrame) -> list[SessionRun]:
    """One run per stretch of equal session state in the samples (each lasts until the next run starts)."""
    if timeseries.height == 0:
        return []
    ts, state = column(timeseries, "ts"), column(timeseries, "session")
    starts = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])
    ends = np.r_[ts[starts[1:]], ts[-1]]
    return [SessionRun(int(ts[s]), int(e), int(state[s])) for s, e in zip(starts, ends)]


def sharpe_note(sharpe: float | None, n_daily: int) -> str:
    rule = (
        f"Sharpe: annualised (x sqrt 365, tokens trade every day) mean / standard deviation of daily returns "
        f"of raw equity between UTC midnights, zero risk-free rate; shown only with at least "
        f"{SHARPE_MIN_DAILY_RETURNS} daily returns."
    )
    if sharpe is None:
        return f"{rule} This run has {n_daily}: too few for a meaningful figure, so none is shown."
    return f"{rule} This run has {n_daily}."


def _equity_chart(ts: pl.DataFrame, frame: dict):
    t = column(ts, "ts")
    return time_figure(
        "Equity: raw and after the venues' credit haircuts (quote ccy)",
        [Panel("", "quote ccy", [
            time_line("raw", t, column(ts, "equity_raw"), "#1f77b4", kind="money"),
            time_line("after haircut", t, column(ts, "equity_haircut"), "#d62728", kind="money"),
        ])],
        **frame,
        slider=True,
        height=460,
    )


def _pnl_chart(s: dict[str, Any]):
    parts = [
        ("spread", s["pnl_spread_capture"]), ("arb", s["pnl_arb"]), ("hedge", s["pnl_hedge"]),
        ("inventory", s["pnl_inventory"]), ("fees", -s["fees_paid"]), ("borrow", -s["borrow_cost"]),
        ("default", -s["default_loss"]), ("residual", s["pnl_residual"]), ("total", s["pnl_total"]),
    ]
    return bar_figure("PnL decomposition (quote ccy; costs negative)", "quote ccy", [p[0] for p in parts],
                      [("PnL", [p[1] for p in parts], "#1f77b4")], kind="money", x_title="component")


def _fill_traces(fills: pl.DataFrame, label: str) -> list:
    """One marker trace per (side, liquidity, tag) present, buys first."""
    out = []
    if fills.height == 0:
        return out
    groups = fills.select("side", "liquidity", "tag").unique().sort("side", "liquidity", "tag", descending=[True, False, False])
    for side, liq, tag in groups.iter_rows():
        g = fills.filter((pl.col("side") == side) & (pl.col("liquidity") == liq) & (pl.col("tag") == tag))
        name = f"{'buy' if side > 0 else 'sell'} fill ({liq}, {tag})"
        out.append(fill_markers(name, column(g, "ts"), column(g, "price"), column(g, "qty"), column(g, "fee"),
                                side=int(side), liquidity=str(liq), tag=str(tag), venue=label))
    return out


def _every_kth(frame: pl.DataFrame, limit: int) -> tuple[pl.DataFrame, int]:
    stride = max(1, math.ceil(frame.height / limit))
    return (frame.gather_every(stride) if stride > 1 else frame), stride


def _fair_chart(fills: pl.DataFrame, fair_track: pl.DataFrame, frame: dict):
    """Token fair value (and the share's, in share terms) with our token fills (thinned evenly)."""
    tokens, stride = _every_kth(fills.filter(pl.col("tag") != "hedge"), MAX_FAIR_FILLS)
    t = column(fair_track, "ts")
    title = "Token fair value and our token fills (quote ccy)" + (f"; every {stride}th fill" if stride > 1 else "")
    return time_figure(
        title,
        [Panel("", "quote ccy", [
            time_line("fair (token)", t, column(fair_track, "fair"), "#444444", kind="price"),
            *_fill_traces(tokens, "all venues"),
        ])],
        **frame,
        hovermode="closest",
        height=380,
    )


def _quotes_chart(venue: str, fills: pl.DataFrame, ts: pl.DataFrame, frame: dict):
    """Our bid/ask and the market's best bid/ask at ``venue`` (as sampled), and every fill there."""
    t = column(ts, "ts")
    mine, stride = _every_kth(fills.filter(pl.col("venue") == venue), MAX_VENUE_FILLS)
    period = float(np.median(np.diff(t))) / 1e9 if len(t) > 1 else float("nan")
    lines = [
        time_line("market bid", t, column(ts, f"mkt_bid_{venue}"), MARKET_COLOR, kind="price", step=True, dash="dot"),
        time_line("market ask", t, column(ts, f"mkt_ask_{venue}"), MARKET_COLOR, kind="price", step=True, dash="dash"),
        time_line("our bid", t, column(ts, f"bid_{venue}"), "#2b83ba", kind="price", step=True, width=1.6),
        time_line("our ask", t, column(ts, f"ask_{venue}"), "#fdae61", kind="price", step=True, width=1.6),
    ]
    ours = "our quotes" if any(line is not None for line in lines[2:]) else "no quotes of ours"
    title = (f"{venue}: {ours}, the market's best bid/ask (sampled every {period:,.0f} s) and our fills (quote ccy)"
             + (f"; every {stride}th fill" if stride > 1 else ""))
    return time_figure(title, [Panel("", "price (quote ccy)", [*lines, *_fill_traces(mine, venue)])],
                       **frame, hovermode="closest", height=440)


def _inventory_chart(venues: list[str], ts: pl.DataFrame, colors: dict[str, tuple[str, str]], frame: dict):
    t = column(ts, "ts")
    return time_figure(
        "Inventory per venue (tokens/shares) and net delta (share-equivalents)",
        [Panel("", "tokens/shares", [
            *(time_line(v, t, column(ts, f"pos_{v}"), colors[v][0], kind="qty", step=True) for v in venues),
            time_line("net delta", t, column(ts, "net_delta"), "#000000", kind="qty", step=True, dash="dash"),
        ])],
        **frame,
    )


def _exposure_chart(venues: list[str], ts: pl.DataFrame, colors: dict[str, tuple[str, str]], frame: dict):
    """One panel per venue, from 0: exposure solid in the venue's colour, its cap dashed in a darker shade."""
    t = column(ts, "ts")
    panels = []
    for v in venues:
        cap = column(ts, f"cap_{v}")
        cap = np.where(np.isfinite(cap), cap, np.nan)
        main, dark = colors[v]
        panels.append(Panel(f"{v}" + ("" if np.isfinite(cap).any() else " (no cap)"), "quote ccy", [
            time_line(f"{v} exposure", t, column(ts, f"exposure_{v}"), main, kind="money", step=True),
            time_line(f"{v} cap", t, cap, dark, kind="money", step=True, dash="dash", width=2),
        ], y_from_zero=True))
    return time_figure("Exposure per venue against its cap (quote ccy)", panels, **frame,
                       height=140 + 210 * len(venues))


def _spread_chart(s: dict[str, Any]):
    names = [n for n in STATE_NAMES if (s["by_session"][n]["time_share"] or 0) > 0]
    return bar_figure(
        "Median spread by session (bps of mid)", "bps", names,
        [("ours", [s["by_session"][n]["quoted_spread_bps_median"] for n in names], "#2b83ba"),
         ("market", [s["by_session"][n]["market_spread_bps_median"] for n in names], MARKET_COLOR)],
        kind="bps", x_title="session",
    )


def _markout_chart(s: dict[str, Any], colors: dict[str, tuple[str, str]]):
    cats = [f"{h} s" for h in MARKOUT_HORIZONS_S]
    series = [("all venues", [s[f"markout_{h}s"] for h in MARKOUT_HORIZONS_S], "#444444")]
    series += [(v, [b[f"markout_{h}s"] for h in MARKOUT_HORIZONS_S], colors[v][0]) for v, b in s["by_venue"].items()]
    return bar_figure("Markouts (quote ccy per unit; positive = fills were good)", "quote ccy/unit", cats, series,
                      kind="per_unit", x_title="horizon after the fill")


def _summary_table(s: dict[str, Any], sharpe: float | None, n_daily: int) -> str:
    rows = []
    for key, label, kind in _SUMMARY_ROWS:
        if key == "max_drawdown":  # the risk figures together
            shown = fmt(sharpe, "ratio") if sharpe is not None else f"not shown ({n_daily} daily returns)"
            rows.append(("Sharpe (annualised, daily returns)", shown, UNITS["ratio"]))
        rows.append((label, fmt(s.get(key), kind), UNITS[kind]))
    body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{escape(c)}</td></tr>" for a, b, c in rows)
    return f"<table><tr><th>metric</th><th>value</th><th>unit</th></tr>{body}</table>"


def _table(first: str, blocks: dict[str, dict[str, Any]], cols) -> str:
    head = f"<tr><th>{escape(first)}</th>" + "".join(f"<th>{escape(label)} ({escape(UNITS[kind])})</th>" for _, label, kind in cols) + "</tr>"
    rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(f"<td>{escape(fmt(block.get(key), kind))}</td>" for key, _, kind in cols) + "</tr>"
        for name, block in blocks.items()
    )
    return f"<table>{head}{rows}</table>"


def fmt(v: Any, kind: str) -> str:
    """One number format per kind of figure (``FORMATS``); '-' for a missing value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        text = format(v, FORMATS[kind])
        return text[1:] if text.startswith("-") and not any(c in text for c in "123456789") else text  # no "-0.00"
    return str(v)


def _meta(s: dict[str, Any], ts: pl.DataFrame) -> str:
    span = ""
    if ts.height:
        start, end = (pl.from_epoch(pl.Series([ts["ts"][i]]), time_unit="ns")[0] for i in (0, -1))
        span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
    strategy = f"strategy {s['strategy']}; " if s.get("strategy") else ""
    return f"{span}venues: {', '.join(s['venues'])}; {strategy}seed {s.get('seed')}; config {s.get('config')}"
