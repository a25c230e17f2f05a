"""The compiled replay loop: market events into the simulated venues and the trader core, the core's
actions back to the venues, every fill accounted.

The backtest is: data -> simulated venues (backtest.matching: the *true* ledger, latency, queues)
-> reports -> trader core (stockbridge.core: what we know and decide) -> actions -> simulated
venues. This module holds none of the deciding (prices, sizes, hedges, requotes, limits: see
stockbridge.core.cycle); it moves data and messages between the two sides on the simulated clocks
and keeps the true books of account.

One call of :func:`run_chunk` replays a chunk of the merged event stream (EVENT_DTYPE, local-time
order). Per event, at its local time ``now``, it

1. takes the time-series and fair-track samples whose timestamps have passed (each shows the state
   at its own time: the venues caught up to it, its own session);
2. applies what is due by now: scenarios (halt, default), then every simulated venue's own
   timeline up to venue time ``now`` (backtest.matching.venues_advance: the venue's market rows at
   their ``exch_ts``, found by looking ahead in the stream by the venue's feed latency, and our
   messages at their arrival, so an order only ever meets the book and trades its venue shows at
   its arrival), multiplier steps, and the venues' reports (acks, fills, done, refused cancels) to
   the trader core; every fill the venues produce is booked at venue time into the *true* books
   of account, together with the mark at that moment;
3. gives the event to the trader core as it reaches us (stockbridge.core.trader: the market as
   received, without what our own orders did, which it learns from their reports);
4. at the end of a same-time group of events: the core's fair value follows the update; when a
   decision is due the true books are marked to fair (inventory PnL = position x mark change), the
   core steps (stockbridge.core.cycle.step) and its actions are sent to the simulated venues.

Accounting identity (checked by the tests): equity_raw(t) - equity_raw(0) = sum over fills of
side*(mark_at_fill - price)*qty - fees + inventory PnL - borrow - default losses.

State lives in flat arrays (see backtest.runner) so a replay can stop and resume between calls:
when the fill array or a message queue is full, or the venues need rows beyond the chunk, run_chunk
returns the index to resume at and a status; the runner makes room (or appends the next chunk) and
calls again. Nothing is skipped or lost: actions not yet sent wait in the core's action array.

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
    NO_SLOT,
    QUEUE_FULL,
    next_report_time,
    request_cancel,
    submit_order,
    take_report,
)
from backtest.pending import AUX, FEE, PRICE, QTY, SLOT
from backtest.pending import T as PQ_T
from data.schema import F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE
from stockbridge.core import trader as T
from stockbridge.core.book import best_price
from stockbridge.core.context import ASK, BID, MAX_LEVELS
from stockbridge.core.cycle import STEP_NO_SLOT, actions_done, decision_due, step
from stockbridge.core.decide import KERNEL_TYPE
from stockbridge.core.inventory import apply_fill
from stockbridge.core.order_codes import ACT_NEW, REJECTED, REP_DONE
from stockbridge.core.trader import K_HEDGE_VENUE, K_NI, K_NV, K_SHARE, T_FAIR, T_MULT
from stockbridge.core.working import MAX_WORKING

# run_chunk status codes
DONE = 0
FILLS_FULL = 1      # flush the sim's fill array and order log, then resume
QUEUE_FULL_ = 2     # grow the sim's message queues, then resume
SERIES_FULL = 3     # flush the time-series buffers, then resume
NO_ORDER_SLOT = 4   # more live orders than the order array holds: a configuration error
NEED_MORE = 5       # append the next rows of the stream (the venues look ahead; a group may continue)

# scalar slots of the float state ``f`` (the true books' marks and what they collected)
F_SHARE_MARK, F_TOKEN_MARK, F_INV_PNL, F_BORROW, F_DEFAULT_LOSS = range(5)
N_F = 5
# scalar slots of the int state ``iv``
I_EVENTS, I_NEXT_SAMPLE, I_NEXT_TRACK, I_TS_N, I_TRACK_N, I_FILLS_SEEN, I_LAST_ACCRUAL, I_FIRST_TS = range(8)
I_LAST_TS, I_ACT_NEXT = 8, 9
# decide_when_changed: something reached the core since its last decision (a report, a venue status);
# the session segment and multiplier step it last decided in; when it last decided
I_DIRTY, I_SEEN_SEG, I_SEEN_MULT, I_LAST_DECIDE = 10, 11, 12, 13
N_I = 14
# config scalars ``cf`` (the recording and the decision trigger; what the trader core needs is in its own arrays)
C_SAMPLE_NS, C_TRACK_NS, C_INITIAL_CASH, C_ON_CHANGE, C_IDLE_NS = range(5)
N_C = 5
# scenario kinds
SC_DEFAULT, SC_HALT, SC_DEPEG = 0, 1, 2

TS_FIXED_COLS = 8   # ts, session, fair, fair_share, equity_raw, equity_haircut, net_delta, pnl_inventory_cum
TS_VENUE_COLS = 8   # pos, cash, exposure, cap, bid, ask, mkt_bid, mkt_ask

Static = namedtuple("Static", ["cf", "sc_kind", "sc_venue", "sc_start", "sc_end", "sc_recovery"])
State = namedtuple(
    "State",
    ["f", "iv", "pos", "cash", "avg", "realized", "fees", "sc_done", "fill_mark", "ts_buf", "track_buf",
     "rep_i", "rep_f", "sim_cid", "sim_slot", "seen"],
)


# ---------------------------------------------------------------------------------------------
# the true books


@njit(cache=True, _nrt=False)
def book_fills(sim, tr, s, now):
    """Book the sim's new fill rows into the true accounts at venue time; remember the mark of each."""
    mark_to_fair(tr, s, now)
    n = sim.fill_n[0]
    share = tr.ci[K_SHARE]
    for k in range(s.iv[I_FILLS_SEEN], n):
        fl = sim.fills[k]
        v = np.int64(fl.venue)
        ins = np.int64(fl.instrument)
        s.fill_mark[k, 0] = s.f[F_SHARE_MARK] if ins == share else s.f[F_TOKEN_MARK]
        s.fill_mark[k, 1] = tr.f[T_MULT] if ins != share else 1.0
        # the sim already priced fee and gas: book its number exactly
        apply_fill(s.pos, s.cash, s.avg, s.realized, s.fees, v, ins, np.int64(fl.side), fl.price, fl.qty, 0.0, fl.fee)
    s.iv[I_FILLS_SEEN] = n


@njit(cache=True, inline="always", _nrt=False)
def remark(tr, s, token_mark, share_mark):
    """Move the true books' marks; inventory PnL collects position x mark change."""
    old_t = s.f[F_TOKEN_MARK]
    old_s = s.f[F_SHARE_MARK]
    share = tr.ci[K_SHARE]
    if math.isfinite(token_mark) and math.isfinite(old_t) and token_mark != old_t:
        for v in range(tr.ci[K_NV]):
            ins = tr.venue_instrument[v]
            if ins >= 0 and ins != share:
                s.f[F_INV_PNL] += s.pos[v, ins] * (token_mark - old_t)
    if math.isfinite(share_mark) and math.isfinite(old_s) and share_mark != old_s:
        for v in range(tr.ci[K_NV]):
            if tr.venue_instrument[v] == share:
                s.f[F_INV_PNL] += s.pos[v, share] * (share_mark - old_s)
    if math.isfinite(token_mark):
        s.f[F_TOKEN_MARK] = token_mark
    if math.isfinite(share_mark):
        s.f[F_SHARE_MARK] = share_mark


@njit(cache=True, _nrt=False)
def mark_to_fair(tr, s, now):
    """The core's fair value at ``now``; the true books' marks move to it (inventory PnL) and borrow
    on short shares accrues to now (charged by the broker: in the true books and reported to the core).

    Positions only change at fills, which call this first, so marking at fills, samples and decisions
    collects exactly sum(position x mark change). The multiplier is the one the replay loop last
    stepped to (at an event), as the time series has always shown it."""
    T.fair_at(tr, now)
    remark(tr, s, tr.f[T_FAIR], tr.fair_state[0])
    hv = tr.ci[K_HEDGE_VENUE]
    if hv >= 0 and now > s.iv[I_LAST_ACCRUAL]:
        short = -s.pos[hv, tr.ci[K_SHARE]]
        if short > 0.0 and math.isfinite(s.f[F_SHARE_MARK]):
            cost = short * s.f[F_SHARE_MARK] * tr.borrow_rate[hv] * (now - s.iv[I_LAST_ACCRUAL]) * 1e-9
            s.cash[hv] -= cost
            T.cash_adjust(tr, hv, -cost)
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
def catch_up(sim, events, tr, s, v, until, now):
    """Venue v carries out everything at venue time <= ``until``; its fills are booked (at ``now``).

    A halt or default that starts (or a halt that ends) at time t needs the venue as it was just
    before t: ``until = t - 1``. Returns a status code."""
    rc = venue_advance(sim, events, v, until)
    if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
        book_fills(sim, tr, s, now)
    return status_of(rc) if rc < 0 else DONE


@njit(cache=True, _nrt=False)
def catch_up_all(sim, events, tr, s, until, now):
    """Every venue carries out everything at its venue time <= ``until``; fills are booked."""
    rc = venues_advance(sim, events, until)
    if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
        book_fills(sim, tr, s, now)
    return status_of(rc) if rc < 0 else DONE


@njit(cache=True, _nrt=False)
def apply_scenarios(sim, events, st, tr, s, now):
    """Start/stop halts and defaults due by ``now``; the trader core hears of each when it happens.
    Returns a status code."""
    for k in range(st.sc_kind.shape[0]):
        kind = st.sc_kind[k]
        v = st.sc_venue[k]
        if kind == SC_DEFAULT and s.sc_done[k] == 0 and st.sc_start[k] <= now:
            rc = catch_up(sim, events, tr, s, v, st.sc_start[k] - 1, now)
            if rc != DONE:
                return rc
            rc = venue_set_status(sim, v, VENUE_DEFAULTED, st.sc_start[k])
            if rc < 0:
                return status_of(rc)
            # the balance becomes a claim on the estate worth recovery x its value at fair now (marks
            # otherwise move only at fills, samples and decisions, and this changes a position too)
            mark_to_fair(tr, s, now)
            ins = tr.venue_instrument[v]
            value = T.venue_value(tr, s.pos, s.cash, v)
            loss = value * (1.0 - st.sc_recovery[k]) if value > 0.0 else 0.0
            s.f[F_DEFAULT_LOSS] += loss
            if ins >= 0:
                s.pos[v, ins] = 0.0
                s.avg[v, ins] = 0.0
            s.cash[v] = value - loss
            T.venue_status(tr, v, T.VENUE_DEFAULTED, value - loss)
            s.iv[I_DIRTY] = 1
            s.sc_done[k] = 2
        elif kind == SC_HALT:
            if s.sc_done[k] == 0 and st.sc_start[k] <= now:
                rc = catch_up(sim, events, tr, s, v, st.sc_start[k] - 1, now)
                if rc != DONE:
                    return rc
                venue_set_status(sim, v, VENUE_HALTED, st.sc_start[k])
                T.venue_status(tr, v, T.VENUE_HALTED, 0.0)
                s.iv[I_DIRTY] = 1
                s.sc_done[k] = 1
            if s.sc_done[k] == 1 and st.sc_end[k] <= now:
                rc = catch_up(sim, events, tr, s, v, st.sc_end[k] - 1, now)
                if rc != DONE:
                    return rc
                venue_set_status(sim, v, VENUE_OK, st.sc_end[k])
                T.venue_status(tr, v, T.VENUE_OK, 0.0)
                s.iv[I_DIRTY] = 1
                s.sc_done[k] = 2
    return DONE


# ---------------------------------------------------------------------------------------------
# messages between the trader core and the simulated venues


@njit(cache=True, _nrt=False)
def take_reports(sim, tr, s, now):
    """Deliver every report due by ``now`` to the trader core (by client id)."""
    while next_report_time(sim) <= now:
        kind = take_report(sim, s.rep_i, s.rep_f)
        if kind == 0:
            continue
        slot = s.rep_i[SLOT]
        T.report(tr, kind, s.sim_cid[slot], s.rep_i[AUX], s.rep_f[PRICE], s.rep_f[QTY], s.rep_f[FEE], now)
        s.iv[I_DIRTY] = 1


@njit(cache=True, inline="always", _nrt=False)
def send_actions(sim, tr, s):
    """Carry out the core's actions in order, each at the local time it was decided: new orders and
    cancels go on their way to the simulated venues (after the order latency). Returns a status; on
    QUEUE_FULL_ the rest waits (``I_ACT_NEXT``) until the queues have grown."""
    n = tr.iv[T.T_N_ACTIONS]
    mask = MAX_WORKING - 1
    for k in range(s.iv[I_ACT_NEXT], n):
        a = tr.actions[k]
        wslot = a.cid & mask
        if a.kind == ACT_NEW:
            slot = submit_order(sim, np.int64(a.venue), np.int64(a.instrument), np.int64(a.side), a.price, a.qty,
                                np.int64(a.tif), np.int64(a.post_only), np.int64(a.tag), a.ts)
            if slot == QUEUE_FULL:
                s.iv[I_ACT_NEXT] = k
                return QUEUE_FULL_
            if slot == NO_SLOT:
                s.iv[I_ACT_NEXT] = k
                return NO_ORDER_SLOT
            if slot < 0:  # the venue cannot take it (not one of its markets): it is rejected at once
                T.report(tr, REP_DONE, a.cid, REJECTED, 0.0, 0.0, 0.0, a.ts)
                continue
            s.sim_cid[slot] = a.cid
            s.sim_slot[wslot] = slot
        else:
            if request_cancel(sim, s.sim_slot[wslot], a.ts) == QUEUE_FULL:
                s.iv[I_ACT_NEXT] = k
                return QUEUE_FULL_
    s.iv[I_ACT_NEXT] = 0
    actions_done(tr)
    return DONE


# ---------------------------------------------------------------------------------------------
# sampling


@njit(cache=True, inline="always", _nrt=False)
def sample_row(tr, s, ts, session):
    k = s.iv[I_TS_N]
    row = s.ts_buf[k]
    nv = tr.ci[K_NV]
    ni = tr.ci[K_NI]
    raw, cut = T.equity(tr, s.pos, s.cash)
    row[0] = ts
    row[1] = session
    row[2] = tr.f[T_FAIR]
    row[3] = s.f[F_SHARE_MARK]
    row[4] = raw
    row[5] = cut
    row[6] = T.net_delta(tr, s.pos)
    row[7] = s.f[F_INV_PNL]
    for v in range(nv):
        ins = tr.venue_instrument[v]
        b = v * ni + (max(ins, 0))
        base = TS_FIXED_COLS + v * TS_VENUE_COLS
        row[base] = s.pos[v, ins] if ins >= 0 else 0.0
        row[base + 1] = s.cash[v]
        row[base + 2] = T.venue_value(tr, s.pos, s.cash, v)
        row[base + 3] = tr.exposure_cap[v]
        for side in range(2):
            best = np.nan
            for lvl in range(MAX_LEVELS):
                slot = tr.qslot[v, side, lvl]
                if slot >= 0:
                    p = tr.wo[slot].price
                    if not math.isfinite(best) or (side == BID and p > best) or (side == ASK and p < best):
                        best = p
            row[base + 4 + side] = best
        row[base + 6] = best_price(tr.lpx, tr.lnlev, b, 0)
        row[base + 7] = best_price(tr.lpx, tr.lnlev, b, 1)
    s.iv[I_TS_N] = k + 1


@njit(cache=True, _nrt=False)
def sample_until(sim, events, st, tr, s, until):
    """Time-series rows and fair-track rows for every interval boundary before ``until``, each showing
    the state at its own timestamp: the venues caught up to it, marks moved to it, its own session."""
    while s.iv[I_NEXT_SAMPLE] < until or s.iv[I_NEXT_TRACK] < until:
        t = min(s.iv[I_NEXT_SAMPLE], s.iv[I_NEXT_TRACK])
        if st.sc_kind.shape[0] > 0:
            rc = apply_scenarios(sim, events, st, tr, s, t)
            if rc != DONE:
                return rc
        rc = catch_up_all(sim, events, tr, s, t, t)
        if rc != DONE:
            return rc
        mark_to_fair(tr, s, t)
        if s.iv[I_NEXT_SAMPLE] == t:
            if s.iv[I_TS_N] >= s.ts_buf.shape[0]:
                return SERIES_FULL
            sample_row(tr, s, t, tr.sess_states[T.segment(tr, t)])
            s.iv[I_NEXT_SAMPLE] += np.int64(st.cf[C_SAMPLE_NS])
        if s.iv[I_NEXT_TRACK] == t:
            row = s.iv[I_TRACK_N]
            if row >= s.track_buf.shape[0]:
                return SERIES_FULL
            s.track_buf[row, 0] = t
            s.track_buf[row, 1] = tr.f[T_FAIR]
            s.track_buf[row, 2] = s.f[F_SHARE_MARK]
            s.iv[I_TRACK_N] = row + 1
            s.iv[I_NEXT_TRACK] += np.int64(st.cf[C_TRACK_NS])
    return DONE


# ---------------------------------------------------------------------------------------------
# deciding only when something changed (backtest.decide_when_changed)


@njit(cache=True, inline="always", _nrt=False)
def changed_since_decision(tr, st, s, now):
    """Whether a due decision should run with ``decide_when_changed``: something the strategy reads
    moved since the last one - a top of book (best price or size, at any configured venue, as the data
    reached us: fair value follows the mids), a report (positions, working orders), a venue status, a
    session segment, a multiplier step - or ``decide_max_idle_ms`` has passed (what only time moves:
    fair-value staleness, variance until the next hedge, cancel retries, venue hours). Remembers
    what it saw when it says yes."""
    nv = tr.ci[K_NV]
    ni = tr.ci[K_NI]
    seg = T.segment(tr, now)
    changed = (s.iv[I_DIRTY] != 0 or seg != s.iv[I_SEEN_SEG] or tr.iv[T.T_MULT_IDX] != s.iv[I_SEEN_MULT]
               or now - s.iv[I_LAST_DECIDE] >= np.int64(st.cf[C_IDLE_NS]))
    for v in range(nv):
        ins = tr.venue_instrument[v]
        if ins < 0:
            continue
        b = v * ni + ins
        for side in range(2):
            n = tr.lnlev[b, side]
            px = tr.lpx[b, side, 0] if n > 0 else -1.0
            qty = tr.lqty[b, side, 0] if n > 0 else -1.0
            if px != s.seen[v, 2 * side] or qty != s.seen[v, 2 * side + 1]:
                changed = True
                s.seen[v, 2 * side] = px
                s.seen[v, 2 * side + 1] = qty
    if changed:
        s.iv[I_DIRTY] = 0
        s.iv[I_SEEN_SEG] = seg
        s.iv[I_SEEN_MULT] = tr.iv[T.T_MULT_IDX]
        s.iv[I_LAST_DECIDE] = now
    return changed


# ---------------------------------------------------------------------------------------------
# the loop


@njit(cache=True, inline="always", _nrt=False)
def event_to_core(tr, events, i, now):
    """The market event ``events[i]`` reaches us: into the trader core's view of the market."""
    ev = events[i]
    kind = ev.kind
    v = np.int64(ev.venue)
    if kind == KIND_QUOTE or kind == KIND_DEPTH or kind == KIND_SNAPSHOT:
        T.book_level(tr, v, np.int64(ev.instrument), np.int64(ev.side), ev.price, ev.size, kind == KIND_QUOTE,
                     (np.int64(ev.flags) & F_CLEAR) != 0, now)
    elif kind == KIND_TRADE:
        T.trade(tr, v, np.int64(ev.instrument), np.int64(ev.side), ev.price, ev.size, now)
    else:
        T.heard_from(tr, v, now)


def run_chunk(events, start, sim, st, tr, s, params, kernel):
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
    nv = tr.ci[K_NV]
    n = events.shape[0]
    final = sim.final[0] != 0
    if tr.iv[T.T_N_ACTIONS] > 0:  # actions that waited for room in the queues
        rc = send_actions(sim, tr, s)
        if rc != DONE:
            return start, rc
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
            rc = sample_until(sim, events, st, tr, s, now)
            if rc != DONE:
                return i, rc
        # 2. what is due by now: scenarios, every venue's own timeline up to now, multiplier steps,
        #    the venues' reports
        if st.sc_kind.shape[0] > 0:
            rc = apply_scenarios(sim, events, st, tr, s, now)
            if rc != DONE:
                return i, rc
        if not venues_idle(sim, events, now):
            rc = venues_advance(sim, events, now)  # inlined: this runs for nearly every event
            if sim.fill_n[0] > s.iv[I_FILLS_SEEN]:
                book_fills(sim, tr, s, now)
            if rc < 0:
                return i, status_of(rc)
        T.clock(tr, now)
        # (calls that take the whole state are made only when there is work: they copy their arguments)
        if sim.pq_n[nv] > 0 and sim.pq_i[nv, 0, PQ_T] <= now:
            take_reports(sim, tr, s, now)
        # 3. the market event as it reaches us
        event_to_core(tr, events, i, now)
        s.iv[I_EVENTS] += 1
        s.iv[I_LAST_TS] = now
        # 4. act once per same-time group of events (a snapshot is one group)
        if i + 1 < n and events[i + 1].local_ts == now and events[i + 1].venue == ev.venue:
            continue
        T.book_end(tr, np.int64(ev.venue), np.int64(ev.instrument), now)
        if not decision_due(tr, now):
            continue
        if st.cf[C_ON_CHANGE] != 0.0 and not changed_since_decision(tr, st, s, now):
            continue
        mark_to_fair(tr, s, now)
        rc = step(tr, now, params, kernel)
        if tr.iv[T.T_N_ACTIONS] > 0:
            rc_send = send_actions(sim, tr, s)
            if rc_send != DONE:
                return i + 1, rc_send
        if rc == STEP_NO_SLOT:
            return i + 1, NO_ORDER_SLOT
    if final and n > 0:
        # end of data: what has reached the venues by the last event's time happens; last samples
        last = s.iv[I_LAST_TS]
        rc = catch_up_all(sim, events, tr, s, last, last)
        if rc == DONE:
            rc = sample_until(sim, events, st, tr, s, last + 1)
        if rc != DONE:
            return n, rc
    return n, DONE


_COMPILED: dict = {}


def compiled_run_chunk(events, sim, st, tr, s, params):
    """The compiled ``run_chunk`` for these argument types (from the disk cache after the first run).

    It releases the GIL, so the runner reads and merges the next chunk of the store meanwhile."""
    sig = (typeof(events), types.int64, typeof(sim), typeof(st), typeof(tr), typeof(s), typeof(params), KERNEL_TYPE)
    fn = _COMPILED.get(sig)
    if fn is None:
        fn = _COMPILED[sig] = njit(sig, cache=True, _nrt=False, nogil=True)(run_chunk)
    return fn
