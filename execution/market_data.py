"""Market data from the venues' public streams into the trader core, with a REST fallback.

One :class:`BookFeed` per (venue, instrument): it loops on ccxt.pro's ``watch_order_book`` (the
client keeps the book from the venue's snapshot and deltas and checks sequence numbers or
checksums itself) and ``watch_trades``, and hands every book it receives to ``on_book`` and every
new public trade to ``on_trades``. When a stream fails (the socket dropped, the venue said no), the
feed counts it, polls ``fetch_order_book`` once per ``fallback_s`` so the core keeps a book, and
tries the stream again with a backoff that doubles up to 16 s; the first book from the stream
again ends the fallback. A book that is crossed, non-finite, non-positive, out of order or for
another market is rejected and counted by reason in ``FeedStats.rejected`` (never handed on): the
core must not quote from it. So is a REST book that is empty (what ccxt makes of an answer it could
not read) or more than twice as deep as asked for.

A rejected *stream* book means ccxt's cached book is poisoned: a level it stored from a hostile
delta (NaN, a negative size, a bid through the asks) stays until the venue happens to touch that
price again, so every later book would be rejected too. The feed then resubscribes (drops ccxt's
book and closes the connection carrying it; the next watch reconnects and gets a fresh snapshot),
at most once per ``resync_s`` (doubling to 16 s while the books stay bad), counted in
``FeedStats.resyncs``. It does the same when the exchange's :class:`~execution.wire_guard.WireGuard`
saw a frame it could not apply (a lost delta). The guard's own counts (messages refused before a
book or trade exists: undecodable, unparseable, oversized, for another market, checksum mismatch)
are ``FeedStats.wire``, shared by the feeds of one exchange object.

Trades with a non-finite or non-positive price or amount, or naming another market, are rejected
and counted the same way.

An adapter whose books are top of book only (the broker's quotes) says so with ``book_is_l1 =
True``; its books reach the core as L1 quotes.

Units: prices quote currency, sizes tokens (shares at the broker), times ns UTC as the caller's
``clock`` and the venue's ``timestamp`` (ms, ccxt) converted to ns.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from execution.venue import MS
from execution.wire_guard import guard as wire_guard

log = logging.getLogger("stockbridge.live")
RESYNC_GRACE_S = 2.0  # wall s: a trade-stream failure this soon after our own resubscribe is ours


@dataclass
class Book:
    """One book as received: ``bids`` / ``asks`` float64 [price, size] rows, best first."""

    venue: int
    instrument: int
    bids: np.ndarray
    asks: np.ndarray
    exch_ns: int | None      # the venue's timestamp of the book, ns UTC (None if it sent none)
    local_ns: int            # when we received it, ns UTC
    is_quote: bool           # top of book only (an L1 quote)
    source: str              # "stream" / "rest"


def book_rows(levels: Any, depth: int) -> np.ndarray:
    """ccxt's [[price, amount, ...], ...] (best first) as a C-contiguous float64 (n, 2) array."""
    n = min(len(levels), depth)
    out = np.empty((n, 2), dtype=np.float64)
    for k in range(n):
        out[k, 0] = levels[k][0]
        out[k, 1] = levels[k][1]
    return out


def book_problem(bids: np.ndarray, asks: np.ndarray) -> str | None:
    """Why a received book must not reach the core (None if it may). The reason's text before any
    " (" is its counter key in ``FeedStats.rejected``."""
    for name, rows in (("bid", bids), ("ask", asks)):
        if rows.size and not (np.isfinite(rows).all() and (rows[:, 0] > 0).all() and (rows[:, 1] >= 0).all()):
            return f"non-finite or non-positive {name} level"
    if len(bids) > 1 and not (np.diff(bids[:, 0]) < 0).all():
        return "bids not in descending price order"
    if len(asks) > 1 and not (np.diff(asks[:, 0]) > 0).all():
        return "asks not in ascending price order"
    if len(bids) and len(asks) and bids[0, 0] >= asks[0, 0]:
        return f"crossed book (bid {bids[0, 0]:g} >= ask {asks[0, 0]:g})"
    return None


@dataclass
class FeedStats:
    """What one feed has seen (terminal view, metrics, the run's summary)."""

    books: int = 0
    trades: int = 0
    rejected: Counter = field(default_factory=Counter)
    stream_errors: int = 0
    rest_books: int = 0
    rest_errors: Counter = field(default_factory=Counter)  # REST book calls that failed, by exception
    resyncs: int = 0         # times the book stream was dropped for a fresh snapshot (poisoned cache)
    wire: Counter = field(default_factory=Counter)  # the exchange's WireGuard.rejected (shared)
    on_fallback: bool = False
    last_book_ns: int | None = None
    last_error: str | None = None


class BookFeed:
    """The public streams of one (venue, instrument) into ``on_book`` / ``on_trades``.

    ``adapter``: a ccxt.pro exchange (or an adapter of the same shape); ``symbol``: its unified
    symbol; ``clock``: ns UTC; ``depth``: levels a side handed on; ``venue_ns``: the venue's ms
    timestamp -> ns UTC on the clock's time base."""

    def __init__(self, name: str, venue: int, instrument: int, adapter: Any, symbol: str, *,
                 clock: Callable[[], int], on_book: Callable[[Book], None],
                 on_trades: Callable[[int, int, list[dict[str, Any]], int], None], depth: int = 25,
                 fallback_s: float = 1.0, call_timeout_s: float = 10.0, resync_s: float = 0.5,
                 venue_ns: Callable[[int | float | None], int | None] = lambda ms: None if ms is None else int(ms) * MS):
        self.name, self.venue, self.instrument, self.adapter, self.symbol = name, venue, instrument, adapter, symbol
        self.clock, self.on_book, self.on_trades = clock, on_book, on_trades
        self.depth, self.fallback_s, self.call_timeout_s = depth, fallback_s, call_timeout_s
        self.venue_ns = venue_ns
        self.is_quote = bool(getattr(adapter, "book_is_l1", False))
        self.guard = wire_guard(adapter)
        self.guard.watched.add(symbol)
        self.stats = FeedStats(wire=self.guard.rejected)
        self.closed = False  # set by the owner when the run ends: the loops stop
        self.resync_s = resync_s              # wall seconds: the first wait between two resubscribes
        self._resync_gap = resync_s
        self._resync_after = 0.0              # loop time before which no resubscribe is made
        self._epoch = self.guard.epoch        # the guard's lost-frame count this feed has resynced for
        self._resynced_at = -math.inf         # loop time of the last resubscribe

    def _reject(self, reason: str) -> None:
        self.stats.rejected[reason.split(" (")[0]] += 1

    def _deliver(self, ob: Any, source: str) -> bool:
        """Hand ``ob`` on if it is a book the core may quote from; False (counted) if not."""
        now = self.clock()
        if ob.get("symbol") not in (None, self.symbol):
            self._reject("wrong symbol")
            return False
        raw_bids, raw_asks = ob.get("bids") or [], ob.get("asks") or []
        if source == "rest":
            # ccxt answers an unreadable body (cut JSON, a result keyed by another pair) with an
            # empty book, no error; and a venue that ignores the depth asked for is not one to trust
            if not raw_bids and not raw_asks:
                self._reject("empty book")
                return False
            if max(len(raw_bids), len(raw_asks)) > 2 * self.depth:  # asked for `depth`; a level or so more is slack
                self._reject("oversized book")
                return False
        bids, asks = book_rows(raw_bids, self.depth), book_rows(raw_asks, self.depth)
        problem = book_problem(bids, asks)
        if problem is not None:
            self._reject(problem)
            return False
        self.stats.books += 1
        self.stats.last_book_ns = now
        if source == "rest":
            self.stats.rest_books += 1
        self.on_book(Book(self.venue, self.instrument, bids, asks, self.venue_ns(ob.get("timestamp")), now,
                          self.is_quote, source))
        return True

    async def _resync(self, why: str) -> None:
        """Throw away ccxt's cached book and the connection carrying its subscription, so the next
        watch subscribes again and starts from a snapshot (see the module doc). At most once per
        ``_resync_gap`` wall seconds; the gap doubles (to 16 s) until a good book comes."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._resync_after:
            return
        self._resync_after = loop.time() + self._resync_gap
        self._resync_gap = min(self._resync_gap * 2, 16.0)
        self.stats.resyncs += 1
        log.warning("%s %s: %s; resubscribing for a fresh snapshot", self.name, self.symbol, why)
        self._resynced_at = loop.time()
        clients = getattr(self.adapter, "clients", None) or {}
        for c in list(clients.values()):
            subs = getattr(c, "subscriptions", None) or {}
            if any("book" in str(k) and self.symbol in str(k) for k in subs):
                try:
                    await asyncio.wait_for(c.close(), self.call_timeout_s)
                except Exception as exc:  # noqa: BLE001 - a connection that will not close is dropped all the same
                    self.stats.last_error = type(exc).__name__
        # after the close: an update still in flight on the old connection would find no book
        # (Kraken's handler raises KeyError on it); the new connection starts from a snapshot
        books = getattr(self.adapter, "orderbooks", None)
        if isinstance(books, dict):
            books.pop(self.symbol, None)

    async def books(self) -> None:
        """Forever: the book stream, with the REST fallback while it is down."""
        backoff = 0.5
        while not self.closed:
            try:
                ob = await self.adapter.watch_order_book(self.symbol)
            except asyncio.CancelledError:
                if _cancelled_here():
                    raise
                # ccxt cancels the watches of a connection that is closed (our own resubscribe of
                # a feed sharing it): the stream is down, not this task
                await asyncio.sleep(0.05)
                continue
            except Exception as exc:  # noqa: BLE001 - every failure means the same: fall back, retry
                self._epoch = self.guard.epoch  # the stream starts again from a snapshot
                self.stats.stream_errors += 1
                self.stats.on_fallback = True
                self.stats.last_error = type(exc).__name__
                log.warning("%s %s: book stream failed (%s); REST fallback", self.name, self.symbol, type(exc).__name__)
                await self._fallback(backoff)
                backoff = min(backoff * 2, 16.0)
                continue
            backoff = 0.5
            self.stats.on_fallback = False
            self.guard.sweep()
            if self.guard.epoch != self._epoch:
                # a frame on this exchange's connections could not be applied: if it was a delta of
                # this book, ccxt's book is now missing it, and nothing in the book shows that
                self._epoch = self.guard.epoch
                self._reject("book after a lost message")
                await self._resync("a message could not be applied")
                continue
            if self._deliver(ob, "stream"):
                self._resync_gap = self.resync_s
            else:
                await self._resync("the cached book is bad")

    async def _fallback(self, seconds: float) -> None:
        """Poll the REST book for ``seconds`` (at least once) before the stream is tried again."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while True:
            try:
                ob = await asyncio.wait_for(self.adapter.fetch_order_book(self.symbol, self.depth), self.call_timeout_s)
                self._deliver(ob, "rest")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.stats.last_error = type(exc).__name__
                self.stats.rest_errors[type(exc).__name__] += 1
            if loop.time() >= until:
                return
            await asyncio.sleep(min(self.fallback_s, max(until - loop.time(), 0.0)))

    async def trades(self) -> None:
        """Forever: public trades (the stream only: a missed print is not worth a REST poll)."""
        backoff = 0.5
        while not self.closed:
            try:
                got = await self.adapter.watch_trades(self.symbol)
            except asyncio.CancelledError:
                if _cancelled_here():
                    raise
                # ccxt cancels every watch of a connection it closes: the book loop's resubscribe
                # (ccxt's Client.close); watch again, on the new connection
                await asyncio.sleep(0.05)
                continue
            except Exception as exc:  # noqa: BLE001
                if asyncio.get_running_loop().time() - self._resynced_at < RESYNC_GRACE_S:
                    # the book loop closed this connection to resubscribe: not the venue's failure
                    await asyncio.sleep(0.05)
                    continue
                self.stats.stream_errors += 1
                self.stats.last_error = type(exc).__name__
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 16.0)
                continue
            backoff = 0.5
            self.guard.sweep()
            good = []
            for t in got:
                if not (_finite_positive(t.get("price")) and _finite_positive(t.get("amount"))):
                    self._reject("bad trade")
                elif t.get("symbol") not in (None, self.symbol) or self.guard.names_other_market(t.get("info"), self.symbol):
                    # Bybit's trades are filed by the topic, whatever market the print names
                    self._reject("wrong symbol trade")
                else:
                    good.append(t)
            if good:
                self.stats.trades += len(good)
                self.on_trades(self.venue, self.instrument, good, self.clock())

    def tasks(self) -> list[Callable[[], Any]]:
        return [self.books, self.trades]


def _cancelled_here() -> bool:
    """Whether the running task itself is being cancelled (not just a future it awaited)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _finite_positive(x: Any) -> bool:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0


__all__ = ["Book", "BookFeed", "FeedStats", "book_problem", "book_rows"]
