"""Synthetic multi-venue market: one share, its token on several venues, and their event streams.

What is simulated (all driven by one seeded ``numpy`` PCG64 generator tree, so a seed fixes every row):

- **Share price** ``S``: a lognormal martingale on a 1 s grid whose variance per second follows the
  session weights of the config (``SessionCalendar.variance_at``), so most variance falls in regular
  hours. While the equity market is shut (overnight, weekend, holiday) only ``1 - JUMP_SHARE`` of
  the accrued variance diffuses; the rest is released as one jump when the market reopens (the
  gap). So the log-variance from any moment the market is open to any later one is
  ``sigma^2 * variance_time(t0, t1)``, with ``sigma^2`` set so that the year after ``synth.start``
  carries ``annual_vol^2``.
- **Token fair value** on venue v: ``S * multiplier(t) * (1 + premium_v)``, the multiplier from the
  token's schedule and ``premium_v`` a mean-reverting (Ornstein-Uhlenbeck) premium whose spread and
  half-life grow when the share market is shut (``PREMIUM_STD_BPS``, ``PREMIUM_HALF_LIFE_S``).
- **Token books**: a ``LEVELS``-deep L2 book per venue. Book updates arrive as a Poisson process
  with mean gap ``synth.quote_interval_ms``. An update is a full ``KIND_SNAPSHOT`` (``2*LEVELS``
  rows, ``F_CLEAR`` on the first, ``F_BATCH_END`` on the last) when the fair value has left the
  book's centre by more than ``REQUOTE_FRAC`` of the half-spread or the session state changed;
  otherwise it is one ``KIND_DEPTH`` row that redraws the size of one level. Makers thus requote
  only when the price has moved, which keeps a week of three venues at a few million rows. Spreads
  widen and depth thins by session state (``TOKEN_SPREAD_MULT``, ``TOKEN_DEPTH_MULT``); a venue
  whose ``hours`` close it deletes all its levels (``KIND_DEPTH`` rows with size 0) and reopens
  with a snapshot.
- **Token trades**: Poisson at ``synth.trade_rate_per_min`` in regular hours, thinned by
  ``TOKEN_TRADE_MULT`` off-hours (30 % on weekends). A fraction ``synth.informed_fraction`` of them is
  informed: the aggressor buys if the venue's fair value ``INFORMED_HORIZON_S`` later is higher,
  else sells, so a maker resting at the touch is adversely selected. A trade prints at the touch
  (side = aggressor), takes at most the touch size, and is followed by a ``KIND_DEPTH`` row with
  what is left at that level.
- **Share at the equity broker**: L1 ``KIND_QUOTE`` rows (bid then ask, the ask row carrying
  ``F_BATCH_END``) and uninformed trades only in pre-market, regular and after-hours; nothing in the
  overnight ATS session or while closed. Tighter than the tokens (``SHARE_HALF_SPREAD_BPS``).
- **State rows**: ``KIND_SESSION`` rows on the broker stream at the start and at each session
  boundary (``size`` = state code), ``KIND_MULTIPLIER`` rows on each token stream at the start and at
  each activation (``price`` = multiplier).
- **Timestamps**: ``local_ts = exch_ts + response_latency_ms`` plus an exponential jitter of mean
  ``latency_jitter_ms``, clamped so that ``local_ts`` never decreases within a stream; rows of one
  batch share both timestamps.

Units: times int64 ns UTC, prices quote currency on the venue's tick grid, sizes tokens/shares on
its lot grid, spreads and premia in basis points where named ``_bps``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from data.schema import (
    EVENT_DTYPE,
    F_BATCH_END,
    F_CLEAR,
    KIND_DEPTH,
    KIND_MULTIPLIER,
    KIND_NAMES,
    KIND_QUOTE,
    KIND_SESSION,
    KIND_SNAPSHOT,
    KIND_TRADE,
)
from data.store import write_events
from stockbridge.config import StockbridgeConfig
from stockbridge.errors import ConfigError
from stockbridge.instruments import InstrumentKind, Venue, VenueKind, to_ns
from stockbridge.sessions import AFTER, PRE, REGULAR, SessionCalendar

STEP_NS = 1_000_000_000            # grid of the fair-value paths
DAY_NS = 86_400 * STEP_NS
YEAR_NS = 365 * DAY_NS
LEVELS = 5                         # book levels per side on token venues
INFORMED_HORIZON_S = 30            # an informed aggressor knows the fair value this far ahead
JUMP_SHARE = 0.6                   # share of closed-market variance released as a gap at the reopen
REQUOTE_FRAC = 0.5                 # requote (snapshot) when fair moves this fraction of the half-spread
LEVEL_GAP_FRAC = 0.3               # distance between levels, fraction of the half-spread (>= 1 tick)
LEVEL_GROWTH = 1.4                 # each deeper level holds this much more than the one above
DEPTH_NOTIONAL = 20_000.0          # quote ccy at the touch in regular hours
BASE_HALF_SPREAD_BPS = 2.0         # token half-spread before fees
FEE_PASS_THROUGH = 0.25            # makers widen by this fraction of the venue's taker fee
TRADE_NOTIONAL = 2_000.0           # median trade, quote ccy
TRADE_SIZE_SIGMA = 0.8             # lognormal sigma of trade sizes
HALF_SPREAD_NOISE = 0.15           # lognormal sigma of each snapshot's half-spread
SIZE_NOISE = 0.3                   # lognormal sigma of level sizes
DEX_PREMIUM_SCALE = 1.5            # DEX premia wander more than CEX premia
SHARE_TRADE_RATE_FACTOR = 10.0     # the share trades this many times as often as one token venue

# Tables indexed by the underlying's session state: CLOSED, PRE, REGULAR, AFTER, OVERNIGHT.
TOKEN_SPREAD_MULT = np.array([4.0, 1.8, 1.0, 1.8, 3.0])
TOKEN_DEPTH_MULT = np.array([0.25, 0.6, 1.0, 0.6, 0.35])
TOKEN_TRADE_MULT = np.array([0.3, 0.5, 1.0, 0.5, 0.35])
PREMIUM_STD_BPS = np.array([20.0, 8.0, 3.0, 8.0, 15.0])         # stationary std-dev of the premium
PREMIUM_HALF_LIFE_S = np.array([7200.0, 1800.0, 600.0, 1800.0, 3600.0])
SHARE_HALF_SPREAD_BPS = np.array([0.0, 2.5, 0.25, 2.5, 0.0])
SHARE_DEPTH = np.array([0.0, 60.0, 400.0, 60.0, 0.0])           # shares at each side of the L1 quote
SHARE_TRADE_MULT = np.array([0.0, 0.1, 1.0, 0.1, 0.0])
SHARE_QUOTING = np.array([0, 1, 1, 1, 0], dtype=np.uint8)        # broker quotes in pre/regular/after only

NEVER = np.iinfo(np.int64).max

# Kernel parameter vector (float64) and carried state (int64 / float64) slots.
P_TICK, P_TICK_SCALE, P_LOT, P_LOT_SCALE, P_HALF_BPS, P_DEPTH, P_QUOTE_GAP_NS, P_TRADE_GAP_NS = range(8)
P_INFORMED, P_LAT_NS, P_JITTER_NS, P_TRADE_NOTIONAL = range(8, 12)
N_PARAMS = 12
C_NEXT_UPDATE, C_NEXT_TRADE, C_LAST_LOCAL, C_TRADE_ID, C_STATE = range(5)
N_CARRY_I = 5
CF_CENTER, CF_HALF = range(2)
N_CARRY_F = 2


# ---------------------------------------------------------------------------------------------
# compiled kernels
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def share_path(var_inc, states, jump_share, gen, carry):
    """Share price during each grid step.

    ``var_inc[j]``: log-variance accrued over step j; ``states[j]``: session state of step j;
    ``carry = [log price, gap variance pending]`` is read and updated so days chain.
    """
    n = var_inc.shape[0]
    out = np.empty(n)
    x = carry[0]
    pending = carry[1]
    for j in range(n):
        s = states[j]
        if s == PRE or s == REGULAR or s == AFTER:
            if pending > 0.0:
                x += -0.5 * pending + math.sqrt(pending) * gen.standard_normal()
                pending = 0.0
            v = var_inc[j]
        else:
            pending += jump_share * var_inc[j]
            v = (1.0 - jump_share) * var_inc[j]
        out[j] = math.exp(x)
        x += -0.5 * v + math.sqrt(v) * gen.standard_normal()
    carry[0] = x
    carry[1] = pending
    return out


@njit(cache=True)
def premium_path(states, std_bps, half_life_s, scale, gen, carry):
    """Venue premium (fraction of fair) during each grid step: exact OU steps with per-state parameters.

    ``carry = [premium]`` chains days.
    """
    n = states.shape[0]
    out = np.empty(n)
    p = carry[0]
    dt = STEP_NS * 1e-9
    for j in range(n):
        out[j] = p
        s = states[j]
        a = math.exp(-math.log(2.0) * dt / half_life_s[s])
        sd = scale * std_bps[s] * 1e-4
        p = p * a + sd * math.sqrt(1.0 - a * a) * gen.standard_normal()
    carry[0] = p
    return out


@njit(cache=True)
def _on_grid(k, unit, scale):
    """k grid units -> value; dividing by an integer scale keeps 0.01-style grids exact in float64."""
    if scale > 0.0:
        return k / scale
    return k * unit


@njit(cache=True)
def _lots(x, prm):
    """x tokens -> a whole number of lots, at least one."""
    k = np.floor(x / prm[P_LOT] + 0.5)
    if k < 1.0:
        k = 1.0
    return _on_grid(k, prm[P_LOT], prm[P_LOT_SCALE])


@njit(cache=True)
def _stamp(t, ci, prm, gen):
    """local_ts of a batch stamped t at the venue: feed latency plus jitter, never before the last one."""
    lat = prm[P_LAT_NS]
    if prm[P_JITTER_NS] > 0.0:
        lat += gen.exponential(prm[P_JITTER_NS])
    loc = t + np.int64(lat)
    if loc < ci[C_LAST_LOCAL]:
        loc = ci[C_LAST_LOCAL]
    ci[C_LAST_LOCAL] = loc
    return loc


@njit(cache=True)
def _put(out, n, kind, side, flags, t, loc, price, size, ident):
    r = out[n]
    r.kind = kind
    r.side = side
    r.flags = flags
    r.exch_ts = t
    r.local_ts = loc
    r.price = price
    r.size = size
    r.id = ident
    return n + 1


@njit(cache=True)
def _gap(mean_ns, gen):
    g = np.int64(gen.exponential(mean_ns))
    return g if g > 0 else np.int64(1)


@njit(cache=True)
def token_events(t_end, day_start, fair, states, venue_open, gen, prm, spread_mult, depth_mult, trade_mult,
                 book_px, book_sz, ci, cf, out):
    """Book updates and trades of one token venue from the carried next-event times until ``t_end``.

    ``fair``/``states``/``venue_open`` are per grid step from ``day_start`` (``fair`` must extend
    ``INFORMED_HORIZON_S`` steps past ``t_end``). ``book_px``/``book_sz`` [2, LEVELS] (row 0 bids,
    row 1 asks, level 0 at the touch), ``ci``/``cf`` carry the rest of the state between calls.
    Writes rows to ``out`` (EVENT_DTYPE); returns (rows written, True if t_end was reached) and stops
    early, resumable, when ``out`` is nearly full.
    """
    n = 0
    levels = book_px.shape[1]
    cap = out.shape[0]
    horizon = INFORMED_HORIZON_S * 1_000_000_000 // STEP_NS
    while True:
        t_up = ci[C_NEXT_UPDATE]
        t_tr = ci[C_NEXT_TRADE]
        t = t_up if t_up <= t_tr else t_tr
        if t >= t_end:
            return n, True
        if n + 2 * levels + 2 > cap:
            return n, False
        j = (t - day_start) // STEP_NS
        s = states[j]
        if t_up <= t_tr:
            ci[C_NEXT_UPDATE] = t + _gap(prm[P_QUOTE_GAP_NS], gen)
            if not venue_open[j]:
                if ci[C_STATE] >= 0:
                    loc = _stamp(t, ci, prm, gen)
                    last = -1
                    for b in range(2):
                        for lv in range(levels):
                            if book_sz[b, lv] > 0.0:
                                last = n
                                n = _put(out, n, KIND_DEPTH, 1 - 2 * b, 0, t, loc, book_px[b, lv], 0.0, 0)
                                book_sz[b, lv] = 0.0
                    if last >= 0:
                        out[last].flags = F_BATCH_END
                    ci[C_STATE] = -1
                continue
            f = fair[j]
            if ci[C_STATE] != s or abs(f - cf[CF_CENTER]) > REQUOTE_FRAC * cf[CF_HALF]:
                half = prm[P_HALF_BPS] * 1e-4 * spread_mult[s] * f * math.exp(HALF_SPREAD_NOISE * gen.standard_normal())
                tick = prm[P_TICK]
                bid0 = np.floor((f - half) / tick)
                ask0 = np.ceil((f + half) / tick)
                if ask0 <= bid0:
                    ask0 = bid0 + 1.0
                gap = max(1.0, np.floor(LEVEL_GAP_FRAC * half / tick + 0.5))
                depth = prm[P_DEPTH] * depth_mult[s] / f
                loc = _stamp(t, ci, prm, gen)
                for b in range(2):
                    for lv in range(levels):
                        k = bid0 - lv * gap if b == 0 else ask0 + lv * gap
                        book_px[b, lv] = _on_grid(k, tick, prm[P_TICK_SCALE])
                        book_sz[b, lv] = _lots(depth * LEVEL_GROWTH**lv * math.exp(SIZE_NOISE * gen.standard_normal()), prm)
                        fl = 0
                        if b == 0 and lv == 0:
                            fl = F_CLEAR
                        elif b == 1 and lv == levels - 1:
                            fl = F_BATCH_END
                        n = _put(out, n, KIND_SNAPSHOT, 1 - 2 * b, fl, t, loc, book_px[b, lv], book_sz[b, lv], 0)
                cf[CF_CENTER] = f
                cf[CF_HALF] = half
                ci[C_STATE] = s
            else:
                b = gen.integers(0, 2)
                lv = gen.integers(0, levels)
                depth = prm[P_DEPTH] * depth_mult[s] / f
                book_sz[b, lv] = _lots(depth * LEVEL_GROWTH**lv * math.exp(SIZE_NOISE * gen.standard_normal()), prm)
                loc = _stamp(t, ci, prm, gen)
                n = _put(out, n, KIND_DEPTH, 1 - 2 * b, F_BATCH_END, t, loc, book_px[b, lv], book_sz[b, lv], 0)
        else:
            ci[C_NEXT_TRADE] = t + _gap(prm[P_TRADE_GAP_NS], gen)
            if not venue_open[j] or ci[C_STATE] < 0 or gen.random() >= trade_mult[s]:
                continue
            if gen.random() < prm[P_INFORMED]:
                move = fair[j + horizon] - fair[j]
                side = 1 if move > 0.0 else -1
                if move == 0.0:
                    side = 1 - 2 * gen.integers(0, 2)
            else:
                side = 1 - 2 * gen.integers(0, 2)
            b = 1 if side > 0 else 0  # a buyer lifts the asks
            lv = 0
            while lv < levels and book_sz[b, lv] <= 0.0:
                lv += 1
            if lv == levels:
                continue
            px = book_px[b, lv]
            qty = _lots(prm[P_TRADE_NOTIONAL] / px * math.exp(TRADE_SIZE_SIGMA * gen.standard_normal()), prm)
            if qty > book_sz[b, lv]:
                qty = book_sz[b, lv]
            left = book_sz[b, lv] - qty
            if left < 0.5 * prm[P_LOT]:
                left = 0.0
            book_sz[b, lv] = left
            loc = _stamp(t, ci, prm, gen)
            ci[C_TRADE_ID] += 1
            n = _put(out, n, KIND_TRADE, side, 0, t, loc, px, qty, ci[C_TRADE_ID])
            n = _put(out, n, KIND_DEPTH, 1 - 2 * b, F_BATCH_END, t, loc, px, left, 0)


@njit(cache=True)
def share_events(t_end, day_start, price, states, gen, prm, half_bps, depth, trade_mult, quoting, quote, ci, out):
    """L1 quotes and trades of the share at the equity broker until ``t_end``, only in ``quoting`` states.

    ``quote`` [4] = (bid, bid size, ask, ask size) carries the last quote (bid size 0 = none yet).
    Same calling convention as :func:`token_events`.
    """
    n = 0
    cap = out.shape[0]
    while True:
        t_up = ci[C_NEXT_UPDATE]
        t_tr = ci[C_NEXT_TRADE]
        t = t_up if t_up <= t_tr else t_tr
        if t >= t_end:
            return n, True
        if n + 2 > cap:
            return n, False
        j = (t - day_start) // STEP_NS
        s = states[j]
        if t_up <= t_tr:
            ci[C_NEXT_UPDATE] = t + _gap(prm[P_QUOTE_GAP_NS], gen)
            if not quoting[s]:
                quote[1] = 0.0
                continue
            p = price[j]
            half = half_bps[s] * 1e-4 * p * math.exp(HALF_SPREAD_NOISE * gen.standard_normal())
            tick = prm[P_TICK]
            k_bid = np.floor((p - half) / tick)
            k_ask = np.ceil((p + half) / tick)
            if k_ask <= k_bid:
                k_ask = k_bid + 1.0
            quote[0] = _on_grid(k_bid, tick, prm[P_TICK_SCALE])
            quote[2] = _on_grid(k_ask, tick, prm[P_TICK_SCALE])
            quote[1] = _lots(depth[s] * math.exp(SIZE_NOISE * gen.standard_normal()), prm)
            quote[3] = _lots(depth[s] * math.exp(SIZE_NOISE * gen.standard_normal()), prm)
            loc = _stamp(t, ci, prm, gen)
            n = _put(out, n, KIND_QUOTE, 1, 0, t, loc, quote[0], quote[1], 0)
            n = _put(out, n, KIND_QUOTE, -1, F_BATCH_END, t, loc, quote[2], quote[3], 0)
        else:
            ci[C_NEXT_TRADE] = t + _gap(prm[P_TRADE_GAP_NS], gen)
            if not quoting[s] or quote[1] <= 0.0 or gen.random() >= trade_mult[s]:
                continue
            side = 1 - 2 * gen.integers(0, 2)
            px = quote[2] if side > 0 else quote[0]
            avail = quote[3] if side > 0 else quote[1]
            qty = _lots(prm[P_TRADE_NOTIONAL] / px * math.exp(TRADE_SIZE_SIGMA * gen.standard_normal()), prm)
            if qty > avail:
                qty = avail
            loc = _stamp(t, ci, prm, gen)
            ci[C_TRADE_ID] += 1
            n = _put(out, n, KIND_TRADE, side, 0, t, loc, px, qty, ci[C_TRADE_ID])


# ---------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------

def _grid_scale(unit: float) -> float:
    """1/unit when that is a whole number (0.01 -> 100), else 0 (multiply by unit instead)."""
    inv = 1.0 / unit
    return float(round(inv)) if inv >= 1.0 and abs(inv - round(inv)) < 1e-9 * inv else 0.0


def _params(venue: Venue, synth, half_bps: float, depth: float, trade_rate_per_min: float, informed: float) -> np.ndarray:
    prm = np.zeros(N_PARAMS)
    prm[P_TICK] = venue.tick_size
    prm[P_TICK_SCALE] = _grid_scale(venue.tick_size)
    prm[P_LOT] = venue.lot_size
    prm[P_LOT_SCALE] = _grid_scale(venue.lot_size)
    prm[P_HALF_BPS] = half_bps
    prm[P_DEPTH] = depth
    prm[P_QUOTE_GAP_NS] = synth.quote_interval_ms * 1e6
    prm[P_TRADE_GAP_NS] = 60e9 / trade_rate_per_min if trade_rate_per_min > 0 else 0.0
    prm[P_INFORMED] = informed
    prm[P_LAT_NS] = venue.response_latency_ms * 1e6
    prm[P_JITTER_NS] = venue.latency_jitter_ms * 1e6
    prm[P_TRADE_NOTIONAL] = TRADE_NOTIONAL
    return prm


@dataclass
class _Stream:
    """One (venue, instrument) event stream and the state its kernel carries from day to day."""

    venue: str
    instrument: str
    venue_id: int
    instrument_id: int
    hours: str
    prm: np.ndarray
    gen: np.random.Generator
    is_token: bool
    premium_scale: float = 1.0
    premium_gen: np.random.Generator | None = None
    premium_carry: np.ndarray = field(default_factory=lambda: np.zeros(1))
    ci: np.ndarray = field(default_factory=lambda: np.zeros(N_CARRY_I, dtype=np.int64))
    cf: np.ndarray = field(default_factory=lambda: np.zeros(N_CARRY_F))
    book_px: np.ndarray = field(default_factory=lambda: np.zeros((2, LEVELS)))
    book_sz: np.ndarray = field(default_factory=lambda: np.zeros((2, LEVELS)))
    quote: np.ndarray = field(default_factory=lambda: np.zeros(4))


@dataclass
class _Day:
    """Per-grid-step paths of one day: states, share price, multiplier and each token venue's premium."""

    start: int
    states: np.ndarray
    share: np.ndarray
    multiplier: np.ndarray
    premium: dict[str, np.ndarray]


def synth_pair(cfg: StockbridgeConfig) -> tuple[str, str]:
    """(token, share) the generator simulates: the quoted token and its underlying.

    Raises ``ConfigError`` (path ``<config>``; callers with a file re-raise with its path) when the
    config has no token to simulate.
    """
    tokens = [n for n, i in cfg.instruments.items() if i.kind is InstrumentKind.token]
    if not tokens:
        raise ConfigError("<config>", "instruments", "the synthetic market needs a token instrument (kind = 'token')")
    token = cfg.quoted_token()
    if cfg.instruments[token].kind is not InstrumentKind.token:
        raise ConfigError("<config>", "strategy.instrument", f"'{token}' is a share; the synthetic market quotes a token")
    return token, cfg.instruments[token].underlying


def _streams(cfg: StockbridgeConfig, seed: int) -> list[_Stream]:
    """The token venues' and the hedge venue's streams, in config order, each with its own generators.

    Generators are keyed by venue id (``SeedSequence(seed, spawn_key=(1, id))``), so adding a venue
    at the end of the config leaves the other venues' rows unchanged.
    """
    token, share = synth_pair(cfg)
    s = cfg.synth
    vids, iids = cfg.venue_ids(), cfg.instrument_ids()
    hedge = cfg.hedge_venue()
    streams = []
    for name, venue in cfg.venues.items():
        gens = [np.random.Generator(np.random.PCG64(k)) for k in np.random.SeedSequence(seed, spawn_key=(1, vids[name])).spawn(2)]
        if venue.kind is not VenueKind.equity_broker and token in venue.instruments:
            half_bps = (
                BASE_HALF_SPREAD_BPS
                + FEE_PASS_THROUGH * venue.taker_fee_bps
                + venue.gas_per_trade / TRADE_NOTIONAL * 1e4
            )
            prm = _params(venue, s, half_bps, DEPTH_NOTIONAL, s.trade_rate_per_min, s.informed_fraction)
            scale = DEX_PREMIUM_SCALE if venue.kind is VenueKind.dex else 1.0
            streams.append(_Stream(name, token, vids[name], iids[token], venue.hours, prm, gens[0], True, scale, gens[1]))
        elif name == hedge and share in venue.instruments:
            prm = _params(venue, s, 0.0, 0.0, s.trade_rate_per_min * SHARE_TRADE_RATE_FACTOR, 0.0)
            streams.append(_Stream(name, share, vids[name], iids[share], venue.hours, prm, gens[0], False))
    for st in streams:
        st.ci[C_NEXT_UPDATE] = NEVER
        st.ci[C_NEXT_TRADE] = NEVER
        st.ci[C_LAST_LOCAL] = np.iinfo(np.int64).min
        st.ci[C_STATE] = -1
    return streams


def _kernel_rows(run, capacity: int) -> np.ndarray:
    """Call a resumable kernel (``run(out) -> (n, done)``) until it reports done; concatenate its rows."""
    parts = []
    while True:
        out = np.zeros(capacity, dtype=EVENT_DTYPE)
        n, done = run(out)
        parts.append(out[:n])
        if done:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _state_rows(times: np.ndarray, values: np.ndarray, kind: int, lat_ns: int, t0: int, first_value: float | None) -> np.ndarray:
    """KIND_SESSION (value in ``size``) or KIND_MULTIPLIER (value in ``price``) rows; with ``first_value``
    also a row at ``t0`` stating the value in force at the start, unless a change falls exactly there."""
    if first_value is not None and (len(times) == 0 or times[0] != t0):
        times = np.concatenate([[t0], times])
        values = np.concatenate([[first_value], values])
    rows = np.zeros(len(times), dtype=EVENT_DTYPE)
    rows["kind"] = kind
    rows["exch_ts"] = times
    rows["local_ts"] = times + lat_ns
    rows["size" if kind == KIND_SESSION else "price"] = values
    return rows


class _Market:
    """The calendar, the share path and the per-venue premia, generated one day at a time."""

    def __init__(self, config: StockbridgeConfig, days: int, seed: int, streams: list[_Stream]):
        s = config.synth
        self.start = to_ns(s.start)
        # Covers the window, the look-ahead day informed traders peek into, and the year that scales vol.
        self.cal = SessionCalendar(
            self.start, self.start + max(days + 1, 366) * DAY_NS, config.sessions.calendar, config.sessions.weights
        )
        self.sigma2 = s.annual_vol**2 / float(self.cal.variance_time(self.start, self.start + YEAR_NS))
        self.token = config.instruments[synth_pair(config)[0]]
        self.streams = streams
        self.share_gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
        self.share_carry = np.array([math.log(s.share_price), 0.0])

    def day(self, d: int) -> _Day:
        day_start = self.start + d * DAY_NS
        grid = day_start + np.arange(DAY_NS // STEP_NS + 1, dtype=np.int64) * STEP_NS
        states = self.cal.state_at(grid[:-1])
        var_inc = self.sigma2 * np.diff(self.cal.variance_at(grid))
        share = share_path(var_inc, states, JUMP_SHARE, self.share_gen, self.share_carry)
        premium = {
            st.venue: premium_path(states, PREMIUM_STD_BPS, PREMIUM_HALF_LIFE_S, st.premium_scale, st.premium_gen, st.premium_carry)
            for st in self.streams if st.is_token
        }
        return _Day(day_start, states, share, self.token.multiplier_at(grid[:-1]), premium)


def _token_day(st: _Stream, today: _Day, tomorrow: _Day, market: _Market, capacity: int, first: bool) -> np.ndarray:
    horizon = INFORMED_HORIZON_S * 1_000_000_000 // STEP_NS
    t0, t_end = today.start, today.start + DAY_NS
    fair = np.concatenate([
        today.share * today.multiplier * (1.0 + today.premium[st.venue]),
        (tomorrow.share * tomorrow.multiplier * (1.0 + tomorrow.premium[st.venue]))[: horizon + 1],
    ])
    venue_open = market.cal.venue_open(st.hours, t0 + np.arange(len(today.states), dtype=np.int64) * STEP_NS)
    venue_open = venue_open.astype(np.uint8)
    rows = _kernel_rows(
        lambda out: token_events(t_end, t0, fair, today.states, venue_open, st.gen, st.prm, TOKEN_SPREAD_MULT,
                                 TOKEN_DEPTH_MULT, TOKEN_TRADE_MULT, st.book_px, st.book_sz, st.ci, st.cf, out),
        capacity,
    )
    times, values = market.token.multiplier_schedule()
    in_day = (times >= t0) & (times < t_end)
    start_value = float(market.token.multiplier_at(t0)) if first else None
    return np.concatenate([rows, _state_rows(times[in_day], values[in_day], KIND_MULTIPLIER, int(st.prm[P_LAT_NS]), t0, start_value)])


def _share_day(st: _Stream, today: _Day, market: _Market, capacity: int, first: bool) -> np.ndarray:
    t0, t_end = today.start, today.start + DAY_NS
    rows = _kernel_rows(
        lambda out: share_events(t_end, t0, today.share, today.states, st.gen, st.prm, SHARE_HALF_SPREAD_BPS,
                                 SHARE_DEPTH, SHARE_TRADE_MULT, SHARE_QUOTING, st.quote, st.ci, out),
        capacity,
    )
    cal = market.cal
    in_day = (cal.boundaries >= t0) & (cal.boundaries < t_end)
    start_value = float(cal.state_at(t0)) if first else None
    states = cal.states[in_day].astype(np.float64)
    return np.concatenate([rows, _state_rows(cal.boundaries[in_day], states, KIND_SESSION, int(st.prm[P_LAT_NS]), t0, start_value)])


def generate_events(
    config: StockbridgeConfig, days: int | None = None, seed: int | None = None
) -> Iterator[tuple[str, str, int, np.ndarray]]:
    """Yield ``(venue, instrument, day index, events)`` for every stream, day by day, in config order.

    ``events`` is an EVENT_DTYPE array sorted by ``local_ts`` (stable: batches stay contiguous).
    ``days``/``seed`` default to ``config.synth.days`` / ``config.backtest.seed``.
    """
    days = config.synth.days if days is None else days
    seed = config.backtest.seed if seed is None else seed
    if days < 1:
        raise ValueError("days must be at least 1")
    streams = _streams(config, seed)
    market = _Market(config, days, seed, streams)
    capacity = int(DAY_NS / (config.synth.quote_interval_ms * 1e6)) * 3 + 4 * LEVELS + 1024
    for st in streams:
        st.ci[C_NEXT_UPDATE] = market.start + int(st.gen.exponential(st.prm[P_QUOTE_GAP_NS]))
        if st.prm[P_TRADE_GAP_NS] > 0:
            st.ci[C_NEXT_TRADE] = market.start + int(st.gen.exponential(st.prm[P_TRADE_GAP_NS]))
    today = market.day(0)
    for d in range(days):
        tomorrow = market.day(d + 1)
        for st in streams:
            if st.is_token:
                events = _token_day(st, today, tomorrow, market, capacity, d == 0)
            else:
                events = _share_day(st, today, market, capacity, d == 0)
            events = events[np.argsort(events["local_ts"], kind="stable")]
            events["venue"] = st.venue_id
            events["instrument"] = st.instrument_id
            yield st.venue, st.instrument, d, events
        today = tomorrow


def synthesize(
    config: StockbridgeConfig,
    out_dir: str | Path,
    days: int | None = None,
    seed: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Generate the synthetic market and write it to the Parquet store at ``out_dir``.

    ``progress(venue, day index, rows)`` is called after each venue-day is written. Returns
    ``{"out_dir", "days", "seed", "start_ns", "end_ns", "first_ts", "last_ts", "events": {venue:
    {kind name: rows}}, "total", "seconds"}`` (first/last over ``exch_ts`` and ``local_ts``, ns UTC).
    """
    began = time.perf_counter()
    days = config.synth.days if days is None else days
    seed = config.backtest.seed if seed is None else seed
    counts: dict[str, dict[str, int]] = {}
    first, last = NEVER, np.iinfo(np.int64).min
    for venue, instrument, d, events in generate_events(config, days, seed):
        written = write_events(out_dir, venue, instrument, events)
        per_kind = counts.setdefault(venue, {})
        for code, k in zip(*np.unique(events["kind"], return_counts=True)):
            name = KIND_NAMES[int(code)]
            per_kind[name] = per_kind.get(name, 0) + int(k)
        if len(events):
            first = min(first, int(events["exch_ts"].min()))
            last = max(last, int(events["local_ts"].max()))
        if progress is not None:
            progress(venue, d, written)
    start = to_ns(config.synth.start)
    write_params(out_dir, generator_params(config, days, seed))
    return {
        "out_dir": str(out_dir),
        "days": days,
        "seed": seed,
        "start_ns": start,
        "end_ns": start + days * DAY_NS,
        "first_ts": first,
        "last_ts": last,
        "events": counts,
        "total": sum(sum(k.values()) for k in counts.values()),
        "seconds": time.perf_counter() - began,
    }


# -- the parameters a store was generated with (so a changed [synth] table is noticed) --------------

PARAMS_FILE = "synth-params.json"


def generator_params(config: StockbridgeConfig, days: int | None = None, seed: int | None = None) -> dict:
    """Everything the generator reads: ``[synth]`` (with ``days``), the seed, and the instruments,
    venues and sessions tables it builds the market from; JSON-ready."""
    import json

    synth = config.synth.model_dump(mode="json")
    synth["days"] = config.synth.days if days is None else days
    market = json.loads(config.model_dump_json(include={"instruments", "venues", "sessions"}))
    return {"synth": synth, "seed": config.backtest.seed if seed is None else seed, **market}


def write_params(out_dir: str | Path, params: dict) -> Path:
    import json

    path = Path(out_dir) / PARAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return path


def read_params(out_dir: str | Path) -> dict | None:
    """The parameters recorded by :func:`synthesize` in ``out_dir``; None if there is no (readable) record."""
    import json

    try:
        return json.loads((Path(out_dir) / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None


def params_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (keys only on one side included)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += params_diff(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
