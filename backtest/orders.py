"""Our orders at the simulated venues: a flat record array and its state machine.

Each order lives in a slot of ``orders`` (``ORDER_DTYPE``). Two states are kept per order:

- ``state``: the truth at the venue, plus "in flight" markers: ``PENDING_NEW`` (sent, not yet at the
  venue), ``OPEN`` (resting; partly filled when ``leaves < qty``), ``PENDING_CANCEL`` (resting with
  our cancel in flight: it can still fill), and the final ``FILLED`` / ``CANCELLED`` / ``REJECTED``;
- ``known_state`` / ``known_leaves``: what we have learnt from the venue's reports so far. The
  strategy and the engine act on these only; ``state`` is for the venue simulation and the fill log.

Allowed moves (``TRANSITIONS[from, to]``, enforced by :func:`set_state`, and by :func:`set_known`
with one extra move noted at KNOWN_TRANSITIONS; any other move raises, so an illegal state can only
come from a bug, never from data)::

    FREE -> PENDING_NEW                                   submit
    PENDING_NEW -> OPEN | PENDING_CANCEL                  rests at the venue (cancel already sent)
    PENDING_NEW -> FILLED | CANCELLED | REJECTED          taken at arrival / IOC rest expired or venue
                                                          lost it / post-only cross, halt, invalid
    OPEN -> PENDING_CANCEL | FILLED | CANCELLED           cancel sent / filled / venue default
    PENDING_CANCEL -> CANCELLED | FILLED | OPEN           cancelled / filled first / cancel refused
    FILLED | CANCELLED | REJECTED -> FREE                 slot released after the final report

Slots are recycled: ``free`` is a stack of free slots, ``rest`` a compact list of the slots resting
at a venue (what the matching scans per market event). Order ids (``id``) never repeat; every
message in flight carries the id, so a message about an order whose slot was reused is recognised.

Counters ``oc int64[3]``: ``OC_NFREE``, ``OC_NREST``, ``OC_NEXT_ID``.

Compiled with ``_nrt=False`` (no reference counting), like backtest.matching: see backtest.engine.

Units: times int64 ns UTC; prices quote currency; sizes tokens (shares at an equity venue).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.latency import ORDER, deliver
from stockbridge.core.order_codes import (  # noqa: F401 (the names backtest code imports from here)
    CANCELLED,
    FILLED,
    FREE,
    GTC,
    IOC,
    OPEN,
    PENDING_CANCEL,
    PENDING_NEW,
    REJECTED,
    STATE_NAMES,
    TAG_ARB,
    TAG_HEDGE,
    TAG_NAMES,
    TAG_QUOTE,
)
from backtest.pending import (
    ACT_CANCEL,
    ACT_NEW,
    AUX,
    KIND,
    OID,
    QTY,
    REP_ACK,
    REP_CANCEL_REJECT,
    REP_DONE,
    REP_FILL,
    SLOT,
    peek_time,
    pop,
    push,
    room,
)

# states, time in force and tags: stockbridge.core.order_codes (one vocabulary for the core and the venues)

# why an order ended cancelled or rejected
REASON_NONE = 0
REASON_USER = 1        # our cancel
REASON_IOC = 2         # IOC remainder expired
REASON_POST_ONLY = 3   # post-only order would have crossed at arrival
REASON_HALTED = 4      # venue halted at arrival
REASON_DEFAULTED = 5   # venue defaulted: the order is lost
REASON_INVALID = 6     # qty <= 0, or price not finite and > 0 for a resting order
REASON_NAMES = ("", "user", "ioc", "post_only", "halted", "defaulted", "invalid")

# submit_order / request_cancel results below 0
NO_SLOT = -1
QUEUE_FULL = -2
BAD_ARGS = -3

OC_NFREE = 0
OC_NREST = 1
OC_NEXT_ID = 2

QTY_EPS = 1e-9  # tokens: below this a remainder counts as nothing (float noise from partial fills)

ORDER_DTYPE = np.dtype(
    [
        ("id", np.int64),            # unique per replay, from 1
        ("ts_submit", np.int64),     # local ns when we sent it
        ("ts_venue", np.int64),      # venue ns when it arrives there
        ("ts_ack", np.int64),        # local ns when we learn it rests (0 if never)
        ("ts_done", np.int64),       # local ns when we learn it is finished (0 until then)
        ("price", np.float64),       # limit, quote ccy (+inf / 0 = market buy / sell, IOC only)
        ("qty", np.float64),         # tokens
        ("leaves", np.float64),      # tokens still open at the venue
        ("known_leaves", np.float64),  # tokens open as far as we know
        ("queue_ahead", np.float64), # tokens ahead of us at our price (estimate)
        ("traded", np.float64),      # tokens traded at our price since the level's last update
        ("book", np.int32),          # venue * n_instruments + instrument
        ("venue", np.int16),
        ("instrument", np.int16),
        ("side", np.int8),           # +1 buy, -1 sell
        ("tif", np.int8),            # GTC / IOC
        ("post_only", np.int8),      # 1 = reject instead of taking
        ("tag", np.int8),            # TAG_*
        ("state", np.int8),          # truth at the venue (see module doc)
        ("known_state", np.int8),    # as reported to us
        ("cancel_sent", np.int8),    # 1 while our cancel is on its way
        ("reason", np.int8),         # REASON_* for CANCELLED / REJECTED
    ],
    align=True,
)

_T = np.zeros((7, 7), dtype=np.uint8)
_T[FREE, PENDING_NEW] = 1
for _to in (OPEN, PENDING_CANCEL, FILLED, CANCELLED, REJECTED):
    _T[PENDING_NEW, _to] = 1
for _to in (PENDING_CANCEL, FILLED, CANCELLED):
    _T[OPEN, _to] = 1
for _to in (CANCELLED, FILLED, OPEN):
    _T[PENDING_CANCEL, _to] = 1
for _from in (FILLED, CANCELLED, REJECTED):
    _T[_from, FREE] = 1
TRANSITIONS = _T
TRANSITIONS.setflags(write=False)
# What we know can also go PENDING_CANCEL -> REJECTED: a cancel sent before the ack, for an order
# the venue refused at arrival. The venue itself never makes that move.
_K = _T.copy()
_K[PENDING_CANCEL, REJECTED] = 1
KNOWN_TRANSITIONS = _K
KNOWN_TRANSITIONS.setflags(write=False)


def new_orders(capacity: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Empty order slots: ``(orders ORDER_DTYPE[capacity], free int64[capacity], rest int64[capacity], oc int64[3])``."""
    if capacity < 1:
        raise ValueError(f"order capacity must be >= 1, got {capacity}")
    orders = np.zeros(capacity, dtype=ORDER_DTYPE)
    free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # slot 0 comes out first
    rest = np.zeros(capacity, dtype=np.int64)
    oc = np.array([capacity, 0, 1], dtype=np.int64)
    return orders, free, rest, oc


@njit(cache=True, _nrt=False)
def is_live(state) -> bool:
    return state == PENDING_NEW or state == OPEN or state == PENDING_CANCEL


@njit(cache=True, _nrt=False)
def is_final(state) -> bool:
    return state == FILLED or state == CANCELLED or state == REJECTED


@njit(cache=True, _nrt=False)
def set_state(orders, slot, new):
    """Move the venue-side state; raises on a move not in TRANSITIONS."""
    if TRANSITIONS[orders[slot].state, new] == 0:
        raise AssertionError("illegal order state transition")
    orders[slot].state = new


@njit(cache=True, _nrt=False)
def set_known(orders, slot, new):
    """Move the state as we know it; raises on a move not in KNOWN_TRANSITIONS."""
    if KNOWN_TRANSITIONS[orders[slot].known_state, new] == 0:
        raise AssertionError("illegal known order state transition")
    orders[slot].known_state = new


@njit(cache=True, _nrt=False)
def alloc_slot(free, oc) -> int:
    n = oc[OC_NFREE]
    if n == 0:
        return NO_SLOT
    oc[OC_NFREE] = n - 1
    return free[n - 1]


@njit(cache=True, _nrt=False)
def release_slot(orders, free, oc, slot):
    """Return a finished order's slot; its fields stay readable until the slot is reused."""
    set_state(orders, slot, FREE)
    set_known(orders, slot, FREE)
    free[oc[OC_NFREE]] = slot
    oc[OC_NFREE] += 1


@njit(cache=True, _nrt=False)
def rest_add(rest, oc, slot):
    rest[oc[OC_NREST]] = slot
    oc[OC_NREST] += 1


@njit(cache=True, _nrt=False)
def rest_remove(rest, oc, slot):
    n = oc[OC_NREST]
    for k in range(n):
        if rest[k] == slot:
            rest[k] = rest[n - 1]
            oc[OC_NREST] = n - 1
            return


@njit(cache=True, _nrt=False)
def submit_order(sim, venue, instrument, side, price, qty, tif, post_only, tag, t_now) -> int:
    """Send a new order at local time ``t_now``; it acts at the venue after the order latency.

    ``side`` +1 buy / -1 sell; ``price`` quote ccy (IOC market order: +inf buy, 0 sell); ``qty``
    tokens; ``tif`` GTC / IOC; ``post_only`` 0/1; ``tag`` TAG_*. Returns the slot (>= 0), or
    NO_SLOT (all slots busy), QUEUE_FULL (grow the pending queues), BAD_ARGS (venue, instrument or
    side out of range). A bad price or qty is not refused here: the venue rejects it on arrival.
    """
    n_venues = sim.dims[0]
    n_instr = sim.dims[1]
    if venue < 0 or venue >= n_venues or instrument < 0 or instrument >= n_instr or (side != 1 and side != -1):
        return BAD_ARGS
    if room(sim.pq_i, sim.pq_n, venue) < 1:
        return QUEUE_FULL
    slot = alloc_slot(sim.free, sim.oc)
    if slot < 0:
        return NO_SLOT
    o = sim.orders[slot]
    o.id = sim.oc[OC_NEXT_ID]
    sim.oc[OC_NEXT_ID] += 1
    o.ts_submit = t_now
    o.ts_venue = deliver(sim.lat, sim.last_arrive, sim.rng, venue, t_now, ORDER)
    o.ts_ack = 0
    o.ts_done = 0
    o.price = price
    o.qty = qty
    o.leaves = qty
    o.known_leaves = qty
    o.queue_ahead = 0.0
    o.traded = 0.0
    o.book = venue * n_instr + instrument
    o.venue = venue
    o.instrument = instrument
    o.side = side
    o.tif = tif
    o.post_only = post_only
    o.tag = tag
    o.cancel_sent = 0
    o.reason = REASON_NONE
    set_state(sim.orders, slot, PENDING_NEW)
    set_known(sim.orders, slot, PENDING_NEW)
    push(sim.pq_i, sim.pq_f, sim.pq_n, venue, o.ts_venue, ACT_NEW, slot, o.id, 0, 0.0, 0.0, 0.0)
    return slot


@njit(cache=True, _nrt=False)
def request_cancel(sim, slot, t_now) -> int:
    """Send a cancel for the order in ``slot`` at local time ``t_now``.

    Allowed when, as far as we know, the order is PENDING_NEW or OPEN (it may already be filled at
    the venue: then the cancel simply finds nothing). Returns 1 sent, 0 refused (unknown, finished
    or already being cancelled), QUEUE_FULL.
    """
    o = sim.orders[slot]
    if o.known_state != PENDING_NEW and o.known_state != OPEN:
        return 0
    v = np.int64(o.venue)
    if room(sim.pq_i, sim.pq_n, v) < 1:
        return QUEUE_FULL
    t_v = deliver(sim.lat, sim.last_arrive, sim.rng, v, t_now, ORDER)
    push(sim.pq_i, sim.pq_f, sim.pq_n, v, t_v, ACT_CANCEL, slot, o.id, 0, 0.0, 0.0, 0.0)
    o.cancel_sent = 1
    if o.state == OPEN:
        set_state(sim.orders, slot, PENDING_CANCEL)
    set_known(sim.orders, slot, PENDING_CANCEL)
    return 1


@njit(cache=True, _nrt=False)
def next_report_time(sim) -> np.int64:
    """Local time of the next report to reach us, NEVER if none is in flight."""
    return peek_time(sim.pq_i, sim.pq_n, sim.dims[0])


@njit(cache=True, _nrt=False)
def take_report(sim, out_i, out_f) -> int:
    """Receive the earliest report (call when ``next_report_time(sim) <= now``); update what we know.

    The entry is copied to ``out_i int64[6]`` / ``out_f float64[3]`` (columns of backtest.pending).
    Returns its kind (REP_ACK, REP_FILL, REP_DONE, REP_CANCEL_REJECT), or 0 if no report is in
    flight or it is about an order whose slot has been released. After REP_DONE the slot is free
    again; its fields stay readable until the next submit.
    """
    if sim.pq_n[sim.dims[0]] == 0:
        return 0
    pop(sim.pq_i, sim.pq_f, sim.pq_n, sim.dims[0], out_i, out_f)
    slot = out_i[SLOT]
    o = sim.orders[slot]
    if o.id != out_i[OID] or o.known_state == FREE:
        return 0
    kind = out_i[KIND]
    if kind == REP_ACK:
        if o.known_state == PENDING_NEW:
            set_known(sim.orders, slot, OPEN)
    elif kind == REP_FILL:
        o.known_leaves = max(o.known_leaves - out_f[QTY], 0.0)
    elif kind == REP_DONE:
        set_known(sim.orders, slot, out_i[AUX])
        if out_i[AUX] == FILLED:
            o.known_leaves = 0.0
        release_slot(sim.orders, sim.free, sim.oc, slot)
    elif kind == REP_CANCEL_REJECT:
        if o.known_state == PENDING_CANCEL:
            set_known(sim.orders, slot, OPEN)
    return kind
