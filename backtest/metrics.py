"""Backtest summary: PnL decomposition, risk, fill quality, per-venue and per-session breakdowns.

PnL decomposition. Equity is marked at fair: ``equity = sum over venues (cash + position x fair)``.
A fill changes cash by ``-side x price x qty - fee`` and, at the instant it happens, the mark of the
holdings by ``+side x fair x qty``; its immediate effect on equity is therefore its *edge*
``side x (fair - price) x qty`` (a buy below fair earns ``(fair - price) x qty``) minus its fee.
Every later change in the value of what is held is *inventory* PnL (position x mark change, which
the engine accumulates on its own), and the remaining cash flows are borrow cost and balances lost
to a venue default. Hence, to rounding::

    pnl_total = pnl_spread_capture + pnl_arb + pnl_hedge + pnl_inventory
                - fees_paid - borrow_cost - default_loss + pnl_residual

with ``pnl_total = equity_final_raw - equity_initial_raw`` and edge summed over fills tagged
``quote`` (spread capture), ``arb`` and ``hedge`` (marked at the share's fair, which is the
``fair`` column of a share fill). ``pnl_residual`` is reported, not forced: a value far from zero
means the engine's books and its fill log disagree.

Units: money in quote currency, sizes in tokens or shares, spreads in bps of the mid, markouts in
quote currency per unit traded, times in seconds unless a name ends in ``_ns``. Every value is a
plain ``int``/``float``/``str``/``None`` (non-finite numbers become ``None``) and keys come in a
fixed order, so ``json.dumps(summarize(...))`` is stable across runs of the same backtest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from stockbridge.sessions import STATE_NAMES

NS = 1_000_000_000
SECONDS_PER_YEAR = 365.25 * 24 * 3600
MARKOUT_HORIZONS_S = (1, 10, 60)

_EDGE = (pl.col("side").cast(pl.Float64) * (pl.col("fair") - pl.col("price")) * pl.col("qty"))


def summarize(
    fills: pl.DataFrame,
    timeseries: pl.DataFrame,
    fair_track: pl.DataFrame,
    totals: Mapping[str, Any],
) -> dict[str, Any]:
    """The run's summary as a JSON-ready dict (see the module docstring for the PnL identity).

    ``totals`` is the engine's dict (``events``, ``simulated_seconds``, ``wall_seconds``,
    ``equity_initial_raw``, ``equity_final_raw``, ``equity_final_after_haircut``, ``pnl_inventory``,
    ``borrow_cost``, ``default_loss``, ``venues``, ``seed``, ``config``).

    - ``sharpe``: mean / std (ddof 1) of per-sample simple returns of ``equity_raw``, times
      sqrt(samples per year) with the year in calendar seconds (tokens trade 24/7) and the sample
      period taken as the median spacing of ``timeseries.ts``; zero risk-free rate; ``None`` with
      fewer than two returns or no variation.
    - ``max_drawdown``: largest fall of ``equity_raw`` from its running peak, quote ccy;
      ``max_drawdown_frac`` the largest such fall as a fraction of that peak.
    - ``markout_<h>s``: qty-weighted mean of ``side x (fair(t + h) - price)`` per unit, with
      ``fair(t + h)`` the last fair-track value at or before ``t + h`` (``fair_share`` for share
      fills, i.e. instruments traded by ``hedge`` fills); fills whose ``t + h`` lies past the end
      of the track are left out. ``None`` when no fill qualifies.
    - ``by_session``: a fill belongs to the session of the last sample at or before it (the first
      sample's session for fills before it), exact when samples fall on session boundaries.
    """
    venues = list(totals["venues"])
    fills = _with_markouts(_with_sessions(fills, timeseries), fair_track)
    tags = {tag: _edge_sum(fills.filter(pl.col("tag") == tag)) for tag in ("quote", "arb", "hedge")}
    fees = _sum(fills, "fee")
    eq0, eq1 = float(totals["equity_initial_raw"]), float(totals["equity_final_raw"])
    eq1_hc = float(totals["equity_final_after_haircut"])
    pnl_total = eq1 - eq0
    inventory, borrow, default = (float(totals[k]) for k in ("pnl_inventory", "borrow_cost", "default_loss"))
    explained = tags["quote"] + tags["arb"] + tags["hedge"] + inventory - fees - borrow - default
    wall = float(totals["wall_seconds"])
    drawdown, drawdown_frac = max_drawdown(column(timeseries, "equity_raw"))
    out: dict[str, Any] = {
        "config": totals.get("config"),
        "seed": totals.get("seed"),
        "venues": venues,
        "events": int(totals["events"]),
        "simulated_seconds": float(totals["simulated_seconds"]),
        "wall_seconds": wall,
        "events_per_second": int(totals["events"]) / wall if wall > 0 else None,
        "equity_initial_raw": eq0,
        "equity_final_raw": eq1,
        "equity_final_after_haircut": eq1_hc,
        "pnl_total": pnl_total,
        "pnl_spread_capture": tags["quote"],
        "pnl_arb": tags["arb"],
        "pnl_hedge": tags["hedge"],
        "pnl_inventory": inventory,
        "fees_paid": fees,
        "borrow_cost": borrow,
        "default_loss": default,
        "pnl_residual": pnl_total - explained,
        "haircut_charge": eq1 - eq1_hc,
        "sharpe": sharpe(column(timeseries, "ts"), column(timeseries, "equity_raw")),
        "max_drawdown": drawdown,
        "max_drawdown_frac": drawdown_frac,
        "fills": fills.height,
        "fills_maker": _count(fills, pl.col("liquidity") == "maker"),
        "fills_taker": _count(fills, pl.col("liquidity") == "taker"),
        "fills_hedge": _count(fills, pl.col("tag") == "hedge"),
        "fills_arb": _count(fills, pl.col("tag") == "arb"),
        "volume": _sum(fills, "qty"),
        "notional": _notional(fills),
        **_markouts(fills),
        "by_venue": {v: _venue_block(v, fills.filter(pl.col("venue") == v), timeseries) for v in venues},
        "by_session": _session_blocks(fills, timeseries, venues),
    }
    return _clean(out)


def sharpe(ts_ns: np.ndarray, equity: np.ndarray) -> float | None:
    """Annualised Sharpe ratio of per-sample simple returns (calendar-time year, zero risk-free rate)."""
    if len(equity) < 3:
        return None
    returns = np.diff(equity) / equity[:-1]
    sd = float(np.std(returns, ddof=1))
    period_s = float(np.median(np.diff(ts_ns))) / NS
    if not sd > 0 or not period_s > 0:
        return None
    return float(np.mean(returns)) / sd * math.sqrt(SECONDS_PER_YEAR / period_s)


def daily_sharpe(ts_ns: np.ndarray, equity: np.ndarray, min_returns: int = 30) -> tuple[float | None, int]:
    """(annualised Sharpe of daily returns, number of daily returns); the ratio is None below ``min_returns``.

    A daily return runs from one UTC midnight to the next, each marked by the last sample at or
    before it (a run starting at 00:00 counts its first day); annualised by sqrt(365) since tokens
    trade every day; zero risk-free rate. Per-sample Sharpe (:func:`sharpe`) over a few days is no
    guide to anything, hence the floor.
    """
    if len(ts_ns) < 2:
        return None, 0
    day = 86_400 * NS
    midnights = np.arange(-(-int(ts_ns[0]) // day) * day, int(ts_ns[-1]) + 1, day, dtype=np.int64)
    marks = equity[np.searchsorted(ts_ns, midnights, side="right") - 1]
    returns = np.diff(marks) / marks[:-1]
    n = len(returns)
    sd = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    if n < min_returns or not sd > 0:
        return None, n
    return float(np.mean(returns)) / sd * math.sqrt(365.0), n


def max_drawdown(equity: np.ndarray) -> tuple[float, float | None]:
    """(largest fall from the running peak in quote ccy, largest fall as a fraction of its peak)."""
    if len(equity) == 0:
        return 0.0, None
    peak = np.maximum.accumulate(equity)
    fall = peak - equity
    frac = np.where(peak > 0, fall / np.where(peak > 0, peak, 1.0), np.nan)
    return float(fall.max()), (float(np.nanmax(frac)) if np.isfinite(frac).any() else None)


def quoted_venues(timeseries: pl.DataFrame, venues: Sequence[str]) -> list[str]:
    """Venues where we showed at least one quote during the run (config order)."""
    out = []
    for v in venues:
        bid, ask = column(timeseries, f"bid_{v}"), column(timeseries, f"ask_{v}")
        if np.isfinite(bid).any() or np.isfinite(ask).any():
            out.append(v)
    return out


def spread_bps(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    """``(ask - bid) / mid`` in bps where both sides exist (crossed books give negative values)."""
    ok = np.isfinite(bid) & np.isfinite(ask) & (bid + ask > 0)
    return (ask[ok] - bid[ok]) / ((ask[ok] + bid[ok]) / 2.0) * 1e4


def _with_sessions(fills: pl.DataFrame, timeseries: pl.DataFrame) -> pl.DataFrame:
    if timeseries.height == 0:
        return fills.with_columns(pl.lit(None, dtype=pl.Int8).alias("session"))
    samples = timeseries.select("ts", "session").sort("ts")
    joined = (
        fills.with_row_index("_row")
        .sort("ts")
        .join_asof(samples, on="ts", strategy="backward")
        .sort("_row")
        .drop("_row")
    )
    return joined.with_columns(pl.col("session").fill_null(samples["session"][0]))


def _with_markouts(fills: pl.DataFrame, fair_track: pl.DataFrame) -> pl.DataFrame:
    """Adds ``mo_<h>`` = side x (fair(t + h) - price) per unit (null past the end of the track)."""
    if fair_track.height == 0:
        return fills.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"mo_{h}") for h in MARKOUT_HORIZONS_S)
    track = fair_track.select(pl.col("ts").alias("_t"), pl.col("fair").alias("_fh"), pl.col("fair_share").alias("_fsh")).sort("_t")
    end = int(track["_t"].max())
    shares = fills.filter(pl.col("tag") == "hedge")["instrument"].unique().to_list()
    fair_h = pl.when(pl.col("instrument").is_in(shares)).then(pl.col("_fsh")).otherwise(pl.col("_fh"))
    out = fills.with_row_index("_row")
    for h in MARKOUT_HORIZONS_S:
        later = out.select("_row", (pl.col("ts") + h * NS).alias("_t")).sort("_t").join_asof(track, on="_t", strategy="backward")
        out = (
            out.join(later, on="_row", how="left")
            .with_columns(pl.when(pl.col("_t") <= end).then(pl.col("side").cast(pl.Float64) * (fair_h - pl.col("price"))).alias(f"mo_{h}"))
            .drop("_t", "_fh", "_fsh")
        )
    return out.sort("_row").drop("_row")


def _markouts(fills: pl.DataFrame) -> dict[str, float | None]:
    out = {}
    for h in MARKOUT_HORIZONS_S:
        ok = fills.filter(pl.col(f"mo_{h}").is_not_null())
        qty = _sum(ok, "qty")
        out[f"markout_{h}s"] = float((ok[f"mo_{h}"] * ok["qty"]).sum()) / qty if qty > 0 else None
    return out


def _venue_block(venue: str, fills: pl.DataFrame, ts: pl.DataFrame) -> dict[str, Any]:
    expo, cap = column(ts, f"exposure_{venue}"), column(ts, f"cap_{venue}")
    capped = np.isfinite(cap) & (cap > 0)
    bid, ask = column(ts, f"bid_{venue}"), column(ts, f"ask_{venue}")
    return {
        "fills": fills.height,
        "volume": _sum(fills, "qty"),
        "notional": _notional(fills),
        "fees": _sum(fills, "fee"),
        "spread_capture": _edge_sum(fills.filter(pl.col("tag") == "quote")),
        "edge": _edge_sum(fills),
        **_markouts(fills),
        "position_final": _last(column(ts, f"pos_{venue}")),
        "cash_final": _last(column(ts, f"cash_{venue}")),
        "exposure_max": float(expo.max()) if len(expo) else None,
        "exposure_cap": _last(cap),
        "exposure_max_frac_of_cap": float((expo[capped] / cap[capped]).max()) if capped.any() else None,
        "quote_uptime": float((np.isfinite(bid) & np.isfinite(ask)).mean()) if len(bid) else None,
        "quoted_spread_bps_median": _median(spread_bps(bid, ask)),
        "market_spread_bps_median": _median(spread_bps(column(ts, f"mkt_bid_{venue}"), column(ts, f"mkt_ask_{venue}"))),
    }


def _session_blocks(fills: pl.DataFrame, ts: pl.DataFrame, venues: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per session state, in state-code order; spreads pooled over the venues we quoted at."""
    quoted = quoted_venues(ts, venues)
    state = column(ts, "session")
    out = {}
    for code, name in enumerate(STATE_NAMES):
        f = fills.filter(pl.col("session") == code)
        rows = ts.filter(pl.col("session") == code)
        ours = [spread_bps(column(rows, f"bid_{v}"), column(rows, f"ask_{v}")) for v in quoted]
        market = [spread_bps(column(rows, f"mkt_bid_{v}"), column(rows, f"mkt_ask_{v}")) for v in quoted]
        out[name] = {
            "time_share": float((state == code).mean()) if len(state) else None,
            "fills": f.height,
            "volume": _sum(f, "qty"),
            "spread_capture": _edge_sum(f.filter(pl.col("tag") == "quote")),
            "fees": _sum(f, "fee"),
            "quoted_spread_bps_median": _median(np.concatenate(ours) if ours else np.empty(0)),
            "market_spread_bps_median": _median(np.concatenate(market) if market else np.empty(0)),
        }
    return out


def column(df: pl.DataFrame, name: str) -> np.ndarray:
    """A column as numpy (empty when the frame is)."""
    return df[name].to_numpy() if df.height else np.empty(0)


def _edge_sum(fills: pl.DataFrame) -> float:
    return float(fills.select(_EDGE.sum()).item()) if fills.height else 0.0


def _sum(df: pl.DataFrame, name: str) -> float:
    return float(df[name].sum()) if df.height else 0.0


def _notional(fills: pl.DataFrame) -> float:
    return float((fills["price"] * fills["qty"]).sum()) if fills.height else 0.0


def _count(df: pl.DataFrame, cond: pl.Expr) -> int:
    return int(df.filter(cond).height)


def _last(a: np.ndarray) -> float | None:
    return float(a[-1]) if len(a) else None


def _median(a: np.ndarray) -> float | None:
    return float(np.median(a)) if len(a) else None


def _clean(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
