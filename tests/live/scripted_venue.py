"""ScriptedVenue: an in-memory TEST DOUBLE of a venue for the order manager's unit tests.

It is not an emulator and matches nothing: a test says what the venue does (accept, refuse, time out
after accepting, lose the reply, fill this much, cancel that) and the double keeps the resulting
orders and trades, answers the VenueAdapter calls (execution.venue) from them with ccxt-unified
dicts, raises ccxt's exceptions, and queues what its private streams would deliver
(:meth:`ScriptedVenue.stream`). The integration tests against the loopback emulators
(execution/sandbox) are a separate suite.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import ccxt

# create_order behaviours
ACCEPT = "accept"                  # takes the order, replies with the order dict
ACCEPT_BARE = "accept_bare"        # takes it, replies with its id only (Bybit's create reply)
REJECT = "reject"                  # refuses it: ccxt.InvalidOrder
TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"  # takes it, the reply is lost: ccxt.RequestTimeout
TIMEOUT_LOST = "timeout_lost"      # the request never lands (or was refused and the refusal lost): RequestTimeout
HANG = "hang"                      # takes it and never replies (the caller's own timeout fires)
# cancel_order behaviours
CANCEL_OK = "ok"
CANCEL_REFUSED = "refused"             # ccxt.ExchangeError (e.g. a halted symbol); the order rests on
CANCEL_TIMEOUT = "timeout"             # RequestTimeout; the order rests on
CANCEL_TIMEOUT_AFTER = "timeout_after"  # cancelled, the reply lost: RequestTimeout
CANCEL_NOT_FOUND = "not_found"         # ccxt.OrderNotFound (whatever the order's state)


class ScriptedVenue:
    """A scripted venue holding one account's orders and trades. Time: ``clock_ms`` (ms UTC)."""

    def __init__(self, name: str = "alpha", *, quote: str = "USDT", base: str = "AAPLX"):
        self.name, self.quote, self.base = name, quote, base
        self.clock_ms = 1_751_896_800_000  # 2025-07-07T14:00Z
        self.orders: dict[str, dict[str, Any]] = {}     # venue order id -> the order as the venue has it
        self.trades: list[dict[str, Any]] = []
        self.create_script: deque[str] = deque()
        self.cancel_script: deque[str] = deque()
        self.fetch_errors: deque[BaseException] = deque()  # raised by the next fetch_* calls, in turn
        self.fetch_order_supported = True
        self.create_calls: list[dict[str, Any]] = []
        self.cancel_calls: list[str] = []
        self.fetch_calls: list[str] = []
        self.on_create: Callable[[dict[str, Any]], None] | None = None  # runs first in create_order
        self._stream: list[tuple[str, dict[str, Any]]] = []
        self._next_id = 1000
        self._next_trade = 1
        self.balance: dict[str, Any] = {"USDT": {"free": 25_000.0, "used": 0.0, "total": 25_000.0}}

    # -- what a test does to the venue -----------------------------------------------------------

    def _dict(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {k: rec[k] for k in ("id", "clientOrderId", "symbol", "type", "side", "price", "amount", "filled",
                                    "remaining", "status", "timestamp", "lastUpdateTimestamp", "timeInForce", "postOnly")} | {
            "info": {"orderId": rec["id"], "orderLinkId": rec["clientOrderId"]}}

    def _publish(self, rec: dict[str, Any]) -> None:
        self._stream.append(("order", self._dict(rec)))

    def by_client(self, client_id: str) -> dict[str, Any]:
        return next(r for r in self.orders.values() if r["clientOrderId"] == client_id)

    def fill(self, client_id: str, qty: float, price: float | None = None, *, maker: bool = True,
             fee: float | None = None, fee_currency: str | None = None) -> dict[str, Any]:
        """The venue fills ``qty`` of the order: a trade, an order update on the streams."""
        rec = self.by_client(client_id)
        assert rec["status"] == "open", f"the test fills an order that is {rec['status']}"
        assert rec["filled"] + qty <= rec["amount"] + 1e-12
        self.clock_ms += 1
        px = rec["price"] if price is None else price
        rec["filled"] += qty
        rec["remaining"] = rec["amount"] - rec["filled"]
        rec["lastUpdateTimestamp"] = self.clock_ms
        if rec["remaining"] <= 1e-12:
            rec["status"] = "closed"
        trade = {"id": f"T{self._next_trade}", "order": rec["id"], "timestamp": self.clock_ms, "symbol": rec["symbol"],
                 "side": rec["side"], "price": px, "amount": qty, "cost": px * qty,
                 "takerOrMaker": "maker" if maker else "taker",
                 "fee": {"cost": (-0.0001 if maker else 0.001) * px * qty if fee is None else fee,
                         "currency": self.quote if fee_currency is None else fee_currency},
                 "info": {"execId": f"T{self._next_trade}", "orderLinkId": rec["clientOrderId"]}}
        self._next_trade += 1
        self.trades.append(trade)
        self._stream.append(("trade", dict(trade)))
        self._publish(rec)
        return trade

    def finish(self, client_id: str, status: str = "canceled") -> None:
        """The venue ends the order itself (an IOC's rest "expired" / "canceled", a post-only "canceled")."""
        rec = self.by_client(client_id)
        self.clock_ms += 1
        rec["status"] = "closed" if status == "closed" else status
        rec["lastUpdateTimestamp"] = self.clock_ms
        self._publish(rec)

    def stream(self) -> list[tuple[str, dict[str, Any]]]:
        """What watch_orders / watch_my_trades delivered since the last call: ("order" | "trade", dict)."""
        out, self._stream = self._stream, []
        return out

    # -- VenueAdapter ----------------------------------------------------------------------------

    async def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,
                           params: dict = {}) -> dict[str, Any]:
        call = {"symbol": symbol, "type": type, "side": side, "amount": amount, "price": price, "params": dict(params)}
        self.create_calls.append(call)
        if self.on_create is not None:
            self.on_create(call)
        behaviour = self.create_script.popleft() if self.create_script else ACCEPT
        await asyncio.sleep(0)  # the reply is not instantaneous: other tasks run meanwhile
        if behaviour == REJECT:
            raise ccxt.InvalidOrder(f"{self.name} post-only order would take liquidity")
        if behaviour == TIMEOUT_LOST:
            raise ccxt.RequestTimeout(f"{self.name} POST /order timed out (10000 ms)")
        self.clock_ms += 1
        self._next_id += 1
        rec = {"id": str(self._next_id), "clientOrderId": params.get("clientOrderId"), "symbol": symbol, "type": type,
               "side": side, "price": price, "amount": float(amount), "filled": 0.0, "remaining": float(amount),
               "status": "open", "timestamp": self.clock_ms, "lastUpdateTimestamp": self.clock_ms,
               "timeInForce": params.get("timeInForce"), "postOnly": params.get("postOnly")}
        self.orders[rec["id"]] = rec
        self._publish(rec)
        if behaviour == TIMEOUT_AFTER_ACCEPT:
            raise ccxt.RequestTimeout(f"{self.name} POST /order timed out (10000 ms)")
        if behaviour == HANG:
            await asyncio.Event().wait()
        if behaviour == ACCEPT_BARE:
            return {"id": rec["id"], "info": {"orderId": rec["id"]}}
        return self._dict(rec)

    async def cancel_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]:
        self.cancel_calls.append(id)
        behaviour = self.cancel_script.popleft() if self.cancel_script else CANCEL_OK
        await asyncio.sleep(0)
        rec = self.orders.get(id)
        if behaviour == CANCEL_NOT_FOUND or rec is None:
            raise ccxt.OrderNotFound(f"{self.name} order {id} does not exist")
        if behaviour == CANCEL_REFUSED:
            raise ccxt.ExchangeError(f"{self.name} symbol halted, cancels refused")
        if behaviour == CANCEL_TIMEOUT:
            raise ccxt.RequestTimeout(f"{self.name} DELETE /order timed out")
        if rec["status"] != "open":
            raise ccxt.OrderNotFound(f"{self.name} order {id} is {rec['status']}")
        self.clock_ms += 1
        rec["status"] = "canceled"
        rec["lastUpdateTimestamp"] = self.clock_ms
        self._publish(rec)
        if behaviour == CANCEL_TIMEOUT_AFTER:
            raise ccxt.RequestTimeout(f"{self.name} DELETE /order timed out")
        return self._dict(rec)

    def _fetch_error(self) -> None:
        if self.fetch_errors:
            raise self.fetch_errors.popleft()

    async def fetch_order(self, id: str, symbol: str | None = None, params: dict = {}) -> dict[str, Any]:
        self.fetch_calls.append("fetch_order")
        self._fetch_error()
        if not self.fetch_order_supported:
            raise ccxt.NotSupported(f"{self.name} fetchOrder() is not supported")
        rec = self.orders.get(id)
        if rec is None:
            client = params.get("clientOrderId")
            rec = next((r for r in self.orders.values() if r["clientOrderId"] == client), None)
        if rec is None:
            raise ccxt.OrderNotFound(f"{self.name} order {id} not found")
        return self._dict(rec)

    async def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                                params: dict = {}) -> list[dict[str, Any]]:
        self.fetch_calls.append("fetch_open_orders")
        self._fetch_error()
        return [self._dict(r) for r in self.orders.values() if r["status"] == "open" and symbol in (None, r["symbol"])]

    async def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict = {}) -> list[dict[str, Any]]:
        self.fetch_calls.append("fetch_my_trades")
        self._fetch_error()
        return [dict(t) for t in self.trades if symbol in (None, t["symbol"]) and (since is None or t["timestamp"] >= since)]

    async def fetch_balance(self, params: dict = {}) -> dict[str, Any]:
        self._fetch_error()
        return dict(self.balance) | {"info": {}, "timestamp": self.clock_ms}


class RecordingCore:
    """A stand-in for TraderCore.report that records every report and, like the core, stops
    knowing an order once it has been told it is done (report then returns False)."""

    def __init__(self):
        self.reports: list[tuple[int, int, int, float, float, float]] = []
        self.done: set[int] = set()

    def report(self, kind: int, cid: int, *, final_state: int = 0, price: float = 0.0, qty: float = 0.0,
               fee: float = 0.0, now: int) -> bool:
        from stockbridge.core.order_codes import REP_DONE

        if cid in self.done:
            return False
        self.reports.append((kind, cid, final_state, price, qty, fee))
        if kind == REP_DONE:
            self.done.add(cid)
        return True

    def of(self, cid: int, kind: int | None = None) -> list[tuple]:
        return [r for r in self.reports if r[1] == cid and (kind is None or r[0] == kind)]
