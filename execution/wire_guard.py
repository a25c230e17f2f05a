"""A guard between a ccxt.pro exchange and the venue's wire, against hostile public messages.

What ccxt 4.5 does with them unguarded (the ``garbage`` fault of the sandbox finds each one):

- a websocket frame that is not JSON (cut short), or one ccxt's handler raises on (Bybit's trade
  parser on ``"NaN"``, Kraken's on a trade for a market it does not list), raises out of the done
  callback of ccxt's receive loop: asyncio logs "Exception in callback" and the loop is never
  rescheduled. The socket stays open, nothing more is read, every watch on it waits until ccxt's
  ping-pong keepalive gives up (seconds to never on a stepped clock) - the feed is blind;
- a frame past ccxt's 10 MiB ``max_msg_size`` ends the connection (aiohttp answers
  ``WSMsgType.ERROR`` / close 1009): ccxt rejects the watches with ``NetworkError``;
- a message naming another market is filed under that market (``exchange.orderbooks`` /
  ``exchange.trades`` grow a key per name, without bound), or, where ccxt routes by the
  subscription's topic (Bybit's trades; every REST answer), handed over as ours;
- a REST order book that is not JSON, or keyed by another pair (Kraken), comes back as an *empty*
  book, no error.

:func:`guard` (once per exchange object) catches what the handlers raise, so the receive loop goes
on; counts each kind of rejected message by reason in :attr:`WireGuard.rejected`; bumps
:attr:`WireGuard.epoch` whenever a frame could not be applied (a delta lost: a cached book built
from the stream may now be wrong, so the feeds resubscribe, market_data.py); refuses REST books
that name another market; and :meth:`WireGuard.sweep` drops the books and trade caches ccxt built
for markets nobody watches. For Kraken it also checks the book checksum each update carries
against ccxt's book (ccxt's own check, ``watchOrderBook.checksum``, is off by default and raises
``AttributeError`` on its float levels when turned on): a mismatch counts and bumps the epoch.

An adapter that is not a ccxt.pro exchange (the broker's) gets a guard that counts nothing.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from typing import Any

import ccxt

log = logging.getLogger("stockbridge.live")

_ATTR = "_stockbridge_wire_guard"


class WireGuard:
    """The counters and hooks of one exchange object (see the module doc)."""

    def __init__(self, adapter: Any):
        self.adapter = adapter
        self.rejected: Counter = Counter()  # reason -> messages refused below the feeds
        self.epoch = 0                      # bumped when a frame could not be applied
        self.watched: set[str] = set()      # unified symbols some feed watches
        self.last_error: str | None = None

    # -- what the hooks report --
    def bad(self, reason: str, detail: str = "", lost: bool = True) -> None:
        """One message refused for ``reason``; ``lost``: it may have carried a book change."""
        self.rejected[reason] += 1
        self.last_error = f"{reason}: {detail}"[:200]
        if lost:
            self.epoch += 1
        log.warning("%s: %s (%s)", getattr(self.adapter, "id", "venue"), reason, detail[:120])

    def names_other_market(self, raw: Any, symbol: str) -> str | None:
        """The market a raw venue dict (a REST book, a trade's ``info``) names, if it is not
        ``symbol`` (its ``s`` or ``symbol`` field, as Bybit and Kraken name markets)."""
        if not isinstance(raw, dict):
            return None
        named = raw.get("s", raw.get("symbol"))
        if not isinstance(named, str) or not named or named == symbol:
            return None
        ad = self.adapter
        try:
            if named == ad.market_id(symbol) or ad.safe_symbol(named) == symbol:
                return None
        except Exception:  # noqa: BLE001 - an id ccxt cannot place is another market's
            pass
        return named

    def sweep(self) -> int:
        """Drop ccxt's books and trade caches of markets no feed watches (messages that named
        another market); returns how many were dropped (each counted as 'wrong symbol')."""
        n = 0
        for cache in (getattr(self.adapter, "orderbooks", None), getattr(self.adapter, "trades", None)):
            if not isinstance(cache, dict):
                continue
            for sym in [s for s in cache if s not in self.watched]:
                del cache[sym]
                self.bad("wrong symbol", f"a message for {sym}", lost=False)
                n += 1
        return n

    # -- installing the hooks --
    def install(self) -> None:
        ad = self.adapter
        if not hasattr(ad, "clients") or not callable(getattr(ad, "client", None)):
            return  # not a ccxt.pro exchange
        make_client = ad.client

        def client(url: str):
            c = make_client(url)
            if not getattr(c, _ATTR, False):
                self._guard_client(c)
            return c

        ad.client = client
        parse_book = ad.parse_order_book

        def parse_order_book(orderbook, symbol, *args, **kwargs):
            # a REST answer names its market (Bybit's "s"); ccxt files it under the one it asked for
            other = self.names_other_market(orderbook, symbol) if symbol else None
            if other is not None:
                self.bad("wrong symbol", f"an order book for {other} answered for {symbol}", lost=False)
                raise ccxt.BadResponse(f"{ad.id}: order book for {other}, asked for {symbol}")
            return parse_book(orderbook, symbol, *args, **kwargs)

        ad.parse_order_book = parse_order_book
        if getattr(ad, "id", "") == "kraken" and hasattr(ad, "handle_order_book"):
            handle_book = ad.handle_order_book

            def handle_order_book(c, message):
                handle_book(c, message)
                self._kraken_checksum(message)

            ad.handle_order_book = handle_order_book

    def _guard_client(self, c: Any) -> None:
        """Wrap one ccxt websocket client's message entry points (instance attributes shadow the
        class's methods; ccxt calls them as ``self.handle_...``)."""
        setattr(c, _ATTR, True)
        text = c.handle_text_or_binary_message
        handle = c.handle_message

        def handle_text_or_binary_message(data):
            try:
                text(data)
            except json.JSONDecodeError as exc:  # orjson's error is a json.JSONDecodeError too
                self.bad("undecodable message", f"{len(data)} bytes: {exc}")
            except Exception as exc:  # noqa: BLE001 - raising here would stop ccxt's receive loop for good
                self.bad("unparseable message", f"{type(exc).__name__}: {exc}")

        def handle_message(message):
            if getattr(message, "type", None) is not None and message.type.name == "ERROR":
                # aiohttp's WebSocketError: MESSAGE_TOO_BIG (1009) for a frame past max_msg_size
                code = getattr(getattr(message, "data", None), "code", None)
                self.bad("oversized message" if code == 1009 else "websocket error", str(message.data))
            handle(message)

        c.handle_text_or_binary_message = handle_text_or_binary_message
        c.handle_message = handle_message

    def _kraken_checksum(self, message: Any) -> None:
        """Kraken v2's book checksum (CRC32 of the top 10 asks then bids, each price and qty at the
        pair's precision without the point and leading zeros) against ccxt's book after the update."""
        try:
            row = message["data"][0]
            want = int(row["checksum"])
            symbol = row["symbol"]
        except (KeyError, IndexError, TypeError, ValueError):
            return
        book = self.adapter.orderbooks.get(symbol)
        market = self.adapter.markets.get(symbol) if self.adapter.markets else None
        if book is None or market is None or symbol not in self.watched:
            return
        pdec, qdec = _decimals(market["precision"]["price"]), _decimals(market["precision"]["amount"])
        try:
            def part(p: float, q: float) -> str:
                return (f"{p:.{pdec}f}".replace(".", "").lstrip("0") + f"{q:.{qdec}f}".replace(".", "").lstrip("0"))
            payload = "".join(part(p, q) for p, q, *_ in book["asks"][:10]) + \
                "".join(part(p, q) for p, q, *_ in book["bids"][:10])
            got = zlib.crc32(payload.encode()) & 0xFFFFFFFF
        except (TypeError, ValueError):  # a NaN or a string in the book: not a book to check
            got = None
        if got != want:
            self.bad("checksum mismatch", f"{symbol}: book {got}, venue {want}")


def _decimals(unit: float | None) -> int:
    """Decimals of a precision unit (ccxt's TICK_SIZE mode: 0.01 -> 2)."""
    if unit is None:
        return 8
    s = f"{float(unit):.10f}".rstrip("0")
    return len(s.split(".")[1]) if "." in s else 0


def guard(adapter: Any) -> WireGuard:
    """The :class:`WireGuard` of ``adapter``, installed on first use (one per exchange object)."""
    g = getattr(adapter, _ATTR, None)
    if g is None:
        g = WireGuard(adapter)
        g.install()
        try:
            setattr(adapter, _ATTR, g)
        except AttributeError:  # an adapter with __slots__: a guard that stays local
            pass
    return g


__all__ = ["WireGuard", "guard"]
