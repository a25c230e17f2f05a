"""The compiled replay loop: market events in, strategy decisions out, every fill accounted.

One call of :func:`run_chunk` replays a chunk of the merged event stream (EVENT_DTYPE, local-time
order). Per event, at its local time ``now``, it

1. takes the time-series and fair-track samples whose timestamps have passed (each shows the state
   at its own time: the venues caught up to it, its own session);
2. applies what is due by now: scenarios (halt, default), then every simulated venue's own
   timeline up to venue time ``now`` (backtest.matching.venues_advance: the venue's market rows at
   their ``exch_ts``, found by looking ahead in the stream by the venue's feed latency, and our
   messages at their arrival, so an order only ever meets the book and trades its venue shows at
   its arrival), multiplier steps, and the venues' reports (acks, fills, done, refused cancels) to
   the *known* books of account the strategy sees; every fill the venues produce is booked at venue
   time into the *true* books of account, together with the mark at that moment;
3. applies the event to the market *as we know it* (``lpx``/``lqty``/``lnlev``: the data as
   received, without what our own orders did, which we learn from their reports);
4. at the end of a same-time group of events: updates fair value from the known market and - on
   every group or on a cadence - marks to fair (inventory PnL = position x mark change), builds the
   decision context, calls ``stockbridge.core.decide.decide`` with the strategy kernel, reconciles
   the desired quotes with our working orders (requote tolerance; an order we cancel counts against
   the limits until the venue says it is done, and a refused cancel is sent again), sends the
   kernel's takes as one batch or not at all, and hedges.

Accounting identity (checked by the tests): equity_raw(t) - equity_raw(0) = sum over fills of
side*(mark_at_fill - price)*qty - fees + inventory PnL - borrow - default losses.

State lives in flat arrays (see backtest.runner.new_state) so a replay can stop and resume between
calls: when the fill array or a message queue is full, or the venues need rows beyond the chunk,
run_chunk returns the index to resume at and a status; the runner makes room (or appends the next
chunk) and calls again. Nothing is skipped or lost.

Every compiled function here, in backtest.matching and in backtest.orders is compiled with
``_nrt=False`` (numba's reference counting off). With it on, each call and each field read of the
``sim`` / ``Static`` / ``State`` namedtuples did an atomic incref/decref of every array it touched
(up to ~75 per call): measured, about half of the replay's time went to NRT_incref/NRT_decref. These
functions never allocate (numba refuses to compile one that does), and the arrays belong to the
Python caller for the whole call. A callee inherits the flag unless it sets it: one that allocates
(fair_value.venue_consensus) says ``_nrt=True``.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, typeof, types

from backtest.book import apply_quote, best_price, best_size, clear_book, set_level, side_index
from backtest.matching import (
    NEED_FILL_ROOM,
    NEED_MORE_DATA,
    NEED_REPORT_ROOM,
    VENUE_DEFAULTED,
    VENUE_HALTED,
    VENUE_OK,
    venue_advance,
    venue_set_status,
    venues_advance,
    venues_idle,
)
from backtest.orders import (
    GTC,
    IOC,
    NO_SLOT,
    QUEUE_FULL,
    TAG_ARB,
    TAG_HEDGE,
    TAG_QUOTE,
    next_report_time,
    request_cancel,
    submit_order,
    take_report,
)
from backtest.pending import FEE, PRICE, QTY, REP_CANCEL_REJECT, REP_DONE, REP_FILL, SLOT
from backtest.pending import T as PQ_T
from data.schema import F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT
from stockbridge.core import session_clock as sc
from stockbridge.core.context import ASK, BID, MAX_LEVELS, MAX_VENUES
from stockbridge.core.decide import KERNEL_TYPE, decide
from stockbridge.core.fair_value import fair_value, fair_value_update_underlying, fair_value_update_venue
from stockbridge.core.hedging import carry_after, hedge_decision, hedge_risk_price
from stockbridge.core.inventory import apply_fill
from stockbridge.core.quoting import ceil_to_grid, floor_to_grid, gap_tau
from stockbridge.core.risk import size_factor
from stockbridge.core.volatility import vol_sigma, vol_update
from stockbridge.sessions import AFTER, PRE, REGULAR

# run_chunk status codes
DONE = 0
FILLS_FULL = 1      # flush the sim's fill array and order log, then resume
QUEUE_FULL_ = 2     # grow the sim's message queues, then resume
SERIES_FULL = 3     # flush the time-series buffers, then resume
NO_ORDER_SLOT = 4   # more live orders than the order array holds: a configuration error
NEED_MORE = 5       # append the next rows of the stream (the venues look ahead; a group may continue)

# an order whose cancel the venue refused is cancelled again this long after the refusal (ns)
CANCEL_RETRY_NS = 1_000_000_000
# s.stale[slot]: an order we no longer want that may still fill (not one of the current quotes)
STALE_NO, STALE_CANCELLING, STALE_REFUSED = 0, 1, 2

# scalar slots of the float state ``f``
F_FAIR, F_FAIR_STD, F_SHARE_MARK, F_TOKEN_MARK, F_INV_PNL, F_BORROW, F_DEFAULT_LOSS, F_CARRIED = range(8)
F_SIGMA_SHARE, F_MULT, F_VAR_AT_PRINT = 8, 9, 10
N_F = 11
# scalar slots of the int state ``iv``
I_EVENTS, I_MULT_IDX, I_NEXT_DECISION, I_NEXT_SAMPLE, I_NEXT_TRACK, I_TS_N, I_TRACK_N, I_FILLS_SEEN = range(8)
I_LAST_ACCRUAL, I_HEDGE_SLOT, I_HEDGE_OID, I_FIRST_TS, I_LAST_TS, I_DECISIONS, I_SEG = 8, 9, 10, 11, 12, 13, 14
I_REFUSED, I_CANCEL_RETRIES = 15, 16
N_I = 17
# config scalars ``cf``
C_DECISION_NS, C_REQUOTE_TICKS, C_REQUOTE_FRAC, C_SAMPLE_NS, C_TRACK_NS, C_HEDGE_BAND, C_HEDGE_TARGET = range(7)
C_OFFHOURS, C_GAP_Z, C_HALF_LIFE_S, C_NOISE_BPS, C_HEDGE_GAMMA, C_HEDGE_HOLD_S, C_HEDGE_SLIP, C_INITIAL_CASH = range(7, 15)
N_C = 15
# config ints ``ci``
K_NV, K_NI, K_TOKEN, K_SHARE, K_HEDGE_VENUE = range(5)
N_K = 5
# scenario kinds
SC_DEFAULT, SC_HALT, SC_DEPEG = 0, 1, 2

TS_FIXED_COLS = 8   # ts, session, fair, fair_share, equity_raw, equity_haircut, net_delta, pnl_inventory_cum
TS_VENUE_COLS = 8   # pos, cash, exposure, cap, bid, ask, mkt_bid, mkt_ask

Static = namedtuple(
    "Static",
    ["cf", "ci", "venue_instrument", "quotable", "tick", "lot", "taker_fee", "haircut", "exposure_cap",
     "borrow_rate", "hours_bounds", "hours_open", "hours_len", "sess_boundaries", "sess_states", "sess_cumvar",
     "sess_weights", "hedge_mask", "mult_times", "mult_values", "sc_kind", "sc_venue", "sc_start", "sc_end",
     "sc_recovery"],
)
State = namedtuple(
    "State",
    ["f", "iv", "pos", "cash", "avg", "realized", "fees", "kpos", "kcash", "kavg", "krealized", "kfees",
     "fair_state", "vol_state", "qslot", "qoid", "arb_live", "last_update", "sc_done", "fill_mark", "ts_buf",
     "track_buf", "ctx", "quotes", "takes", "rep_i", "rep_f",
     "lpx", "lqty", "lnlev", "ldropped", "stale", "stale_retry", "stale_qty"],
)


# ---------------------------------------------------------------------------------------------
# small pieces


@njit(cache=True, inline="always", _nrt=False)
def venue_hours_open(st, v, ts):
    n = st.hours_len[v]
    k = np.searchsorted(st.hours_bounds[v, :n], ts, side="right") - 1
    if k < 0:
        k = 0
    return st.hours_open[v, k] == 1


@njit(cache=True, inline="always", _nrt=False)
def venue_mark(st, s, v):
    """Mark of one unit of what venue v trades: fair for the token, the share reference for the share."""
    if st.venue_instrument[v] == st.ci[K_SHARE]:
        return s.f[F_SHARE_MARK]
    return s.f[F_TOKEN_MARK]


@njit(cache=True, inline="always", _nrt=False)
def venue_value(st, s, v, known):
    """Balance value at venue v (quote ccy): cash + position x mark (true or known books)."""
    ins = st.venue_instrument[v]
    cash = s.kcash[v] if known else s.cash[v]
    if ins < 0:
        return cash
    p = s.kpos[v, ins] if known else s.pos[v, ins]
    if p == 0.0:
        return cash
    return cash + p * venue_mark(st, s, v)


@njit(cache=True, inline="always", _nrt=False)
def equity(st, s, known):
    """(raw, after haircut) over all venues, quote ccy."""
    raw = 0.0
    cut = 0.0
    for v in range(st.ci[K_NV]):
        val = venue_value(st, s, v, known)
        raw += val
        cut += val * (1.0 - st.haircut[v]) if val > 0.0 else val
    return raw, cut


@njit(cache=True, inline="always", _nrt=False)
def net_delta_of(st, s, known):
    """Share-equivalents: token positions x multiplier + hedge shares."""
    tok = 0.0
    sh = 0.0
    for v in range(st.ci[K_NV]):
        ins = st.venue_instrument[v]
        if ins < 0:
            continue
        p = s.kpos[v, ins] if known else s.pos[v, ins]
        if ins == st.ci[K_SHARE]:
            sh += p
        else:
            tok += p
    return tok * s.f[F_MULT] + sh


@njit(cache=True, _nrt=False)
def book_fills(sim, st, s, now):
    """Book the sim's new fill rows into the true accounts at venue time; remember the mark of each."""
    mark_to_fair(sim, st, s, now)
    n = sim.fill_n[0]
    for k in range(s.iv[I_FILLS_SEEN], n):
        fl = sim.fills[k]
        v = np.int64(fl.venue)
        ins = np.int64(fl.instrument)
        mark = s.f[F_SHARE_MARK] if ins == st.ci[K_SHARE] else s.f[F_TOKEN_MARK]
        s.fill_mark[k, 0] = mark
        s.fill_mark[k, 1] = s.f[F_MULT] if ins != st.ci[K_SHARE] else 1.0
        # the sim already priced fee and gas: book its number exactly
        apply_fill(s.pos, s.cash, s.avg, s.realized, s.fees, v, ins, np.int64(fl.side), fl.price, fl.qty, 0.0, fl.fee)
    s.iv[I_FILLS_SEEN] = n


@njit(cache=True, inline="always", _nrt=False)
def remark(st, s, token_mark, share_mark):
    """Move the marks; inventory PnL collects position x mark change (true books)."""
    old_t = s.f[F_TOKEN_MARK]
    old_s = s.f[F_SHARE_MARK]
    if math.isfinite(token_mark) and math.isfinite(old_t) and token_mark != old_t:
        for v in range(st.ci[K_NV]):
            ins = st.venue_instrument[v]
            if ins >= 0 and ins != st.ci[K_SHARE]:
                s.f[F_INV_PNL] += s.pos[v, ins] * (token_mark - old_t)
    if math.isfinite(share_mark) and math.isfinite(old_s) and share_mark != old_s:
        for v in range(st.ci[K_NV]):
            if st.venue_instrument[v] == st.ci[K_SHARE]:
                s.f[F_INV_PNL] += s.pos[v, st.ci[K_SHARE]] * (share_mark - old_s)
    if math.isfinite(token_mark):
        s.f[F_TOKEN_MARK] = token_mark
    if math.isfinite(share_mark):
        s.f[F_SHARE_MARK] = share_mark


@njit(cache=True, inline="always", _nrt=False)
def share_prints(st, state):
    """The share's quotes mean something in this session: the equity market's own (pre, regular,
    after) or one the hedge venue trades in (the overnight ATS session, when the config hedges there)."""
    return state == PRE or state == REGULAR or state == AFTER or st.hedge_mask[state] == 1


@njit(cache=True, inline="always", _nrt=False)
def segment(st, s, now):
    """Index of the session segment holding ``now``, from a cache that moves only at boundaries."""
    k = s.iv[I_SEG]
    if now < st.sess_boundaries[k] or (k + 1 < st.sess_boundaries.shape[0] and now >= st.sess_boundaries[k + 1]):
        k = sc.segment_index(st.sess_boundaries, now)
        s.iv[I_SEG] = k
    return k


@njit(cache=True, inline="always", _nrt=False)
def variance_in(st, k, now):
    """Variance clock at ``now`` inside segment k (session_clock.variance_at without the search)."""
    return st.sess_cumvar[k] + st.sess_weights[st.sess_states[k]] * (now - st.sess_boundaries[k]) * 1e-9


@njit(cache=True, _nrt=False)
def mark_to_fair(sim, st, s, now):
    """Fair value at ``now``; marks move to it (inventory PnL) and borrow on short shares accrues to now.

    Positions only change at fills, which call this first, so marking at fills, samples and decisions
    collects exactly sum(position x mark change)."""
    k = segment(st, s, now)
    session = st.sess_states[k]
    hv = st.ci[K_HEDGE_VENUE]
    share = st.ci[K_SHARE]
    var_since = 0.0
    if math.isfinite(s.f[F_VAR_AT_PRINT]):
        var_since = variance_in(st, k, now) - s.f[F_VAR_AT_PRINT]
    two_sided = False
    if hv >= 0:
        hb = hv * st.ci[K_NI] + share
        two_sided = math.isfinite(best_price(s.lpx, s.lnlev, hb, 0)) and math.isfinite(best_price(s.lpx, s.lnlev, hb, 1))
    fair, fair_std = fair_value(s.fair_state, now, s.f[F_MULT], share_prints(st, session) and two_sided,
                                var_since, vol_sigma(s.vol_state), st.cf[C_HALF_LIFE_S], st.cf[C_NOISE_BPS])
    s.f[F_FAIR] = fair
    s.f[F_FAIR_STD] = fair_std
    remark(st, s, fair, s.fair_state[0])
    if hv >= 0 and now > s.iv[I_LAST_ACCRUAL]:
        short = -s.pos[hv, share]
        if short > 0.0 and math.isfinite(s.f[F_SHARE_MARK]):
            cost = short * s.f[F_SHARE_MARK] * st.borrow_rate[hv] * (now - s.iv[I_LAST_ACCRUAL]) * 1e-9
            s.cash[hv] -= cost
            s.kcash[hv] -= cost
            s.f[F_BORROW] += cost
        s.iv[I_LAST_ACCRUAL] = now


# ---------------------------------------------------------------------------------------------
# time-driven changes


@njit(cache=True, _nrt=False)
def status_of(rc):
    """A venue call's negative result as a run_chunk status."""
    if rc == NEED_FILL_ROOM:
        return FILLS_FULL
    if rc == NEED_REPORT_ROOM:
        return QUEUE_FULL_
    if rc == NEED_MORE_DATA:
        return NEED_MORE
    return DONE


@njit(cache=True, _nrt=False)
def catch_up(sim, events, st, s, v, until, now):
    """Venue v carries out everything at venue time <= ``until``; its fills are booked (at ``now``).

    A halt or default that starts (or a halt that ends) at time t needs the venue as it was just
    before t: ``until = t - 1``. Returns a status code."""
    rc = venue_advance(sim, events, v, until)
    if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
        book_fills(sim, st, s, now)
    return status_of(rc) if rc < 0 else DONE


@njit(cache=True, _nrt=False)
def catch_up_all(sim, events, st, s, until, now):
    """Every venue carries out everything at its venue time <= ``until``; fills are booked."""
    rc = venues_advance(sim, events, until)
    if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
        book_fills(sim, st, s, now)
    return status_of(rc) if rc < 0 else DONE


@njit(cache=True, _nrt=False)
def apply_scenarios(sim, events, st, s, now):
    """Start/stop halts and defaults due by ``now``. Returns a status code."""
    for k in range(st.sc_kind.shape[0]):
        kind = st.sc_kind[k]
        v = st.sc_venue[k]
        if kind == SC_DEFAULT and s.sc_done[k] == 0 and st.sc_start[k] <= now:
            rc = catch_up(sim, events, st, s, v, st.sc_start[k] - 1, now)
            if rc != DONE:
                return rc
            rc = venue_set_status(sim, v, VENUE_DEFAULTED, st.sc_start[k])
            if rc < 0:
                return status_of(rc)
            # the balance becomes a claim on the estate worth recovery x its value at fair now (marks
            # otherwise move only at fills, samples and decisions, and this changes a position too)
            mark_to_fair(sim, st, s, now)
            ins = st.venue_instrument[v]
            value = venue_value(st, s, v, False)
            loss = value * (1.0 - st.sc_recovery[k]) if value > 0.0 else 0.0
            s.f[F_DEFAULT_LOSS] += loss
            if ins >= 0:
                s.pos[v, ins] = 0.0
                s.kpos[v, ins] = 0.0
                s.avg[v, ins] = 0.0
                s.kavg[v, ins] = 0.0
            s.cash[v] = value - loss
            s.kcash[v] = value - loss
            s.sc_done[k] = 2
        elif kind == SC_HALT:
            if s.sc_done[k] == 0 and st.sc_start[k] <= now:
                rc = catch_up(sim, events, st, s, v, st.sc_start[k] - 1, now)
                if rc != DONE:
                    return rc
                venue_set_status(sim, v, VENUE_HALTED, st.sc_start[k])
                s.sc_done[k] = 1
            if s.sc_done[k] == 1 and st.sc_end[k] <= now:
                rc = catch_up(sim, events, st, s, v, st.sc_end[k] - 1, now)
                if rc != DONE:
                    return rc
                venue_set_status(sim, v, VENUE_OK, st.sc_end[k])
                s.sc_done[k] = 2
    return DONE


@njit(cache=True, inline="always", _nrt=False)
def _unstale(s, o, slot, qty):
    """A stale order's open size shrinks by ``qty`` (a fill, or its end)."""
    side = side_index(o.side)
    s.stale_qty[np.int64(o.venue), side] = max(s.stale_qty[np.int64(o.venue), side] - qty, 0.0)


@njit(cache=True, _nrt=False)
def take_reports(sim, st, s, now):
    """Receive every report due by ``now``: fills into the known books, finished orders out of our
    slots, a refused cancel scheduled again (the order is ours until the venue says it is done)."""
    while next_report_time(sim) <= now:
        kind = take_report(sim, s.rep_i, s.rep_f)
        if kind == 0:
            continue
        slot = s.rep_i[SLOT]
        o = sim.orders[slot]
        v = np.int64(o.venue)
        # a default set the known books to the claim, which already counts every fill made there
        if kind == REP_FILL:
            if sim.status[v] != VENUE_DEFAULTED:
                apply_fill(s.kpos, s.kcash, s.kavg, s.krealized, s.kfees, v, np.int64(o.instrument),
                           np.int64(o.side), s.rep_f[PRICE], s.rep_f[QTY], 0.0, s.rep_f[FEE])
            if s.stale[slot] != STALE_NO:
                _unstale(s, o, slot, s.rep_f[QTY])
        elif kind == REP_CANCEL_REJECT:
            if s.stale[slot] == STALE_CANCELLING:
                s.stale[slot] = STALE_REFUSED
                s.iv[I_REFUSED] += 1
            s.stale_retry[slot] = now + CANCEL_RETRY_NS
        elif kind == REP_DONE:
            if s.stale[slot] != STALE_NO:
                if s.stale[slot] == STALE_REFUSED:
                    s.iv[I_REFUSED] -= 1
                _unstale(s, o, slot, o.known_leaves)
                s.stale[slot] = STALE_NO
            if o.tag == TAG_QUOTE:
                for side in range(2):
                    for lvl in range(MAX_LEVELS):
                        if s.qslot[v, side, lvl] == slot and s.qoid[v, side, lvl] == o.id:
                            s.qslot[v, side, lvl] = -1
            elif o.tag == TAG_ARB:
                s.arb_live[v] -= 1
            elif o.tag == TAG_HEDGE and s.iv[I_HEDGE_SLOT] == slot and s.iv[I_HEDGE_OID] == o.id:
                s.iv[I_HEDGE_SLOT] = -1


@njit(cache=True, _nrt=False)
def retry_cancels(sim, s, now):
    """Cancel again the orders whose cancel the venue refused, once their retry time has come."""
    if s.iv[I_REFUSED] == 0:
        return DONE
    for slot in range(s.stale.shape[0]):
        if s.stale[slot] == STALE_REFUSED and s.stale_retry[slot] <= now:
            rc = request_cancel(sim, slot, now)
            if rc == QUEUE_FULL:
                return QUEUE_FULL_
            s.stale[slot] = STALE_CANCELLING
            s.iv[I_REFUSED] -= 1
            s.iv[I_CANCEL_RETRIES] += 1
    return DONE


# ---------------------------------------------------------------------------------------------
# decisions


@njit(cache=True, inline="always", _nrt=False)
def fill_context(sim, st, s, now, session, hedge_open, tau):
    c = s.ctx[0]
    nv = st.ci[K_NV]
    ni = st.ci[K_NI]
    c.ts = now
    c.session = session
    c.hedge_open = 1 if hedge_open else 0
    c.tau = tau
    c.var_rate = st.sess_weights[session]
    c.size_factor = size_factor(hedge_open, st.cf[C_OFFHOURS])
    c.fair = s.f[F_FAIR]
    c.fair_std = s.f[F_FAIR_STD]
    c.sigma = vol_sigma(s.vol_state) * s.f[F_FAIR]
    c.multiplier = s.f[F_MULT]
    c.net_delta = net_delta_of(st, s, True)
    raw, cut = equity(st, s, True)
    c.equity_raw = raw
    c.equity_haircut = cut
    for v in range(nv):
        ins = st.venue_instrument[v]
        b = v * ni + (ins if ins >= 0 else 0)
        c.tradable[v] = 1 if (sim.status[v] == VENUE_OK and venue_hours_open(st, v, now)) else 0
        # the market as its data reached us: what our own orders did there we learn from their reports
        c.bid[v] = best_price(s.lpx, s.lnlev, b, 0)
        c.ask[v] = best_price(s.lpx, s.lnlev, b, 1)
        c.bid_size[v] = best_size(s.lqty, s.lnlev, b, 0)
        c.ask_size[v] = best_size(s.lqty, s.lnlev, b, 1)
        c.working_buy[v] = s.stale_qty[v, 0]
        c.working_sell[v] = s.stale_qty[v, 1]
        c.last_update[v] = s.last_update[v]
        c.position[v] = s.kpos[v, ins] if ins >= 0 else 0.0
        c.cash[v] = s.kcash[v]
        c.exposure[v] = venue_value(st, s, v, True)


@njit(cache=True, inline="always", _nrt=False)
def reconcile_quotes(sim, st, s, now):
    """Bring our resting quotes to the decided ones; leave an order alone within the requote tolerance."""
    nv = st.ci[K_NV]
    for v in range(nv):
        if st.quotable[v] == 0:
            continue
        ins = st.venue_instrument[v]
        tol_px = st.cf[C_REQUOTE_TICKS] * st.tick[v] * (1.0 + 1e-9)
        for side in range(2):
            for lvl in range(MAX_LEVELS):
                price = s.quotes[v, side, lvl, 0]
                size = s.quotes[v, side, lvl, 1]
                slot = s.qslot[v, side, lvl]
                if slot >= 0:
                    o = sim.orders[slot]
                    keep = (size > 0.0 and abs(price - o.price) <= tol_px
                            and abs(size - o.known_leaves) <= st.cf[C_REQUOTE_FRAC] * o.qty)
                    if keep:
                        continue
                    rc = request_cancel(sim, slot, now)
                    if rc == QUEUE_FULL:
                        return QUEUE_FULL_
                    if rc == 1 and s.stale[slot] == STALE_NO:  # it may fill until the venue says it is done
                        s.stale[slot] = STALE_CANCELLING
                        s.stale_qty[v, side] += o.known_leaves
                    s.qslot[v, side, lvl] = -1
                if size > 0.0:
                    slot = submit_order(sim, v, ins, 1 if side == BID else -1, price, size, GTC, 1, TAG_QUOTE, now)
                    if slot == QUEUE_FULL:
                        return QUEUE_FULL_
                    if slot == NO_SLOT:
                        return NO_ORDER_SLOT
                    s.qslot[v, side, lvl] = slot
                    s.qoid[v, side, lvl] = sim.orders[slot].id
    return DONE


@njit(cache=True, inline="always", _nrt=False)
def send_takes(sim, st, s, n, now):
    """Send the takes the kernel wrote together as one unit, or none of them.

    While a take at one of the batch's venues has not come back, the book view there is stale; an
    arbitrage sent with a leg missing would leave delta the strategy never asked for."""
    for k in range(n):
        if s.arb_live[np.int64(s.takes[k, 0])] > 0:
            return DONE
    for k in range(n):
        v = np.int64(s.takes[k, 0])
        slot = submit_order(sim, v, st.venue_instrument[v], np.int64(s.takes[k, 1]), s.takes[k, 2], s.takes[k, 3],
                            IOC, 0, TAG_ARB, now)
        if slot == QUEUE_FULL:
            return QUEUE_FULL_
        if slot == NO_SLOT:
            return NO_ORDER_SLOT
        if slot >= 0:
            s.arb_live[v] += 1
    return DONE


@njit(cache=True, inline="always", _nrt=False)
def hedge(sim, st, s, now, hedge_open):
    hv = st.ci[K_HEDGE_VENUE]
    if hv < 0 or s.iv[I_HEDGE_SLOT] >= 0:
        return DONE  # one hedge order in flight at a time: the next decision sees its result
    share = st.ci[K_SHARE]
    b = hv * st.ci[K_NI] + share
    bid = best_price(s.lpx, s.lnlev, b, 0)
    ask = best_price(s.lpx, s.lnlev, b, 1)
    nd = net_delta_of(st, s, True)
    band = st.cf[C_HEDGE_BAND]
    target = st.cf[C_HEDGE_TARGET]
    if abs(nd - target) <= band and s.f[F_CARRIED] == 0.0:
        return DONE  # inside the band with nothing owed: hedge_decision would say 0
    open_now = hedge_open and sim.status[hv] == VENUE_OK
    # price of leaving delta unhedged: variance until the hedge venue's next close plus the gap after it
    risk_price = 0.0
    if st.cf[C_HEDGE_GAMMA] > 0.0 and math.isfinite(s.f[F_SIGMA_SHARE]):
        t_close = sc.next_close(st.sess_boundaries, st.sess_states, st.hedge_mask, now)
        if t_close != sc.NO_TIME:
            hold = (sc.variance_at(st.sess_boundaries, st.sess_states, st.sess_cumvar, st.sess_weights, t_close)
                    - sc.variance_at(st.sess_boundaries, st.sess_states, st.sess_cumvar, st.sess_weights, now)
                    + sc.variance_until_open(st.sess_boundaries, st.sess_states, st.sess_cumvar, st.sess_weights,
                                             st.hedge_mask, t_close))
            risk_price = hedge_risk_price(st.cf[C_HEDGE_GAMMA], s.f[F_SIGMA_SHARE], hold)
    n = hedge_decision(nd, band, target, open_now, s.f[F_CARRIED], bid, ask, st.taker_fee[hv], st.borrow_rate[hv],
                       st.cf[C_HEDGE_HOLD_S], st.lot[hv], s.kpos[hv, share], risk_price)
    s.f[F_CARRIED] = carry_after(s.f[F_CARRIED], n, nd, band, target, open_now, st.lot[hv])
    if n == 0.0:
        return DONE
    slip = st.cf[C_HEDGE_SLIP] * st.tick[hv]
    side = 1 if n > 0 else -1
    limit = ceil_to_grid(ask + slip, st.tick[hv]) if side > 0 else floor_to_grid(bid - slip, st.tick[hv])
    slot = submit_order(sim, hv, share, side, limit, abs(n), IOC, 0, TAG_HEDGE, now)
    if slot == QUEUE_FULL:
        return QUEUE_FULL_
    if slot == NO_SLOT:
        return NO_ORDER_SLOT
    if slot >= 0:
        s.iv[I_HEDGE_SLOT] = slot
        s.iv[I_HEDGE_OID] = sim.orders[slot].id
    return DONE


# ---------------------------------------------------------------------------------------------
# sampling


@njit(cache=True, inline="always", _nrt=False)
def sample_row(sim, st, s, ts, session):
    k = s.iv[I_TS_N]
    row = s.ts_buf[k]
    nv = st.ci[K_NV]
    ni = st.ci[K_NI]
    raw, cut = equity(st, s, False)
    row[0] = ts
    row[1] = session
    row[2] = s.f[F_FAIR]
    row[3] = s.f[F_SHARE_MARK]
    row[4] = raw
    row[5] = cut
    row[6] = net_delta_of(st, s, False)
    row[7] = s.f[F_INV_PNL]
    for v in range(nv):
        ins = st.venue_instrument[v]
        b = v * ni + (ins if ins >= 0 else 0)
        base = TS_FIXED_COLS + v * TS_VENUE_COLS
        row[base] = s.pos[v, ins] if ins >= 0 else 0.0
        row[base + 1] = s.cash[v]
        row[base + 2] = venue_value(st, s, v, False)
        row[base + 3] = st.exposure_cap[v]
        row[base + 4] = np.nan
        row[base + 5] = np.nan
        for side in range(2):
            best = np.nan
            for lvl in range(MAX_LEVELS):
                slot = s.qslot[v, side, lvl]
                if slot >= 0:
                    p = sim.orders[slot].price
                    if not math.isfinite(best) or (side == BID and p > best) or (side == ASK and p < best):
                        best = p
            row[base + 4 + side] = best
        row[base + 6] = best_price(s.lpx, s.lnlev, b, 0)
        row[base + 7] = best_price(s.lpx, s.lnlev, b, 1)
    s.iv[I_TS_N] = k + 1


# ---------------------------------------------------------------------------------------------
# the loop


@njit(cache=True, inline="always", _nrt=False)
def local_on_event(s, events, i, ni):
    """Apply a book row to the market as we know it (the data as received, at local time)."""
    ev = events[i]
    kind = ev.kind
    if not (kind == KIND_QUOTE or kind == KIND_DEPTH or kind == KIND_SNAPSHOT) or ev.side == 0:
        return
    v = np.int64(ev.venue)
    ins = np.int64(ev.instrument)
    if v >= s.lnlev.shape[0] // ni or ins >= ni:
        return
    b = v * ni + ins
    sd = side_index(ev.side)
    if np.int64(ev.flags) & F_CLEAR:
        clear_book(s.lnlev, b)
    if kind == KIND_QUOTE:
        apply_quote(s.lpx, s.lqty, s.lnlev, s.ldropped, b, sd, ev.price, max(ev.size, 0.0))
    else:
        set_level(s.lpx, s.lqty, s.lnlev, s.ldropped, b, sd, ev.price, max(ev.size, 0.0))


@njit(cache=True, _nrt=False)
def sample_until(sim, events, st, s, until):
    """Time-series rows and fair-track rows for every interval boundary before ``until``, each showing
    the state at its own timestamp: the venues caught up to it, marks moved to it, its own session."""
    while s.iv[I_NEXT_SAMPLE] < until or s.iv[I_NEXT_TRACK] < until:
        t = min(s.iv[I_NEXT_SAMPLE], s.iv[I_NEXT_TRACK])
        if st.sc_kind.shape[0] > 0:
            rc = apply_scenarios(sim, events, st, s, t)
            if rc != DONE:
                return rc
        rc = catch_up_all(sim, events, st, s, t, t)
        if rc != DONE:
            return rc
        mark_to_fair(sim, st, s, t)
        if s.iv[I_NEXT_SAMPLE] == t:
            if s.iv[I_TS_N] >= s.ts_buf.shape[0]:
                return SERIES_FULL
            sample_row(sim, st, s, t, st.sess_states[segment(st, s, t)])
            s.iv[I_NEXT_SAMPLE] += np.int64(st.cf[C_SAMPLE_NS])
        if s.iv[I_NEXT_TRACK] == t:
            row = s.iv[I_TRACK_N]
            if row >= s.track_buf.shape[0]:
                return SERIES_FULL
            s.track_buf[row, 0] = t
            s.track_buf[row, 1] = s.f[F_FAIR]
            s.track_buf[row, 2] = s.f[F_SHARE_MARK]
            s.iv[I_TRACK_N] = row + 1
            s.iv[I_NEXT_TRACK] += np.int64(st.cf[C_TRACK_NS])
    return DONE


def run_chunk(events, start, sim, st, s, params, kernel):
    """Replay ``events[start:]``; returns (index to resume at, status). See the module doc.

    Unless ``sim.final[0]`` is set, the array's last row is not replayed (its same-time group may go
    on in the next rows) and the venues may ask for rows beyond the array: the status is then
    NEED_MORE, and the caller appends the next rows (:func:`backtest.matching.venues_keep_from`).
    With ``sim.final[0]`` set the replay ends: the venues carry out what has reached them by the
    last event's time and the last samples are taken.

    Compiled per argument types by :func:`compiled_run_chunk` (an explicit signature with the kernel
    typed as a first-class function is what lets numba cache it on disk), without reference counting
    (see the module doc).
    """
    nv = st.ci[K_NV]
    ni = st.ci[K_NI]
    hv = st.ci[K_HEDGE_VENUE]
    share = st.ci[K_SHARE]
    n = events.shape[0]
    final = sim.final[0] != 0
    for i in range(start, n):
        if i == n - 1 and not final:
            return i, NEED_MORE
        ev = events[i]
        now = ev.local_ts
        if s.iv[I_FIRST_TS] == 0:
            s.iv[I_FIRST_TS] = now
            s.iv[I_LAST_ACCRUAL] = now
        # 1. samples of the state before this event
        if s.iv[I_NEXT_SAMPLE] < now or s.iv[I_NEXT_TRACK] < now:
            rc = sample_until(sim, events, st, s, now)
            if rc != DONE:
                return i, rc
        # 2. what is due by now: scenarios, every venue's own timeline up to now, multiplier steps,
        #    the venues' reports
        if st.sc_kind.shape[0] > 0:
            rc = apply_scenarios(sim, events, st, s, now)
            if rc != DONE:
                return i, rc
        if not venues_idle(sim, events, now):
            rc = venues_advance(sim, events, now)  # inlined: this runs for nearly every event
            if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
                book_fills(sim, st, s, now)
            if rc < 0:
                return i, status_of(rc)
        while s.iv[I_MULT_IDX] + 1 < st.mult_times.shape[0] and st.mult_times[s.iv[I_MULT_IDX] + 1] <= now:
            s.iv[I_MULT_IDX] += 1
            s.f[F_MULT] = st.mult_values[s.iv[I_MULT_IDX]]
        # (calls that take the whole state are made only when there is work: they copy their arguments)
        if sim.pq_n[nv] > 0 and sim.pq_i[nv, 0, PQ_T] <= now:
            take_reports(sim, st, s, now)
        # 3. the market event as it reaches us
        local_on_event(s, events, i, ni)
        v = np.int64(ev.venue)
        if v < MAX_VENUES:
            s.last_update[v] = now
        s.iv[I_EVENTS] += 1
        s.iv[I_LAST_TS] = now
        # 4. act once per same-time group of events (a snapshot is one group)
        if i + 1 < n and events[i + 1].local_ts == now and events[i + 1].venue == ev.venue:
            continue
        k = segment(st, s, now)
        session = st.sess_states[k]
        ins = np.int64(ev.instrument)
        b = v * ni + ins
        if v < nv and ins < ni:
            mid = 0.5 * (best_price(s.lpx, s.lnlev, b, 0) + best_price(s.lpx, s.lnlev, b, 1))
            if v == hv and ins == share:
                if share_prints(st, session) and math.isfinite(mid) and mid > 0.0:
                    var_now = variance_in(st, k, now)
                    fair_value_update_underlying(s.fair_state, now, mid)
                    s.f[F_VAR_AT_PRINT] = var_now
                    s.f[F_SIGMA_SHARE] = vol_update(s.vol_state, var_now, mid) * mid
            elif st.venue_instrument[v] == ins:
                fair_value_update_venue(s.fair_state, v, now, mid)
        if not (st.cf[C_DECISION_NS] <= 0.0 or now >= s.iv[I_NEXT_DECISION]):
            continue
        # 5. decide
        if st.cf[C_DECISION_NS] > 0.0:
            step = np.int64(st.cf[C_DECISION_NS])
            s.iv[I_NEXT_DECISION] = (now // step + 1) * step
        mark_to_fair(sim, st, s, now)
        fair = s.f[F_FAIR]
        rc = retry_cancels(sim, s, now)
        if rc != DONE:
            return i + 1, rc
        if not (math.isfinite(fair) and fair > 0.0 and math.isfinite(vol_sigma(s.vol_state))):
            continue
        hedge_open = False
        if hv >= 0:
            hedge_open = st.hedge_mask[session] == 1 and sim.status[hv] == VENUE_OK
        tau = 0.0
        if not hedge_open:
            tau = gap_tau(sc.variance_until_open(st.sess_boundaries, st.sess_states, st.sess_cumvar, st.sess_weights,
                                                 st.hedge_mask, now), st.cf[C_GAP_Z])
        fill_context(sim, st, s, now, session, hedge_open, tau)
        n_takes = decide(s.ctx[0], params, kernel, s.quotes, s.takes)
        s.iv[I_DECISIONS] += 1
        rc = reconcile_quotes(sim, st, s, now)
        if rc == DONE:
            rc = send_takes(sim, st, s, n_takes, now)
        if rc == DONE:
            rc = hedge(sim, st, s, now, hedge_open)
        if rc != DONE:
            return i + 1, rc
    if final and n > 0:
        # end of data: what has reached the venues by the last event's time happens; last samples
        last = s.iv[I_LAST_TS]
        rc = catch_up_all(sim, events, st, s, last, last)
        if rc == DONE:
            rc = sample_until(sim, events, st, s, last + 1)
        if rc != DONE:
            return n, rc
    return n, DONE


_COMPILED: dict = {}


def compiled_run_chunk(events, sim, st, s, params):
    """The compiled ``run_chunk`` for these argument types (from the disk cache after the first run).

    It releases the GIL, so the runner reads and merges the next chunk of the store meanwhile."""
    sig = (typeof(events), types.int64, typeof(sim), typeof(st), typeof(s), typeof(params), KERNEL_TYPE)
    fn = _COMPILED.get(sig)
    if fn is None:
        fn = _COMPILED[sig] = njit(sig, cache=True, _nrt=False, nogil=True)(run_chunk)
    return fn
