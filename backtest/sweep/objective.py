"""What a sweep optimises: one number per run, from the summary and the equity series the backtest made.

Built-in objectives (``[objective] metric``):

- ``pnl_after_haircut``: ``equity_final_after_haircut - equity_initial_raw``: the run's PnL with
  every venue balance valued after its credit haircut (quote ccy);
- ``pnl``: ``pnl_total``, raw (quote ccy);
- ``sharpe``: annualised Sharpe ratio of ``window_s``-second simple returns of raw equity over the
  run's own window (each return runs from one multiple of ``window_s`` since the epoch to the next,
  marked by the last sample at or before it; year = 365.25 days, tokens trade 24/7; zero risk-free
  rate); ``None`` with fewer than :data:`MIN_RETURNS` returns or no variation. Not the summary's
  ``sharpe``, which uses every 60 s sample;
- ``pnl_per_drawdown``: ``pnl_total / max_drawdown`` (raw equity; ``None`` when there was no drawdown);
- ``markout``: the summary's qty-weighted fill markout at ``horizon_s`` (1, 10 or 60 s), quote ccy
  per unit; positive means our fills were good.

Any other numeric figure of the summary (:data:`SUMMARY_METRICS`, e.g. ``pnl_spread_capture``) may be
named too. Every run records all the built-ins (:func:`run_metrics`), so the page can show any of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NS = 1_000_000_000
SECONDS_PER_YEAR = 365.25 * 24 * 3600
MIN_RETURNS = 3

METRICS = ("pnl_after_haircut", "pnl", "sharpe", "pnl_per_drawdown", "markout")
# the figures of backtest.metrics.summarize a run records as columns (and an objective may name)
SUMMARY_METRICS = (
    "pnl_total", "pnl_spread_capture", "pnl_arb", "pnl_hedge", "pnl_inventory", "fees_paid", "borrow_cost",
    "default_loss", "pnl_residual", "haircut_charge", "equity_final_raw", "equity_final_after_haircut",
    "max_drawdown", "max_drawdown_frac", "fills", "fills_maker", "fills_taker", "fills_hedge", "fills_arb",
    "volume", "notional", "markout_1s", "markout_10s", "markout_60s", "events",
)


def windowed_sharpe(ts_ns: np.ndarray, equity: np.ndarray, window_s: float) -> float | None:
    """Annualised Sharpe of ``window_s``-second returns of ``equity`` sampled at ``ts_ns`` (see the module docstring)."""
    ts_ns, equity = np.asarray(ts_ns, dtype=np.int64), np.asarray(equity, dtype=np.float64)
    ok = np.isfinite(equity)
    ts_ns, equity = ts_ns[ok], equity[ok]
    if len(ts_ns) < 2:
        return None
    step = int(round(window_s * NS))
    first = -(-int(ts_ns[0]) // step) * step
    marks_at = np.arange(first, int(ts_ns[-1]) + 1, step, dtype=np.int64)
    if len(marks_at) < MIN_RETURNS + 1:
        return None
    marks = equity[np.searchsorted(ts_ns, marks_at, side="right") - 1]
    returns = np.diff(marks) / marks[:-1]
    sd = float(np.std(returns, ddof=1))
    if not sd > 0:
        return None
    return float(np.mean(returns)) / sd * math.sqrt(SECONDS_PER_YEAR / window_s)


def run_metrics(summary: dict[str, Any], ts_ns: np.ndarray, equity_raw: np.ndarray, *, window_s: float,
                horizon_s: int) -> dict[str, float | None]:
    """Every built-in objective and the summary figures of one run, as plain floats (None = undefined)."""
    out: dict[str, float | None] = {k: _num(summary.get(k)) for k in SUMMARY_METRICS}
    eq0, cut = _num(summary.get("equity_initial_raw")), _num(summary.get("equity_final_after_haircut"))
    out["pnl_after_haircut"] = cut - eq0 if cut is not None and eq0 is not None else None
    out["pnl"] = out["pnl_total"]
    out["sharpe"] = windowed_sharpe(ts_ns, equity_raw, window_s)
    out["sharpe_per_sample"] = _num(summary.get("sharpe"))
    dd, pnl = out["max_drawdown"], out["pnl_total"]
    out["pnl_per_drawdown"] = pnl / dd if dd and pnl is not None and dd > 0 else None
    out["markout"] = out[f"markout_{horizon_s}s"]
    return out


def objective_of(metrics: dict[str, float | None], metric: str) -> float | None:
    return metrics.get(metric)


def better(a: float | None, b: float | None, direction: str) -> bool:
    """Is objective ``a`` strictly better than ``b``? A missing value is worse than any number."""
    if a is None:
        return False
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
