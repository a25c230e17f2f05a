"""The order manager: the trader core's actions out to the venues, the venues' answers back as reports.

One explicit state machine per order (:class:`Order`), keyed by client order id (the core's cid as
``stockbridge.trader.cid_text``). The manager

- journals every intent before it is sent (:meth:`OrderManager.submit`), then calls the venue with
  ccxt's vocabulary (execution.venue.VenueAdapter);
- turns the venues' ccxt-unified order and trade dicts (``watch_orders`` / ``watch_my_trades`` /
  REST, in any order, any number of times) into trader-core reports (REP_ACK, REP_FILL, REP_DONE with
  the final state, REP_CANCEL_REJECT), each exactly once;
- never assumes an order absent because its create call failed without an answer: the order is
  UNKNOWN until a lookup by client id (fetch_order, fetch_open_orders, fetch_my_trades) finds it or
  proves it absent.

States and transitions (anything else raises :class:`IllegalTransition`)::

    from \\ to        open  partial  p.cancel  filled  cancelled  expired  rejected  unknown
    pending_new       yes   yes      -         yes     yes        yes      yes       yes (no answer)
    unknown           yes   yes      -         yes     yes        yes      yes (absent, presumed)
    open              =     yes      yes       yes     yes        yes      yes (nothing filled)
    partially_filled  -     =        yes       yes     yes        yes      -
    pending_cancel    yes*  yes*     =         yes     yes        yes      -
    final states      -     -        -         -       -          -        -

    * only when the cancel call fails: the order stays live. A venue update saying "open" while our
      cancel is in flight leaves it pending_cancel.
    A final state is absorbing: a late, stale update ("open" after "closed") is ignored; two
    different final states for one order raise. One exception: "rejected (presumed)", the verdict of
    a lookup that found nothing, yields to evidence: if the venue later shows the order, it moves to
    what the venue says, is cancelled at once if it rests (the core has already forgotten it) and
    its fills are journalled as orphans (booked=0) for reconciliation.

What the core is told, and when:

- REP_ACK once, when the order is first known to rest or to have traded (before its first fill);
- REP_FILL once per venue trade id (the stream's copy and REST's copy of a fill are one fill);
- REP_DONE once, when the order is final *and* its booked fills add up to what the venue says it
  filled (the core frees the order's slot on DONE and would ignore a fill after it);
- REP_CANCEL_REJECT once per failed cancel call of an order still live.

Unknown orders found absent are **dropped, not re-sent**: the core gets REP_DONE(REJECTED) and
decides again on its next step from the market as it is then, under a new client id of its own.
Re-sending from here would repeat a decision at a stale price (a hedge limit, an arbitrage edge
that may be gone) and would need a client id the core did not make; the core already re-quotes a
missing quote and re-hedges a delta still outside its band.

Units: times int ns UTC; prices quote currency; sizes tokens (shares at the equity venue); fees
quote currency, negative = rebate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import ccxt
import numpy as np

from execution.journal import Journal
from execution.venue import (
    STATUS_CANCELED,
    STATUS_CLOSED,
    STATUS_EXPIRED,
    STATUS_OPEN,
    STATUS_REJECTED,
    VenueLink,
    is_definite_refusal,
    mentions_client_id,
    ms_to_ns,
)
from stockbridge.core import order_codes as oc
from stockbridge.trader import cid_text

NS = 1_000_000_000


class OrderState(str, Enum):
    PENDING_NEW = "pending_new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


S = OrderState
FINAL = frozenset({S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED})
LIVE = frozenset({S.OPEN, S.PARTIALLY_FILLED, S.PENDING_CANCEL})

TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.PENDING_NEW: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PENDING_CANCEL, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.PENDING_CANCEL: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

# the core knows three final states; an expired order (an IOC's unfilled rest, a day order) is cancelled to it
CORE_FINAL = {S.FILLED: oc.FILLED, S.CANCELLED: oc.CANCELLED, S.EXPIRED: oc.CANCELLED, S.REJECTED: oc.REJECTED}
_VENUE_FINAL = {STATUS_CANCELED: S.CANCELLED, STATUS_EXPIRED: S.EXPIRED, STATUS_REJECTED: S.REJECTED}


class IllegalTransition(RuntimeError):
    """An order was asked to move where its state machine has no edge: our bug or the venue's
    contradiction (two final states, a fill beyond the order's size, a reused client id)."""


class ReportSink(Protocol):
    """Where reports go: stockbridge.trader.TraderCore.report (True if the core knew the order)."""

    def report(self, kind: int, cid: int, *, final_state: int = 0, price: float = 0.0, qty: float = 0.0,
               fee: float = 0.0, now: int) -> bool: ...


def _eps(qty: float) -> float:
    """Size tolerance, tokens: sums of venue fills carry float rounding."""
    return 1e-9 * max(1.0, abs(qty))


@dataclass
class Order:
    """One order's state machine (no I/O). Sizes tokens; times ns UTC."""

    cid: int
    client_id: str
    venue: int
    instrument: int
    symbol: str
    side: int             # +1 buy, -1 sell
    price: float          # limit, quote ccy (inf / 0 for a market IOC)
    qty: float
    tif: int              # order_codes GTC / IOC
    post_only: bool
    tag: int              # order_codes TAG_*
    decided_ns: int
    state: OrderState = S.PENDING_NEW
    venue_order_id: str | None = None
    venue_created_ns: int | None = None
    venue_filled: float = 0.0     # cumulative filled as the venue's order dicts say
    booked: float = 0.0           # sum of the fills booked (trades seen)
    trade_ids: set[str] = field(default_factory=set)
    acked: bool = False           # REP_ACK sent
    done_reported: bool = False   # REP_DONE sent
    cancel_wanted: bool = False   # a cancel waits for the create's outcome
    presumed_absent: bool = False  # REJECTED by a lookup that found nothing, not by the venue
    zombie: bool = False          # presumed absent, then shown by the venue
    zombie_journalled: bool = False
    unknown_since_ns: int | None = None
    next_lookup_ns: int = 0
    lookups: int = 0
    history: list[OrderState] = field(default_factory=list)

    @property
    def filled(self) -> float:
        """Best knowledge of the filled size: the venue's cumulative figure or our booked fills."""
        return max(self.venue_filled, self.booked)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def _move(self, to: OrderState) -> bool:
        """Move to ``to``; False if already there. Raises IllegalTransition for a missing edge."""
        if to == self.state:
            return False
        if self.state == S.REJECTED and self.presumed_absent:
            # evidence beats the presumption: the order exists after all
            self.zombie = True
            self.presumed_absent = False
        elif to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"order {self.client_id}: {self.state.value} -> {to.value} is not a transition")
        elif to == S.REJECTED and self.state == S.OPEN and self.filled > 0:
            raise IllegalTransition(f"order {self.client_id}: rejected after filling {self.filled}")
        self.history.append(self.state)
        self.state = to
        return True

    def _live_state(self) -> OrderState:
        return S.PARTIALLY_FILLED if self.filled > _eps(self.qty) else S.OPEN

    # -- events ---------------------------------------------------------------------------------

    def create_failed(self, definite: bool, now: int) -> bool:
        """The create call raised: the venue's refusal (REJECTED) or no answer (UNKNOWN)."""
        if self.state != S.PENDING_NEW:
            # the stream answered before the create call returned its error: the stream is the venue
            return False
        if definite:
            return self._move(S.REJECTED)
        self.unknown_since_ns = now
        return self._move(S.UNKNOWN)

    def venue_update(self, status: str | None, filled: float | None, accepted: bool = False) -> bool:
        """A unified order dict's ``status`` and cumulative ``filled``; ``accepted``: it is the reply of
        a create call without a status (the venue took the order). True if the state changed."""
        if filled is not None and filled > self.venue_filled:
            if filled > self.qty + _eps(self.qty):
                raise IllegalTransition(f"order {self.client_id}: venue says {filled} filled of {self.qty}")
            self.venue_filled = float(filled)
        if status is None:
            status = STATUS_OPEN if accepted else None
        if status is None:
            return self._after_fill_size()
        if status == STATUS_OPEN:
            if self.final and not self.presumed_absent:
                return False  # stale: the order finished since this snapshot was taken
            if self.state == S.PENDING_CANCEL:
                return self._after_fill_size()
            target = S.FILLED if self.filled >= self.qty - _eps(self.qty) else self._live_state()
            return self._move(target)
        if status == STATUS_CLOSED:
            # nothing rests any more; "closed" with less than the size filled is a cancelled remainder
            # (Bybit PartiallyFilledCanceled maps to closed)
            target = S.FILLED if self.filled >= self.qty - _eps(self.qty) else S.CANCELLED
        elif status in _VENUE_FINAL:
            target = _VENUE_FINAL[status]
            if target == S.REJECTED and self.filled > 0:
                raise IllegalTransition(f"order {self.client_id}: rejected after filling {self.filled}")
        else:
            raise IllegalTransition(f"order {self.client_id}: unknown venue status {status!r}")
        return self._final(target)

    def _final(self, target: OrderState) -> bool:
        if self.final and not self.presumed_absent:
            if target == self.state:
                return False
            # a fill-complete FILLED from the trades and the venue's "canceled" of the same order
            # cannot both be true
            raise IllegalTransition(f"order {self.client_id}: {self.state.value}, then the venue says {target.value}")
        return self._move(target)

    def _after_fill_size(self) -> bool:
        """State after the filled size grew without a status: complete -> FILLED, some -> partial."""
        if self.final or self.state in (S.PENDING_NEW, S.UNKNOWN) and self.filled == 0:
            return False
        if self.filled >= self.qty - _eps(self.qty):
            return self._move(S.FILLED)
        if self.state in (S.PENDING_NEW, S.UNKNOWN, S.OPEN) and self.filled > 0:
            return self._move(S.PARTIALLY_FILLED)
        return False

    def trade(self, trade_id: str, qty: float) -> bool:
        """A fill of ``qty`` (the caller dedupes by trade id across orders). True if the state changed."""
        if trade_id in self.trade_ids:
            raise IllegalTransition(f"order {self.client_id}: trade {trade_id} booked twice")
        if self.booked + qty > self.qty + _eps(self.qty):
            raise IllegalTransition(f"order {self.client_id}: fills of {self.booked + qty} exceed its size {self.qty}")
        if self.state == S.REJECTED and not self.presumed_absent:
            raise IllegalTransition(f"order {self.client_id}: a fill of an order the venue rejected")
        self.trade_ids.add(trade_id)
        self.booked += qty
        if self.state == S.REJECTED:  # presumed absent: it traded, so it exists
            self._move(S.FILLED if self.booked >= self.qty - _eps(self.qty) else S.PARTIALLY_FILLED)
            return True
        return self._after_fill_size()

    def cancel_sent(self) -> bool:
        return self._move(S.PENDING_CANCEL)

    def cancel_failed(self) -> bool:
        """The cancel call raised: the order is still live (it may fill) unless news made it final."""
        if self.state != S.PENDING_CANCEL:
            return False
        return self._move(self._live_state())

    def found_absent(self) -> bool:
        """A lookup proved the order absent: REJECTED (presumed)."""
        if self.state != S.UNKNOWN:
            raise IllegalTransition(f"order {self.client_id}: found absent while {self.state.value}")
        self.presumed_absent = True
        return self._move(S.REJECTED)

    # -- what the core may be told now -----------------------------------------------------------

    def ack_due(self) -> bool:
        return not self.acked and (self.state in LIVE or self.state == S.FILLED or self.booked > 0)

    def done_due(self) -> bool:
        if not self.final or self.done_reported:
            return False
        # every fill the venue counts must be booked first: the core ignores fills after DONE
        return self.booked >= self.venue_filled - _eps(self.qty) and (
            self.state != S.FILLED or self.booked >= self.qty - _eps(self.qty))


def core_marks(core: Any) -> Callable[[], tuple[float, float]]:
    """(fair, multiplier) from a TraderCore's state, for the fill log's marks."""
    from stockbridge.core import trader as T

    return lambda: (float(core.tr.f[T.T_FAIR]), float(core.tr.f[T.T_MULT]))


class OrderManager:
    """Orders of every venue: the core's actions in (:meth:`submit`), venue dicts in
    (:meth:`on_order`, :meth:`on_trade`), reports to ``core`` out.

    ``venues``: the core's venue id -> :class:`~execution.venue.VenueLink`. ``clock``: ns UTC.
    ``call_timeout_s``: a venue call with no answer after this long is abandoned (its outcome
    unknown). ``unknown_grace_ns``: a lookup may declare an unknown order absent only this long after
    the call failed (a request stuck in a venue's queue can still be accepted). ``lookup_interval_ns``:
    first retry of an inconclusive lookup, doubling up to 16x.
    """

    def __init__(self, core: ReportSink, journal: Journal, venues: Mapping[int, VenueLink], *,
                 clock: Callable[[], int] = time.time_ns, call_timeout_s: float = 10.0,
                 unknown_grace_ns: int = 3 * NS, lookup_interval_ns: int = NS,
                 marks: Callable[[], tuple[float, float]] | None = None):
        self.core, self.journal, self.venues, self.clock = core, journal, dict(venues), clock
        self.call_timeout_s = call_timeout_s
        self.unknown_grace_ns = unknown_grace_ns
        self.lookup_interval_ns = lookup_interval_ns
        self.marks = marks or (lambda: (math.nan, math.nan))
        self.orders: dict[str, Order] = {}
        self._by_venue_id: dict[tuple[int, str], str] = {}
        # fills seen (venue name, trade id): from the journal, so a restart books none twice
        self._seen: set[tuple[str, str]] = journal.trade_ids()
        # trades that named a venue order id we did not know yet (the stream beat the create reply)
        self._unmatched: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        self.orphan_fills: list[dict[str, Any]] = []   # fills the core did not take (zombies)
        self.strangers: list[tuple[int, dict[str, Any]]] = []  # order dicts with our prefix, not in our book
        self.counts: dict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task] = set()
        self._resyncing: set[str] = set()  # venues whose clock difference is being measured again

    # -- actions from the core ------------------------------------------------------------------

    async def submit(self, actions: np.ndarray) -> None:
        """Carry out the core's actions (ACTION_DTYPE rows) in their order: :meth:`dispatch`, then every
        send awaited (they run concurrently)."""
        await asyncio.gather(*self.dispatch(actions))

    def dispatch(self, actions: np.ndarray) -> list[Coroutine[Any, Any, None]]:
        """The part of :meth:`submit` that cannot wait: every intent journalled in one commit and its
        order known here, now; returns the sends (one coroutine per action, in decision order) for
        the caller to start. The live runner starts each as a task at once, so a create leaves on
        the loop's next pass (through a task for the batch, ``gather`` and ``wait_for`` it had
        waited for three)."""
        now = self.clock()
        intents, plan = [], []
        for row in actions:
            cid = int(row["cid"])
            text = cid_text(cid)
            v = int(row["venue"])
            link = self.venues[v]
            if int(row["kind"]) == oc.ACT_NEW:
                if text in self.orders:
                    raise IllegalTransition(f"client order id {text} reused")
                ins = int(row["instrument"])
                order = Order(cid=cid, client_id=text, venue=v, instrument=ins, symbol=link.symbols[ins],
                              side=int(row["side"]), price=float(row["price"]), qty=float(row["qty"]),
                              tif=int(row["tif"]), post_only=bool(row["post_only"]), tag=int(row["tag"]),
                              decided_ns=int(row["ts"]))
                self.orders[text] = order
                intents.append(self._intent(order, "new"))
                plan.append((self._send_new, order))
            elif int(row["kind"]) == oc.ACT_CANCEL:
                order = self.orders.get(text)
                if order is None:
                    raise IllegalTransition(f"cancel of {text}, an order never sent")
                intents.append(self._intent(order, "cancel", decided_ns=int(row["ts"])))
                plan.append((self._cancel, order))
            else:
                raise ValueError(f"action kind {int(row['kind'])} is neither ACT_NEW nor ACT_CANCEL")
        if intents:
            self.journal.record_intents(intents, now)
        upto = self.journal.commits
        return [self._when_journalled(send, order, upto) for send, order in plan]

    async def _when_journalled(self, send: Callable[[Order], Coroutine[Any, Any, None]], order: Order,
                               upto: int) -> None:
        # write-ahead: the intent is on disk before it leaves (record_intents fsyncs; durable() checks);
        # not waiting for the answers committed since, whose fsync runs in the background
        await self.journal.durable(upto)
        await send(order)

    def refuse(self, actions: np.ndarray, reason: str) -> None:
        """New orders a guard would not let out: journalled and reported REJECTED to the core (so it
        frees their slots and decides again), never sent. Cancels are never refused."""
        now = self.clock()
        intents, refused = [], []
        for row in actions:
            if int(row["kind"]) != oc.ACT_NEW:
                raise ValueError("a guard never holds back a cancel")
            cid = int(row["cid"])
            ins, v = int(row["instrument"]), int(row["venue"])
            order = Order(cid=cid, client_id=cid_text(cid), venue=v, instrument=ins, symbol=self.venues[v].symbols[ins],
                          side=int(row["side"]), price=float(row["price"]), qty=float(row["qty"]), tif=int(row["tif"]),
                          post_only=bool(row["post_only"]), tag=int(row["tag"]), decided_ns=int(row["ts"]))
            if order.client_id in self.orders:
                raise IllegalTransition(f"client order id {order.client_id} reused")
            self.orders[order.client_id] = order
            intents.append(self._intent(order, "new"))
            refused.append(order)
        if intents:
            self.journal.record_intents(intents, now, sent=False)
        for order in refused:
            order.create_failed(definite=True, now=now)
            self._journal_state(order, "reject", now, detail={"reason": reason, "by": "guard"})
            self._tell_core(order, now)

    def _intent(self, order: Order, action: str, decided_ns: int | None = None) -> dict[str, Any]:
        link = self.venues[order.venue]
        return {"cid": order.cid, "client_id": order.client_id, "action": action, "venue": link.name,
                "instrument": link.instrument_names[order.instrument], "symbol": order.symbol, "side": order.side,
                "price": _finite_or_none(order.price), "qty": order.qty, "tif": "IOC" if order.tif == oc.IOC else "GTC",
                "post_only": int(order.post_only), "tag": oc.TAG_NAMES[order.tag],
                "decided_ns": order.decided_ns if decided_ns is None else decided_ns, "state": order.state.value}

    async def _send_new(self, order: Order) -> None:
        link = self.venues[order.venue]
        # the core's market order is an IOC at +inf (buy) / 0 (sell): ccxt's market type, no price
        market = not math.isfinite(order.price) or order.price <= 0
        params = {"clientOrderId": order.client_id, "timeInForce": "IOC" if order.tif == oc.IOC else "GTC",
                  "postOnly": order.post_only}
        try:
            async with asyncio.timeout(self.call_timeout_s):  # in this task: wait_for would start another
                reply = await link.adapter.create_order(order.symbol, "market" if market else "limit",
                                                        "buy" if order.side > 0 else "sell", order.qty,
                                                        None if market else order.price, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - what it means is decided by is_definite_refusal
            now = self.clock()
            self._check_clock(link, exc)
            definite = is_definite_refusal(exc)
            if order.create_failed(definite, now):
                if definite:
                    self._journal_state(order, "reject", now, detail={"reason": self._reason(exc)})
                    self._tell_core(order, now)
                else:
                    self.counts["unknown"] += 1
                    order.next_lookup_ns = now + self.lookup_interval_ns
                    self._journal_state(order, "unknown", now, detail={"reason": self._reason(exc)})
            return
        self._apply_order_dict(order, reply or {}, self.clock(), accepted=True)
        await self._cancel_if_wanted(order)

    async def _cancel_if_wanted(self, order: Order) -> None:
        if order.cancel_wanted and order.state in (S.OPEN, S.PARTIALLY_FILLED) and order.venue_order_id is not None:
            order.cancel_wanted = False
            await self._cancel(order)

    async def _cancel(self, order: Order) -> None:
        now = self.clock()
        if order.final:
            # finished at the venue; the core hears DONE (now, or when the fills are all in)
            return
        if order.state in (S.PENDING_NEW, S.UNKNOWN) or order.venue_order_id is None:
            order.cancel_wanted = True  # sent once the create's outcome is known
            return
        if order.state == S.PENDING_CANCEL:
            return  # one cancel in flight at a time
        link = self.venues[order.venue]
        order.cancel_sent()
        self._journal_state(order, "cancel_sent", now)
        try:
            async with asyncio.timeout(self.call_timeout_s):
                reply = await link.adapter.cancel_order(order.venue_order_id, order.symbol, {})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            now = self.clock()
            self._check_clock(link, exc)
            # the order stays live: it can still fill. A network error may hide a cancel that did go
            # through, and "not found" an order that finished: the stream or a lookup will say.
            if order.cancel_failed():
                self._journal_state(order, "cancel_reject", now, detail={"reason": self._reason(exc)})
                self.core.report(oc.REP_CANCEL_REJECT, order.cid, now=now)
                if not is_definite_refusal(exc) or isinstance(exc, ccxt.OrderNotFound):
                    order.next_lookup_ns = now + self.lookup_interval_ns
                    self.counts["cancel_lookups"] += 1
            return
        if reply and reply.get("status"):
            self._apply_order_dict(order, reply, self.clock())

    def _check_clock(self, link: VenueLink, exc: BaseException) -> None:
        """A venue that refused a request for its timestamp (Bybit: outside its receive window; ccxt
        raises InvalidNonce saying "timestamp") keeps a clock apart from ours: measure the difference
        again (ccxt's ``load_time_difference``, which its request signing uses), one call at a time.
        Kraken's "invalid nonce" (a counter, not a time) is left alone."""
        ad = link.adapter
        if not (isinstance(exc, ccxt.InvalidNonce) and "timestamp" in str(exc).lower()) or \
                not hasattr(ad, "load_time_difference") or link.name in self._resyncing:
            return
        self._resyncing.add(link.name)
        self.counts["clock_resyncs"] += 1

        async def resync() -> None:
            try:
                await asyncio.wait_for(ad.load_time_difference(), self.call_timeout_s)
            except Exception:  # noqa: BLE001 - the next refusal tries again
                pass
            finally:
                self._resyncing.discard(link.name)
        self._spawn(resync())

    async def cancel_all(self, venue: int | None = None) -> None:
        """Cancel every live order (of one venue or all); orders whose create is unresolved are
        cancelled as soon as they are found. Zombies included."""
        targets = [o for o in self.orders.values() if (venue is None or o.venue == venue) and not o.final]
        await asyncio.gather(*(self._cancel(o) for o in targets))

    # -- updates from the venues ------------------------------------------------------------------

    def on_order(self, venue: int, od: Mapping[str, Any]) -> Order | None:
        """A ccxt-unified order dict from ``venue`` (stream or REST). Returns our order, None if it
        is not one of ours (foreign orders are left alone; ours by prefix but unknown are listed in
        :attr:`strangers`)."""
        order = self._find_order(venue, od.get("clientOrderId"), od.get("id"))
        if order is None:
            text = od.get("clientOrderId")
            if isinstance(text, str) and text.startswith("sb"):
                self.strangers.append((venue, dict(od)))
            return None
        self._apply_order_dict(order, od, self.clock())
        return order

    def _find_order(self, venue: int, client_id: Any, venue_order_id: Any) -> Order | None:
        if isinstance(client_id, str) and client_id in self.orders:
            order = self.orders[client_id]
            return order if order.venue == venue else None
        if venue_order_id is not None:
            text = self._by_venue_id.get((venue, str(venue_order_id)))
            if text is not None:
                return self.orders[text]
        return None

    def _apply_order_dict(self, order: Order, od: Mapping[str, Any], now: int, accepted: bool = False) -> None:
        before = (order.state, order.venue_filled, order.venue_order_id)
        vid = od.get("id")
        if vid is not None and vid != "" and order.venue_order_id is None:
            order.venue_order_id = str(vid)
            self._by_venue_id[(order.venue, order.venue_order_id)] = order.client_id
        if order.venue_created_ns is None and od.get("timestamp") is not None:
            order.venue_created_ns = ms_to_ns(od["timestamp"])
        filled = od.get("filled")
        order.venue_update(od.get("status"), None if filled is None else float(filled), accepted=accepted)
        if before[0] == S.UNKNOWN and order.state != S.UNKNOWN:
            order.next_lookup_ns = 0  # the venue has spoken: no lookup needed
        if (order.state, order.venue_filled, order.venue_order_id) != before:
            venue_ns = ms_to_ns(od.get("lastUpdateTimestamp") or od.get("timestamp"))
            kind = "reject" if order.state == S.REJECTED else "ack" if before[0] in (S.PENDING_NEW, S.UNKNOWN) else "update"
            self._journal_state(order, kind, now,
                                venue_ns=venue_ns, detail={"status": od.get("status"), "filled": filled})
        # trades that arrived before we knew this order's venue id
        if order.venue_order_id is not None:
            for td in self._unmatched.pop((order.venue, order.venue_order_id), []):
                self._book_trade(order, td, now)
        self._after_event(order, now)

    def on_trade(self, venue: int, td: Mapping[str, Any]) -> bool:
        """A ccxt-unified trade dict (one of our fills) from ``venue``; True if it was booked now,
        False if seen before, or not matched to an order yet (kept until its order is known)."""
        link = self.venues[venue]
        tid = td.get("id")
        if tid is None:
            raise ValueError(f"{link.name}: a trade without an id cannot be deduplicated: {td.get('order')}")
        if (link.name, str(tid)) in self._seen:
            self.counts["duplicate_fills"] += 1
            return False
        order = self._find_order(venue, td.get("clientOrderId"), td.get("order"))
        if order is None:
            info = td.get("info")
            if isinstance(info, Mapping):
                order = next((self.orders[v] for v in info.values() if isinstance(v, str) and v in self.orders
                              and self.orders[v].venue == venue), None)
        if order is None:
            if td.get("order") is not None:
                self._unmatched[(venue, str(td["order"]))].append(dict(td))
            return False
        now = self.clock()
        booked = self._book_trade(order, td, now)
        self._after_event(order, now)
        return booked

    def _book_trade(self, order: Order, td: Mapping[str, Any], now: int) -> bool:
        link = self.venues[order.venue]
        tid = str(td["id"])
        if (link.name, tid) in self._seen:
            self.counts["duplicate_fills"] += 1
            return False
        side = td.get("side")
        if side is not None and (side == "buy") != (order.side > 0):
            raise IllegalTransition(f"order {order.client_id}: a {side} fill of a {'buy' if order.side > 0 else 'sell'} order")
        if order.venue_order_id is None and td.get("order") is not None:
            order.venue_order_id = str(td["order"])
            self._by_venue_id[(order.venue, order.venue_order_id)] = order.client_id
        price, qty = float(td["price"]), float(td["amount"])
        fee_cost, fee_ccy, fee = self._fee(order, td, price)
        fair, mult = self.marks()
        order.trade(tid, qty)
        self._seen.add((link.name, tid))
        if not order.acked and not order.zombie:
            self._ack(order, now)
        taken = not order.zombie and self.core.report(oc.REP_FILL, order.cid, price=price, qty=qty, fee=fee, now=now)
        liquidity = td.get("takerOrMaker") or ("maker" if order.post_only else "taker")
        fill = {"venue": link.name, "trade_id": tid, "client_id": order.client_id, "cid": order.cid,
                "venue_order_id": order.venue_order_id, "instrument": link.instrument_names[order.instrument],
                "side": order.side, "price": price, "qty": qty, "fee": fee, "fee_cost": fee_cost, "fee_currency": fee_ccy,
                "liquidity": liquidity, "tag": oc.TAG_NAMES[order.tag], "arrival_ns": order.venue_created_ns,
                "venue_ns": ms_to_ns(td.get("timestamp")), "local_ns": now, "fair": fair, "multiplier": mult,
                "booked": bool(taken)}
        if not self.journal.record_fill(fill):
            return False
        if not taken:
            self.orphan_fills.append(fill)
        self._journal_state(order, "fill", now, venue_ns=fill["venue_ns"], detail={"trade_id": tid, "qty": qty})
        return True

    def _fee(self, order: Order, td: Mapping[str, Any], price: float) -> tuple[float | None, str | None, float]:
        """(cost, currency) as charged and the fee in quote ccy for the core. A fee in the base asset
        is valued at the fill price; one in a third asset (a discount token) cannot be valued here:
        the core gets 0 and the journal keeps what was charged."""
        f = td.get("fee") or {}
        cost, ccy = f.get("cost"), f.get("currency")
        if cost is None:
            return None, ccy, 0.0
        link = self.venues[order.venue]
        if ccy is None or ccy == link.quote_currency.get(order.instrument):
            return float(cost), ccy, float(cost)
        if ccy == link.base_currency.get(order.instrument):
            return float(cost), ccy, float(cost) * price
        self.counts["fees_not_valued"] += 1
        return float(cost), ccy, 0.0

    def on_balance(self, venue: int, balance: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        """A ccxt balance dict (fetch_balance / watch_balance): journalled; returns ``{asset: {free,
        used, total}}`` for the guards."""
        skip = {"info", "free", "used", "total", "timestamp", "datetime", "debt"}
        per = {a: {k: (None if b.get(k) is None else float(b[k])) for k in ("free", "used", "total")}
               for a, b in balance.items() if a not in skip and isinstance(b, Mapping)}
        self.journal.record_balance(self.venues[venue].name, per, self.clock(), ms_to_ns(balance.get("timestamp")))
        return per

    # -- reports to the core ----------------------------------------------------------------------

    def _after_event(self, order: Order, now: int) -> None:
        """Reports due after an update; a zombie (found absent, then shown by the venue) is journalled
        once and, while it rests, cancelled: the core forgot it, so nobody wants it."""
        if order.zombie and not order.zombie_journalled:
            order.zombie_journalled = True
            self.counts["zombies"] += 1
            self._journal_state(order, "zombie", now, detail={"note": "found absent earlier; the venue shows it"})
        if order.zombie:
            if order.state in (S.OPEN, S.PARTIALLY_FILLED) and order.venue_order_id is not None:
                self._spawn(self._cancel(order))
            return
        self._tell_core(order, now)

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task from synchronous code (a stream callback); kept until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the calls started from stream callbacks (zombie cancels) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def _ack(self, order: Order, now: int) -> None:
        order.acked = True
        self.core.report(oc.REP_ACK, order.cid, now=now)

    def _tell_core(self, order: Order, now: int) -> None:
        if order.zombie:
            return  # the core has already been told this order is done
        if order.ack_due():
            self._ack(order, now)
        if order.done_due():
            order.done_reported = True
            self.core.report(oc.REP_DONE, order.cid, final_state=CORE_FINAL[order.state], now=now)
            self.journal.record_event(self.venues[order.venue].name, "done", now, client_id=order.client_id,
                                      state=order.state.value, filled=order.booked)

    def _journal_state(self, order: Order, kind: str, now: int, *, venue_ns: int | None = None,
                       detail: dict[str, Any] | None = None) -> None:
        self.journal.record_event(self.venues[order.venue].name, kind, now, client_id=order.client_id,
                                  state=order.state.value, filled=order.filled, venue_order_id=order.venue_order_id,
                                  venue_created_ns=order.venue_created_ns, venue_ns=venue_ns, detail=detail)

    def _reason(self, exc: BaseException) -> str:
        """An error as one journal line: its class and message, secrets scrubbed, at most 300 chars."""
        return self.journal.scrub(f"{type(exc).__name__}: {exc}")[:300]

    # -- unknown orders and missing fills -----------------------------------------------------------

    def unknown_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.state == S.UNKNOWN]

    def awaiting_fills(self) -> list[Order]:
        """Final orders whose fills are not all booked (the venue's filled > ours): their DONE waits."""
        return [o for o in self.orders.values() if o.final and not o.done_reported and not o.zombie]

    async def lookup(self, order: Order) -> bool:
        """Find an UNKNOWN order by client id (or a live one whose cancel failed ambiguously): fetch_order,
        then fetch_open_orders, then fetch_my_trades since it was decided. True if resolved (found,
        or proved absent after the grace period)."""
        link = self.venues[order.venue]
        ad = link.adapter
        now = self.clock()
        order.lookups += 1
        self.counts["lookups"] += 1
        inconclusive = False
        not_found = False
        found: Mapping[str, Any] | None = None
        try:
            if link.find_by_client_id is not None and order.venue_order_id is None:
                call = link.find_by_client_id(ad, order.symbol, order.client_id, order.decided_ns // 1_000_000 - 1)
            else:
                call = ad.fetch_order(order.venue_order_id or order.client_id, order.symbol,
                                      link.client_id_params(order.client_id))
            od = await asyncio.wait_for(call, self.call_timeout_s)
            if od and (mentions_client_id(od, order.client_id) or
                       order.venue_order_id is not None and str(od.get("id")) == order.venue_order_id):
                found = od
            else:
                inconclusive = True
        except ccxt.OrderNotFound:
            not_found = True
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - NotSupported, a network error: this source says nothing
            inconclusive = True
        trades: list[Mapping[str, Any]] = []
        if found is None:
            try:
                opens = await asyncio.wait_for(ad.fetch_open_orders(order.symbol), self.call_timeout_s)
                found = next((o for o in opens if mentions_client_id(o, order.client_id)), None)
                since_ms = (order.decided_ns // 1_000_000) - 1
                mine = await asyncio.wait_for(ad.fetch_my_trades(order.symbol, since_ms), self.call_timeout_s)
                trades = [t for t in mine if mentions_client_id(t, order.client_id) or
                          order.venue_order_id is not None and str(t.get("order")) == order.venue_order_id]
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                inconclusive = True
        now = self.clock()
        if found is not None:
            self._journal_state(order, "lookup", now, detail={"found": "order"})
            self._apply_order_dict(order, found, now)
            for td in trades:
                self.on_trade(order.venue, td)
            await self._cancel_if_wanted(order)
            return True
        for td in trades:
            self.on_trade(order.venue, td)
        if order.state in LIVE and not_found and not inconclusive:
            # an order the venue once took is neither known to it nor resting: it finished, and its
            # fills (booked) are all there is; what did not fill was cancelled ("closed" decides which)
            self._journal_state(order, "lookup", now, detail={"found": "not resting"})
            self._apply_order_dict(order, {"status": STATUS_CLOSED}, now)
            return True
        if trades:
            self._journal_state(order, "lookup", now, detail={"found": "trades"})
            await self._cancel_if_wanted(order)
            return order.state != S.UNKNOWN
        grace_over = order.unknown_since_ns is not None and now - order.unknown_since_ns >= self.unknown_grace_ns
        if order.state == S.UNKNOWN and not_found and not inconclusive and grace_over:
            order.found_absent()
            self.counts["found_absent"] += 1
            self._journal_state(order, "lookup", now, detail={"found": "absent", "policy": "dropped; the core decides again"})
            self._tell_core(order, now)
            return True
        order.next_lookup_ns = now + self.lookup_interval_ns * min(16, 1 << min(order.lookups, 4))
        self._journal_state(order, "lookup", now, detail={"found": "nothing yet", "inconclusive": inconclusive})
        return False

    async def sync_fills(self, venue: int) -> int:
        """Fetch ``venue``'s fills since its journalled cursor (or the oldest order waiting for fills)
        by REST and book the new ones; returns how many were booked."""
        link = self.venues[venue]
        cur = self.journal.cursor(link.name)
        waiting = [o.decided_ns for o in self.awaiting_fills() if o.venue == venue]
        starts = ([cur[0]] if cur else []) + waiting
        since_ms = min(starts) // 1_000_000 if starts else None
        n = 0
        for symbol in sorted(set(link.symbols.values())):
            for td in await asyncio.wait_for(link.adapter.fetch_my_trades(symbol, since_ms), self.call_timeout_s):
                n += self.on_trade(venue, td)
        return n

    async def check_live(self, venue: int) -> int:
        """REST check of ``venue``'s resting orders (on a timer, after a stream reconnect): every order
        we hold live that the venue does not list as open is looked up (its end may have been on a
        stream message we missed). Returns how many were looked up."""
        link = self.venues[venue]
        live = [o for o in self.orders.values() if o.venue == venue and o.state in LIVE]
        if not live:
            return 0
        listed: set[str] = set()
        for symbol in sorted({o.symbol for o in live}):
            for od in await asyncio.wait_for(link.adapter.fetch_open_orders(symbol), self.call_timeout_s):
                self.on_order(venue, od)
                listed.update(str(x) for x in (od.get("clientOrderId"), od.get("id")) if x is not None)
        missing = [o for o in live if o.state in LIVE and o.client_id not in listed and o.venue_order_id not in listed]
        for o in missing:
            await self.lookup(o)
        return len(missing)

    async def poll(self) -> None:
        """Housekeeping the runner calls on a timer: look up unknown orders that are due and orders
        whose cancel failed without a clear answer; fetch fills that the streams have not delivered
        for orders whose DONE is waiting on them."""
        now = self.clock()
        due = [o for o in self.orders.values() if o.next_lookup_ns and o.next_lookup_ns <= now
               and (o.state == S.UNKNOWN or o.state in LIVE)]
        for o in due:
            o.next_lookup_ns = 0
        for o in due:
            await self.lookup(o)
        for v in sorted({o.venue for o in self.awaiting_fills()}):
            await self.sync_fills(v)

    def snapshot(self) -> dict[str, Any]:
        """Counts by state and venue, and the manager's counters (terminal view, metrics)."""
        by: dict[str, dict[str, int]] = {}
        for o in self.orders.values():
            name = self.venues[o.venue].name
            by.setdefault(name, defaultdict(int))[o.state.value] += 1
        return {"orders": {k: dict(v) for k, v in by.items()}, "counts": dict(self.counts),
                "orphan_fills": len(self.orphan_fills), "strangers": len(self.strangers)}


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


__all__ = ["CORE_FINAL", "FINAL", "IllegalTransition", "LIVE", "Order", "OrderManager", "OrderState", "ReportSink",
           "TRANSITIONS", "core_marks"]
