"""Why a backtest did little or nothing: warnings a trader should read before the numbers.

Each warning is one line naming the venue and the figures behind it; the runner puts them in
``summary["warnings"]`` and the CLI prints them. They are not errors: a run with zero fills is a
valid result, but rarely the one the user meant.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def quoting_warnings(series: pl.DataFrame, quotable: list[str]) -> list[str]:
    """Per quotable venue: never quoted, or quotes that never came within the market's best.

    "Within" means our bid at or above the market's best bid, or our ask at or below its best ask,
    in at least one sample (``timeseries.parquet`` columns ``bid_V``, ``ask_V``, ``mkt_bid_V``,
    ``mkt_ask_V``). Spreads are medians over the samples with both sides, bps of the mid."""
    out = []
    for v in quotable:
        cols = [f"bid_{v}", f"ask_{v}", f"mkt_bid_{v}", f"mkt_ask_{v}"]
        if not all(c in series.columns for c in cols) or series.height == 0:
            continue
        bid, ask, mbid, mask = (series[c].to_numpy() for c in cols)
        if not (np.isfinite(bid).any() or np.isfinite(ask).any()):
            out.append(f"{v}: no quote rested there at any sample (check its data, hours, limits and the strategy's params)")
            continue
        with np.errstate(invalid="ignore"):
            inside = (bid >= mbid) | (ask <= mask)
        if inside.any():
            continue
        ours = _median_spread_bps(bid, ask)
        market = _median_spread_bps(mbid, mask)
        out.append(f"{v}: our quotes never came within the market's best (median spread ours {ours} bps, market "
                   f"{market} bps): the quote floor (risk.min_spread_z x fair_std, fair_value.venue_noise_bps) "
                   f"or the strategy's params keep them away")
    return out


def _median_spread_bps(bid: np.ndarray, ask: np.ndarray) -> str:
    both = np.isfinite(bid) & np.isfinite(ask)
    if not both.any():
        return "-"
    mid = 0.5 * (bid[both] + ask[both])
    return f"{float(np.median((ask[both] - bid[both]) / mid * 1e4)):.3g}"


def run_warnings(*, venues_without_data: list[str], fills: int, series: pl.DataFrame, quotable: list[str],
                 levels_dropped: int, consumed_forgotten: int, cancels_retried: int) -> list[str]:
    """Every warning of one run, in the order a reader should see them."""
    out = [f"{v}: configured to quote but the store has no data for it" for v in venues_without_data]
    if fills == 0:
        out.append("no fills at all in this run")
    out += quoting_warnings(series, [v for v in quotable if v not in venues_without_data])
    if levels_dropped:
        out.append(f"{levels_dropped:,} book levels did not fit the book's level cap and were not kept "
                   "(the data is deeper than the replay's books: fills far from the touch may be missing)")
    if consumed_forgotten:
        out.append(f"{consumed_forgotten:,} amounts of liquidity we had taken were forgotten (more than "
                   "backtest.consumed.CONSUMED_SLOTS prices per book side): a restated level there could fill us again")
    if cancels_retried:
        out.append(f"{cancels_retried:,} cancels were refused by a venue and sent again (halts)")
    return out
