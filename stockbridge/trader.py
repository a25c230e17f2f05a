"""From a config to the trader core's arrays, in one place, and the core as Python calls it.

:func:`build_trader` is what the backtester (backtest.runner) and the live bot both call: venue fees,
grids, haircuts, caps, session tables, the hedge mask, limits and the fair-value and volatility
priors all go from the validated config (through stockbridge.tables) into a
stockbridge.core.trader.Trader. The backtest adds only what belongs to its simulated venues.

:class:`TraderCore` drives a Trader from Python with plain numpy arrays (the live bot's way): each
input is a compiled function called through its compiled entry point, so a call costs the
unboxing of the state's arrays and no type dispatch.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from numba import njit, typeof, types

from stockbridge.config import StockbridgeConfig
from stockbridge.core import cycle
from stockbridge.core import trader as T
from stockbridge.core.actions import ACTION_DTYPE, new_actions
from stockbridge.core.book import new_book
from stockbridge.core.session_clock import hedge_tables
from stockbridge.core.context import (
    MAX_LEVELS,
    MAX_VENUES,
    new_context,
    new_quotes,
    new_takes,
)
from stockbridge.core.decide import kernel_addresses, kernel_at
from stockbridge.core.fair_value import new_fair_state
from stockbridge.core.volatility import new_vol_state
from stockbridge.core.working import MAX_WORKING, PREFIX_BITS, new_working
from stockbridge.tables import MarketTables, fill_static_context

NS = 1_000_000_000
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CID_TEXT_PREFIX = "sb"


def variance_seconds_per_year(weights: np.ndarray) -> float:
    """Variance-seconds in an average year: 252 trading days of 6.5 regular, 5.5 pre, 4 after, 8
    overnight hours; the rest of the 8766 hours closed. Converts an annual vol prior to the clock."""
    from stockbridge.sessions import AFTER, CLOSED, OVERNIGHT, PRE, REGULAR

    day = 6.5 * weights[REGULAR] + 5.5 * weights[PRE] + 4.0 * weights[AFTER] + 8.0 * weights[OVERNIGHT]
    closed_hours = 8766.0 - 252 * 24.0
    return 3600.0 * (252 * day + closed_hours * weights[CLOSED])


def cid_prefix(seed: int, run: str = "") -> int:
    """The client-id prefix of a run (PREFIX_BITS bits): the backtest's from its seed, so a rerun gives
    the same ids; the live bot's from its seed and its start, so a restart never reuses an id."""
    digest = hashlib.blake2b(f"{seed}/{run}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << PREFIX_BITS) - 1) or 1


def cid_text(cid: int) -> str:
    """A client order id as the venues take it: ``sb`` + 13 characters of [0-9a-z] (15 in all)."""
    if cid <= 0:
        raise ValueError(f"client order ids are positive, got {cid}")
    out = []
    n = int(cid)
    while n:
        n, r = divmod(n, 36)
        out.append(_BASE36[r])
    return CID_TEXT_PREFIX + "".join(reversed(out)).rjust(13, "0")


def cid_from_text(text: str) -> int:
    """Inverse of :func:`cid_text`; ValueError if ``text`` is not one of ours."""
    if not (text.startswith(CID_TEXT_PREFIX) and len(text) == 15):
        raise ValueError(f"not a stockbridge client order id: {text!r}")
    return int(text[len(CID_TEXT_PREFIX):], 36)


def build_trader(cfg: StockbridgeConfig, tables: MarketTables, start_ns: int, *, book_depth: int,
                 prefix: int, working_capacity: int = MAX_WORKING, initial_cash: float | None = None) -> T.Trader:
    """The trader core for ``cfg`` at ``start_ns`` (ns UTC): config tables, empty books of the market
    (``book_depth`` levels a side), no working orders, ``initial_cash`` (quote ccy, default the
    config's backtest.initial_cash) at every configured venue. ``prefix``: :func:`cid_prefix`."""
    bt = cfg.backtest
    nv, ni = tables.n_venues, len(tables.instrument_names)
    cf = np.zeros(T.N_C, dtype=np.float64)
    cf[T.C_DECISION_NS] = bt.decision_interval_ms * 1e6
    cf[T.C_REQUOTE_TICKS] = bt.requote_ticks
    cf[T.C_REQUOTE_FRAC] = bt.requote_size_frac
    cf[T.C_HEDGE_BAND] = tables.hedge_band
    cf[T.C_HEDGE_TARGET] = tables.hedge_target
    cf[T.C_OFFHOURS] = tables.offhours_size_factor
    cf[T.C_GAP_Z] = tables.gap_z
    cf[T.C_HALF_LIFE_S] = cfg.fair_value.consensus_half_life_s
    cf[T.C_NOISE_BPS] = cfg.fair_value.venue_noise_bps
    cf[T.C_HEDGE_GAMMA] = cfg.risk.hedge_gamma
    cf[T.C_HEDGE_HOLD_S] = cfg.risk.hedge_hold_s
    cf[T.C_HEDGE_SLIP] = cfg.risk.hedge_slippage_ticks
    ci = np.array([nv, ni, tables.token, tables.share, tables.hedge_venue], dtype=np.int64)

    f = np.full(T.N_T_F, np.nan)
    f[T.T_CARRIED] = 0.0
    iv = np.zeros(T.N_T_I, dtype=np.int64)
    iv[T.T_MULT_IDX] = int(np.searchsorted(tables.mult_times, start_ns, side="right") - 1)
    f[T.T_MULT] = tables.mult_values[iv[T.T_MULT_IDX]]
    iv[T.T_NEXT_DECISION] = start_ns
    iv[T.T_HEDGE_SLOT] = -1
    iv[T.T_NEXT_SERIAL] = 1
    iv[T.T_FAIR_TS] = -1
    iv[T.T_CID_PREFIX] = prefix
    wo, wfree = new_working(working_capacity)
    iv[T.T_WFREE_N] = working_capacity
    cash = np.zeros(MAX_VENUES)
    cash[:nv] = bt.initial_cash if initial_cash is None else initial_cash
    ctx = new_context()
    fill_static_context(ctx, tables)
    sigma0 = cfg.fair_value.prior_annual_vol / np.sqrt(variance_seconds_per_year(tables.sess_weights))
    lpx, lqty, lnlev, ldropped = new_book(nv * ni, book_depth)
    open_var, close_var, after_close = hedge_tables(tables.sess_boundaries, tables.sess_states, tables.sess_cumvar,
                                                    tables.sess_weights, tables.hedge_mask)
    zeros = lambda *shape: np.zeros(shape, dtype=np.float64)
    return T.Trader(
        cf=cf, ci=ci, venue_instrument=tables.venue_instrument, quotable=tables.quotable, tick=tables.tick,
        lot=tables.lot, taker_fee=tables.taker_fee, haircut=tables.haircut, exposure_cap=tables.exposure_cap,
        borrow_rate=tables.borrow_rate, hours_bounds=tables.hours_bounds, hours_open=tables.hours_open,
        hours_len=tables.hours_len, sess_boundaries=tables.sess_boundaries, sess_states=tables.sess_states,
        sess_cumvar=tables.sess_cumvar, sess_weights=tables.sess_weights, hedge_mask=tables.hedge_mask,
        mult_times=tables.mult_times, mult_values=tables.mult_values,
        seg_open_var=open_var, seg_close_var=close_var, seg_after_close=after_close,
        f=f, iv=iv, kpos=zeros(MAX_VENUES, ni), kcash=cash, kavg=zeros(MAX_VENUES, ni),
        krealized=zeros(MAX_VENUES, ni), kfees=zeros(MAX_VENUES), vstatus=np.zeros(MAX_VENUES, dtype=np.int64),
        hours_k=np.zeros(MAX_VENUES, dtype=np.int64),
        lpx=lpx, lqty=lqty, lnlev=lnlev, ldropped=ldropped, last_update=np.zeros(MAX_VENUES, dtype=np.int64),
        last_trade=np.full((MAX_VENUES, 3), np.nan),
        fair_state=new_fair_state(),
        vol_state=new_vol_state(cfg.fair_value.vol_half_life_var_s, cfg.fair_value.vol_min_interval_var_s, sigma0),
        wo=wo, wfree=wfree, qslot=np.full((MAX_VENUES, 2, MAX_LEVELS), -1, dtype=np.int64),
        arb_live=np.zeros(MAX_VENUES, dtype=np.int64), stale_qty=zeros(MAX_VENUES, 2),
        ctx=ctx, quotes=new_quotes(), takes=new_takes(), actions=new_actions(2 * working_capacity),
        work=np.zeros((4, MAX_VENUES)),
    )


# ---------------------------------------------------------------------------------------------
# Python entry points (compiled with explicit signatures so numba caches them)


def _py_book_level(tr, v, ins, side, price, size, is_quote, clear, now):
    T.book_level(tr, v, ins, side, price, size, is_quote, clear, now)


def _py_book_end(tr, v, ins, now):
    T.book_end(tr, v, ins, now)


def _py_trade(tr, v, ins, side, price, size, now):
    T.trade(tr, v, ins, side, price, size, now)


def _py_report(tr, kind, cid, final_state, price, qty, fee, now):
    return T.report(tr, kind, cid, final_state, price, qty, fee, now)


def _py_step(tr, now, params, c_addr, jit_addr):
    return cycle.step(tr, now, params, kernel_at(c_addr, jit_addr))


def _py_book_snapshot(tr, v, ins, bids, asks, is_quote, now):
    # a whole book as a venue's client keeps it (ccxt.pro's order book, an L1 quote): it replaces ours
    for k in range(bids.shape[0]):
        T.book_level(tr, v, ins, 1, bids[k, 0], bids[k, 1], is_quote, k == 0, now)
    for k in range(asks.shape[0]):
        T.book_level(tr, v, ins, -1, asks[k, 0], asks[k, 1], is_quote, k == 0 and bids.shape[0] == 0, now)
    if bids.shape[0] == 0 and asks.shape[0] == 0:
        T.book_level(tr, v, ins, 1, 0.0, 0.0, False, True, now)
    T.book_end(tr, v, ins, now)


def _py_venue_status(tr, v, status, claim_cash):
    T.venue_status(tr, v, status, claim_cash)


def _py_valuation(tr, now, out):
    # out: [raw equity, equity after haircut, net delta, fair, share mark, token mark, value at venue 0, 1, ...]
    T.fair_at(tr, now)
    raw, cut = T.equity(tr, tr.kpos, tr.kcash)
    out[0] = raw
    out[1] = cut
    out[2] = T.net_delta(tr, tr.kpos)
    out[3] = tr.f[T.T_FAIR]
    out[4] = tr.f[T.T_SHARE_MARK]
    out[5] = tr.f[T.T_TOKEN_MARK]
    for v in range(tr.ci[T.K_NV]):
        out[6 + v] = T.venue_value(tr, tr.kpos, tr.kcash, v)


_ENTRIES: dict = {}
_I = types.int64
_F = types.float64
_B = types.boolean


class TraderCore:
    """A Trader driven from Python: ``book_level``, ``book_end``, ``trade``, ``report``, ``step`` and
    the actions it wrote (:meth:`actions`). Units as in stockbridge.core.trader."""

    def __init__(self, trader: T.Trader, params: np.ndarray, kernel):
        self.tr = trader
        self.params = np.ascontiguousarray(params, dtype=np.float64)
        self.kernel = kernel
        ty = typeof(trader)
        self._book_level = self._entry(_py_book_level, types.void(ty, _I, _I, _I, _F, _F, _B, _B, _I))
        self._book_end = self._entry(_py_book_end, types.void(ty, _I, _I, _I))
        self._trade = self._entry(_py_trade, types.void(ty, _I, _I, _I, _F, _F, _I))
        self._report = self._entry(_py_report, _I(ty, _I, _I, _I, _F, _F, _F, _I))
        self._step = self._entry(_py_step, _I(ty, _I, types.float64[::1], _I, _I))
        self._book_snapshot = self._entry(_py_book_snapshot, types.void(ty, _I, _I, _F[:, ::1], _F[:, ::1], _B, _I))
        self._venue_status = self._entry(_py_venue_status, types.void(ty, _I, _I, _F))
        self._valuation = self._entry(_py_valuation, types.void(ty, _I, _F[::1]))
        self._values = np.zeros(6 + int(trader.ci[T.K_NV]))
        self._kernel_addr = kernel_addresses(kernel)

    @staticmethod
    def _entry(fn, sig):
        """The compiled entry point of ``fn`` for ``sig``: called directly, it skips the dispatcher's
        type resolution (about 60 ns per array of the state instead of about 250)."""
        key = (fn, sig)
        if key not in _ENTRIES:
            disp = njit(sig, cache=True, _nrt=False)(fn)
            _ENTRIES[key] = disp.overloads[disp.signatures[0]].entry_point
        return _ENTRIES[key]

    def book_level(self, venue: int, instrument: int, side: int, price: float, size: float, *,
                   is_quote: bool = False, clear: bool = False, now: int) -> None:
        self._book_level(self.tr, venue, instrument, side, price, size, is_quote, clear, now)

    def book_end(self, venue: int, instrument: int, now: int) -> None:
        self._book_end(self.tr, venue, instrument, now)

    def trade(self, venue: int, instrument: int, side: int, price: float, size: float, now: int) -> None:
        self._trade(self.tr, venue, instrument, side, price, size, now)

    def book_snapshot(self, venue: int, instrument: int, bids: np.ndarray, asks: np.ndarray, *,
                      is_quote: bool = False, now: int) -> None:
        """A whole book (float64 arrays of [price, size] rows, best first) replaces ours, then
        :meth:`book_end`: one call for what a venue client hands over as one book."""
        self._book_snapshot(self.tr, venue, instrument, bids, asks, is_quote, now)

    def venue_status(self, venue: int, status: int, claim_cash: float = 0.0) -> None:
        """stockbridge.core.trader VENUE_OK / VENUE_HALTED (not tradable: no quotes, no takes, no
        hedge there) / VENUE_DEFAULTED (balance becomes a claim worth ``claim_cash``)."""
        self._venue_status(self.tr, venue, status, claim_cash)

    def valuation(self, now: int) -> dict[str, Any]:
        """Our books valued at ``now`` (quote ccy): equity raw and after haircut, net delta (shares),
        fair value, the marks, and the balance value at each venue."""
        out = self._values
        self._valuation(self.tr, now, out)
        return {"equity_raw": out[0], "equity_haircut": out[1], "net_delta": out[2], "fair": out[3],
                "share_mark": out[4], "token_mark": out[5], "venue_value": out[6:].tolist()}

    def report(self, kind: int, cid: int, *, final_state: int = 0, price: float = 0.0, qty: float = 0.0,
               fee: float = 0.0, now: int) -> bool:
        """An order report (order_codes REP_*); False if ``cid`` is not a working order of ours."""
        return self._report(self.tr, kind, cid, final_state, price, qty, fee, now) == 1

    def step(self, now: int) -> int:
        """Decide at ``now`` if due (cycle.STEP_*); the actions are then :meth:`actions`."""
        return self._step(self.tr, now, self.params, *self._kernel_addr)

    def actions(self) -> np.ndarray:
        """The actions of the last step (ACTION_DTYPE rows, a copy), and clears them."""
        n = int(self.tr.iv[T.T_N_ACTIONS])
        out = self.tr.actions[:n].copy()
        self.tr.iv[T.T_N_ACTIONS] = 0
        return out

    def working(self) -> list[dict[str, Any]]:
        """Our live working orders as dicts (for logs and tests)."""
        wo = self.tr.wo
        live = wo[wo["state"] != 0]
        return [{name: live[name][k].item() for name in wo.dtype.names} for k in range(len(live))]


__all__ = ["ACTION_DTYPE", "TraderCore", "build_trader", "cid_from_text", "cid_prefix", "cid_text",
           "variance_seconds_per_year"]
