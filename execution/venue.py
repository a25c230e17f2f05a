"""What the order manager needs from a venue: ccxt's unified vocabulary, as a typing.Protocol.

A ccxt.pro exchange object satisfies :class:`VenueAdapter` as it is (same method names and
signatures, ccxt's unified order and trade dicts, ccxt's exceptions); the broker adapter (alpaca-py)
and the loopback emulators are written to the same shape. Nothing here knows a particular venue.

Errors are ccxt's exception classes, because what the order manager does next depends on whether
the venue *answered* or not:

- ``ccxt.NetworkError`` (``RequestTimeout``, ``ExchangeNotAvailable``, ``DDoSProtection``) other
  than ``RateLimitExceeded`` (refused before matching), and any exception that is not a ``ccxt.BaseError`` (a dropped socket, our
  own ``asyncio.TimeoutError``): the request may or may not have reached the matching engine, so the
  outcome is unknown (:func:`is_definite_refusal` is False);
- ``ccxt.ExchangeError`` and its subclasses (``InvalidOrder``, ``InsufficientFunds``,
  ``OrderNotFound``, ...): the venue answered and said no.

Units at this boundary are ccxt's: ``amount`` in base units (tokens, shares), ``price`` in quote
currency, ``timestamp`` in ms since the epoch UTC. The order manager converts to ns UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import ccxt

MS = 1_000_000  # ns per ms

# ccxt's unified order statuses (Order['status'])
STATUS_OPEN = "open"
STATUS_CLOSED = "closed"      # nothing rests any more; fully filled unless filled < amount (e.g. Bybit PartiallyFilledCanceled)
STATUS_CANCELED = "canceled"
STATUS_EXPIRED = "expired"
STATUS_REJECTED = "rejected"


@runtime_checkable
class VenueAdapter(Protocol):
    """The methods of a ccxt(.pro) exchange the order manager calls (all coroutines).

    ``create_order`` is sent with ``params`` holding ``clientOrderId`` (our client order id text),
    ``timeInForce`` ("GTC" / "IOC") and ``postOnly`` (bool). It returns a unified order dict (at least
    ``id``; ``status`` when the venue said it) or raises.

    ``fetch_order`` is called with the client id in ``params`` (see :attr:`VenueLink.client_id_params`)
    and must raise ``ccxt.OrderNotFound`` when the venue has no such order: that answer, together
    with ``fetch_open_orders`` and ``fetch_my_trades`` not showing it, is what lets an order whose
    create call was lost be declared absent.
    """

    async def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                           params: dict = {}) -> dict[str, Any]: ...

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]: ...

    async def fetch_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]: ...

    async def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                                params: dict = {}) -> list[dict[str, Any]]: ...

    async def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict = {}) -> list[dict[str, Any]]: ...

    async def fetch_balance(self, params: dict = {}) -> dict[str, Any]: ...


@runtime_checkable
class StreamingVenueAdapter(VenueAdapter, Protocol):
    """A venue with private streams (ccxt.pro): each call returns the updates since the last one."""

    async def watch_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                           params: dict = {}) -> list[dict[str, Any]]: ...

    async def watch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict = {}) -> list[dict[str, Any]]: ...


def strictly_increasing_nonce(exchange: Any) -> Any:
    """Make a ccxt exchange's nonces strictly increasing within the process (ccxt's Kraken nonce is the
    time in ms: two orders signed in one millisecond share it and the second is refused with
    ``EAPI:Invalid nonce``). ccxt documents overriding ``nonce`` for this; returns the exchange."""
    clock = type(exchange).nonce
    last = [0]

    def nonce() -> int:
        n = int(clock(exchange))
        last[0] = n if n > last[0] else last[0] + 1
        return last[0]

    exchange.nonce = nonce
    return exchange


ORDER_CALLS = ("create_order", "cancel_order")
_ORDER_CALL: ContextVar[bool] = ContextVar("stockbridge_order_call", default=False)


def orders_skip_the_queue(exchange: Any) -> Any:
    """Let a ccxt exchange's order calls (:data:`ORDER_CALLS`) leave without waiting in its rate
    limiter; its queries still do. Returns the exchange.

    ccxt's limiter is one first-in-first-out queue per exchange, released one call per pass of the
    event loop: an order waited behind the queries ahead of it (at Kraken a TradesHistory costs 6 s of
    budget and an AddOrder none), p50 278 ms / p99 1.0 s between ``create_order`` and its request at
    the 10x sandbox (``bench/live_latency.py``), 11 ms / 33 ms at Bybit. The venues limit orders apart
    from queries (Kraken: placing and cancelling do not count against the call counter; Bybit: a
    limit per endpoint), and the bot's own order-rate guard (``live.guards.max_orders_per_second``,
    ``order_burst``) holds each venue's orders to a budget below the venue's. Concurrent signed
    requests can reach Kraken out of nonce order: its API key's nonce window (Kraken recommends
    10-15 s) is what accepts them."""
    queued = exchange.throttle

    async def throttle(cost: Any = None) -> Any:
        if _ORDER_CALL.get():
            return None
        return await queued(cost)

    def unqueued(call: Callable[..., Any]) -> Callable[..., Any]:
        async def order_call(*args: Any, **kwargs: Any) -> Any:
            token = _ORDER_CALL.set(True)  # this task's context only: the call's own requests
            try:
                return await call(*args, **kwargs)
            finally:
                _ORDER_CALL.reset(token)
        return order_call

    exchange.throttle = throttle
    for name in ORDER_CALLS:
        setattr(exchange, name, unqueued(getattr(exchange, name)))
    return exchange


def _client_id_params(text: str) -> dict[str, Any]:
    return {"clientOrderId": text}


@dataclass(frozen=True)
class VenueLink:
    """One configured venue as the order manager sees it.

    ``name``: the config's venue name (journal, logs); ``adapter``: the exchange object;
    ``symbols``: instrument id (the core's) -> the venue's unified symbol ("AAPLX/USDT");
    ``instrument_names``: instrument id -> the config's instrument name; ``quote_currency`` and
    ``base_currency`` per instrument id convert a fee charged in the base asset into quote currency;
    ``client_id_params``: the ``params`` that make ``fetch_order`` find an order by our client id at
    this venue (ccxt's ``clientOrderId`` by default; e.g. ``{"orderLinkId": ..., "acknowledged": True}``
    for Bybit v5); ``find_by_client_id``: for a venue whose ``fetch_order`` cannot look an order up
    by our client id, ``async (adapter, symbol, text, since_ms) -> order dict`` raising
    ``ccxt.OrderNotFound`` when absent (used instead of ``fetch_order`` for an order with no venue id);
    ``find_by_client_ids``: the same for many at once, ``async (adapter, symbol, texts, since_ms) ->
    {client id: order dict}`` (start-up reconciliation: one search, not one per order).
    """

    name: str
    adapter: VenueAdapter
    symbols: Mapping[int, str]
    instrument_names: Mapping[int, str]
    base_currency: Mapping[int, str] = field(default_factory=dict)
    quote_currency: Mapping[int, str] = field(default_factory=dict)
    client_id_params: Callable[[str], dict[str, Any]] = _client_id_params
    find_by_client_id: Callable[..., Any] | None = None
    find_by_client_ids: Callable[..., Any] | None = None


def is_definite_refusal(exc: BaseException) -> bool:
    """True if ``exc`` is the venue's own "no" (the request reached it and was refused), its
    rate-limit error (venues refuse for rate before matching; execution.backoff raises it for a call
    it did not send), or its nonce or timestamp refusal (``InvalidNonce``: Kraken's ``EAPI:Invalid
    nonce``, Bybit's recv-window 10002; the signature check turns the request away before it is
    carried out, though ccxt files the error under NetworkError); False when we cannot know whether
    it reached the venue (other network errors, timeouts, anything not ccxt's)."""
    return isinstance(exc, (ccxt.ExchangeError, ccxt.RateLimitExceeded, ccxt.InvalidNonce))


def ms_to_ns(ms: float | int | None) -> int | None:
    """ccxt's ms timestamp -> ns UTC (None stays None)."""
    return None if ms is None else int(ms) * MS


def mentions_client_id(item: Mapping[str, Any], text: str) -> bool:
    """Whether a unified order or trade dict belongs to client id ``text``: its ``clientOrderId``,
    or, for trades (ccxt's unified trade has no client id), any top-level value of the venue's raw
    ``info`` equal to it (Bybit ``orderLinkId``, Kraken ``cl_ord_id``, Alpaca ``client_order_id``).
    Our ids are 15 characters of [0-9a-z] starting "sb": an exact match is not a coincidence."""
    if item.get("clientOrderId") == text:
        return True
    info = item.get("info")
    return isinstance(info, Mapping) and any(v == text for v in info.values())


__all__ = ["MS", "ORDER_CALLS", "orders_skip_the_queue", "strictly_increasing_nonce", "STATUS_CANCELED", "STATUS_CLOSED", "STATUS_EXPIRED", "STATUS_OPEN", "STATUS_REJECTED",
           "StreamingVenueAdapter", "VenueAdapter", "VenueLink", "is_definite_refusal", "mentions_client_id", "ms_to_ns"]
