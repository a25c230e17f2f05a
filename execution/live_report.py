"""The live run's results in the backtest's shapes: time series, fair track, summary.json, report.html.

:class:`Sampler` takes the rows of ``timeseries.parquet`` (the backtest's columns) from the trader
core's books on a fixed interval of the run's clock, and accrues the inventory PnL (what held
positions gained or lost as their marks moved) at every sample and before every fill, so the
summary's PnL decomposition has an inventory term measured independently of the fills' edges: its
residual shows what the decomposition misses (fills booked between two marks of one sample move
nothing; a mark that jumps between samples is accrued at the next one).

:func:`write_live_outputs` writes fills.parquet (from the journal: the fills the venues reported),
timeseries.parquet, fair_track.parquet, summary.json and report.html with backtest.metrics and
backtest.report, so a live run and a backtest read the same way.

Units: times ns UTC on the run's clock; money quote currency; positions tokens (shares at the broker).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stockbridge.core import trader as T
from stockbridge.core.context import MAX_LEVELS

_FIXED = ("fair", "fair_share", "equity_raw", "equity_haircut", "net_delta", "pnl_inventory_cum")
_PER_VENUE = ("pos", "cash", "exposure", "cap", "bid", "ask", "mkt_bid", "mkt_ask")


class Sampler:
    """Samples of a TraderCore's books (``core``), every ``interval_ns`` of the run's clock.

    ``baseline``: per venue id, the position held at start-up that counts as flat (tokens; the
    positions sampled are the core's, i.e. relative to it)."""

    def __init__(self, core: Any, venue_names: list[str], interval_ns: int, start_ns: int, clock: Any):
        self.core, self.venue_names, self.interval_ns = core, list(venue_names), int(interval_ns)
        self.clock = clock
        self.next_ns = start_ns
        self.rows: list[list[float]] = []
        self.track: list[tuple[int, float, float]] = []
        self.pnl_inventory = 0.0
        self._marks: tuple[float, float] | None = None
        self.first: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None

    def accrue(self, now: int) -> dict[str, Any]:
        """Move the marks to ``now`` and add what the current positions made on the move."""
        val = self.core.valuation(now)
        tr = self.core.tr
        marks = (float(val["token_mark"]), float(val["share_mark"]))
        if self._marks is not None:
            share = int(tr.ci[T.K_SHARE])
            for v in range(len(self.venue_names)):
                ins = int(tr.venue_instrument[v])
                if ins < 0:
                    continue
                k = 1 if ins == share else 0
                d = marks[k] - self._marks[k]
                if math.isfinite(d):
                    self.pnl_inventory += float(tr.kpos[v, ins]) * d
        old = self._marks or (math.nan, math.nan)
        self._marks = tuple(m if math.isfinite(m) else old[k] for k, m in enumerate(marks))
        return val

    def marks_for_fill(self) -> tuple[float, float]:
        """(fair, multiplier) for a fill's log row, after accruing up to now (the fill's position
        change must not earn the move that came before it)."""
        val = self.accrue(self.clock())
        return float(val["fair"]), float(self.core.tr.f[T.T_MULT])

    def due(self, now: int) -> bool:
        return now >= self.next_ns

    def sample(self, now: int, session: int) -> dict[str, Any]:
        """One time-series row at ``now``; returns the valuation it used."""
        val = self.accrue(now)
        tr = self.core.tr
        ni = int(tr.ci[T.K_NI])
        row = [float(now), float(session), val["fair"], val["share_mark"], val["equity_raw"], val["equity_haircut"],
               val["net_delta"], self.pnl_inventory]
        for v in range(len(self.venue_names)):
            ins = int(tr.venue_instrument[v])
            b = v * ni + max(ins, 0)
            ours = []
            for side in range(2):
                px = [float(tr.wo[s]["price"]) for s in tr.qslot[v, side, :MAX_LEVELS] if s >= 0]
                ours.append((max(px) if side == 0 else min(px)) if px else math.nan)
            mkt = [float(tr.lpx[b, side, 0]) if tr.lnlev[b, side] > 0 else math.nan for side in range(2)]
            row += [float(tr.kpos[v, ins]) if ins >= 0 else 0.0, float(tr.kcash[v]), val["venue_value"][v],
                    float(tr.exposure_cap[v]), ours[0], ours[1], mkt[0], mkt[1]]
        self.rows.append(row)
        self.track.append((now, float(val["fair"]), float(val["share_mark"])))
        while self.next_ns <= now:
            self.next_ns += self.interval_ns
        if self.first is None:
            self.first = val
        self.last = val
        return val

    def timeseries(self) -> pl.DataFrame:
        a = np.array(self.rows, dtype=np.float64).reshape(-1, 8 + 8 * len(self.venue_names))
        cols: dict[str, Any] = {"ts": a[:, 0].astype(np.int64), "session": a[:, 1].astype(np.int8)}
        for k, name in enumerate(_FIXED, 2):
            cols[name] = a[:, k]
        for v, venue in enumerate(self.venue_names):
            for k, name in enumerate(_PER_VENUE):
                cols[f"{name}_{venue}"] = a[:, 8 + 8 * v + k]
        return pl.DataFrame(cols)

    def fair_track(self) -> pl.DataFrame:
        ts = [t[0] for t in self.track]
        return pl.DataFrame({"ts": pl.Series(ts, dtype=pl.Int64), "fair": [t[1] for t in self.track],
                             "fair_share": [t[2] for t in self.track]})


def write_live_outputs(out: Path, *, journal: Any, sampler: Sampler, venues: list[str], config_path: str,
                       seed: int, wall_seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    """fills.parquet, timeseries.parquet, fair_track.parquet, summary.json and report.html in ``out``;
    returns the summary."""
    from backtest.metrics import summarize
    from backtest.report import write_report

    fills = journal.fills_frame()
    series = sampler.timeseries()
    track = sampler.fair_track()
    first, last = sampler.first or {}, sampler.last or {}
    ts = series["ts"].to_numpy()
    totals = {
        "events": int(extra.get("events", 0)),
        "simulated_seconds": float((ts[-1] - ts[0]) / 1e9) if len(ts) > 1 else 0.0,
        "wall_seconds": wall_seconds,
        "equity_initial_raw": float(first.get("equity_raw", math.nan)),
        "equity_final_raw": float(last.get("equity_raw", math.nan)),
        "equity_final_after_haircut": float(last.get("equity_haircut", math.nan)),
        "pnl_inventory": sampler.pnl_inventory,
        "borrow_cost": 0.0,
        "default_loss": 0.0,
        "venues": venues,
        "seed": seed,
        "config": config_path,
    }
    summary = summarize(fills, series, track, totals)
    summary.update(extra)
    out.mkdir(parents=True, exist_ok=True)
    fills.write_parquet(out / "fills.parquet")
    series.write_parquet(out / "timeseries.parquet")
    track.write_parquet(out / "fair_track.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n")
    write_report(out / "report.html", summary, fills, series, track, Path(config_path).name, kind="live")
    return summary


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        v = float(o)
        return v if math.isfinite(v) else None
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


__all__ = ["Sampler", "write_live_outputs"]
