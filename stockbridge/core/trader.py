"""The trader core's state and its inputs: everything *we* know, as flat arrays.

The trader core is what the backtester and the live bot share (see ARCHITECTURE.md): our books of
account as the venues' reports told us, our working orders, the market data as it reached us, fair
value and volatility, the carried hedge, the session clock. Nothing a venue owns lives here (the
true ledger, queues, latency): the simulated venues (backtest/) and the venue adapters (execution/)
only feed the core its inputs and carry out its actions (stockbridge.core.cycle).

State is one namedtuple of arrays, :data:`Trader`, built from a config by stockbridge.trader.build_trader.
Compiled code passes it whole; a function that takes it and is not inlined copies every field at
each call (about 100 ns), so the per-event inputs are ``inline="always"``.

Inputs, one function each (times ns UTC, prices quote currency, sizes tokens or shares):

- :func:`book_level` one row of a book update or snapshot (L1 quote, L2 level, with F_CLEAR),
  then :func:`book_end` when the update is complete (fair value follows the new top of book);
- :func:`trade` a public trade;
- :func:`report` an order report by client id: ack, fill, done (filled / cancelled / rejected),
  cancel refused;
- :func:`clock` the clock: multiplier steps (call before a decision or valuation at ``now``);
- :func:`venue_status` a venue halted, back, or defaulted (with what its balance became);
- :func:`cash_adjust` a balance change the venue reports that is not a fill (borrow charged).

Compiled with ``_nrt=False`` (no reference counting): see backtest.engine.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from stockbridge.core import session_clock as sc
from stockbridge.core.book import (
    apply_quote,
    best_price,
    clear_book,
    set_level,
    side_index,
)
from stockbridge.core.fair_value import (
    fair_value,
    fair_value_update_underlying,
    fair_value_update_venue,
)
from stockbridge.core.inventory import apply_fill
from stockbridge.core.order_codes import (
    FILLED,
    OPEN,
    PENDING_CANCEL,
    PENDING_NEW,
    REP_ACK,
    REP_CANCEL_REJECT,
    REP_DONE,
    REP_FILL,
    TAG_ARB,
    TAG_HEDGE,
    TAG_QUOTE,
)
from stockbridge.core.volatility import vol_sigma, vol_update
from stockbridge.core.working import (
    STALE_CANCELLING,
    STALE_NO,
    STALE_REFUSED,
    working_find,
    working_free,
)
from stockbridge.sessions import AFTER, PRE, REGULAR

# venue status as the core knows it
VENUE_OK, VENUE_HALTED, VENUE_DEFAULTED = 0, 1, 2

# an order whose cancel the venue refused is cancelled again this long after the refusal (ns)
CANCEL_RETRY_NS = 1_000_000_000

# float state ``f``
T_FAIR, T_FAIR_STD, T_SHARE_MARK, T_TOKEN_MARK, T_CARRIED, T_SIGMA_SHARE, T_MULT, T_VAR_AT_PRINT = range(8)
N_T_F = 8
# int state ``iv``
(T_MULT_IDX, T_NEXT_DECISION, T_SEG, T_DECISIONS, T_REFUSED, T_CANCEL_RETRIES, T_HEDGE_SLOT, T_NEXT_SERIAL,
 T_N_ACTIONS, T_FAIR_TS, T_CID_PREFIX, T_WFREE_N) = range(12)
N_T_I = 12
# config floats ``cf``
(C_DECISION_NS, C_REQUOTE_TICKS, C_REQUOTE_FRAC, C_HEDGE_BAND, C_HEDGE_TARGET, C_OFFHOURS, C_GAP_Z, C_HALF_LIFE_S,
 C_NOISE_BPS, C_HEDGE_GAMMA, C_HEDGE_HOLD_S, C_HEDGE_SLIP) = range(12)
N_C = 12
# config ints ``ci``
K_NV, K_NI, K_TOKEN, K_SHARE, K_HEDGE_VENUE = range(5)
N_K = 5

Trader = namedtuple(
    "Trader",
    [
        # config (stockbridge.trader.build_trader): never written after the build
        "cf", "ci", "venue_instrument", "quotable", "tick", "lot", "taker_fee", "haircut", "exposure_cap",
        "borrow_rate", "hours_bounds", "hours_open", "hours_len", "sess_boundaries", "sess_states", "sess_cumvar",
        "sess_weights", "hedge_mask", "mult_times", "mult_values", "seg_open_var", "seg_close_var", "seg_after_close",
        # what we know
        "f", "iv", "kpos", "kcash", "kavg", "krealized", "kfees", "vstatus", "hours_k",
        "lpx", "lqty", "lnlev", "ldropped", "last_update", "last_trade",
        "fair_state", "vol_state",
        # our working orders (stockbridge.core.working) and which of them are the quotes
        "wo", "wfree", "qslot", "arb_live", "stale_qty",
        # decision scratch and output
        "ctx", "quotes", "takes", "actions", "work",
    ],
)


# ---------------------------------------------------------------------------------------------
# valuation (our books of account or, with the backtest's true arrays, the venue's)


@njit(cache=True, inline="always", _nrt=False)
def venue_value(tr, pos, cash, v):
    """Balance value at venue v, quote ccy: cash + position x mark (token at fair, share at its reference)."""
    ins = tr.venue_instrument[v]
    if ins < 0:
        return cash[v]
    p = pos[v, ins]
    if p == 0.0:
        return cash[v]
    mark = tr.f[T_SHARE_MARK] if ins == tr.ci[K_SHARE] else tr.f[T_TOKEN_MARK]
    return cash[v] + p * mark


@njit(cache=True, inline="always", _nrt=False)
def equity(tr, pos, cash):
    """(raw, after haircut) over all venues, quote ccy."""
    raw = 0.0
    cut = 0.0
    for v in range(tr.ci[K_NV]):
        val = venue_value(tr, pos, cash, v)
        raw += val
        cut += val * (1.0 - tr.haircut[v]) if val > 0.0 else val
    return raw, cut


@njit(cache=True, inline="always", _nrt=False)
def net_delta(tr, pos):
    """Share-equivalents: token positions x multiplier + hedge shares."""
    tok = 0.0
    sh = 0.0
    for v in range(tr.ci[K_NV]):
        ins = tr.venue_instrument[v]
        if ins < 0:
            continue
        if ins == tr.ci[K_SHARE]:
            sh += pos[v, ins]
        else:
            tok += pos[v, ins]
    return tok * tr.f[T_MULT] + sh


# ---------------------------------------------------------------------------------------------
# the clock


@njit(cache=True, inline="always", _nrt=False)
def segment(tr, now):
    """Index of the session segment holding ``now``, from a cache that moves only at boundaries."""
    k = tr.iv[T_SEG]
    if now < tr.sess_boundaries[k] or (k + 1 < tr.sess_boundaries.shape[0] and now >= tr.sess_boundaries[k + 1]):
        k = sc.segment_index(tr.sess_boundaries, now)
        tr.iv[T_SEG] = k
    return k


@njit(cache=True, inline="always", _nrt=False)
def variance_in(tr, k, now):
    """Variance clock at ``now`` inside segment k (session_clock.variance_at without the search)."""
    return tr.sess_cumvar[k] + tr.sess_weights[tr.sess_states[k]] * (now - tr.sess_boundaries[k]) * 1e-9


@njit(cache=True, inline="always", _nrt=False)
def share_prints(tr, state):
    """The share's quotes mean something in this session: the equity market's own (pre, regular,
    after) or one the hedge venue trades in (the overnight ATS session, when the config hedges there)."""
    return state == PRE or state == REGULAR or state == AFTER or tr.hedge_mask[state] == 1


@njit(cache=True, inline="always", _nrt=False)
def venue_hours_open(tr, v, ts):
    """Venue v trades at ``ts`` by its configured hours (a cursor per venue, searched only when ``ts``
    leaves the cursor's segment)."""
    n = tr.hours_len[v]
    k = tr.hours_k[v]
    if ts < tr.hours_bounds[v, k] or (k + 1 < n and ts >= tr.hours_bounds[v, k + 1]):
        k = max(np.searchsorted(tr.hours_bounds[v, :n], ts, side="right") - 1, 0)
        tr.hours_k[v] = k
    return tr.hours_open[v, k] == 1


@njit(cache=True, inline="always", _nrt=False)
def variance_until_hedge(tr, now):
    """Variance-seconds from ``now`` until the hedge venue's next open (0 while open, inf if never):
    session_clock.variance_until_open from the per-segment tables, without a search."""
    k = segment(tr, now)
    if now < tr.sess_boundaries[k]:  # before the table: the tables do not hold
        return sc.variance_until_open(tr.sess_boundaries, tr.sess_states, tr.sess_cumvar, tr.sess_weights,
                                      tr.hedge_mask, now)
    o = tr.seg_open_var[k]
    if math.isnan(o):
        return 0.0
    return o - variance_in(tr, k, now)


@njit(cache=True, inline="always", _nrt=False)
def variance_held_past_close(tr, now):
    """Variance-seconds a position taken at ``now`` stays unhedgeable at the latest: until the hedge
    venue's next close, plus the gap after it until it opens again (NaN if it never closes)."""
    k = segment(tr, now)
    if now < tr.sess_boundaries[k]:
        t_close = sc.next_close(tr.sess_boundaries, tr.sess_states, tr.hedge_mask, now)
        if t_close == sc.NO_TIME:
            return math.nan
        return (sc.variance_at(tr.sess_boundaries, tr.sess_states, tr.sess_cumvar, tr.sess_weights, t_close)
                - sc.variance_at(tr.sess_boundaries, tr.sess_states, tr.sess_cumvar, tr.sess_weights, now)
                + sc.variance_until_open(tr.sess_boundaries, tr.sess_states, tr.sess_cumvar, tr.sess_weights,
                                         tr.hedge_mask, t_close))
    return tr.seg_close_var[k] - variance_in(tr, k, now) + tr.seg_after_close[k]


@njit(cache=True, inline="always", _nrt=False)
def clock(tr, now):
    """Multiplier steps due by ``now`` (shares per token move at their announced activation times)."""
    while tr.iv[T_MULT_IDX] + 1 < tr.mult_times.shape[0] and tr.mult_times[tr.iv[T_MULT_IDX] + 1] <= now:
        tr.iv[T_MULT_IDX] += 1
        tr.f[T_MULT] = tr.mult_values[tr.iv[T_MULT_IDX]]
        tr.iv[T_FAIR_TS] = -1


# ---------------------------------------------------------------------------------------------
# market data as it reaches us


@njit(cache=True, inline="always", _nrt=False)
def heard_from(tr, v, now):
    """Anything from venue v arrived at ``now`` (the strategy sees how fresh each venue's data is)."""
    if v < tr.last_update.shape[0]:
        tr.last_update[v] = now


@njit(cache=True, inline="always", _nrt=False)
def book_level(tr, v, ins, side, price, size, is_quote, clear, now):
    """One row of a book update at venue v: ``side`` +1 bid / -1 ask; ``is_quote``: an L1 quote (it
    also removes better levels) rather than one L2 level; ``clear``: the book is replaced from here
    (a snapshot's first row). Size 0 removes the level. Call :func:`book_end` after the last row."""
    ni = tr.ci[K_NI]
    heard_from(tr, v, now)
    if v >= tr.lnlev.shape[0] // ni or ins >= ni or side == 0:
        return
    b = v * ni + ins
    sd = side_index(side)
    if clear:
        clear_book(tr.lnlev, b)
    if is_quote:
        apply_quote(tr.lpx, tr.lqty, tr.lnlev, tr.ldropped, b, sd, price, max(size, 0.0))
    else:
        set_level(tr.lpx, tr.lqty, tr.lnlev, tr.ldropped, b, sd, price, max(size, 0.0))
    tr.iv[T_FAIR_TS] = -1


@njit(cache=True, inline="always", _nrt=False)
def book_end(tr, v, ins, now):
    """An update from venue v (book rows or a trade, everything it sent at one time) is complete: fair
    value and volatility follow its mid (the share's only in a session where its quotes mean something)."""
    if v >= tr.ci[K_NV] or ins >= tr.ci[K_NI]:
        return
    ni = tr.ci[K_NI]
    b = v * ni + ins
    mid = 0.5 * (best_price(tr.lpx, tr.lnlev, b, 0) + best_price(tr.lpx, tr.lnlev, b, 1))
    if v == tr.ci[K_HEDGE_VENUE] and ins == tr.ci[K_SHARE]:
        k = segment(tr, now)
        if share_prints(tr, tr.sess_states[k]) and math.isfinite(mid) and mid > 0.0:
            var_now = variance_in(tr, k, now)
            fair_value_update_underlying(tr.fair_state, now, mid)
            tr.f[T_VAR_AT_PRINT] = var_now
            tr.f[T_SIGMA_SHARE] = vol_update(tr.vol_state, var_now, mid) * mid
            tr.iv[T_FAIR_TS] = -1
    elif tr.venue_instrument[v] == ins:
        fair_value_update_venue(tr.fair_state, v, now, mid)
        tr.iv[T_FAIR_TS] = -1


@njit(cache=True, inline="always", _nrt=False)
def trade(tr, v, ins, side, price, size, now):
    """A public trade at venue v (``side`` the aggressor's, 0 unknown): the last trade there."""
    heard_from(tr, v, now)
    if v < tr.last_trade.shape[0] and ins == tr.venue_instrument[v]:
        tr.last_trade[v, 0] = price
        tr.last_trade[v, 1] = size * (1.0 if side >= 0 else -1.0)
        tr.last_trade[v, 2] = now


# ---------------------------------------------------------------------------------------------
# fair value and marks


@njit(cache=True, inline="always", _nrt=False)
def fair_at(tr, now):
    """Fair value of one token at ``now`` (quote ccy), into ``f[T_FAIR]`` / ``f[T_FAIR_STD]``; the marks
    our balances are valued at follow it (token at fair, share at its last mid). Computed once per
    ``now`` until an input changes what it depends on."""
    if tr.iv[T_FAIR_TS] == now:
        return
    k = segment(tr, now)
    session = tr.sess_states[k]
    hv = tr.ci[K_HEDGE_VENUE]
    var_since = 0.0
    if math.isfinite(tr.f[T_VAR_AT_PRINT]):
        var_since = variance_in(tr, k, now) - tr.f[T_VAR_AT_PRINT]
    two_sided = False
    if hv >= 0:
        hb = hv * tr.ci[K_NI] + tr.ci[K_SHARE]
        two_sided = (math.isfinite(best_price(tr.lpx, tr.lnlev, hb, 0))
                     and math.isfinite(best_price(tr.lpx, tr.lnlev, hb, 1)))
    fair, fair_std = fair_value(tr.fair_state, now, tr.f[T_MULT], share_prints(tr, session) and two_sided,
                                var_since, vol_sigma(tr.vol_state), tr.cf[C_HALF_LIFE_S], tr.cf[C_NOISE_BPS])
    tr.f[T_FAIR] = fair
    tr.f[T_FAIR_STD] = fair_std
    if math.isfinite(fair):
        tr.f[T_TOKEN_MARK] = fair
    if math.isfinite(tr.fair_state[0]):
        tr.f[T_SHARE_MARK] = tr.fair_state[0]
    tr.iv[T_FAIR_TS] = now


# ---------------------------------------------------------------------------------------------
# what the venues tell us


@njit(cache=True, inline="always", _nrt=False)
def _unstale(tr, w, qty):
    """A stale order's open size shrinks by ``qty`` (a fill, or its end)."""
    side = side_index(w.side)
    v = np.int64(w.venue)
    tr.stale_qty[v, side] = max(tr.stale_qty[v, side] - qty, 0.0)


@njit(cache=True, inline="always", _nrt=False)
def report(tr, kind, cid, final_state, price, qty, fee, now):
    """A venue's report about our order ``cid``: REP_ACK, REP_FILL (``price``, ``qty``, ``fee`` in quote
    ccy, negative = rebate), REP_DONE (``final_state`` FILLED / CANCELLED / REJECTED) or
    REP_CANCEL_REJECT. Returns 1 if ``cid`` is one of our working orders, 0 if not (a report about
    an order already finished: the caller decides whether that is news)."""
    slot = working_find(tr.wo, cid)
    if slot < 0:
        return 0
    w = tr.wo[slot]
    v = np.int64(w.venue)
    if kind == REP_ACK:
        if w.state == PENDING_NEW:
            w.state = OPEN
    elif kind == REP_FILL:
        # a default set our books there to the claim, which already counts every fill made there
        if tr.vstatus[v] != VENUE_DEFAULTED:
            apply_fill(tr.kpos, tr.kcash, tr.kavg, tr.krealized, tr.kfees, v, np.int64(w.instrument),
                       np.int64(w.side), price, qty, 0.0, fee)
        w.leaves = max(w.leaves - qty, 0.0)
        if w.stale != STALE_NO:
            _unstale(tr, w, qty)
    elif kind == REP_CANCEL_REJECT:
        if w.state == PENDING_CANCEL:
            w.state = OPEN
        if w.stale == STALE_CANCELLING:
            w.stale = STALE_REFUSED
            tr.iv[T_REFUSED] += 1
        w.stale_retry = now + CANCEL_RETRY_NS
    elif kind == REP_DONE:
        if final_state == FILLED:
            w.leaves = 0.0
        w.state = final_state
        if w.stale != STALE_NO:
            if w.stale == STALE_REFUSED:
                tr.iv[T_REFUSED] -= 1
            _unstale(tr, w, w.leaves)
            w.stale = STALE_NO
        if w.tag == TAG_QUOTE:
            for side in range(2):
                for lvl in range(tr.qslot.shape[2]):
                    if tr.qslot[v, side, lvl] == slot:
                        tr.qslot[v, side, lvl] = -1
        elif w.tag == TAG_ARB:
            tr.arb_live[v] -= 1
        elif w.tag == TAG_HEDGE and tr.iv[T_HEDGE_SLOT] == slot:
            tr.iv[T_HEDGE_SLOT] = -1
        tr.iv[T_WFREE_N] = working_free(tr.wo, tr.wfree, tr.iv[T_WFREE_N], slot)
    return 1


@njit(cache=True, _nrt=False)
def venue_status(tr, v, status, claim_cash):
    """Venue v is OK, HALTED, or DEFAULTED: then our balance there is a claim on the estate worth
    ``claim_cash`` (quote ccy) and its position is gone."""
    tr.vstatus[v] = status
    if status == VENUE_DEFAULTED:
        ins = tr.venue_instrument[v]
        if ins >= 0:
            tr.kpos[v, ins] = 0.0
            tr.kavg[v, ins] = 0.0
        tr.kcash[v] = claim_cash


@njit(cache=True, inline="always", _nrt=False)
def cash_adjust(tr, v, amount):
    """A balance change at venue v that is not a fill (quote ccy; negative = charged), as the venue reports it."""
    tr.kcash[v] += amount
