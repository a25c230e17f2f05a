"""A deliberately simple, slow, pure-Python model of the simulated venues: the oracle the compiled
matcher (backtest.matching) is checked against in tests/test_matching_differential.py.

Written from the rules (issue 7 and the module docs of backtest.matching, book, orders, latency,
fees), not from the numba code. Dicts and lists, one object per thing, no speed tricks.

Venue clocks. Venue ``v``'s timeline is its own market rows (in row order, at their ``exch_ts``)
and our messages arriving at ``v`` (sent at local ``t``, arriving at ``t + order_latency``, FIFO per
venue), in venue-time order; at equal times the market row goes first. Each venue is replayed on
its own: nothing of venue B can change what happens at venue A. Reports (fills) reach us at
``venue time + response_latency``, FIFO per venue.

The venue book (per venue, instrument and side) is two dicts keyed by price:

- ``size[p]``: the venue's displayed size at ``p``. A data row for level ``p`` sets it to
  ``max(row size - consumed[p], 0)`` (a level at 0 is absent); our own takes lower it; nothing else
  changes it until the data's next row for that level;
- ``consumed[p]``: what *we* took from the displayed level ``p`` (an aggressive order of ours walking
  it, or the level crossing one of our resting orders and filling it). It is reduced by the volume of
  every data trade printed at or through ``p`` on that side (that shows at the level's next row),
  dropped when the data removes the level (a depth row of size 0; an L1 quote drops it for every
  level better than its price; an opposite level at or through it) and cleared by a snapshot
  (``F_CLEAR``).

Data rows:

- depth / snapshot level: sets ``size[p]`` as above; a row of size > 0 (even one our takes leave at
  0) removes opposite levels at or through ``p`` (the data's book is uncrossed) and drops their
  ``consumed``;
- L1 quote: ``p`` becomes the side's only level. Levels better than ``p`` are gone (their
  ``consumed`` dropped, our queue there reset to 0); worse levels just leave the displayed book
  (their ``consumed`` is kept: an L1 feed does not say they went);
- ``F_CLEAR``: both sides of the book and their ``consumed`` are cleared before the row applies;
  queue estimates of the book are clipped to the rebuilt sizes at the snapshot's last row
  (``F_BATCH_END``, or the book's next row with another exchange time);
- trade (aggressor +1 buy / -1 sell; 0 = inferred from the data's book, which still shows the
  levels we emptied, including those an L1 quote stopped showing while their ``consumed`` is kept:
  at or through the best ask -> buy, at or through the best bid -> sell, else by the mid if both
  sides show, else ignored).

Our orders (conservative queue model):

- arrival: a limit that crosses the opposite best (or an IOC) walks the opposite side best first up
  to its limit, one taker fill per level at the level's price (gas on the first fill only); a
  post-only order that would cross is rejected; an IOC remainder is cancelled, a GTC remainder
  rests with ``queue_ahead`` = the venue's size at its price on its side;
- a trade at our price eats ``queue_ahead`` first, then fills us; a trade through our price fills
  us up to its size; one trade's size is shared by our orders in price-time priority, each filled
  at its own limit (maker);
- a data row at our price: ``queue_ahead = min(queue_ahead, venue size)``; a level removed (or an L1
  quote at a worse price than ours) leaves nobody ahead;
- an opposite level at or through our price (a level row with venue size > 0) fills our orders in
  priority order at their own price, maker, up to its venue size, which it consumes;
- a cancel arriving while the order rests cancels it. A scripted cancel is only sent if, at its
  local send time, we do not know of an earlier cancel of ours still unanswered (orders.request_cancel
  refuses it then): that matters when a halted venue refused the earlier one.

Venue status (``status`` changes at venue times; at equal times before the row): HALTED, nothing
trades (no fills, no queue moves on data trades, but a data trade still refreshes ``consumed``: the
data's market traded), new orders are rejected, cancels refused (the order keeps resting);
DEFAULTED, final: every live order is lost, in flight or resting, and nothing trades there again.

Units: times int64 ns; prices quote currency; sizes tokens; fees quote currency (negative = rebate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE, empty

MS = 1_000_000
EPS = 1e-9  # tokens: a remainder below this is nothing

GTC = 0
IOC = 1

OK = 0         # venue status codes, as backtest.matching's VENUE_*
HALTED = 1
DEFAULTED = 2


@dataclass
class Submit:
    """A scripted new order sent at local time ``t``."""

    t: int
    venue: int
    instrument: int
    side: int        # +1 buy, -1 sell
    price: float     # limit (IOC market order: +inf buy, 0 sell)
    qty: float
    tif: int = GTC
    post_only: bool = False
    tag: int = 0


@dataclass
class Cancel:
    """A scripted cancel sent at local time ``t`` for the ``target``-th Submit (0-based: order id
    ``target + 1``)."""

    t: int
    target: int


@dataclass
class Fill:
    venue: int
    instrument: int
    order_id: int
    side: int
    ts_venue: int
    ts_arrival: int
    ts_local: int
    price: float
    qty: float
    fee: float
    maker: int
    tag: int

    def key(self):
        return (self.venue, self.order_id, self.ts_venue, self.ts_arrival, self.ts_local,
                self.price, self.qty, self.fee, self.maker)


@dataclass
class Order:
    oid: int
    s: Submit
    arrival: int
    leaves: float
    resting: bool = False
    done: bool = False
    queue_ahead: float = 0.0
    refused: list = field(default_factory=list)  # per cancel we sent: when its refusal reached us (None: not refused)


def better(side_ix: int, a: float, b: float) -> bool:
    """``a`` strictly better than ``b`` on book side ``side_ix`` (0 bids: higher, 1 asks: lower)."""
    return a > b if side_ix == 0 else a < b


def at_or_through(side_ix: int, level: float, price: float) -> bool:
    """Level ``level`` of side ``side_ix`` is reached by a print at ``price`` (a sell at or below
    a bid, a buy at or above an ask)."""
    return level >= price if side_ix == 0 else level <= price


@dataclass
class Book:
    size: list = field(default_factory=lambda: [{}, {}])
    consumed: list = field(default_factory=lambda: [{}, {}])
    stated: list = field(default_factory=lambda: [{}, {}])  # the data's own book (row sizes, uncrossed)
    resync_ts: int | None = None  # a snapshot is being rebuilt (its exch_ts)

    def at(self, s: int, p: float) -> float:
        return self.size[s].get(p, 0.0)

    def levels(self, s: int) -> list:
        """Venue levels of side ``s``, best first: [(price, size)]."""
        return sorted(self.size[s].items(), key=lambda x: -x[0] if s == 0 else x[0])

    def take(self, s: int, p: float, q: float):
        """We took ``q`` from the displayed level ``p``."""
        self.consumed[s][p] = self.consumed[s].get(p, 0.0) + q
        left = self.size[s][p] - q
        if left <= EPS:
            del self.size[s][p]
        else:
            self.size[s][p] = left


def side_ix(side: int) -> int:
    return 0 if side > 0 else 1


class ReferenceVenues:
    """All venues of a scenario; :meth:`run` replays one and returns the fills."""

    def __init__(self, n_venues, n_instruments, maker_bps, taker_bps, gas, order_ms, response_ms):
        self.nv = n_venues
        self.ni = n_instruments
        self.maker = [b / 1e4 for b in maker_bps]
        self.taker = [b / 1e4 for b in taker_bps]
        self.gas = list(gas)
        self.order_ns = [int(round(m * MS)) for m in order_ms]
        self.resp_ns = [int(round(m * MS)) for m in response_ms]

    # -- the whole scenario --
    def run(self, events, actions, status=()) -> list[Fill]:
        """``events``: EVENT_DTYPE rows in local-time order; ``actions``: Submit / Cancel in local-time
        order (order ids are 1, 2, ... in Submit order); ``status``: venue status changes
        ``(venue, venue time, OK / HALTED / DEFAULTED)``. Returns fills per venue in venue-time order,
        venues one after the other."""
        orders = {}
        msgs = {v: [] for v in range(self.nv)}
        last_arrive = [-(2**62)] * self.nv
        for a in actions:
            if isinstance(a, Submit):
                o_id = len(orders) + 1
                v = a.venue
                t = max(a.t + self.order_ns[v], last_arrive[v])
                last_arrive[v] = t
                order = Order(o_id, a, t, a.qty)
                orders[o_id] = order
                msgs[v].append((t, "new", order, a.t))
            else:
                order = orders[a.target + 1]
                v = order.s.venue
                t = max(a.t + self.order_ns[v], last_arrive[v])
                last_arrive[v] = t
                msgs[v].append((t, "cancel", order, a.t))
        fills = []
        for v in range(self.nv):
            rows = [events[i] for i in range(len(events)) if int(events[i]["venue"]) == v]
            changes = sorted((t, code) for u, t, code in status if u == v)
            fills.extend(VenueRun(self, v, rows, msgs[v], changes).run())
        return fills


class VenueRun:
    """One venue's timeline."""

    def __init__(self, ref: ReferenceVenues, v: int, rows, msgs, changes=()):
        self.ref = ref
        self.v = v
        self.rows = rows
        self.msgs = msgs
        self.changes = list(changes)
        self.status = OK
        self.books = {i: Book() for i in range(ref.ni)}
        self.resting = []  # our resting orders, any instrument
        self.fills = []
        self.last_report = -(2**62)

    def run(self) -> list[Fill]:
        """Status changes, market rows and our messages in venue-time order; at equal times a status
        change first (it is set after the venue has caught up to just before it), then the row."""
        never = 2**63
        r = m = c = 0
        while r < len(self.rows) or m < len(self.msgs) or c < len(self.changes):
            tr = int(self.rows[r]["exch_ts"]) if r < len(self.rows) else never
            tm = self.msgs[m][0] if m < len(self.msgs) else never
            tc = self.changes[c][0] if c < len(self.changes) else never
            if tc <= tr and tc <= tm:
                self.set_status(self.changes[c][1])
                c += 1
            elif tr <= tm:
                self.market(self.rows[r])
                r += 1
            else:
                self.message(*self.msgs[m])
                m += 1
        return self.fills

    def set_status(self, code: int):
        """HALTED: nothing trades (no fills), new orders are rejected, cancels refused; DEFAULTED
        (final): every live order is lost, nothing trades again."""
        if self.status == DEFAULTED:
            return
        self.status = code
        if code == DEFAULTED:
            for o in list(self.resting):
                self.finish(o)
            for _, _, o, _ in self.msgs:
                o.done = True  # in flight: lost too (a later Submit is rejected on arrival anyway)

    # -- fills --
    def fill(self, o: Order, t: int, price: float, qty: float, maker: bool, with_gas: bool):
        v = self.v
        rate = self.ref.maker[v] if maker else self.ref.taker[v]
        fee = price * qty * rate
        if with_gas:
            fee += self.ref.gas[v]
        t_local = max(t + self.ref.resp_ns[v], self.last_report)
        self.last_report = t_local
        o.leaves -= qty
        if o.leaves <= EPS:
            o.leaves = 0.0
            self.finish(o)
        self.fills.append(Fill(v, o.s.instrument, o.oid, o.s.side, t, o.arrival, t_local, price, qty, fee,
                               1 if maker else 0, o.s.tag))

    def finish(self, o: Order):
        o.done = True
        if o.resting:
            o.resting = False
            self.resting.remove(o)

    def priority(self, orders: list, s: int) -> list:
        """Best price first (for side ``s``), then arrival, then id."""
        return sorted(orders, key=lambda o: (-o.s.price if s == 0 else o.s.price, o.arrival, o.oid))

    def mine(self, ins: int, s: int) -> list:
        return [o for o in self.resting if o.s.instrument == ins and side_ix(o.s.side) == s]

    # -- our messages --
    def message(self, t: int, kind: str, o: Order, t_sent: int):
        if kind == "cancel":
            # we only send a cancel for an order we know to be pending or open: not while an earlier
            # cancel of ours is unanswered (its refusal, if any, had not reached us when we sent this)
            if any(r is None or r > t_sent for r in o.refused):
                return
            if o.resting and self.status == OK:
                self.finish(o)
            elif o.resting:  # halted: refused, the order keeps resting; we learn it a response latency later
                self.last_report = max(t + self.ref.resp_ns[self.v], self.last_report)
                o.refused.append(self.last_report)
                return
            o.refused.append(None)
            return
        if o.done or self.status != OK:
            o.done = True  # lost in a default, or rejected: halted / defaulted venue
            return
        s = side_ix(o.s.side)
        opp = 1 - s
        book = self.books[o.s.instrument]
        price = o.s.price
        lv = book.levels(opp)
        crosses = len(lv) > 0 and not better(s, lv[0][0], price)
        if crosses and o.s.post_only:
            o.done = True
            return
        if crosses:
            first = True
            for lp, size in lv:
                if o.leaves <= 0.0 or better(s, lp, price):
                    break
                q = min(o.leaves, size)
                book.take(opp, lp, q)
                self.fill(o, t, lp, q, False, first)
                first = False
        if o.done:
            return
        if o.s.tif == IOC:
            o.done = True
            return
        o.resting = True
        o.queue_ahead = book.at(s, price)
        self.resting.append(o)

    # -- market rows --
    def market(self, row):
        kind = int(row["kind"])
        ins = int(row["instrument"])
        if kind not in (KIND_QUOTE, KIND_DEPTH, KIND_SNAPSHOT, KIND_TRADE) or ins >= self.ref.ni:
            return
        book = self.books[ins]
        ts = int(row["exch_ts"])
        if book.resync_ts is not None and book.resync_ts != ts:
            self.resync(ins)
        price = float(row["price"])
        size = float(row["size"])
        if kind == KIND_TRADE:
            self.trade(ins, int(row["side"]), price, size, ts)
            return
        if int(row["side"]) == 0:
            return
        s = side_ix(int(row["side"]))
        flags = int(row["flags"])
        if flags & F_CLEAR:
            book.size = [{}, {}]
            book.consumed = [{}, {}]
            book.stated = [{}, {}]
            book.resync_ts = ts
        queue_on = book.resync_ts is None
        if kind == KIND_QUOTE:
            for p in list(book.consumed[s]):
                if better(s, p, price):
                    del book.consumed[s][p]
            book.size[s] = {}
            book.stated[s] = {}
            if queue_on:
                for o in self.mine(ins, s):
                    if better(s, o.s.price, price):
                        o.queue_ahead = 0.0
        if size <= 0.0:
            book.consumed[s].pop(price, None)
            new = 0.0
        else:
            new = max(size - book.consumed[s].get(price, 0.0), 0.0)
        o_side = 1 - s
        if new > 0.0:
            book.size[s][price] = new
        else:
            book.size[s].pop(price, None)
        if size > 0.0:  # the data's book is uncrossed, whatever we took at this level
            for q in list(book.size[o_side]):
                if at_or_through(o_side, q, price):
                    del book.size[o_side][q]
            for q in list(book.consumed[o_side]):  # the data removed those levels: forget what we took
                if at_or_through(o_side, q, price):
                    del book.consumed[o_side][q]
        if size > 0.0:
            book.stated[s][price] = size
            for q in list(book.stated[o_side]):
                if at_or_through(o_side, q, price):
                    del book.stated[o_side][q]
        else:
            book.stated[s].pop(price, None)
        if queue_on:
            for o in self.mine(ins, s):
                if o.s.price == price:
                    o.queue_ahead = min(o.queue_ahead, new)
        if new > 0.0 and self.status == OK:
            opp = 1 - s
            crossed = [o for o in self.mine(ins, opp) if at_or_through(opp, o.s.price, price)]
            for o in self.priority(crossed, opp):
                left = book.at(s, price)
                if left <= 0.0:
                    break
                q = min(o.leaves, left)
                book.take(s, price, q)
                o.queue_ahead = 0.0
                self.fill(o, ts, o.s.price, q, True, True)
        if not queue_on and (flags & F_BATCH_END):
            self.resync(ins)

    def resync(self, ins: int):
        book = self.books[ins]
        for o in self.resting:
            if o.s.instrument == ins:
                o.queue_ahead = min(o.queue_ahead, book.at(side_ix(o.s.side), o.s.price))
        book.resync_ts = None

    def trade(self, ins: int, aggressor: int, price: float, size: float, ts: int):
        if not (size > 0.0):
            return
        book = self.books[ins]
        a = aggressor
        if a == 0:
            # against the data's book: the venue's has lost the levels we emptied. A level we took
            # from stays in the data's book until the data removes it (that is when ``consumed``
            # drops it), even where an L1 quote stopped showing it.
            bids = sorted(set(book.stated[0]) | set(book.consumed[0]), reverse=True)
            asks = sorted(set(book.stated[1]) | set(book.consumed[1]))
            if asks and price >= asks[0]:
                a = 1
            elif bids and price <= bids[0]:
                a = -1
            elif bids and asks:
                a = 1 if price >= 0.5 * (bids[0] + asks[0]) else -1
            else:
                return
        hs = 1 if a > 0 else 0  # the book side the aggressor hits
        for p in list(book.consumed[hs]):
            if at_or_through(hs, p, price):
                book.consumed[hs][p] = max(book.consumed[hs][p] - size, 0.0)
        if self.status != OK:
            return  # the data's market traded (refreshing what we took), our halted venue did not
        hit = [o for o in self.mine(ins, hs) if at_or_through(hs, o.s.price, price)]
        taken = 0.0
        for o in self.priority(hit, hs):
            if o.s.price == price:
                ahead = o.queue_ahead
                o.queue_ahead = max(ahead - size, 0.0)
            else:
                ahead = 0.0
                o.queue_ahead = 0.0
            q = min(o.leaves, size - ahead - taken)
            if q > EPS:
                self.fill(o, ts, o.s.price, q, True, True)
                taken += q


def run_reference(events, actions, *, maker_bps, taker_bps, gas, order_ms, response_ms, n_instruments=1):
    """Fills of a scenario (see :class:`ReferenceVenues`)."""
    ref = ReferenceVenues(len(order_ms), n_instruments, maker_bps, taker_bps, gas, order_ms, response_ms)
    return ref.run(events, actions)




def event_rows(rows) -> np.ndarray:
    """EVENT_DTYPE rows from dicts (keys of EVENT_DTYPE; ``local_ts`` defaults to ``exch_ts``), sorted
    by local time (stable: rows with equal local times keep the given order)."""
    out = empty(len(rows))
    for k, r in enumerate(rows):
        for name, val in r.items():
            out[k][name] = val
        if "local_ts" not in r:
            out[k]["local_ts"] = out[k]["exch_ts"]
    return out[np.argsort(out["local_ts"], kind="stable")]
