"""The backtest report: one self-contained HTML page (inline CSS and SVG, no scripts, no network).

Charts: PnL decomposition, equity raw and after haircut, fair value with our fills, inventory per
venue and net delta, exposure against caps per venue (all shaded by session), quoted vs market
spread by session, markouts at 1/10/60 s; tables: summary, per venue, per session. Series are thinned
to about 2000 points per line (min/max preserving), so a week of samples stays a few hundred kB.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backtest.charts import PALETTE, Band, Line, bar_chart, time_chart
from backtest.metrics import MARKOUT_HORIZONS_S, column
from stockbridge.sessions import AFTER, CLOSED, OVERNIGHT, PRE, REGULAR, STATE_NAMES

# Session shading: regular, extended (pre + after), overnight, closed.
SESSION_SHADES = {REGULAR: "#e3f2e1", PRE: "#fdf3d7", AFTER: "#fdf3d7", OVERNIGHT: "#e2ebf6", CLOSED: "#eeeeee"}
SHADE_LEGEND = [("regular", "#e3f2e1"), ("extended", "#fdf3d7"), ("overnight", "#e2ebf6"), ("closed", "#eeeeee")]
MAX_FILL_MARKERS = 2000

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 960px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
svg.chart { display: block; margin: 10px 0; font-size: 11px; }
svg .title { font-size: 13px; font-weight: 600; } svg .tick { fill: #444; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; } svg .frame { fill: none; stroke: #bbb; }
svg .zero { stroke: #555; stroke-width: 1; }
"""

_SUMMARY_ROWS = (
    ("pnl_total", "PnL total"),
    ("pnl_spread_capture", "spread capture"),
    ("pnl_arb", "arbitrage edge"),
    ("pnl_hedge", "hedge edge"),
    ("pnl_inventory", "inventory"),
    ("fees_paid", "fees paid (incl. gas)"),
    ("borrow_cost", "borrow cost"),
    ("default_loss", "default loss"),
    ("pnl_residual", "residual"),
    ("equity_initial_raw", "equity initial"),
    ("equity_final_raw", "equity final (raw)"),
    ("equity_final_after_haircut", "equity final (after haircut)"),
    ("haircut_charge", "haircut charge"),
    ("sharpe", "Sharpe (annualised)"),
    ("max_drawdown", "max drawdown"),
    ("max_drawdown_frac", "max drawdown (fraction)"),
    ("fills", "fills"),
    ("fills_maker", "maker fills"),
    ("fills_taker", "taker fills"),
    ("fills_hedge", "hedge fills"),
    ("fills_arb", "arb fills"),
    ("volume", "volume (units)"),
    ("notional", "notional"),
    ("markout_1s", "markout 1 s (per unit)"),
    ("markout_10s", "markout 10 s (per unit)"),
    ("markout_60s", "markout 60 s (per unit)"),
    ("events", "events"),
    ("simulated_seconds", "simulated seconds"),
    ("wall_seconds", "wall seconds"),
    ("events_per_second", "events per second"),
)


def write_report(
    path: str | Path,
    summary: dict[str, Any],
    fills: pl.DataFrame,
    timeseries: pl.DataFrame,
    fair_track: pl.DataFrame,
    config_name: str,
) -> Path:
    """Write the report for one run (``summary`` from :func:`backtest.metrics.summarize`); returns the path."""
    venues = list(summary["venues"])
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(venues)}
    bands = session_bands(timeseries)
    ts = column(timeseries, "ts")
    sections = [
        _pnl_chart(summary),
        time_chart(
            "Equity (quote ccy)",
            [
                Line("raw", ts, column(timeseries, "equity_raw"), PALETTE[0]),
                Line("after haircut", ts, column(timeseries, "equity_haircut"), PALETTE[1]),
            ],
            bands=bands,
            legend_extra=SHADE_LEGEND,
        ),
        _fair_chart(fills, fair_track, bands),
        time_chart(
            "Inventory per venue (tokens / shares) and net delta (share-equivalents)",
            [Line(v, ts, column(timeseries, f"pos_{v}"), colors[v]) for v in venues]
            + [Line("net delta", ts, column(timeseries, "net_delta"), "#000000", dashed=True)],
            bands=bands,
            legend_extra=SHADE_LEGEND,
        ),
        *(_exposure_chart(v, timeseries, colors[v], bands) for v in venues),
        _spread_chart(summary),
        _markout_chart(summary, colors),
    ]
    body = [
        f"<h1>stockbridge backtest: {escape(config_name)}</h1>",
        f'<p class="meta">{escape(_meta(summary, timeseries))}</p>',
        "<h2>Summary</h2>",
        _summary_table(summary),
        "<h2>Charts</h2>",
        *sections,
        "<h2>Per venue</h2>",
        _venue_table(summary),
        "<h2>Per session</h2>",
        _session_table(summary),
    ]
    html = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>stockbridge backtest: {escape(config_name)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def session_bands(timeseries: pl.DataFrame) -> list[Band]:
    """One band per run of equal session state in the samples (each lasts until the next run starts)."""
    if timeseries.height == 0:
        return []
    ts, state = column(timeseries, "ts"), column(timeseries, "session")
    starts = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])
    ends = np.r_[ts[starts[1:]], ts[-1]]
    return [Band(int(ts[s]), int(e), SESSION_SHADES.get(int(state[s]), "#ffffff")) for s, e in zip(starts, ends)]


def _pnl_chart(s: dict[str, Any]) -> str:
    parts = [
        ("spread", s["pnl_spread_capture"]),
        ("arb", s["pnl_arb"]),
        ("hedge", s["pnl_hedge"]),
        ("inventory", s["pnl_inventory"]),
        ("fees", -s["fees_paid"]),
        ("borrow", -s["borrow_cost"]),
        ("default", -s["default_loss"]),
        ("residual", s["pnl_residual"]),
        ("total", s["pnl_total"]),
    ]
    return bar_chart("PnL decomposition (quote ccy)", [p[0] for p in parts], [("PnL", [p[1] for p in parts], PALETTE[0])])


def _fair_chart(fills: pl.DataFrame, fair_track: pl.DataFrame, bands: list[Band]) -> str:
    """Token fair value with our token fills as markers (buys green, sells red; thinned evenly)."""
    tokens = fills.filter(pl.col("tag") != "hedge")
    stride = max(1, math.ceil(tokens.height / MAX_FILL_MARKERS))
    tokens = tokens.gather_every(stride) if tokens.height else tokens
    buys, sells = tokens.filter(pl.col("side") > 0), tokens.filter(pl.col("side") < 0)
    return time_chart(
        "Token fair value and our token fills" + (f" (every {stride}th fill)" if stride > 1 else ""),
        [
            Line("fair", column(fair_track, "ts"), column(fair_track, "fair"), "#444444"),
            Line("buy", column(buys, "ts"), column(buys, "price"), PALETTE[2], dots=True),
            Line("sell", column(sells, "ts"), column(sells, "price"), PALETTE[1], dots=True),
        ],
        y_label="quote ccy",
        bands=bands,
    )


def _exposure_chart(venue: str, ts: pl.DataFrame, color: str, bands: list[Band]) -> str:
    cap = column(ts, f"cap_{venue}")
    lines = [Line("exposure", column(ts, "ts"), column(ts, f"exposure_{venue}"), color)]
    if np.isfinite(cap).any():
        lines.append(Line("cap", column(ts, "ts"), np.where(np.isfinite(cap), cap, np.nan), "#d62728", dashed=True))
    return time_chart(f"Exposure at {venue} against its cap (quote ccy)", lines, bands=bands, height=200)


def _spread_chart(s: dict[str, Any]) -> str:
    names = [n for n in STATE_NAMES if (s["by_session"][n]["time_share"] or 0) > 0]
    return bar_chart(
        "Median spread by session (bps of mid)",
        names,
        [
            ("ours", [s["by_session"][n]["quoted_spread_bps_median"] for n in names], PALETTE[0]),
            ("market", [s["by_session"][n]["market_spread_bps_median"] for n in names], PALETTE[3]),
        ],
        y_label="bps",
    )


def _markout_chart(s: dict[str, Any], colors: dict[str, str]) -> str:
    cats = [f"{h} s" for h in MARKOUT_HORIZONS_S]
    series = [("all", [s[f"markout_{h}s"] for h in MARKOUT_HORIZONS_S], "#444444")]
    series += [(v, [b[f"markout_{h}s"] for h in MARKOUT_HORIZONS_S], colors[v]) for v, b in s["by_venue"].items()]
    return bar_chart("Markouts (quote ccy per unit; positive = fills were good)", cats, series, y_label="per unit")


def _summary_table(s: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{escape(label)}</td><td>{_num(s.get(key))}</td></tr>" for key, label in _SUMMARY_ROWS)
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _venue_table(s: dict[str, Any]) -> str:
    cols = [
        ("fills", "fills"), ("volume", "volume"), ("notional", "notional"), ("fees", "fees"),
        ("spread_capture", "spread capture"), ("edge", "edge (all)"),
        ("markout_1s", "mo 1 s"), ("markout_10s", "mo 10 s"), ("markout_60s", "mo 60 s"),
        ("position_final", "final position"), ("exposure_max", "max exposure"), ("exposure_cap", "cap"),
        ("exposure_max_frac_of_cap", "max / cap"), ("quote_uptime", "quote uptime"),
        ("quoted_spread_bps_median", "our spread bps"), ("market_spread_bps_median", "market spread bps"),
    ]
    return _table("venue", s["by_venue"], cols)


def _session_table(s: dict[str, Any]) -> str:
    cols = [
        ("time_share", "time share"), ("fills", "fills"), ("volume", "volume"), ("spread_capture", "spread capture"),
        ("fees", "fees"), ("quoted_spread_bps_median", "our spread bps"), ("market_spread_bps_median", "market spread bps"),
    ]
    return _table("session", s["by_session"], cols)


def _table(first: str, blocks: dict[str, dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = f"<tr><th>{escape(first)}</th>" + "".join(f"<th>{escape(label)}</th>" for _, label in cols) + "</tr>"
    rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(f"<td>{_num(block.get(key))}</td>" for key, _ in cols) + "</tr>"
        for name, block in blocks.items()
    )
    return f"<table>{head}{rows}</table>"


def _meta(s: dict[str, Any], ts: pl.DataFrame) -> str:
    span = ""
    if ts.height:
        start, end = (pl.from_epoch(pl.Series([ts["ts"][i]]), time_unit="ns")[0] for i in (0, -1))
        span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
    return f"{span}venues: {', '.join(s['venues'])}; seed {s.get('seed')}; config {s.get('config')}"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.4g}"
    return escape(str(v))
