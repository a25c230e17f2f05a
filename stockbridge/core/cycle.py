"""The decision cycle: the trader core's state in, actions out. One code path for backtest and live.

:func:`step` at time ``now`` (ns UTC), when a decision is due (every call, or on the configured
cadence):

1. sends again the cancels a venue refused, once their retry time has come;
2. builds the decision context from what we know (stockbridge.core.context), calls the strategy
   kernel through stockbridge.core.decide (which puts its wishes through the core's rules: grids,
   inventory and exposure bounds, off-hours size);
3. reconciles the decided quotes with our working orders: within the requote tolerance an order is
   left alone, otherwise it is cancelled and replaced (a cancelled order counts against the limits
   until the venue says it is done: ``working_buy`` / ``working_sell``);
4. sends the kernel's takes as one batch or not at all;
5. hedges the net delta at the equity venue: inside the band nothing; while the hedge venue is
   closed the need is carried to its next open; outside, priced against the variance until the
   next close plus the gap after it (stockbridge.core.hedging).

Everything it wants done is written to ``actions`` (stockbridge.core.actions); the caller carries
them out in order and calls :func:`actions_done`. A return value other than STEP_OK / STEP_IDLE
means it could not finish (no free working-order slot: a configuration error).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stockbridge.core.book import best_price, best_size
from stockbridge.core.context import BID, MAX_LEVELS
from stockbridge.core.decide import decide_into
from stockbridge.core.hedging import carry_after, hedge_decision, hedge_risk_price
from stockbridge.core.order_codes import (
    ACT_CANCEL,
    ACT_NEW,
    GTC,
    IOC,
    OPEN,
    PENDING_CANCEL,
    PENDING_NEW,
    TAG_ARB,
    TAG_HEDGE,
    TAG_QUOTE,
)
from stockbridge.core.quoting import ceil_to_grid, floor_to_grid, gap_tau
from stockbridge.core.risk import size_factor
from stockbridge.core.trader import (
    C_DECISION_NS,
    C_GAP_Z,
    C_HEDGE_BAND,
    C_HEDGE_GAMMA,
    C_HEDGE_HOLD_S,
    C_HEDGE_SLIP,
    C_HEDGE_TARGET,
    C_OFFHOURS,
    C_REQUOTE_FRAC,
    C_REQUOTE_TICKS,
    K_HEDGE_VENUE,
    K_NI,
    K_NV,
    K_SHARE,
    T_CANCEL_RETRIES,
    T_CARRIED,
    T_CID_PREFIX,
    T_DECISIONS,
    T_FAIR,
    T_FAIR_STD,
    T_HEDGE_SLOT,
    T_MULT,
    T_N_ACTIONS,
    T_NEXT_DECISION,
    T_NEXT_SERIAL,
    T_REFUSED,
    T_SIGMA_SHARE,
    T_WFREE_N,
    VENUE_OK,
    clock,
    equity,
    fair_at,
    net_delta,
    segment,
    variance_held_past_close,
    variance_until_hedge,
    venue_hours_open,
    venue_value,
)
from stockbridge.core.volatility import vol_sigma
from stockbridge.core.working import (
    STALE_CANCELLING,
    STALE_NO,
    STALE_REFUSED,
    make_cid,
    working_alloc,
)

STEP_IDLE = 0      # no decision was due
STEP_OK = 1        # decided; the actions are in ``actions``
STEP_NO_SLOT = 2   # more working orders than the core holds: a configuration error


# ---------------------------------------------------------------------------------------------
# actions


@njit(cache=True, inline="always", _nrt=False)
def _push(tr, kind, slot, now):
    w = tr.wo[slot]
    a = tr.actions[tr.iv[T_N_ACTIONS]]
    tr.iv[T_N_ACTIONS] += 1
    a.kind = kind
    a.cid = w.cid
    a.ts = now
    a.price = w.price
    a.qty = w.qty
    a.side = w.side
    a.tif = w.tif
    a.post_only = w.post_only
    a.tag = w.tag
    a.venue = w.venue
    a.instrument = w.instrument


@njit(cache=True, inline="always", _nrt=False)
def new_order(tr, v, ins, side, price, qty, tif, post_only, tag, now):
    """A new working order (``side`` +1 buy / -1 sell, price quote ccy, qty tokens, on the venue's
    grids) and its ACT_NEW action; returns its slot, -1 if every working-order slot is busy."""
    slot = working_alloc(tr.wfree, tr.iv[T_WFREE_N])
    if slot < 0:
        return -1
    tr.iv[T_WFREE_N] -= 1
    w = tr.wo[slot]
    w.cid = make_cid(tr.iv[T_CID_PREFIX], tr.iv[T_NEXT_SERIAL], slot)
    tr.iv[T_NEXT_SERIAL] += 1
    w.ts_sent = now
    w.stale_retry = 0
    w.price = price
    w.qty = qty
    w.leaves = qty
    w.venue = v
    w.instrument = ins
    w.side = side
    w.tif = tif
    w.post_only = post_only
    w.tag = tag
    w.state = PENDING_NEW
    w.stale = STALE_NO
    _push(tr, ACT_NEW, slot, now)
    return slot


@njit(cache=True, inline="always", _nrt=False)
def cancel_order(tr, slot, now):
    """Cancel our order in ``slot`` if, as far as we know, it can still be cancelled (sent or resting,
    not already being cancelled); returns 1 if the ACT_CANCEL action was written."""
    w = tr.wo[slot]
    if w.state != PENDING_NEW and w.state != OPEN:
        return 0
    w.state = PENDING_CANCEL
    _push(tr, ACT_CANCEL, slot, now)
    return 1


@njit(cache=True, inline="always", _nrt=False)
def actions_done(tr):
    """The caller has carried out every action of the last step."""
    tr.iv[T_N_ACTIONS] = 0


# ---------------------------------------------------------------------------------------------
# the pieces of a decision


@njit(cache=True, inline="always", _nrt=False)
def retry_cancels(tr, now):
    """Cancel again the orders whose cancel the venue refused, once their retry time has come."""
    for slot in range(tr.wo.shape[0]):
        w = tr.wo[slot]
        if w.stale == STALE_REFUSED and w.stale_retry <= now:
            cancel_order(tr, slot, now)
            w.stale = STALE_CANCELLING
            tr.iv[T_REFUSED] -= 1
            tr.iv[T_CANCEL_RETRIES] += 1


@njit(cache=True, inline="always", _nrt=False)
def fill_context(tr, now, session, hedge_open, tau):
    c = tr.ctx[0]
    nv = tr.ci[K_NV]
    ni = tr.ci[K_NI]
    c.ts = now
    c.session = session
    c.hedge_open = 1 if hedge_open else 0
    c.tau = tau
    c.var_rate = tr.sess_weights[session]
    c.size_factor = size_factor(hedge_open, tr.cf[C_OFFHOURS])
    c.fair = tr.f[T_FAIR]
    c.fair_std = tr.f[T_FAIR_STD]
    c.sigma = vol_sigma(tr.vol_state) * tr.f[T_FAIR]
    c.multiplier = tr.f[T_MULT]
    c.net_delta = net_delta(tr, tr.kpos)
    raw, cut = equity(tr, tr.kpos, tr.kcash)
    c.equity_raw = raw
    c.equity_haircut = cut
    for v in range(nv):
        ins = tr.venue_instrument[v]
        b = v * ni + (max(ins, 0))
        c.tradable[v] = 1 if (tr.vstatus[v] == VENUE_OK and venue_hours_open(tr, v, now)) else 0
        # the market as its data reached us: what our own orders did there we learn from their reports
        c.bid[v] = best_price(tr.lpx, tr.lnlev, b, 0)
        c.ask[v] = best_price(tr.lpx, tr.lnlev, b, 1)
        c.bid_size[v] = best_size(tr.lqty, tr.lnlev, b, 0)
        c.ask_size[v] = best_size(tr.lqty, tr.lnlev, b, 1)
        c.working_buy[v] = tr.stale_qty[v, 0]
        c.working_sell[v] = tr.stale_qty[v, 1]
        c.last_update[v] = tr.last_update[v]
        c.position[v] = tr.kpos[v, ins] if ins >= 0 else 0.0
        c.cash[v] = tr.kcash[v]
        c.exposure[v] = venue_value(tr, tr.kpos, tr.kcash, v)


@njit(cache=True, inline="always", _nrt=False)
def reconcile_quotes(tr, now):
    """Bring our resting quotes to the decided ones; leave an order alone within the requote tolerance."""
    for v in range(tr.ci[K_NV]):
        if tr.quotable[v] == 0:
            continue
        ins = tr.venue_instrument[v]
        tol_px = tr.cf[C_REQUOTE_TICKS] * tr.tick[v] * (1.0 + 1e-9)
        for side in range(2):
            for lvl in range(MAX_LEVELS):
                price = tr.quotes[v, side, lvl, 0]
                size = tr.quotes[v, side, lvl, 1]
                slot = tr.qslot[v, side, lvl]
                if slot >= 0:
                    w = tr.wo[slot]
                    keep = (size > 0.0 and abs(price - w.price) <= tol_px
                            and abs(size - w.leaves) <= tr.cf[C_REQUOTE_FRAC] * w.qty)
                    if keep:
                        continue
                    if cancel_order(tr, slot, now) == 1 and w.stale == STALE_NO:
                        w.stale = STALE_CANCELLING  # it may fill until the venue says it is done
                        tr.stale_qty[v, side] += w.leaves
                    tr.qslot[v, side, lvl] = -1
                if size > 0.0:
                    slot = new_order(tr, v, ins, 1 if side == BID else -1, price, size, GTC, 1, TAG_QUOTE, now)
                    if slot < 0:
                        return STEP_NO_SLOT
                    tr.qslot[v, side, lvl] = slot
    return STEP_OK


@njit(cache=True, inline="always", _nrt=False)
def send_takes(tr, n, now):
    """Send the takes the kernel wrote together as one unit, or none of them.

    While a take at one of the batch's venues has not come back, the book view there is stale; an
    arbitrage sent with a leg missing would leave delta the strategy never asked for."""
    for k in range(n):
        if tr.arb_live[np.int64(tr.takes[k, 0])] > 0:
            return STEP_OK
    for k in range(n):
        v = np.int64(tr.takes[k, 0])
        slot = new_order(tr, v, tr.venue_instrument[v], np.int64(tr.takes[k, 1]), tr.takes[k, 2], tr.takes[k, 3],
                         IOC, 0, TAG_ARB, now)
        if slot < 0:
            return STEP_NO_SLOT
        tr.arb_live[v] += 1
    return STEP_OK


@njit(cache=True, inline="always", _nrt=False)
def hedge(tr, now, hedge_open):
    hv = tr.ci[K_HEDGE_VENUE]
    if hv < 0 or tr.iv[T_HEDGE_SLOT] >= 0:
        return STEP_OK  # one hedge order in flight at a time: the next decision sees its result
    share = tr.ci[K_SHARE]
    b = hv * tr.ci[K_NI] + share
    bid = best_price(tr.lpx, tr.lnlev, b, 0)
    ask = best_price(tr.lpx, tr.lnlev, b, 1)
    nd = net_delta(tr, tr.kpos)
    band = tr.cf[C_HEDGE_BAND]
    target = tr.cf[C_HEDGE_TARGET]
    if abs(nd - target) <= band and tr.f[T_CARRIED] == 0.0:
        return STEP_OK  # inside the band with nothing owed: hedge_decision would say 0
    open_now = hedge_open and tr.vstatus[hv] == VENUE_OK
    # price of leaving delta unhedged: variance until the hedge venue's next close plus the gap after it
    risk_price = 0.0
    if tr.cf[C_HEDGE_GAMMA] > 0.0 and math.isfinite(tr.f[T_SIGMA_SHARE]):
        hold = variance_held_past_close(tr, now)
        if not math.isnan(hold):
            risk_price = hedge_risk_price(tr.cf[C_HEDGE_GAMMA], tr.f[T_SIGMA_SHARE], hold)
    n = hedge_decision(nd, band, target, open_now, tr.f[T_CARRIED], bid, ask, tr.taker_fee[hv], tr.borrow_rate[hv],
                       tr.cf[C_HEDGE_HOLD_S], tr.lot[hv], tr.kpos[hv, share], risk_price)
    tr.f[T_CARRIED] = carry_after(tr.f[T_CARRIED], n, nd, band, target, open_now, tr.lot[hv])
    if n == 0.0:
        return STEP_OK
    slip = tr.cf[C_HEDGE_SLIP] * tr.tick[hv]
    side = 1 if n > 0 else -1
    limit = ceil_to_grid(ask + slip, tr.tick[hv]) if side > 0 else floor_to_grid(bid - slip, tr.tick[hv])
    slot = new_order(tr, hv, share, side, limit, abs(n), IOC, 0, TAG_HEDGE, now)
    if slot < 0:
        return STEP_NO_SLOT
    tr.iv[T_HEDGE_SLOT] = slot
    return STEP_OK


# ---------------------------------------------------------------------------------------------
# the step


@njit(cache=True, inline="always", _nrt=False)
def decision_due(tr, now):
    """A decision is due at ``now``: on every call, or once the cadence's next time has come."""
    return tr.cf[C_DECISION_NS] <= 0.0 or now >= tr.iv[T_NEXT_DECISION]


@njit(cache=True, inline="always", _nrt=False)
def step(tr, now, params, kernel):
    """Decide at ``now`` if a decision is due; the actions go to ``tr.actions`` (see the module doc).
    ``params`` float64[::1] and ``kernel`` are the strategy's (stockbridge.core.decide)."""
    if not decision_due(tr, now):
        return STEP_IDLE
    if tr.cf[C_DECISION_NS] > 0.0:
        every = np.int64(tr.cf[C_DECISION_NS])
        tr.iv[T_NEXT_DECISION] = (now // every + 1) * every
    clock(tr, now)
    fair_at(tr, now)
    if tr.iv[T_REFUSED] > 0:
        retry_cancels(tr, now)
    fair = tr.f[T_FAIR]
    if not (math.isfinite(fair) and fair > 0.0 and math.isfinite(vol_sigma(tr.vol_state))):
        return STEP_OK
    session = tr.sess_states[segment(tr, now)]
    hv = tr.ci[K_HEDGE_VENUE]
    hedge_open = False
    if hv >= 0:
        hedge_open = tr.hedge_mask[session] == 1 and tr.vstatus[hv] == VENUE_OK
    tau = 0.0
    if not hedge_open:
        tau = gap_tau(variance_until_hedge(tr, now), tr.cf[C_GAP_Z])
    fill_context(tr, now, session, hedge_open, tau)
    n_takes = decide_into(tr.ctx[0], params, kernel, tr.quotes, tr.takes, tr.work)
    tr.iv[T_DECISIONS] += 1
    rc = reconcile_quotes(tr, now)
    if rc == STEP_OK:
        rc = send_takes(tr, n_takes, now)
    if rc == STEP_OK:
        rc = hedge(tr, now, hedge_open)
    return rc
