"""The simulated venue: what happens to our orders when they arrive and when the market moves.

All functions take ``sim`` (a :class:`backtest.simvenue.SimVenues` of flat arrays) and are
``@njit(cache=True, _nrt=False)``, for the engine loop to call per event with no Python in between
(no reference counting: see backtest.engine's module doc). The per-event path (:func:`venue_on_event`
and the level / trade handlers under it, and the venue clocks :func:`venues_advance` that call it) is
inlined into its caller: a call passes the ~30 arrays of ``sim`` by value, which measured ~75 ns per
event.

Aggressive orders (a limit that crosses the opposite best at arrival, or an IOC) walk the opposite
side best first up to their limit, one fill per level at the level's price, taker fee; what they
take is removed from our view of the book until the data next updates that level. An IOC's
remainder is cancelled; a GTC remainder rests at its limit. A post-only order that would cross at
arrival is rejected. Our own resting orders are not in the visible book, so an aggressive order of
ours never trades against them (the core's quotes never cross our own takes).

Passive orders keep an estimate of the size ahead of them at their price (``queue_ahead``), set at
arrival to the visible size there (0 for a new level):

- a trade at our price first eats ``queue_ahead``, then fills us with what is left of it; a trade
  through our price (a buy printing above our ask, a sell below our bid) means our whole level was
  taken, so we fill up to the trade's size. One trade's size is shared among our orders in
  price-time priority and fills each at its own limit, maker fee;
- a level that shrinks without a trade: ``conservative`` assumes the cancels were behind us, so we
  only move up when the level falls below our estimate (``queue_ahead = min(queue_ahead, size)``);
  ``probabilistic`` attributes the decrease (net of trades already counted) to the orders ahead of
  us with probability ``f = ahead^n / (ahead^n + behind^n)`` (hftbacktest's power queue function),
  one draw from the seeded ``RNG_QUEUE`` stream per decrease, and always attributes the part of a
  decrease larger than the size behind us to the front. (hftbacktest moves the estimate by the
  expected share instead; a depth decrease is usually one cancel, which is either ahead or behind);
- an L1 quote that moves the best level away from our price, or a level removed, leaves nobody
  ahead of us;
- an opposite level that appears at or through our resting price means that size would have hit
  us: we fill up to it at our price (maker) and it is removed from the book.

A snapshot (a row with ``F_CLEAR``) rebuilds the book; queue estimates of that book are re-clipped
to the rebuilt sizes at the snapshot's last row (``F_BATCH_END``, or the book's next row with
another exchange time).

Liquidity we took from a displayed level (by walking the book, or by a crossing level filling a
resting order) stays taken until the data shows the level refreshed: see backtest.consumed.

Each venue runs on its own clock (:func:`venue_advance`): its market rows act at their ``exch_ts``
and our messages at their arrival, in venue-time order, whatever the other venues' rows say.

Venue status (set by the engine from scenarios through :func:`venue_set_status`): HALTED = no fills,
new orders rejected, cancels refused (the order keeps resting); DEFAULTED = every live order at the
venue is lost (CANCELLED, reason DEFAULTED) and nothing trades there again.

Return values: >= 0 is a count (fills, or actions processed); NEED_FILL_ROOM / NEED_REPORT_ROOM
mean the call stopped *before* changing anything for lack of room in the fills array or order log,
or the report queue: flush them (``simvenue.flush_fills``, ``simvenue.flush_orders``) or grow the
queues (``simvenue.grow_queues``) and call again. Nothing is ever dropped.

Units: times int64 ns (venue time for matching, local time for reports); prices quote ccy; sizes
tokens; fees quote ccy (negative = rebate).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stockbridge.core.book import (
    apply_quote,
    best_price,
    better,
    clear_book,
    find_level,
    same_price,
    set_level,
    side_index,
    size_at,
    take_at,
    uncross,
)
from backtest.consumed import clear as clear_consumed
from backtest.consumed import consume, data_best, drop_better_than, effective_size, traded_through
from backtest.fees import fill_fee
from backtest.latency import RESPONSE, deliver
from backtest.orders import (
    CANCELLED,
    FILLED,
    GTC,
    IOC,
    OC_NREST,
    OPEN,
    PENDING_CANCEL,
    PENDING_NEW,
    QTY_EPS,
    REASON_DEFAULTED,
    REASON_HALTED,
    REASON_INVALID,
    REASON_IOC,
    REASON_NONE,
    REASON_POST_ONLY,
    REASON_USER,
    REJECTED,
    is_live,
    rest_add,
    rest_remove,
    set_state,
)
from backtest.pending import (
    ACT_NEW,
    NEVER,
    KIND,
    OID,
    REP_ACK,
    REP_CANCEL_REJECT,
    REP_DONE,
    REP_FILL,
    SLOT,
    T,
    drop_top,
    push,
    room,
)
from backtest.rng import RNG_QUEUE, uniform
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE

VENUE_OK = 0
VENUE_HALTED = 1
VENUE_DEFAULTED = 2

QUEUE_CONSERVATIVE = 0
QUEUE_PROBABILISTIC = 1

NEED_FILL_ROOM = -1
NEED_REPORT_ROOM = -2
NEED_MORE_DATA = -3

NO_RESYNC = np.iinfo(np.int64).min

FILL_DTYPE = np.dtype(
    [
        ("ts_venue", np.int64),    # venue ns when it happened
        ("ts_arrival", np.int64),  # venue ns when the order reached the venue (<= ts_venue)
        ("ts_local", np.int64),    # local ns when its report reaches us
        ("order_id", np.int64),
        ("price", np.float64),     # quote ccy
        ("qty", np.float64),       # tokens (shares at an equity venue)
        ("fee", np.float64),       # quote ccy, negative = rebate received
        ("leaves", np.float64),    # tokens still open on the order after this fill
        ("venue", np.int16),
        ("instrument", np.int16),
        ("side", np.int8),         # +1 we bought, -1 we sold
        ("maker", np.int8),        # 1 maker (passive), 0 taker
        ("tag", np.int8),          # orders.TAG_*
    ],
    align=True,
)


# One row per order when it reaches a final state at the venue (orders.parquet).
ORDER_LOG_DTYPE = np.dtype(
    [
        ("order_id", np.int64),
        ("ts_submit", np.int64),   # local ns when we sent it
        ("arrival_ts", np.int64),  # venue ns when it reached the venue
        ("final_ts", np.int64),    # venue ns when it became final (filled, cancelled, rejected)
        ("done_ts", np.int64),     # local ns when its final report reaches us
        ("price", np.float64),     # limit, quote ccy
        ("qty", np.float64),       # tokens ordered
        ("filled", np.float64),    # tokens filled
        ("venue", np.int16),
        ("instrument", np.int16),
        ("side", np.int8),
        ("tif", np.int8),
        ("post_only", np.int8),
        ("tag", np.int8),
        ("state", np.int8),        # orders.FILLED / CANCELLED / REJECTED
        ("reason", np.int8),       # orders.REASON_*
    ],
    align=True,
)


@njit(cache=True, inline="always", _nrt=False)
def _room(sim, n_fills, n_reports) -> int:
    # every report may be an order's final one: the order log needs a row for each
    if sim.fills.shape[0] - sim.fill_n[0] < n_fills or sim.olog.shape[0] - sim.olog_n[0] < n_reports:
        return NEED_FILL_ROOM
    if room(sim.pq_i, sim.pq_n, sim.dims[0]) < n_reports:
        return NEED_REPORT_ROOM
    return 0


@njit(cache=True, _nrt=False)
def _report(sim, t, kind, slot, aux, price, qty, fee):
    push(sim.pq_i, sim.pq_f, sim.pq_n, sim.dims[0], t, kind, slot, sim.orders[slot].id, aux, price, qty, fee)


@njit(cache=True, _nrt=False)
def _finish(sim, slot, state, reason, t_venue, t_report):
    """The order is final at venue time ``t_venue``; its report reaches us at ``t_report``; logged."""
    o = sim.orders[slot]
    if o.state == OPEN or o.state == PENDING_CANCEL:
        rest_remove(sim.rest, sim.oc, slot)
    set_state(sim.orders, slot, state)
    o.reason = reason
    o.ts_done = t_report
    _report(sim, t_report, REP_DONE, slot, state, 0.0, 0.0, 0.0)
    k = sim.olog_n[0]
    r = sim.olog[k]
    r.order_id = o.id
    r.ts_submit = o.ts_submit
    r.arrival_ts = o.ts_venue
    r.final_ts = t_venue
    r.done_ts = t_report
    r.price = o.price
    r.qty = o.qty
    r.filled = o.qty - o.leaves
    r.venue = o.venue
    r.instrument = o.instrument
    r.side = o.side
    r.tif = o.tif
    r.post_only = o.post_only
    r.tag = o.tag
    r.state = state
    r.reason = reason
    sim.olog_n[0] = k + 1


@njit(cache=True, _nrt=False)
def _fill(sim, slot, ts_venue, t_report, price, qty, maker, with_gas):
    """Record one fill, report it, and finish the order when nothing is left."""
    o = sim.orders[slot]
    fee = fill_fee(sim.fees, np.int64(o.venue), price, qty, maker, with_gas)
    left = o.leaves - qty
    if left <= QTY_EPS:
        left = 0.0
    o.leaves = left
    k = sim.fill_n[0]
    f = sim.fills[k]
    f.ts_venue = ts_venue
    f.ts_arrival = o.ts_venue
    f.ts_local = t_report
    f.order_id = o.id
    f.price = price
    f.qty = qty
    f.fee = fee
    f.leaves = left
    f.venue = o.venue
    f.instrument = o.instrument
    f.side = o.side
    f.maker = 1 if maker else 0
    f.tag = o.tag
    sim.fill_n[0] = k + 1
    _report(sim, t_report, REP_FILL, slot, 1 if maker else 0, price, qty, fee)
    if left == 0.0:
        _finish(sim, slot, FILLED, REASON_NONE, ts_venue, t_report)


@njit(cache=True, _nrt=False)
def _rest(sim, slot, t_report):
    o = sim.orders[slot]
    set_state(sim.orders, slot, PENDING_CANCEL if o.cancel_sent else OPEN)
    o.queue_ahead = size_at(sim.px, sim.qty, sim.nlev, np.int64(o.book), side_index(o.side), o.price)
    o.traded = 0.0
    rest_add(sim.rest, sim.oc, slot)
    o.ts_ack = t_report
    _report(sim, t_report, REP_ACK, slot, 0, 0.0, 0.0, 0.0)


@njit(cache=True, _nrt=False)
def venue_arrive_new(sim, slot, oid, t_venue) -> int:
    """Our new order reaches its venue at venue time ``t_venue``. Returns the number of fills.

    The caller guarantees room for one fill per opposite level plus two reports
    (:func:`venue_process_actions` does).
    """
    o = sim.orders[slot]
    if o.id != oid or o.state != PENDING_NEW:
        return 0  # lost in flight to a venue default
    v = np.int64(o.venue)
    b = np.int64(o.book)
    s = side_index(o.side)
    opp = 1 - s
    t_r = deliver(sim.lat, sim.last_report, sim.rng, v, t_venue, RESPONSE)
    st = sim.status[v]
    if st == VENUE_DEFAULTED:
        _finish(sim, slot, REJECTED, REASON_DEFAULTED, t_venue, t_r)
        return 0
    if st == VENUE_HALTED:
        _finish(sim, slot, REJECTED, REASON_HALTED, t_venue, t_r)
        return 0
    price = o.price
    bad_qty = not (o.qty > 0.0 and np.isfinite(o.qty))
    bad_price = np.isnan(price) or price < 0.0 or (o.tif == GTC and not (np.isfinite(price) and price > 0.0))
    if bad_qty or bad_price:
        _finish(sim, slot, REJECTED, REASON_INVALID, t_venue, t_r)
        return 0
    crosses = sim.nlev[b, opp] > 0 and not better(s, best_price(sim.px, sim.nlev, b, opp), price)
    if crosses and o.post_only:
        _finish(sim, slot, REJECTED, REASON_POST_ONLY, t_venue, t_r)
        return 0
    n = 0
    if crosses:
        while o.leaves > 0.0 and sim.nlev[b, opp] > 0:
            lp = sim.px[b, opp, 0]
            if better(s, lp, price):
                break  # the next level is beyond our limit
            q = min(o.leaves, sim.qty[b, opp, 0])
            take_at(sim.px, sim.qty, sim.nlev, b, opp, 0, q)
            consume(sim.cpx, sim.cq, sim.cn, sim.cevict, b, opp, lp, q)
            _fill(sim, slot, t_venue, t_r, lp, q, False, n == 0)
            n += 1
    if o.state == FILLED:
        return n
    if o.tif == IOC:
        _finish(sim, slot, CANCELLED, REASON_IOC, t_venue, t_r)
        return n
    _rest(sim, slot, t_r)
    return n


@njit(cache=True, _nrt=False)
def venue_arrive_cancel(sim, slot, oid, t_venue):
    """Our cancel reaches the venue: the order is cancelled, or kept if the venue is halted."""
    o = sim.orders[slot]
    if o.id != oid:
        return  # the order finished and its slot was reused: nothing to cancel
    o.cancel_sent = 0
    if o.state != PENDING_CANCEL and o.state != OPEN:
        return  # it finished first (filled, expired or lost); the venue has already said so
    v = np.int64(o.venue)
    t_r = deliver(sim.lat, sim.last_report, sim.rng, v, t_venue, RESPONSE)
    if sim.status[v] == VENUE_HALTED:
        if o.state == PENDING_CANCEL:
            set_state(sim.orders, slot, OPEN)
        _report(sim, t_r, REP_CANCEL_REJECT, slot, 0, 0.0, 0.0, 0.0)
        return
    _finish(sim, slot, CANCELLED, REASON_USER, t_venue, t_r)


@njit(cache=True, _nrt=False)
def venue_process_actions(sim, v, until) -> int:
    """Carry out our messages due at venue ``v`` before venue time ``until`` (exclusive), in time order.

    :func:`venue_advance` calls it with the venue's next market row's ``exch_ts`` before applying
    that row (so at equal times the market row goes first).
    Returns the number of messages carried out, or NEED_FILL_ROOM / NEED_REPORT_ROOM (the message
    due next is kept: make room and call again).
    """
    n = 0
    while sim.pq_n[v] > 0 and sim.pq_i[v, 0, T] < until:
        kind = sim.pq_i[v, 0, KIND]
        slot = sim.pq_i[v, 0, SLOT]
        oid = sim.pq_i[v, 0, OID]
        t = sim.pq_i[v, 0, T]
        if kind == ACT_NEW:
            o = sim.orders[slot]
            levels = sim.nlev[np.int64(o.book), 1 - side_index(o.side)]
            rc = _room(sim, levels, levels + 2)
        else:
            rc = _room(sim, 0, 1)
        if rc < 0:
            return rc
        drop_top(sim.pq_i, sim.pq_f, sim.pq_n, v)
        if kind == ACT_NEW:
            venue_arrive_new(sim, slot, oid, t)
        else:
            venue_arrive_cancel(sim, slot, oid, t)
        n += 1
    return n


@njit(cache=True, inline="always", _nrt=False)
def _next_row(sim, events, v) -> int:
    """Index of venue ``v``'s next market row not yet carried out at the venue, -1 if the array has none."""
    k = sim.xnext[v]
    if k >= 0:
        return k
    k = sim.xscan[v]
    n = events.shape[0]
    while k < n:
        if events[k].venue == v:
            sim.xnext[v] = k
            sim.xscan[v] = k + 1
            return k
        k += 1
    sim.xscan[v] = n
    return -1


@njit(cache=True, inline="always", _nrt=False)
def venue_advance(sim, events, v, until) -> int:
    """Carry out at venue ``v`` everything that happens there at venue time <= ``until`` (ns), in venue
    time order: its own market rows of ``events`` (in row order, at their ``exch_ts``) and our
    messages (at their arrival). At equal times the market row goes first.

    Each venue runs on its own clock: whatever another venue's rows say, a message acts against this
    venue's book as its own data shows it at the message's arrival. ``events`` is the merged stream in
    local-time order; a venue's row reaches us after its feed latency, so its venue-side effect is
    found by looking ahead (``sim.xnext`` / ``sim.xscan``, one cursor per venue). Unless
    ``sim.final[0]`` says the array holds the rest of the data, a row of ``v`` not yet in the array
    may still have ``exch_ts >= events[-1].local_ts - sim.lmax[v]`` (``lmax``: the largest feed
    latency of the venue's data); when ``until`` reaches that far, this returns NEED_MORE_DATA and
    changes nothing more: call again with the next rows appended (:func:`venues_rebase`).

    Returns >= 0, or NEED_FILL_ROOM / NEED_REPORT_ROOM / NEED_MORE_DATA (make room / append data and
    call again; nothing is lost).
    """
    n = events.shape[0]
    while True:
        k = _next_row(sim, events, v)
        if k >= 0:
            t_row = events[k].exch_ts
        elif sim.final[0] != 0:
            t_row = NEVER
        elif n == 0:
            return NEED_MORE_DATA
        else:
            t_row = events[n - 1].local_ts - sim.lmax[v]  # no unseen row of v is earlier than this
        lim = t_row if t_row <= until else until + 1
        if sim.pq_n[v] > 0 and sim.pq_i[v, 0, T] < lim:
            rc = venue_process_actions(sim, v, lim)
            if rc < 0:
                return rc
        if t_row > until:
            return 0
        if k < 0:
            return NEED_MORE_DATA
        rc = venue_on_event(sim, events, k)
        if rc < 0:
            return rc
        sim.xnext[v] = -1


@njit(cache=True, inline="always", _nrt=False)
def venue_idle(sim, events, v, until) -> bool:
    """True when nothing can happen at venue ``v`` by ``until`` (the common case, decided without a call)."""
    if sim.pq_n[v] > 0 and sim.pq_i[v, 0, T] <= until:
        return False
    k = sim.xnext[v]
    if k >= 0:
        return events[k].exch_ts > until
    n = events.shape[0]
    return sim.xscan[v] >= n and n > 0 and sim.final[0] == 0 and events[n - 1].local_ts - sim.lmax[v] > until


@njit(cache=True, inline="always", _nrt=False)
def venues_idle(sim, events, until) -> bool:
    for v in range(sim.dims[0]):
        if not venue_idle(sim, events, v, until):
            return False
    return True


@njit(cache=True, inline="always", _nrt=False)
def venues_advance(sim, events, until) -> int:
    """:func:`venue_advance` for every venue. Returns 0 or the first negative code."""
    for v in range(sim.dims[0]):
        if venue_idle(sim, events, v, until):
            continue
        rc = venue_advance(sim, events, v, until)
        if rc < 0:
            return rc
    return 0


def venues_keep_from(sim, local_index: int) -> int:
    """First row of the current array still needed after a NEED_MORE_DATA stop at ``local_index``:
    the local loop's row or a venue cursor's, whichever is earlier."""
    keep = local_index
    for v in range(int(sim.dims[0])):
        k = int(sim.xnext[v]) if sim.xnext[v] >= 0 else int(sim.xscan[v])
        keep = min(keep, k)
    return keep


def venues_rebase(sim, keep: int) -> None:
    """The rows before ``keep`` are dropped from the array the cursors point into."""
    sim.xscan[:] -= keep
    sim.xnext[sim.xnext >= 0] -= keep


@njit(cache=True, _nrt=False)
def _sort_priority(sim, nc, s):
    """Sort ``sim.scratch[:nc]`` (slots of our orders on side ``s``) best price first, then arrival."""
    for i in range(1, nc):
        x = sim.scratch[i]
        ox = sim.orders[x]
        j = i - 1
        while j >= 0:
            oj = sim.orders[sim.scratch[j]]
            if better(s, ox.price, oj.price):
                ahead = True
            elif same_price(ox.price, oj.price):
                ahead = ox.ts_venue < oj.ts_venue or (ox.ts_venue == oj.ts_venue and ox.id < oj.id)
            else:
                ahead = False
            if not ahead:
                break
            sim.scratch[j + 1] = sim.scratch[j]
            j -= 1
        sim.scratch[j + 1] = x


@njit(cache=True, _nrt=False)
def _deplete(sim, slot, prev, new):
    """Our level at our price went from ``prev`` to ``new`` (visible, excluding us)."""
    o = sim.orders[slot]
    traded = o.traded
    o.traded = 0.0
    front = o.queue_ahead
    if sim.qmodel[0] == QUEUE_CONSERVATIVE:
        o.queue_ahead = min(front, new)
        return
    chg = prev - new - traded  # trades at our price were already taken off the front
    if chg <= 0.0 or front <= 0.0:
        o.queue_ahead = min(front, new)
        return
    back = max(prev - traded - front, 0.0)
    if back <= 0.0:
        dec = chg
    else:
        n = sim.qmodel[1]
        fa = front**n
        fb = back**n
        if uniform(sim.rng, RNG_QUEUE) < fa / (fa + fb):
            dec = chg
        else:
            dec = max(chg - back, 0.0)
    o.queue_ahead = min(max(front - dec, 0.0), new)


@njit(cache=True, _nrt=False)
def _resync(sim, b):
    """After a snapshot: nobody can be ahead of us beyond the rebuilt level's size."""
    for k in range(sim.oc[OC_NREST]):
        slot = sim.rest[k]
        o = sim.orders[slot]
        if o.book == b:
            size = size_at(sim.px, sim.qty, sim.nlev, b, side_index(o.side), o.price)
            o.queue_ahead = min(o.queue_ahead, size)
            o.traded = 0.0
    sim.resync_ts[b] = NO_RESYNC


@njit(cache=True, inline="always", _nrt=False)
def _on_level(sim, b, v, s, price, prev, new, ts, is_quote, queue_on) -> int:
    """Level ``price`` of side ``s`` went from ``prev`` to ``new``: move queues, fill crossed orders."""
    halted = sim.status[v] != VENUE_OK
    nc = 0
    for k in range(sim.oc[OC_NREST]):
        slot = sim.rest[k]
        o = sim.orders[slot]
        if o.book != b:
            continue
        os = side_index(o.side)
        if os == s:
            if not queue_on:
                continue
            if same_price(o.price, price):
                _deplete(sim, slot, prev, new)
            elif is_quote and better(s, o.price, price):
                o.queue_ahead = 0.0
                o.traded = 0.0
        elif new > 0.0 and not halted and not better(os, price, o.price):
            sim.scratch[nc] = slot
            nc += 1
    if nc == 0:
        return 0
    _sort_priority(sim, nc, 1 - s)
    t_r = deliver(sim.lat, sim.last_report, sim.rng, v, ts, RESPONSE)
    n = 0
    for j in range(nc):
        lk = find_level(sim.px, sim.nlev, b, s, price)
        if lk < 0:
            break
        slot = sim.scratch[j]
        o = sim.orders[slot]
        q = min(o.leaves, sim.qty[b, s, lk])
        o.queue_ahead = 0.0
        take_at(sim.px, sim.qty, sim.nlev, b, s, lk, q)
        consume(sim.cpx, sim.cq, sim.cn, sim.cevict, b, s, price, q)
        _fill(sim, slot, ts, t_r, o.price, q, True, True)
        n += 1
    return n


@njit(cache=True, inline="always", _nrt=False)
def _on_trade(sim, b, v, side, price, size, ts) -> int:
    """A trade of ``size`` at ``price``; ``side`` is the aggressor (+1 buy, -1 sell, 0 unknown)."""
    if not (size > 0.0):
        return 0
    a = side
    if a == 0:  # classified against the data's book, which still shows the levels we emptied
        bid = data_best(sim.cpx, sim.cn, b, 0, best_price(sim.px, sim.nlev, b, 0))
        ask = data_best(sim.cpx, sim.cn, b, 1, best_price(sim.px, sim.nlev, b, 1))
        has_bid = bid == bid
        has_ask = ask == ask
        if has_ask and not better(1, price, ask):
            a = 1
        elif has_bid and not better(0, price, bid):
            a = -1
        elif has_bid and has_ask:
            a = 1 if price >= 0.5 * (bid + ask) else -1
        else:
            return 0
    hs = 1 if a > 0 else 0  # the book side the aggressor hits
    # the print refreshes the levels it met even while our simulated venue is halted: the data's
    # market traded them
    traded_through(sim.cpx, sim.cq, sim.cn, b, hs, price, size)
    if sim.status[v] != VENUE_OK:
        return 0
    nc = 0
    for k in range(sim.oc[OC_NREST]):
        slot = sim.rest[k]
        o = sim.orders[slot]
        if o.book == b and side_index(o.side) == hs and not better(hs, price, o.price):
            sim.scratch[nc] = slot
            nc += 1
    if nc == 0:
        return 0
    _sort_priority(sim, nc, hs)
    taken = 0.0
    n = 0
    t_r = np.int64(0)
    for j in range(nc):
        slot = sim.scratch[j]
        o = sim.orders[slot]
        if same_price(o.price, price):
            ahead = o.queue_ahead
            o.queue_ahead = max(ahead - size, 0.0)
            o.traded += size
        else:
            ahead = 0.0
            o.queue_ahead = 0.0
        q = min(o.leaves, size - ahead - taken)
        if q > QTY_EPS:
            if n == 0:
                t_r = deliver(sim.lat, sim.last_report, sim.rng, v, ts, RESPONSE)
            _fill(sim, slot, ts, t_r, o.price, q, True, True)
            taken += q
            n += 1
    return n


@njit(cache=True, inline="always", _nrt=False)
def venue_on_event(sim, events, i) -> int:
    """Apply market event ``events[i]`` (EVENT_DTYPE) to its venue's book and our orders there.

    Quote, depth, snapshot and trade rows; other kinds, ids outside the sim and book rows with side
    0 (data/validate.py refuses those) change nothing and return 0. Returns the number of fills, or
    NEED_FILL_ROOM / NEED_REPORT_ROOM with nothing changed.
    """
    ev = events[i]
    kind = np.int64(ev.kind)
    if kind != KIND_QUOTE and kind != KIND_DEPTH and kind != KIND_SNAPSHOT and kind != KIND_TRADE:
        return 0
    v = np.int64(ev.venue)
    ins = np.int64(ev.instrument)
    if v >= sim.dims[0] or ins >= sim.dims[1]:
        return 0
    n_rest = sim.oc[OC_NREST]
    rc = _room(sim, n_rest, 2 * n_rest)
    if rc < 0:
        return rc
    b = v * sim.dims[1] + ins
    ts = ev.exch_ts
    flags = np.int64(ev.flags)
    if sim.resync_ts[b] != NO_RESYNC and sim.resync_ts[b] != ts:
        _resync(sim, b)
    if kind == KIND_TRADE:
        return _on_trade(sim, b, v, np.int64(ev.side), ev.price, ev.size, ts)
    if ev.side == 0:
        return 0
    s = side_index(ev.side)
    if flags & F_CLEAR:
        clear_book(sim.nlev, b)
        clear_consumed(sim.cn, b)
        sim.resync_ts[b] = ts
    stated = max(ev.size, 0.0)
    if kind == KIND_QUOTE:
        drop_better_than(sim.cpx, sim.cq, sim.cn, b, s, ev.price, False)
    if stated > 0.0:
        drop_better_than(sim.cpx, sim.cq, sim.cn, b, 1 - s, ev.price, True)
    # the venue shows what the data says minus what we already took there (backtest.consumed)
    size = effective_size(sim.cpx, sim.cq, sim.cn, b, s, ev.price, stated)
    if kind == KIND_QUOTE:
        prev = apply_quote(sim.px, sim.qty, sim.nlev, sim.dropped, b, s, ev.price, size)
    else:
        prev = set_level(sim.px, sim.qty, sim.nlev, sim.dropped, b, s, ev.price, size)
    if stated > 0.0 and size == 0.0:
        uncross(sim.px, sim.qty, sim.nlev, b, 1 - s, ev.price)  # the data's book is uncrossed all the same
    queue_on = sim.resync_ts[b] == NO_RESYNC
    n = _on_level(sim, b, v, s, ev.price, prev, size, ts, kind == KIND_QUOTE, queue_on)
    if not queue_on and (flags & F_BATCH_END):
        _resync(sim, b)
    return n


@njit(cache=True, _nrt=False)
def venue_set_status(sim, v, status, t) -> int:
    """Set venue ``v`` to VENUE_OK / VENUE_HALTED / VENUE_DEFAULTED at time ``t`` (ns).

    A default is final: it cancels every live order at the venue (resting or in flight), each
    reported to us as DONE / CANCELLED / REASON_DEFAULTED at ``t`` (after any report already in
    flight), and later calls change nothing. Returns the number of orders lost, or
    NEED_REPORT_ROOM / NEED_FILL_ROOM (the order log) with nothing changed.
    """
    if sim.status[v] == VENUE_DEFAULTED:
        return 0
    if status != VENUE_DEFAULTED:
        sim.status[v] = status
        return 0
    lost = 0
    for slot in range(sim.orders.shape[0]):
        if sim.orders[slot].venue == v and is_live(sim.orders[slot].state):
            lost += 1
    if room(sim.pq_i, sim.pq_n, sim.dims[0]) < lost:
        return NEED_REPORT_ROOM
    if sim.olog.shape[0] - sim.olog_n[0] < lost:
        return NEED_FILL_ROOM
    sim.status[v] = VENUE_DEFAULTED
    t_r = max(t, sim.last_report[v])
    sim.last_report[v] = t_r
    for slot in range(sim.orders.shape[0]):
        if sim.orders[slot].venue == v and is_live(sim.orders[slot].state):
            _finish(sim, slot, CANCELLED, REASON_DEFAULTED, t, t_r)
    return lost
