"""The equity broker (Alpaca, through alpaca-py) with a ccxt.pro exchange's face.

:class:`AlpacaVenue` wraps alpaca-py's ``TradingClient`` (REST, synchronous), ``TradingStream``
(``trade_updates``) and ``StockDataStream`` (quotes, trades) and exposes the coroutines the order
manager and the runner call on a ccxt.pro exchange (execution.venue.StreamingVenueAdapter):
``load_markets``, ``create_order``, ``cancel_order``, ``cancel_all_orders``, ``fetch_order``,
``fetch_open_orders``, ``fetch_my_trades``, ``fetch_balance``, ``watch_orders``,
``watch_my_trades``, ``watch_order_book``, ``watch_trades`` and ``close``, with ccxt's unified
dicts and ccxt's exception classes.

How Alpaca differs, and what this adapter does about it:

- **Sessions.** In pre-market and after-hours Alpaca takes only limit orders with
  ``time_in_force=day`` and ``extended_hours=true``. Each ``create_order`` decides the session at
  the time of the call: ``params['extendedHours']`` if given; else the ``session_state`` callable
  (stockbridge.sessions codes or names) if the constructor got one; else the broker's clock
  (``/v2/clock``, cached ``clock_ttl_s`` and never past the next open/close it announced): open ->
  regular hours, closed -> an extended-hours order (the broker refuses it when it is overnight or a
  closed day: ``ccxt.MarketClosed``). An IOC in extended hours is sent as a DAY limit and what is
  left of it is cancelled ``extended_ioc_cancel_s`` after the reply (the stream reports it
  canceled); a GTC becomes DAY. A market order in extended hours, or a known-closed session, is
  refused here (``ccxt.InvalidOrder`` / ``ccxt.MarketClosed``) without a call.
- **No post-only.** ``postOnly=True`` is refused (``ccxt.NotSupported``): Alpaca cannot promise it.
- **Trade ids.** A fill's id is ``"<order id>:<cumulative filled qty>"``: the stream's fill event
  (its order's ``filled_qty``), the account activities FILL (``cum_qty``) and an order's fills
  all give it, so the stream's and REST's copies of one fill dedupe in the order manager. The
  stream's ``execution_id`` stays in ``info``. Where the broker serves no ``/v2/account/activities``
  (the sandbox emulator), ``fetch_my_trades`` derives fills from the orders' ``filled_qty`` /
  ``filled_avg_price``: the fills this adapter already saw keep their ids, the rest of an order's
  filled size is one fill named by the order's cumulative qty.
- **Fees.** Alpaca reports none in its messages. The fee of a fill is computed from the
  constructor's ``maker_fee_bps`` / ``taker_fee_bps`` (the config's; the emulator charges those),
  taker when the order was IOC/FOK/market, filled at a better price than its limit, or filled
  within ``taker_window_ms`` of its submission; maker otherwise. Currency USD.
- **Errors.** alpaca-py's ``APIError`` (HTTP status + Alpaca code + message) becomes ccxt's
  class: 401 AuthenticationError, 403 InsufficientFunds (buying power / qty) / MarketClosed /
  OperationRejected (halted) / PermissionDenied, 404 OrderNotFound (BadSymbol for assets), 422
  InvalidOrder (DuplicateOrderId, OrderNotFound for "not cancelable"), other 4xx BadRequest, 429
  RateLimitExceeded, 504 RequestTimeout, other 5xx ExchangeNotAvailable; a connection error
  ExchangeNotAvailable, no answer within ``timeout_s`` RequestTimeout. alpaca-py's own retry of
  429/504 (with 3 s sleeps) is switched off: the order manager decides what a lost answer means.
- **Threads.** TradingClient is synchronous: every call runs in this adapter's own thread pool
  under ``asyncio.wait_for(timeout_s)``, and its requests session gets a socket timeout of
  ``timeout_s`` (requests has none by default), so no thread outlives a call by much.
- **Streams** run as tasks in the caller's loop (alpaca-py's ``_run_forever``, their reconnects).
  A dropped connection makes the pending (or else the next) ``watch_*`` call raise
  ``ccxt.NetworkError`` once, as ccxt.pro does, so the caller reconciles; updates after the
  reconnect keep flowing. ``close()`` stops streams, pending cancels and the thread pool.
- **Book.** Alpaca's stock stream is top-of-book only: ``watch_order_book`` returns one level a
  side (``book_is_l1 = True``), from the quote's bid/ask price and size.
- **Secrets** (key and secret) are never in exceptions, logs or ``repr``: messages are built here
  and scrubbed, exceptions are raised ``from None`` (alpaca-py's carry the request and its
  headers), and a scrubbing filter sits on the websockets and alpaca loggers while the adapter runs.

Units at this boundary are ccxt's: amounts in shares, prices USD, timestamps ms UTC (the broker's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import ccxt

log = logging.getLogger("stockbridge.alpaca")

FEED_MAX = 10_000  # updates kept per unread feed

# Alpaca order status -> ccxt's
_STATUS = {
    "new": "open", "accepted": "open", "pending_new": "open", "accepted_for_bidding": "open",
    "partially_filled": "open", "pending_cancel": "open", "pending_replace": "open", "held": "open",
    "done_for_day": "open", "stopped": "open", "suspended": "open", "calculated": "closed",
    "filled": "closed", "canceled": "canceled", "cancelled": "canceled", "replaced": "canceled",
    "expired": "expired", "rejected": "rejected",
}
_TIF_OUT = {"gtc": "GTC", "ioc": "IOC", "fok": "FOK", "day": "DAY", "opg": "OPG", "cls": "CLS"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def fmt_num(x: float) -> str:
    """A decimal as Alpaca's JSON writes it: at most 9 decimals, no trailing zeros."""
    s = f"{float(x):.9f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def fill_id(order_id: str, cum_qty: float) -> str:
    """The trade id of the fill that brought order ``order_id`` to ``cum_qty`` filled."""
    return f"{order_id}:{fmt_num(cum_qty)}"


def iso_ns(text: Any) -> int | None:
    """An RFC 3339 time (Alpaca's, with up to 9 fraction digits) -> ns UTC."""
    if text is None or text == "":
        return None
    if isinstance(text, datetime):
        dt = text if text.tzinfo else text.replace(tzinfo=timezone.utc)
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    m = _ISO.match(str(text).strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, tz = m.groups()
    tz = "+00:00" if tz in (None, "Z") else (tz if ":" in tz else tz[:3] + ":" + tz[3:])
    sec = int(datetime.fromisoformat(base + tz).timestamp())
    return sec * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


def iso_ms(text: Any) -> int | None:
    ns = iso_ns(text)
    return None if ns is None else ns // 1_000_000


def _ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1e3, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _f(x: Any) -> float | None:
    if x is None or x == "":
        return None
    return float(x)


def _plain(obj: Any) -> Any:
    """alpaca-py models (when a client is not in raw mode) -> JSON-like dicts."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def _ns_of_stream_time(t: Any) -> int | None:
    """A market-data ``t``: msgpack Timestamp (raw frames), datetime (parsed), or RFC 3339 text."""
    if t is None:
        return None
    if hasattr(t, "to_unix_nano"):
        return int(t.to_unix_nano())
    return iso_ns(t)


class _Feed:
    """Updates since the last read; a read waits for at least one. ``fail`` makes the pending (or
    else the next) read raise once."""

    def __init__(self, maxlen: int = FEED_MAX):
        self.items: deque = deque(maxlen=maxlen)
        self.event = asyncio.Event()
        self.error: BaseException | None = None

    def push(self, item: Any) -> None:
        self.items.append(item)
        self.event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.event.set()

    async def take(self) -> list:
        while True:
            if self.error is not None:
                exc, self.error = self.error, None
                if not self.items:
                    self.event.clear()
                raise exc
            if self.items:
                out = list(self.items)
                self.items.clear()
                self.event.clear()
                return out
            self.event.clear()
            await self.event.wait()


class _BookFeed:
    """The latest L1 book of one symbol; a read returns it once it changed since the last read."""

    def __init__(self):
        self.book: dict[str, Any] | None = None
        self.version = 0
        self.read_version = 0
        self.event = asyncio.Event()
        self.error: BaseException | None = None

    def update(self, book: dict[str, Any]) -> None:
        self.book = book
        self.version += 1
        self.event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.event.set()

    async def take(self) -> dict[str, Any]:
        while True:
            if self.error is not None:
                exc, self.error = self.error, None
                raise exc
            if self.book is not None and self.version > self.read_version:
                self.read_version = self.version
                self.event.clear()
                b = self.book
                return {**b, "bids": [list(x) for x in b["bids"]], "asks": [list(x) for x in b["asks"]]}
            self.event.clear()
            await self.event.wait()


class _ScrubFilter(logging.Filter):
    """Replaces the secrets in every record that passes (websockets logs frames at DEBUG, the
    authentication frame included)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left as it is
            return True
        clean = msg
        for s in self.secrets:
            clean = clean.replace(s, "***")
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


_SCRUBBED_LOGGERS = ("websockets", "websockets.client", "websockets.protocol", "alpaca", "alpaca.trading.stream",
                     "alpaca.data.live.websocket", "urllib3.connectionpool", "stockbridge.alpaca")


class AlpacaVenue:
    """Alpaca through alpaca-py as a ccxt.pro-like exchange (see the module docstring).

    ``trading``: ``alpaca.trading.client.TradingClient``; ``trade_stream``:
    ``alpaca.trading.stream.TradingStream``; ``data_stream``:
    ``alpaca.data.live.stock.StockDataStream`` (either stream may be None: its ``watch_*`` then raise
    ``ccxt.NotSupported``). The adapter takes them over: it sets their raw-data mode, switches off
    the REST client's own retries and gives its HTTP session a socket timeout.

    ``symbols``: the unified symbols to load (the config's, e.g. ``["AAPL"]``; ``"AAPL/USD"`` is
    accepted too); None loads every active US equity. ``timeout_s``: bound of every REST call.
    ``session_state``: optional ``() -> stockbridge.sessions state`` (code or name) deciding regular
    vs extended hours per order instead of the broker's clock. ``maker_fee_bps`` /
    ``taker_fee_bps``: the commission model of the fills (see the module docstring).
    """

    id = "alpaca"
    name = "Alpaca"
    book_is_l1 = True   # watch_order_book gives the top of book only (one level a side)
    book_depth = 1
    precisionMode = ccxt.TICK_SIZE  # market precision values are tick sizes, as ccxt's TICK_SIZE mode
    has = {"createOrder": True, "cancelOrder": True, "cancelAllOrders": True, "fetchOrder": True,
           "fetchOpenOrders": True, "fetchMyTrades": True, "fetchBalance": True, "watchOrders": True,
           "watchMyTrades": True, "watchOrderBook": True, "watchTrades": True, "createOrderWs": False,
           "cancelOrderWs": False}

    def __init__(self, trading: Any, trade_stream: Any = None, data_stream: Any = None, *,
                 symbols: Iterable[str] | None = None, timeout_s: float = 10.0,
                 session_state: Callable[[], int | str] | None = None, clock_ttl_s: float = 1.0,
                 extended_ioc_cancel_s: float = 0.25, maker_fee_bps: float = 0.0, taker_fee_bps: float = 0.0,
                 taker_window_ms: float = 0.0, max_threads: int = 8):
        self._trading = trading
        self._tstream = trade_stream
        self._dstream = data_stream
        self.timeout_s = float(timeout_s)
        self.session_state = session_state
        self.clock_ttl_s = float(clock_ttl_s)
        self.extended_ioc_cancel_s = float(extended_ioc_cancel_s)
        self.maker_fee_bps, self.taker_fee_bps = float(maker_fee_bps), float(taker_fee_bps)
        self.taker_window_ms = float(taker_window_ms)
        self._wanted = [self._aid(s) for s in symbols] if symbols is not None else None
        self._unified: dict[str, str] = {self._aid(s): s for s in (symbols or ())}
        self.markets: dict[str, dict[str, Any]] = {}
        self.symbols: list[str] = []
        self._secrets = tuple(s for s in (getattr(trading, "_api_key", None), getattr(trading, "_secret_key", None),
                                          getattr(trading, "_oauth_token", None)) if s)
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="alpaca-rest")
        self._prepare_rest(max_threads)
        self._closing = False
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._stream_tasks: dict[str, asyncio.Task] = {}
        self._clock_cache: tuple[float, dict[str, Any]] | None = None
        self._activities = True  # the broker serves /v2/account/activities (False once it answered 404)
        self._client_ids: dict[str, str] = {}             # venue order id -> client order id
        self._by_client: dict[str, str] = {}              # client order id -> venue order id
        self._order_meta: dict[str, dict[str, Any]] = {}  # venue order id -> what liquidity needs
        self._seen_fills: dict[str, dict[str, tuple[float, float, int | None]]] = {}  # order id -> cum -> (qty, price, ms)
        self._ioc_emulated: set[str] = set()
        self._covered: dict[str, float] = {}  # order id -> cumulative qty REST's aggregate fill covers (no activities)
        self._order_feeds: dict[str | None, _Feed] = {}
        self._trade_feeds: dict[str | None, _Feed] = {}
        self._books: dict[str, _BookFeed] = {}
        self._tape: dict[str, _Feed] = {}
        self.connects = {"trading": 0, "data": 0}     # websocket connections made (reconnects = connects - 1)
        self._scrub = _ScrubFilter(self._secrets)
        for name in _SCRUBBED_LOGGERS:
            logging.getLogger(name).addFilter(self._scrub)
        for kind, stream in (("trading", self._tstream), ("data", self._dstream)):
            if stream is not None:
                stream._raw_data = True
                self._hook_stream(kind, stream)

    @classmethod
    def from_keys(cls, api_key: str, secret_key: str, *, paper: bool = True, rest_url: str | None = None,
                  trading_ws_url: str | None = None, data_ws_url: str | None = None, feed: str = "iex",
                  **kwargs: Any) -> "AlpacaVenue":
        """Build the three alpaca-py clients (paper or live endpoints, or the given URLs) and the adapter."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.live.stock import StockDataStream
        from alpaca.trading.client import TradingClient
        from alpaca.trading.stream import TradingStream

        trading = TradingClient(api_key, secret_key, paper=paper, raw_data=True, url_override=rest_url)
        tstream = TradingStream(api_key, secret_key, paper=paper, raw_data=True, url_override=trading_ws_url)
        dstream = StockDataStream(api_key, secret_key, raw_data=True, feed=DataFeed(feed), url_override=data_ws_url)
        return cls(trading, tstream, dstream, **kwargs)

    @classmethod
    def from_sandbox(cls, sv: Any, **kwargs: Any) -> "AlpacaVenue":
        """The adapter for a sandbox Alpaca emulator (execution.sandbox.sandbox.SandboxVenue);
        ``kwargs`` as the constructor's (e.g. the config venue's fees)."""
        u = sv.urls()
        return cls.from_keys(sv.api_key, sv.secret, paper=True, rest_url=u["rest"], trading_ws_url=u["ws_trading"],
                             data_ws_url=u["ws_data"], **kwargs)

    def __repr__(self) -> str:
        return f"AlpacaVenue(symbols={sorted(self.markets) or self._wanted}, timeout_s={self.timeout_s})"

    # -- REST plumbing ----------------------------------------------------------------------------

    def _prepare_rest(self, pool: int) -> None:
        from requests.adapters import HTTPAdapter

        timeout = self.timeout_s

        class _TimeoutAdapter(HTTPAdapter):
            def send(self, request, **kw):  # type: ignore[override]
                if kw.get("timeout") is None:
                    kw["timeout"] = timeout
                return super().send(request, **kw)

        session = getattr(self._trading, "_session", None)
        if session is not None:
            for prefix in ("http://", "https://"):
                session.mount(prefix, _TimeoutAdapter(pool_connections=pool, pool_maxsize=pool))
        if hasattr(self._trading, "_retry"):
            self._trading._retry = 0  # no sleeping retries inside a call: a 429 / 504 is the caller's to judge

    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    async def _rest(self, method: str, path: str, data: Any = None, *, what: str, not_found: type = ccxt.OrderNotFound) -> Any:
        """One REST call in the pool, bounded by ``timeout_s``; errors as ccxt's classes."""
        import requests

        if self._closed:
            raise ccxt.ExchangeClosedByUser("alpaca: the adapter is closed")
        fn = getattr(self._trading, method.lower())  # RESTClient.get / post / delete
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, functools.partial(fn, path, data))
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError:
            raise ccxt.RequestTimeout(f"alpaca {what}: no answer within {self.timeout_s:g} s") from None
        except requests.exceptions.Timeout:
            raise ccxt.RequestTimeout(f"alpaca {what}: no answer within {self.timeout_s:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise ccxt.ExchangeNotAvailable(self._clean(f"alpaca {what}: connection failed ({type(exc).__name__})")) from None
        except requests.exceptions.RequestException as exc:
            raise ccxt.NetworkError(self._clean(f"alpaca {what}: {type(exc).__name__}")) from None
        except Exception as exc:
            if type(exc).__name__ == "APIError":
                raise self._map_error(exc, what, not_found) from None
            if isinstance(exc, ValueError):  # a body that is not JSON: whether the call took effect is unknown
                raise ccxt.NetworkError(self._clean(f"alpaca {what}: unreadable answer ({type(exc).__name__})")) from None
            raise

    def _map_error(self, exc: Any, what: str, not_found: type) -> ccxt.BaseError:
        status = getattr(exc, "status_code", None)
        text = str(getattr(exc, "_error", "") or exc)
        code, msg = None, text
        try:
            body = json.loads(text)
            if isinstance(body, dict):
                code, msg = body.get("code"), str(body.get("message", text))
        except ValueError:
            pass
        low = msg.lower()
        line = self._clean(f"alpaca {what}: HTTP {status} code {code}: {msg}")[:400]
        if status == 401:
            cls = ccxt.AuthenticationError
        elif status == 403:
            if "insufficient" in low or "buying power" in low:
                cls = ccxt.InsufficientFunds
            elif "market is closed" in low or "not open" in low or "outside" in low:
                cls = ccxt.MarketClosed
            elif "halt" in low or "not tradable" in low:
                cls = ccxt.OperationRejected
            else:
                cls = ccxt.PermissionDenied
        elif status == 404:
            cls = not_found
        elif status == 422:
            if "unique" in low or "duplicate" in low:
                cls = ccxt.DuplicateOrderId
            elif "not cancelable" in low or "not cancellable" in low:
                cls = ccxt.OrderNotFound
            elif "insufficient" in low:
                cls = ccxt.InsufficientFunds
            elif "asset not found" in low or "not found" in low and "asset" in low:
                cls = ccxt.BadSymbol
            else:
                cls = ccxt.InvalidOrder
        elif status == 429:
            cls = ccxt.RateLimitExceeded
        elif status == 504:
            cls = ccxt.RequestTimeout
        elif status is not None and 500 <= status <= 599:
            cls = ccxt.ExchangeNotAvailable
        elif status is not None and 400 <= status <= 499:
            cls = ccxt.BadRequest
        else:
            cls = ccxt.NetworkError  # no status: nothing says the broker answered
        return cls(line)

    # -- markets ----------------------------------------------------------------------------------

    @staticmethod
    def _aid(symbol: str) -> str:
        """Unified symbol -> Alpaca's ('AAPL/USD' or 'AAPL' -> 'AAPL')."""
        return str(symbol).split("/")[0].split(":")[0]

    def _sym(self, aid: str) -> str:
        return self._unified.get(aid, aid)

    def market(self, symbol: str) -> dict[str, Any]:
        m = self.markets.get(symbol) or self.markets.get(self._sym(self._aid(symbol)))
        if m is None:
            raise ccxt.BadSymbol(f"alpaca: no market {symbol!r} loaded")
        return m

    def _market_of(self, asset: Mapping[str, Any]) -> dict[str, Any]:
        aid = str(asset["symbol"])
        fractionable = bool(asset.get("fractionable"))
        tick = _f(asset.get("price_increment")) or 0.01
        lot = _f(asset.get("min_trade_increment")) or (1e-9 if fractionable else 1.0)
        min_qty = _f(asset.get("min_order_size")) or lot
        active = asset.get("status", "active") == "active" and bool(asset.get("tradable", True))
        return {"id": aid, "symbol": self._sym(aid), "base": aid, "quote": "USD", "settle": None, "baseId": aid,
                "quoteId": "USD", "type": "spot", "spot": True, "margin": False, "swap": False, "future": False,
                "option": False, "contract": False, "active": active, "fractionable": fractionable,
                "taker": self.taker_fee_bps / 1e4, "maker": self.maker_fee_bps / 1e4,
                "precision": {"price": tick, "amount": lot},
                "limits": {"amount": {"min": min_qty, "max": None}, "price": {"min": tick, "max": None},
                           "cost": {"min": None, "max": None}},
                "info": dict(asset)}

    async def load_markets(self, reload: bool = False, params: dict = {}) -> dict[str, dict[str, Any]]:
        """symbol -> ccxt market (``precision`` price tick / amount lot, ``limits``) from the broker's assets."""
        if self.markets and not reload:
            return self.markets
        if self._wanted is not None:
            assets = [await self._rest("GET", f"/assets/{aid}", what=f"asset {aid}", not_found=ccxt.BadSymbol)
                      for aid in self._wanted]
        else:
            assets = await self._rest("GET", "/assets", {"status": "active", "asset_class": "us_equity"}, what="assets")
        markets = {}
        for a in assets:
            m = self._market_of(_plain(a))
            markets[m["symbol"]] = m
        self.markets = markets
        self.symbols = sorted(markets)
        return markets

    # -- sessions ---------------------------------------------------------------------------------

    async def fetch_clock(self) -> dict[str, Any]:
        """The broker's clock (``is_open``, ``next_open``, ``next_close``, ``timestamp``), cached
        ``clock_ttl_s`` and never past the next open or close it announced."""
        now = time.monotonic()
        if self._clock_cache is not None and now < self._clock_cache[0]:
            return self._clock_cache[1]
        c = _plain(await self._rest("GET", "/clock", what="clock"))
        expires = now + self.clock_ttl_s
        try:
            broker_now = iso_ns(c.get("timestamp"))
            nxt = min(t for t in (iso_ns(c.get("next_open")), iso_ns(c.get("next_close"))) if t is not None)
            if broker_now is not None:
                expires = min(expires, now + max(0.0, (nxt - broker_now) / 1e9))
        except (ValueError, TypeError):
            pass
        self._clock_cache = (expires, c)
        return c

    async def _session(self, params: Mapping[str, Any]) -> str:
        """'regular', 'extended' (pre / after hours) or 'closed' for an order sent now."""
        if params.get("extendedHours") is not None:
            return "extended" if params["extendedHours"] else "regular"
        if self.session_state is not None:
            from stockbridge.sessions import AFTER, PRE, REGULAR, STATE_CODES

            st = self.session_state()
            st = STATE_CODES[st] if isinstance(st, str) else int(st)
            return "regular" if st == REGULAR else "extended" if st in (PRE, AFTER) else "closed"
        try:
            clock = await self.fetch_clock()
        except ccxt.BaseError as exc:
            # nothing was sent: a definite "no" (the core decides again), not an unknown order
            raise ccxt.OperationRejected(f"alpaca: order not sent, the session is unknown ({type(exc).__name__}: {exc})") from None
        return "regular" if clock.get("is_open") else "extended"

    # -- orders -----------------------------------------------------------------------------------

    def _remember(self, o: Mapping[str, Any]) -> None:
        oid = str(o.get("id"))
        if o.get("client_order_id"):
            self._client_ids[oid] = str(o["client_order_id"])
            self._by_client[str(o["client_order_id"])] = oid
        self._order_meta[oid] = {"type": o.get("order_type") or o.get("type"), "tif": o.get("time_in_force"),
                                 "limit": _f(o.get("limit_price")), "side": o.get("side"),
                                 "created_ms": iso_ms(o.get("submitted_at") or o.get("created_at")),
                                 "symbol": o.get("symbol")}

    def _order(self, o: Any) -> dict[str, Any]:
        """Alpaca's order JSON -> ccxt's unified order."""
        o = _plain(o)
        self._remember(o)
        amount, filled = _f(o.get("qty")), _f(o.get("filled_qty")) or 0.0
        avg = _f(o.get("filled_avg_price"))
        ts = iso_ms(o.get("submitted_at") or o.get("created_at"))
        upd = iso_ms(o.get("updated_at"))
        status = _STATUS.get(str(o.get("status")), "open")
        tif = str(o.get("time_in_force") or "").lower()
        return {"id": str(o["id"]), "clientOrderId": o.get("client_order_id"), "timestamp": ts,
                "datetime": None if ts is None else _ms_iso(ts), "lastTradeTimestamp": iso_ms(o.get("filled_at")),
                "lastUpdateTimestamp": upd, "symbol": self._sym(str(o.get("symbol"))),
                "type": o.get("order_type") or o.get("type"), "timeInForce": _TIF_OUT.get(tif, tif.upper() or None),
                "postOnly": False, "reduceOnly": None, "side": o.get("side"), "price": _f(o.get("limit_price")),
                "triggerPrice": _f(o.get("stop_price")), "amount": amount, "filled": filled,
                "remaining": None if amount is None else max(amount - filled, 0.0) if status == "open" else 0.0,
                "average": avg, "cost": filled * avg if avg is not None else 0.0, "status": status, "fee": None,
                "trades": [], "extendedHours": bool(o.get("extended_hours")), "info": o}

    async def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                           params: dict = {}) -> dict[str, Any]:
        """A limit (or market) order; ``params``: ``clientOrderId``, ``timeInForce`` GTC / IOC / FOK /
        DAY, ``postOnly``, ``extendedHours`` (overrides the session rule)."""
        params = dict(params or {})
        aid = self._aid(symbol)
        if params.get("postOnly"):
            raise ccxt.NotSupported("alpaca: post-only orders do not exist at Alpaca")
        if type not in ("limit", "market"):
            raise ccxt.InvalidOrder(f"alpaca: order type {type!r} is not supported (limit, market)")
        tif = str(params.get("timeInForce") or ("GTC" if type == "limit" else "DAY")).upper()
        if tif not in ("GTC", "IOC", "FOK", "DAY"):
            raise ccxt.InvalidOrder(f"alpaca: time in force {tif!r} is not supported")
        if not (amount is not None and math.isfinite(float(amount)) and float(amount) > 0):
            raise ccxt.InvalidOrder(f"alpaca: amount must be > 0, got {amount}")
        session = await self._session(params)
        if session == "closed":
            raise ccxt.MarketClosed(f"alpaca {aid}: the market is closed (no regular or extended session now)")
        body: dict[str, Any] = {"symbol": aid, "qty": fmt_num(amount), "side": side, "type": type}
        emulate_ioc = False
        if session == "extended":
            if type != "limit":
                raise ccxt.InvalidOrder(f"alpaca {aid}: only limit orders are accepted in extended hours")
            body.update(time_in_force="day", extended_hours=True)
            emulate_ioc = tif in ("IOC", "FOK")
        else:
            body["time_in_force"] = tif.lower()
        if type == "limit":
            if price is None or not (math.isfinite(float(price)) and float(price) > 0):
                raise ccxt.InvalidOrder(f"alpaca {aid}: a limit order needs a price > 0, got {price}")
            body["limit_price"] = fmt_num(price)
        if params.get("clientOrderId"):
            body["client_order_id"] = str(params["clientOrderId"])
        reply = await self._rest("POST", "/orders", body, what=f"create order {body.get('client_order_id', '')}".strip())
        od = self._order(reply)
        if emulate_ioc:
            self._ioc_emulated.add(od["id"])
            if od["status"] == "open":
                self._spawn(self._cancel_later(od["id"]))
        return od

    async def _cancel_later(self, order_id: str) -> None:
        await asyncio.sleep(self.extended_ioc_cancel_s)
        try:
            await self.cancel_order(order_id)
        except ccxt.OrderNotFound:
            pass  # finished (filled) first
        except ccxt.BaseError as exc:
            log.warning("alpaca: cancelling the rest of extended-hours IOC %s failed: %s", order_id, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_id(self, id: str | None, params: Mapping[str, Any]) -> str:
        """The venue order id for ``id`` / ``params['clientOrderId']`` (a lookup by client id when
        ``id`` is not one of Alpaca's UUIDs)."""
        if id and _UUID.match(str(id)):
            return str(id)
        cid = params.get("clientOrderId") or id
        if cid in self._by_client:
            return self._by_client[cid]
        return (await self.fetch_order(str(id or cid), None, {"clientOrderId": cid}))["id"]

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]:
        """Ask the broker to cancel; the outcome (canceled, or filled first) comes by the stream or
        fetch_order. OrderNotFound when the broker has no such live order."""
        oid = await self._resolve_id(id, params or {})
        await self._rest("DELETE", f"/orders/{oid}", what=f"cancel order {oid}")
        return {"id": oid, "clientOrderId": self._client_ids.get(oid), "status": None, "info": None}

    async def cancel_all_orders(self, symbol: str | None = None, params: dict = {}) -> list[dict[str, Any]]:
        """Cancel every open order (of ``symbol`` only, when given); returns what was cancelled."""
        if symbol is None:
            res = await self._rest("DELETE", "/orders", what="cancel all orders") or []
            return [self._order(r["body"]) if isinstance(r, Mapping) and r.get("body") else
                    {"id": str(r.get("id")) if isinstance(r, Mapping) else None, "status": None, "info": r} for r in res]
        out = []
        for od in await self.fetch_open_orders(symbol):
            try:
                await self.cancel_order(od["id"])
                out.append(od)
            except ccxt.OrderNotFound:
                pass
        return out

    async def fetch_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]:
        """By ``params['clientOrderId']`` when given (or when ``id`` is not an Alpaca UUID), else by
        venue id; ``ccxt.OrderNotFound`` when the broker has no such order."""
        params = params or {}
        cid = params.get("clientOrderId")
        if cid is None and id and not _UUID.match(str(id)):
            cid = id
        if cid is not None:
            o = await self._rest("GET", "/orders:by_client_order_id", {"client_order_id": cid}, what=f"order {cid}")
        else:
            o = await self._rest("GET", f"/orders/{id}", what=f"order {id}")
        return self._order(o)

    async def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                                params: dict = {}) -> list[dict[str, Any]]:
        q: dict[str, Any] = {"status": "open", "limit": min(int(limit or 500), 500), "direction": "asc"}
        if symbol is not None:
            q["symbols"] = self._aid(symbol)
        if since is not None:
            q["after"] = _ms_iso(int(since))
        rows = await self._rest("GET", "/orders", q, what="open orders") or []
        return [self._order(o) for o in rows]

    async def fetch_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                           params: dict = {}) -> list[dict[str, Any]]:
        """Every order (open and closed), newest first, at most 500."""
        q: dict[str, Any] = {"status": "all", "limit": min(int(limit or 500), 500), "direction": "desc"}
        if symbol is not None:
            q["symbols"] = self._aid(symbol)
        if since is not None:
            q["after"] = _ms_iso(int(since))
        rows = await self._rest("GET", "/orders", q, what="orders") or []
        return [self._order(o) for o in rows]

    # -- fills ------------------------------------------------------------------------------------

    def _liquidity(self, oid: str, price: float, ts_ms: int | None) -> str:
        m = self._order_meta.get(oid) or {}
        if m.get("type") == "market" or str(m.get("tif") or "").lower() in ("ioc", "fok") or oid in self._ioc_emulated:
            return "taker"
        lim = m.get("limit")
        if lim is not None:
            if (m.get("side") == "buy" and price < lim - 1e-9) or (m.get("side") == "sell" and price > lim + 1e-9):
                return "taker"
        created = m.get("created_ms")
        if created is not None and ts_ms is not None and ts_ms - created <= self.taker_window_ms:
            return "taker"
        return "maker"

    def _trade(self, oid: str, cum: float, qty: float, price: float, ts_ms: int | None, side: str | None,
               symbol: str | None, info: dict[str, Any]) -> dict[str, Any]:
        liq = self._liquidity(oid, price, ts_ms)
        bps = self.taker_fee_bps if liq == "taker" else self.maker_fee_bps
        self._seen_fills.setdefault(oid, {})[fmt_num(cum)] = (qty, price, ts_ms)
        cid = self._client_ids.get(oid)
        info = {**info, "order_id": oid, "client_order_id": cid, "cum_qty": fmt_num(cum)}
        return {"id": fill_id(oid, cum), "order": oid, "clientOrderId": cid,
                "symbol": self._sym(str(symbol)) if symbol else None, "timestamp": ts_ms,
                "datetime": None if ts_ms is None else _ms_iso(ts_ms), "type": (self._order_meta.get(oid) or {}).get("type"),
                "side": side, "takerOrMaker": liq, "price": price, "amount": qty, "cost": price * qty,
                "fee": {"cost": price * qty * bps / 1e4, "currency": "USD"}, "info": info}

    async def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict = {}) -> list[dict[str, Any]]:
        """Our fills since ``since`` (ms, inclusive), oldest first: account activities FILL where the
        broker serves them, else derived from the orders (see the module docstring)."""
        if self._activities:
            try:
                out = await self._fills_from_activities(symbol, since)
                return out[-limit:] if limit else out
            except ccxt.OrderNotFound:  # 404: this broker has no activities endpoint
                self._activities = False
        out = await self._fills_from_orders(symbol, since)
        return out[-limit:] if limit else out

    async def _fills_from_activities(self, symbol: str | None, since: int | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        aid = None if symbol is None else self._aid(symbol)
        for _ in range(100):  # pages of 100
            q: dict[str, Any] = {"direction": "asc", "page_size": 100}
            if since is not None:
                q["after"] = _ms_iso(int(since) - 1)
            if token:
                q["page_token"] = token
            rows = await self._rest("GET", "/account/activities/FILL", q, what="fills") or []
            for a in rows:
                a = _plain(a)
                if aid is not None and a.get("symbol") != aid:
                    continue
                oid = str(a["order_id"])
                if oid not in self._client_ids:
                    with contextlib.suppress(ccxt.BaseError):
                        await self.fetch_order(oid)
                ts = iso_ms(a.get("transaction_time"))
                if since is not None and ts is not None and ts < since:
                    continue
                out.append(self._trade(oid, float(a["cum_qty"]), float(a["qty"]), float(a["price"]), ts, a.get("side"),
                                       a.get("symbol"), {"activity_id": a.get("id"), "source": "activities"}))
            if len(rows) < 100:
                break
            token = rows[-1].get("id")
        return out

    async def _fills_from_orders(self, symbol: str | None, since: int | None) -> list[dict[str, Any]]:
        q: dict[str, Any] = {"status": "all", "limit": 500, "direction": "desc"}
        if symbol is not None:
            q["symbols"] = self._aid(symbol)
        rows = await self._rest("GET", "/orders", q, what="orders (fills)") or []
        out: list[dict[str, Any]] = []
        for o in rows:
            o = _plain(o)
            self._remember(o)
            filled = _f(o.get("filled_qty")) or 0.0
            if filled <= 0:
                continue
            oid = str(o["id"])
            ts = iso_ms(o.get("filled_at") or o.get("updated_at"))
            if since is not None and ts is not None and ts < since:
                continue
            avg = _f(o.get("filled_avg_price")) or 0.0
            seen = self._seen_fills.get(oid, {})
            info = {"source": "orders", "client_order_id": o.get("client_order_id")}
            known = sorted(((float(c), q_, p, t) for c, (q_, p, t) in seen.items() if float(c) <= filled + 1e-9))
            trades = [self._trade(oid, c, q_, p, t, o.get("side"), o.get("symbol"), info) for c, q_, p, t in known]
            got_qty = sum(x[1] for x in known)
            if filled - got_qty > 1e-9:
                rest = filled - got_qty
                price = (filled * avg - sum(x[1] * x[2] for x in known)) / rest
                trades.append(self._trade(oid, filled, rest, price, ts, o.get("side"), o.get("symbol"), info))
                # fills up to here are in this one now: the stream's own copies of them, if they
                # come late, are not passed on (they would be counted twice)
                self._covered[oid] = max(self._covered.get(oid, 0.0), filled)
            out.extend(trades)
        out.sort(key=lambda t: (t["timestamp"] or 0, t["id"]))
        return out

    # -- balance ----------------------------------------------------------------------------------

    async def fetch_balance(self, params: dict = {}) -> dict[str, Any]:
        """ccxt's balance: USD (total = cash, free = non-marginable buying power) and every position
        as its base asset (total = qty, free = qty_available); loaded markets without a position at 0."""
        acct = _plain(await self._rest("GET", "/account", what="account"))
        positions = [_plain(p) for p in (await self._rest("GET", "/positions", what="positions") or [])]
        cash = float(acct.get("cash") or 0.0)
        free = _f(acct.get("non_marginable_buying_power"))
        if free is None:
            free = _f(acct.get("buying_power")) or cash
        free = min(free, cash) if cash >= 0 else free
        bal: dict[str, Any] = {"info": {"account": acct, "positions": positions}, "timestamp": None, "datetime": None,
                               "USD": {"free": free, "used": cash - free, "total": cash}}
        for m in self.markets.values():
            bal[m["base"]] = {"free": 0.0, "used": 0.0, "total": 0.0}
        for p in positions:
            qty = float(p.get("qty") or 0.0)
            avail = _f(p.get("qty_available"))
            avail = qty if avail is None else avail
            bal[str(p["symbol"])] = {"free": avail, "used": qty - avail, "total": qty}
        for k in ("free", "used", "total"):
            bal[k] = {a: v[k] for a, v in bal.items() if isinstance(v, dict) and k in v and a not in ("info",)}
        return bal

    # -- streams ----------------------------------------------------------------------------------

    def _hook_stream(self, kind: str, stream: Any) -> None:
        """Count connections and turn a dropped connection into a NetworkError for the watchers."""
        start, close = stream._start_ws, stream.close

        async def start_ws() -> None:
            await start()
            self.connects[kind] += 1
            if self.connects[kind] > 1:
                log.info("alpaca %s stream reconnected", kind)

        async def close_ws() -> None:
            was_open = getattr(stream, "_ws", None) is not None
            await close()
            if was_open and not self._closing:
                self._disconnected(kind)

        stream._start_ws = start_ws
        stream.close = close_ws

    def _disconnected(self, kind: str) -> None:
        log.warning("alpaca %s stream disconnected", kind)
        exc = ccxt.NetworkError(f"alpaca {kind} stream disconnected: updates may have been missed (alpaca-py reconnects)")
        if kind == "trading":
            for f in (*self._order_feeds.values(), *self._trade_feeds.values()):
                f.fail(exc)
        else:
            for f in (*self._books.values(), *self._tape.values()):
                f.fail(exc)

    def _start_trading_stream(self) -> None:
        if "trading" in self._stream_tasks:
            return
        if self._tstream is None:
            raise ccxt.NotSupported("alpaca: no TradingStream given")
        if self._closed:
            raise ccxt.ExchangeClosedByUser("alpaca: the adapter is closed")
        self._order_feeds.setdefault(None, _Feed())
        self._trade_feeds.setdefault(None, _Feed())
        self._tstream.subscribe_trade_updates(self._on_trade_update)
        self._stream_tasks["trading"] = asyncio.get_running_loop().create_task(self._tstream._run_forever())

    async def start(self, wait_s: float | None = None) -> bool:
        """Start the private stream now (else the first watch_orders / watch_my_trades does) and wait
        up to ``wait_s`` (default ``timeout_s``) for it to connect and listen; updates are buffered
        from then on. True if connected."""
        self._start_trading_stream()
        deadline = time.monotonic() + (self.timeout_s if wait_s is None else wait_s)
        while self.connects["trading"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.connects["trading"] > 0

    async def _on_trade_update(self, msg: Any) -> None:
        try:
            data = _plain(msg)
            data = data.get("data", data) if isinstance(data, dict) and "stream" in data else data
            self._apply_trade_update(data)
        except Exception:  # noqa: BLE001 - one bad message must not stop the stream
            log.exception("alpaca: a trade update could not be read")

    def _apply_trade_update(self, d: Mapping[str, Any]) -> None:
        event = str(d.get("event"))
        o = d.get("order") or {}
        od = self._order(o)
        od["info"] = dict(d)
        aid = str(o.get("symbol"))
        self._push(self._order_feeds, aid, od)
        if event in ("fill", "partial_fill") and d.get("qty") is not None:
            oid = od["id"]
            cum = od["filled"] or 0.0
            if cum <= self._covered.get(oid, -1.0) + 1e-9 and fmt_num(cum) not in self._seen_fills.get(oid, {}):
                log.info("alpaca: fill %s of order %s came after REST reported it in aggregate; not passed on", fmt_num(cum), oid)
                return
            info = {k: v for k, v in d.items() if k != "order"}
            info["event"] = event
            td = self._trade(oid, cum, float(d["qty"]), float(d["price"]), iso_ms(d.get("timestamp")), o.get("side"),
                             aid, info)
            self._push(self._trade_feeds, aid, td)

    def _push(self, feeds: dict[str | None, _Feed], aid: str, item: dict[str, Any]) -> None:
        for key, f in feeds.items():
            if key is None or key == aid:
                f.push(item)

    async def watch_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                           params: dict = {}) -> list[dict[str, Any]]:
        """Order updates (unified orders) since the last call; waits for at least one."""
        self._start_trading_stream()
        key = None if symbol is None else self._aid(symbol)
        return await self._order_feeds.setdefault(key, _Feed()).take()

    async def watch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict = {}) -> list[dict[str, Any]]:
        """Our fills (unified trades) since the last call; waits for at least one."""
        self._start_trading_stream()
        key = None if symbol is None else self._aid(symbol)
        return await self._trade_feeds.setdefault(key, _Feed()).take()

    async def _subscribe_data(self, channel: str, aid: str) -> None:
        ds = self._dstream
        if ds is None:
            raise ccxt.NotSupported("alpaca: no StockDataStream given")
        if self._closed:
            raise ccxt.ExchangeClosedByUser("alpaca: the adapter is closed")
        handlers = ds._handlers[channel]
        if aid in handlers:
            return
        handlers[aid] = self._on_quote if channel == "quotes" else self._on_tape
        if "data" not in self._stream_tasks:
            self._stream_tasks["data"] = asyncio.get_running_loop().create_task(ds._run_forever())
        elif getattr(ds, "_running", False):
            await ds._send_subscribe_msg()
        else:
            self._spawn(self._subscribe_when_connected())

    async def _subscribe_when_connected(self) -> None:
        ds = self._dstream
        for _ in range(3000):
            if getattr(ds, "_running", False):
                with contextlib.suppress(Exception):
                    await ds._send_subscribe_msg()
                return
            await asyncio.sleep(0.01)

    async def _on_quote(self, q: Any) -> None:
        try:
            if not isinstance(q, dict):
                q = {"S": q.symbol, "bp": q.bid_price, "bs": q.bid_size, "ap": q.ask_price, "as": q.ask_size, "t": q.timestamp}
            aid = str(q["S"])
            ns = _ns_of_stream_time(q.get("t"))
            bp, bs, ap, as_ = (float(q.get(k) or 0.0) for k in ("bp", "bs", "ap", "as"))
            ms = None if ns is None else ns // 1_000_000
            book = {"symbol": self._sym(aid), "bids": [[bp, bs]] if bp > 0 else [], "asks": [[ap, as_]] if ap > 0 else [],
                    "timestamp": ms, "datetime": None if ms is None else _ms_iso(ms), "nonce": None, "timestamp_ns": ns,
                    "info": {k: v for k, v in q.items() if k != "t"}}
            self._books.setdefault(aid, _BookFeed()).update(book)
        except Exception:  # noqa: BLE001
            log.exception("alpaca: a quote could not be read")

    async def _on_tape(self, t: Any) -> None:
        try:
            if not isinstance(t, dict):
                t = {"S": t.symbol, "p": t.price, "s": t.size, "i": t.id, "t": t.timestamp, "x": t.exchange}
            aid = str(t["S"])
            ns = _ns_of_stream_time(t.get("t"))
            ms = None if ns is None else ns // 1_000_000
            price, size = float(t["p"]), float(t["s"])
            td = {"id": None if t.get("i") is None else str(t["i"]), "symbol": self._sym(aid), "timestamp": ms,
                  "datetime": None if ms is None else _ms_iso(ms), "side": None, "price": price, "amount": size,
                  "cost": price * size, "order": None, "type": None, "takerOrMaker": None, "fee": None,
                  "timestamp_ns": ns, "info": {k: v for k, v in t.items() if k != "t"}}
            self._tape.setdefault(aid, _Feed()).push(td)
        except Exception:  # noqa: BLE001
            log.exception("alpaca: a trade could not be read")

    async def watch_order_book(self, symbol: str, limit: int | None = None, params: dict = {}) -> dict[str, Any]:
        """The top of book (bids = [[bid, bid size]], asks = [[ask, ask size]], ``timestamp`` ms of the
        quote) once it changed since the last call (the first call waits for the first quote)."""
        aid = self._aid(symbol)
        feed = self._books.setdefault(aid, _BookFeed())
        await self._subscribe_data("quotes", aid)
        return await feed.take()

    async def watch_trades(self, symbol: str, since: int | None = None, limit: int | None = None,
                           params: dict = {}) -> list[dict[str, Any]]:
        """Public trades (unified, ``side`` None: Alpaca does not say) since the last call."""
        aid = self._aid(symbol)
        feed = self._tape.setdefault(aid, _Feed())
        await self._subscribe_data("trades", aid)
        return await feed.take()

    # -- shutdown ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the streams, pending cancels and the REST threads; pending watch_* raise
        ``ccxt.ExchangeClosedByUser``. Bounded (a few seconds at most); safe to call twice."""
        if self._closed:
            return
        self._closing = True
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for kind, stream in (("trading", self._tstream), ("data", self._dstream)):
            task = self._stream_tasks.pop(kind, None)
            if stream is None or task is None:
                continue
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.stop_ws(), 2)
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.close(), 2)
        self._closed = True
        exc = ccxt.ExchangeClosedByUser("alpaca: the adapter was closed")
        for f in (*self._order_feeds.values(), *self._trade_feeds.values(), *self._books.values(), *self._tape.values()):
            f.fail(exc)
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self._trading._session.close()
        for name in _SCRUBBED_LOGGERS:
            logging.getLogger(name).removeFilter(self._scrub)

    async def __aenter__(self) -> "AlpacaVenue":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AlpacaVenue", "fill_id", "fmt_num", "iso_ms", "iso_ns"]
