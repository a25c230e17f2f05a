"""Tiny configs, hand-built event streams and a scripted strategy kernel for the engine tests.

Venues (ids in config order): 0 ``alpha`` (cex_spot: maker -1 bps rebate, taker 10 bps, 10 ms order
and response latency), 1 ``beta`` (dex: taker 25 bps + 0.05 gas per trade, 20 ms), 2 ``broker``
(equity_broker for the share, taker 0.5 bps, lot 1 share, 5 ms, hedges in regular hours only).
Instruments: 0 ``AAPL`` (share), 1 ``AAPLx`` (token). No latency jitter unless a test asks for it.

The scripted kernel reads its params as rows of ``ROW`` floats
``(t_from_ns, t_until_ns, venue, side, price, size, kind)``: while ``t_from <= ctx.ts < t_until``
a row of kind QUOTE puts a level-0 quote (side +1 bid / -1 ask) at the venue, a row of kind TAKE
writes a take intent. Times are ns UTC held in float64 (256 ns resolution): tests put window edges
well away from any event.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from data.schema import EVENT_DTYPE, F_BATCH_END, KIND_QUOTE, KIND_TRADE
from data.store import write_events
from stockbridge.config import StockbridgeConfig, parse_config
from stockbridge.core.context import ASK, BID

NS = 1_000_000_000
MS = 1_000_000

ALPHA, BETA, BROKER = 0, 1, 2
AAPL, AAPLX = 0, 1
VENUE_NAMES = ("alpha", "beta", "broker")
INSTRUMENT_NAMES = ("AAPL", "AAPLx")
VENUE_INSTRUMENT = {ALPHA: AAPLX, BETA: AAPLX, BROKER: AAPL}

QUOTE, TAKE = 0.0, 1.0
ROW = 7


def utc(text: str) -> int:
    """ISO-8601 UTC time -> int ns."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


# Mon 2025-07-07 14:00 UTC = 10:00 New York, regular session
T0 = utc("2025-07-07T14:00:00Z")

BASE_CONFIG: dict[str, Any] = {
    "instruments": {
        "AAPL": {"kind": "share"},
        "AAPLx": {"kind": "token", "underlying": "AAPL"},
    },
    "venues": {
        "alpha": {
            "kind": "cex_spot", "instruments": {"AAPLx": "AAPLX/USDT"}, "maker_fee_bps": -1.0, "taker_fee_bps": 10.0,
            "tick_size": 0.01, "lot_size": 0.01, "hours": "24/7",
            "order_latency_ms": 10.0, "response_latency_ms": 10.0, "latency_jitter_ms": 0.0,
        },
        "beta": {
            "kind": "dex", "instruments": {"AAPLx": "AAPLx/USDC"}, "maker_fee_bps": 0.0, "taker_fee_bps": 25.0,
            "gas_per_trade": 0.05, "tick_size": 0.01, "lot_size": 0.01, "hours": "24/7",
            "order_latency_ms": 20.0, "response_latency_ms": 20.0, "latency_jitter_ms": 0.0,
        },
        "broker": {
            "kind": "equity_broker", "instruments": {"AAPL": "AAPL"}, "maker_fee_bps": 0.0, "taker_fee_bps": 0.5,
            "tick_size": 0.01, "lot_size": 1.0, "hours": "equity", "hedge_sessions": ["regular"],
            "order_latency_ms": 5.0, "response_latency_ms": 5.0, "latency_jitter_ms": 0.0,
        },
    },
    "risk": {
        "max_position": 50.0, "max_net_delta": 200.0, "hedge_band": 1000.0, "hedge_target": 0.0,
        "offhours_size_factor": 1.0, "min_spread_z": 0.0, "hedge_gamma": 0.0, "hedge_slippage_ticks": 5.0,
    },
    "backtest": {
        "seed": 3, "initial_cash": 25_000.0, "decision_interval_ms": 0.0, "requote_ticks": 1.0,
        "requote_size_frac": 1.0, "queue_model": "conservative", "sample_interval_s": 1.0,
    },
}


def make_config(path: Path, **overrides: Any) -> StockbridgeConfig:
    """BASE_CONFIG with nested overrides: ``venues={"beta": {"order_latency_ms": 0}}`` merges key by key."""
    data = copy.deepcopy(BASE_CONFIG)
    _merge(data, overrides)
    return parse_config(data, path)


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# -- events --------------------------------------------------------------------------------------


def ev(kind: int, venue: int, side: int, price: float, size: float, t: int, exch: int | None = None, flags: int = 0) -> tuple:
    """One event row: ``t`` local ns, ``exch`` venue ns (default: ``t``, no feed latency)."""
    return (kind, side, venue, VENUE_INSTRUMENT[venue], flags, t if exch is None else exch, t, price, size, 0)


def quote(venue: int, t: int, bid: float | None = None, bid_size: float = 0.0, ask: float | None = None, ask_size: float = 0.0) -> list[tuple]:
    """L1 rows at local time ``t``: bid then ask (one same-time group)."""
    rows = []
    if bid is not None:
        rows.append(ev(KIND_QUOTE, venue, 1, bid, bid_size, t))
    if ask is not None:
        rows.append(ev(KIND_QUOTE, venue, -1, ask, ask_size, t, flags=F_BATCH_END))
    return rows


def trade(venue: int, t: int, aggressor: int, price: float, size: float) -> list[tuple]:
    return [ev(KIND_TRADE, venue, aggressor, price, size, t)]


def write_store(root: Path, rows: list[tuple]) -> Path:
    """Write the rows to a tick store at ``root``, one stream per venue (rows keep their order)."""
    arr = np.array(rows, dtype=EVENT_DTYPE)
    for v, name in enumerate(VENUE_NAMES):
        mine = arr[arr["venue"] == v]
        if len(mine):
            write_events(root, name, INSTRUMENT_NAMES[VENUE_INSTRUMENT[v]], mine)
    return root


# -- the scripted kernel -------------------------------------------------------------------------


def script(*rows: tuple) -> np.ndarray:
    """Params for :func:`script_kernel`: rows ``(t_from_ns, t_until_ns, venue, side, price, size, kind)``."""
    out = np.array([float(x) for r in rows for x in r], dtype=np.float64)
    assert out.size == ROW * len(rows)
    return out


@njit(cache=True)
def script_kernel(ctx, params, quotes, takes):
    n_take = 0
    t = float(ctx.ts)
    for r in range(params.shape[0] // ROW):
        k = r * ROW
        if not (params[k] <= t < params[k + 1]):
            continue
        v = int(params[k + 2])
        side = params[k + 3]
        if params[k + 6] == QUOTE:
            s = BID if side > 0 else ASK
            quotes[v, s, 0, 0] = params[k + 4]
            quotes[v, s, 0, 1] = params[k + 5]
        elif n_take < takes.shape[0]:
            takes[n_take, 0] = v
            takes[n_take, 1] = side
            takes[n_take, 2] = params[k + 4]
            takes[n_take, 3] = params[k + 5]
            n_take += 1
    return np.int64(n_take)


def run(cfg: StockbridgeConfig, root: Path, params: np.ndarray, *, kernel=script_kernel, chunk_size: int = 1_000_000, crosscheck: bool = False):
    """run_backtest on the store at ``root`` without writing outputs; returns (summary, replay)."""
    from backtest.runner import run_backtest

    return run_backtest(cfg, "<test>", root, None, kernel=kernel, params=params, chunk_size=chunk_size, crosscheck=crosscheck)


def market_stream(seed: int, n_steps: int = 60, t0: int = T0, step_ms: int = 250) -> list[tuple]:
    """A small random market in regular hours: broker quotes around a walking share price, both token
    venues quoting around it, and trades on the token venues that reach a few ticks into the book.

    L1 bid and ask rows share a local time (a same-time group), and the token venues see the feed
    with a few ms of latency, so chunk boundaries and group boundaries do not line up.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    mid = 100.0
    for i in range(n_steps):
        t = t0 + i * step_ms * MS
        mid = round(mid + 0.01 * int(rng.integers(-3, 4)), 2)
        rows += quote(BROKER, t, round(mid - 0.01, 2), 300.0, round(mid + 0.01, 2), 300.0)
        for v, half, lat in ((ALPHA, 0.04, 3), (BETA, 0.06, 7)):
            tv = t + (lat + int(rng.integers(0, 5))) * MS
            bs, as_ = float(rng.integers(1, 6)), float(rng.integers(1, 6))
            rows += [ev(KIND_QUOTE, v, 1, round(mid - half, 2), bs, tv, exch=tv - lat * MS),
                     ev(KIND_QUOTE, v, -1, round(mid + half, 2), as_, tv, exch=tv - lat * MS, flags=F_BATCH_END)]
            if rng.random() < 0.5:
                tt = tv + int(rng.integers(20, 120)) * MS
                aggr = 1 if rng.random() < 0.5 else -1
                px = round(mid + aggr * (half + 0.01 * int(rng.integers(-8, 2))), 2)
                rows += [ev(KIND_TRADE, v, aggr, px, float(rng.integers(1, 8)), tt, exch=tt - lat * MS)]
    rows.sort(key=lambda r: r[6])
    return rows
