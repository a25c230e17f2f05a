"""Market data from the venues' public streams into the trader core, with a REST fallback.

One :class:`BookFeed` per (venue, instrument): it loops on ccxt.pro's ``watch_order_book`` (the
client keeps the book from the venue's snapshot and deltas and checks sequence numbers or
checksums itself) and ``watch_trades``, and hands every book it receives to ``on_book`` and every
new public trade to ``on_trades``. When a stream fails (the socket dropped, the venue said no), the
feed counts it, polls ``fetch_order_book`` once per ``fallback_s`` so the core keeps a book, and
tries the stream again with a backoff that doubles up to 16 s; the first book from the stream
again ends the fallback. A book that is crossed, non-finite or non-positive is rejected and counted
(never handed on): the core must not quote from it.

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

log = logging.getLogger("stockbridge.live")


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
    """Why a received book must not reach the core (None if it may)."""
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
                 fallback_s: float = 1.0, call_timeout_s: float = 10.0,
                 venue_ns: Callable[[int | float | None], int | None] = lambda ms: None if ms is None else int(ms) * MS):
        self.name, self.venue, self.instrument, self.adapter, self.symbol = name, venue, instrument, adapter, symbol
        self.clock, self.on_book, self.on_trades = clock, on_book, on_trades
        self.depth, self.fallback_s, self.call_timeout_s = depth, fallback_s, call_timeout_s
        self.venue_ns = venue_ns
        self.is_quote = bool(getattr(adapter, "book_is_l1", False))
        self.stats = FeedStats()
        self.closed = False  # set by the owner when the run ends: the loops stop

    def _deliver(self, ob: Any, source: str) -> None:
        now = self.clock()
        bids, asks = book_rows(ob.get("bids") or [], self.depth), book_rows(ob.get("asks") or [], self.depth)
        problem = book_problem(bids, asks)
        if problem is not None:
            self.stats.rejected[problem.split(" (")[0]] += 1
            return
        self.stats.books += 1
        self.stats.last_book_ns = now
        if source == "rest":
            self.stats.rest_books += 1
        self.on_book(Book(self.venue, self.instrument, bids, asks, self.venue_ns(ob.get("timestamp")), now,
                          self.is_quote, source))

    async def books(self) -> None:
        """Forever: the book stream, with the REST fallback while it is down."""
        backoff = 0.5
        while not self.closed:
            try:
                ob = await self.adapter.watch_order_book(self.symbol)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means the same: fall back, retry
                self.stats.stream_errors += 1
                self.stats.on_fallback = True
                self.stats.last_error = type(exc).__name__
                log.warning("%s %s: book stream failed (%s); REST fallback", self.name, self.symbol, type(exc).__name__)
                await self._fallback(backoff)
                backoff = min(backoff * 2, 16.0)
                continue
            backoff = 0.5
            self.stats.on_fallback = False
            self._deliver(ob, "stream")

    async def _fallback(self, seconds: float) -> None:
        """Poll the REST book for ``seconds`` (at least once) before the stream is tried again."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while True:
            try:
                ob = await asyncio.wait_for(self.adapter.fetch_order_book(self.symbol), self.call_timeout_s)
                self._deliver(ob, "rest")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.stats.last_error = type(exc).__name__
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
                raise
            except Exception as exc:  # noqa: BLE001
                self.stats.stream_errors += 1
                self.stats.last_error = type(exc).__name__
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 16.0)
                continue
            backoff = 0.5
            good = [t for t in got if _finite_positive(t.get("price")) and _finite_positive(t.get("amount"))]
            if len(good) < len(got):
                self.stats.rejected["bad trade"] += len(got) - len(good)
            if good:
                self.stats.trades += len(good)
                self.on_trades(self.venue, self.instrument, good, self.clock())

    def tasks(self) -> list[Callable[[], Any]]:
        return [self.books, self.trades]


def _finite_positive(x: Any) -> bool:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0


__all__ = ["Book", "BookFeed", "FeedStats", "book_problem", "book_rows"]
