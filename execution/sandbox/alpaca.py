"""Alpaca (the equity broker), emulated: the trading REST API v2, the ``trade_updates`` stream and the
market-data stream (quotes and trades) that alpaca-py's ``TradingClient``, ``TradingStream`` and
``StockDataStream`` use, over a :class:`VenueEmulator`.

- REST: ``/v2/account``, ``/v2/clock`` and ``/v2/calendar`` (from stockbridge.sessions over the
  replayed days, mapped to the sandbox's wall clock; the calendar's days are the wall dates, its
  open and close times New York's as replayed), ``/v2/assets``, ``/v2/orders`` (limit and
  market, ``time_in_force`` day / gtc / ioc, ``extended_hours``, ``client_order_id``; by id, by
  client id, cancel one / all), ``/v2/positions``. Auth headers ``APCA-API-KEY-ID`` /
  ``APCA-API-SECRET-KEY``; errors are Alpaca's ``{"code": 4xx..., "message": ...}`` with its HTTP
  statuses (401, 403 buying power / qty, 404, 422, 429).
- Sessions, as Alpaca applies them: in regular hours any order; in pre-market and after-hours only
  ``extended_hours`` limit orders with ``time_in_force=day`` (others are refused with 422); outside
  them (overnight, closed days) new orders are refused (the sandbox does not queue orders for the
  open). A DAY order is not expired at the close (not emulated).
- ``trade_updates`` (JSON frames): events new, partial_fill, fill, canceled, rejected.
- Market data (msgpack frames, ``t`` as msgpack timestamps): ``q`` quotes (the shown top of book)
  and ``t`` trades.

Commission: the config's fees (the demo broker's ``taker_fee_bps``) in USD, in the ledger; Alpaca's
messages carry no fee field, as the real ones.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

from execution.sandbox.ledger import Account, Fill, Order
from execution.sandbox.market import PublicTrade
from execution.sandbox.server import Conn, VenueServer
from execution.sandbox.venue import MarketInfo, VenueEmulator, VenueReject, fee_in_quote, venue_from_config

NS = 1_000_000_000
ERRORS: dict[str, tuple[int, int, str]] = {  # reason -> (HTTP status, code, message)
    "params": (422, 40010001, "invalid order request"),
    "unknown_symbol": (422, 40010001, "asset not found"),
    "bad_side": (422, 40010001, "invalid side"),
    "bad_type": (422, 40010001, "invalid order type"),
    "bad_tif": (422, 40010001, "invalid time_in_force"),
    "bad_qty": (422, 40010001, "qty must be > 0"),
    "bad_price": (422, 40010001, "limit_price is required"),
    "qty_below_min": (422, 40010001, "qty must be >= minimum"),
    "qty_off_lot": (422, 40010001, "fractional orders are not supported for this asset"),
    "price_off_tick": (422, 42210000, "sub-penny increment does not fulfill minimum pricing criteria"),
    "notional_below_min": (422, 40010001, "order value below minimum"),
    "insufficient_funds": (403, 40310000, "insufficient buying power"),
    "insufficient_qty": (403, 40310000, "insufficient qty available for order"),
    "duplicate_client_id": (422, 40010001, "client_order_id must be unique"),
    "halted": (403, 40310000, "asset is not tradable: trading halted"),
    "not_found": (404, 40410000, "order not found"),
    "too_late": (422, 42210000, "order is not cancelable"),
    "defaulted": (503, 50300000, "service unavailable"),
    "market_closed": (403, 40310000, "market is closed: asset is not tradable outside its sessions"),
    "extended_hours": (422, 42210000, "extended hours order must be DAY limit orders"),
    "auth": (401, 40110000, "request is not authorized"),
    "rate_limit": (429, 42900000, "rate limit exceeded"),
}
STATUS = {"new": "new", "partially_filled": "partially_filled", "filled": "filled", "cancelled": "canceled",
          "rejected": "rejected"}


def market_id(symbol: str) -> tuple[str, str, str]:
    """A share: 'AAPL' -> ('AAPL', 'AAPL', 'USD')."""
    return symbol, symbol, "USD"


def new_emulator(cfg, name: str, data_dir, clock) -> VenueEmulator:
    from stockbridge.sessions import SessionCalendar

    start = clock.data_start_ns
    sessions = SessionCalendar(start - 2 * 86400 * NS, start + 30 * 86400 * NS, cfg.sessions.calendar, cfg.sessions.weights)
    emu = venue_from_config(cfg, name, data_dir, clock, market_id=market_id, order_id=lambda: str(uuid.uuid4()),
                            trade_id=lambda: str(uuid.uuid4()), fee_rule=fee_in_quote, sessions=sessions)
    emu.hedge_sessions = tuple(cfg.venues[name].hedge_sessions)  # type: ignore[attr-defined]
    return emu


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def num(x: float | None) -> str | None:
    if x is None:
        return None
    s = f"{x:.9f}".rstrip("0").rstrip(".")
    return s or "0"


class AlpacaError(Exception):
    def __init__(self, reason: str):
        self.status, self.code, self.msg = ERRORS[reason]
        super().__init__(self.msg)


class AlpacaServer(VenueServer):
    """Alpaca trading REST + trade_updates stream + market-data stream on one loopback port."""

    kind = "alpaca"

    def __init__(self, emu: VenueEmulator):
        super().__init__(emu)
        self.account_id = str(uuid.uuid4())
        self.asset_ids = {m.id: str(uuid.uuid5(uuid.NAMESPACE_URL, f"stockbridge-sandbox/{m.id}")) for m in emu.markets.values()}
        self._exec_ids: dict[str, str] = {}

    def urls(self) -> dict[str, str]:
        return {"rest": self.http_url, "ws_trading": f"{self.ws_url}/stream", "ws_data": f"{self.ws_url}/v2/iex"}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        for path, h in (("/v2/account", self.h_account), ("/v2/clock", self.h_clock), ("/v2/calendar", self.h_calendar),
                        ("/v2/assets", self.h_assets), ("/v2/assets/{symbol}", self.h_asset), ("/v2/positions", self.h_positions),
                        ("/v2/positions/{symbol}", self.h_position), ("/v2/orders:by_client_order_id", self.h_by_client),
                        ("/v2/orders/{order_id}", self.h_order)):
            r.add_get(path, self.private(h))
        r.add_get("/v2/orders", self.private(self.h_orders))
        r.add_post("/v2/orders", self.private(self.h_submit, order_call=True))
        r.add_delete("/v2/orders/{order_id}", self.private(self.h_cancel, order_call=True))
        r.add_delete("/v2/orders", self.private(self.h_cancel_all, order_call=True))
        r.add_get("/stream", self.ws_trading)
        r.add_get("/v2/iex", self.ws_data)
        r.add_get("/v2/sip", self.ws_data)

    # -- envelopes --
    def fail(self, reason: str) -> web.Response:
        status, code, msg = ERRORS[reason]
        return web.json_response({"code": code, "message": msg}, status=status)

    def rate_limit_response(self) -> web.Response:
        return self.fail("rate_limit")

    def private(self, handler, order_call: bool = False):
        async def wrapped(request: web.Request) -> web.Response:
            acct = self.emu.accounts.get(request.headers.get("APCA-API-KEY-ID", ""))
            if acct is None or request.headers.get("APCA-API-SECRET-KEY", "") != acct.secret:
                return self.fail("auth")
            try:
                body = await request.json() if request.method == "POST" and request.can_read_body else {}
                result = handler(acct, request, body)
            except AlpacaError as exc:
                return web.json_response({"code": exc.code, "message": exc.msg}, status=exc.status)
            except VenueReject as exc:
                reason = exc.reason
                if reason == "insufficient_funds" and "USD" not in exc.message:
                    reason = "insufficient_qty"
                return self.fail(reason if reason in ERRORS else "params")
            except (ValueError, KeyError, TypeError):
                return self.fail("params")
            await self.hold_ack(order_call)
            if result is None:
                return web.Response(status=204)
            if isinstance(result, web.Response):
                return result
            return web.json_response(result)
        return wrapped

    # -- sessions --
    def session_state(self, data_ns: int) -> int:
        return int(self.emu.sessions.state_at(data_ns))

    def h_clock(self, acct: Account, request: web.Request, body: dict) -> dict:
        from stockbridge.sessions import REGULAR

        now = self.clock.data_now()
        nxt_open = int(self.emu.sessions.next_open(now + (1 if self.session_state(now) == REGULAR else 0)))
        if self.session_state(now) == REGULAR:  # the next open after this session
            nxt_open = int(self.emu.sessions.next_open(int(self.emu.sessions.next_close(now)) + 1))
        nxt_close = int(self.emu.sessions.next_close(now))
        return {"timestamp": iso(self.clock.to_wall(now)), "is_open": self.session_state(now) == REGULAR,
                "next_open": iso(self.clock.to_wall(nxt_open)), "next_close": iso(self.clock.to_wall(nxt_close))}

    def h_calendar(self, acct: Account, request: web.Request, body: dict) -> list:
        from zoneinfo import ZoneInfo

        from stockbridge.sessions import REGULAR

        ny = ZoneInfo("America/New_York")
        cal = self.emu.sessions
        out = []
        for k in range(len(cal.states) - 1):
            if cal.states[k] != REGULAR:
                continue
            # the day is the wall date the session's open maps to; its open and close are the session
            # table's New York times: Alpaca's calendar gives them as a day's HH:MM, which a session
            # moved by the data -> wall offset across midnight could not be
            o = datetime.fromtimestamp(int(cal.boundaries[k]) / 1e9, ny)
            c = datetime.fromtimestamp(int(cal.boundaries[k + 1]) / 1e9, ny)
            d = datetime.fromtimestamp(self.clock.to_wall(int(cal.boundaries[k])) / 1e9, ny).date().isoformat()
            q = request.query
            if (q.get("start") and d < q["start"]) or (q.get("end") and d > q["end"]):
                continue
            out.append({"date": d, "open": o.strftime("%H:%M"), "close": c.strftime("%H:%M"), "session_open": "0400",
                        "session_close": "2000", "settlement_date": (date.fromisoformat(d) + timedelta(days=1)).isoformat()})
        return out

    def _check_session(self, m: MarketInfo, order_type: str, tif: str, extended: bool) -> None:
        from stockbridge.sessions import AFTER, PRE, REGULAR, STATE_NAMES

        st = self.session_state(self.clock.data_now())
        allowed = set(getattr(self.emu, "hedge_sessions", ("regular",)))
        if st == REGULAR or STATE_NAMES[st] in allowed and not extended:
            return
        if st in (PRE, AFTER):
            if not (extended and order_type == "limit" and tif == "day"):
                raise AlpacaError("extended_hours" if extended else "market_closed")
            return
        raise AlpacaError("market_closed")

    # -- account --
    def h_account(self, acct: Account, request: web.Request, body: dict) -> dict:
        cash = acct.balance("USD")
        value = sum(acct.balance(m.base).total * self._mark(m) for m in self.emu.markets.values())
        equity = cash.total + value
        return {"id": self.account_id, "account_number": "PA0SANDBOX", "status": "ACTIVE", "crypto_status": "INACTIVE",
                "currency": "USD", "buying_power": num(cash.free), "regt_buying_power": num(cash.free),
                "daytrading_buying_power": "0", "non_marginable_buying_power": num(cash.free), "cash": num(cash.total),
                "accrued_fees": "0", "portfolio_value": num(equity), "pattern_day_trader": False, "trading_blocked": acct.frozen,
                "transfers_blocked": acct.frozen, "account_blocked": acct.frozen, "created_at": iso(self.clock.wall_start_ns),
                "trade_suspended_by_user": False, "multiplier": "1", "shorting_enabled": False, "equity": num(equity),
                "last_equity": num(equity), "long_market_value": num(value), "short_market_value": "0", "initial_margin": "0",
                "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0}

    def _mark(self, m: MarketInfo) -> float:
        bids, asks = self.emu.book(m, 1)
        if bids and asks:
            return 0.5 * (bids[0][0] + asks[0][0])
        return bids[0][0] if bids else (asks[0][0] if asks else 0.0)

    def asset(self, m: MarketInfo) -> dict:
        halted = m.id in self.emu.faults.halted
        return {"id": self.asset_ids[m.id], "class": "us_equity", "exchange": "NASDAQ", "symbol": m.id, "name": m.id,
                "status": "active", "tradable": not halted, "marginable": False, "shortable": False, "easy_to_borrow": False,
                "fractionable": m.lot < 1, "min_order_size": num(m.lot), "min_trade_increment": num(m.lot),
                "price_increment": num(m.tick), "attributes": ["has_options"] if False else []}

    def h_assets(self, acct: Account, request: web.Request, body: dict) -> list:
        return [self.asset(m) for m in self.emu.markets.values()]

    def h_asset(self, acct: Account, request: web.Request, body: dict) -> dict:
        m = self.emu.markets.get(request.match_info["symbol"])
        if m is None:
            return web.json_response({"code": 40410000, "message": "asset not found"}, status=404)
        return self.asset(m)

    def position(self, acct: Account, m: MarketInfo) -> dict | None:
        qty = acct.balance(m.base).total
        if abs(qty) < 1e-12:
            return None
        buys = [f for f in acct.fills if f.symbol == m.id and f.side == "buy"]
        avg = sum(f.price * f.qty for f in buys) / sum(f.qty for f in buys) if buys else self._mark(m)
        mark = self._mark(m)
        return {"asset_id": self.asset_ids[m.id], "symbol": m.id, "exchange": "NASDAQ", "asset_class": "us_equity",
                "asset_marginable": False, "avg_entry_price": num(avg), "qty": num(qty), "side": "long" if qty > 0 else "short",
                "market_value": num(qty * mark), "cost_basis": num(qty * avg), "unrealized_pl": num(qty * (mark - avg)),
                "current_price": num(mark), "qty_available": num(acct.balance(m.base).free)}

    def h_positions(self, acct: Account, request: web.Request, body: dict) -> list:
        return [p for m in self.emu.markets.values() if (p := self.position(acct, m)) is not None]

    def h_position(self, acct: Account, request: web.Request, body: dict) -> dict:
        m = self.emu.markets.get(request.match_info["symbol"])
        p = self.position(acct, m) if m else None
        if p is None:
            return web.json_response({"code": 40410000, "message": "position does not exist"}, status=404)
        return p

    # -- orders --
    def order_json(self, o: Order) -> dict[str, Any]:
        t = lambda ns: iso(self.clock.to_wall(ns))  # noqa: E731
        final_at = t(o.updated) if o.is_final else None
        return {"id": o.order_id, "client_order_id": o.client_id, "created_at": t(o.created), "updated_at": t(o.updated),
                "submitted_at": t(o.created), "filled_at": final_at if o.status == "filled" else None, "expired_at": None,
                "expires_at": None, "canceled_at": final_at if o.status == "cancelled" else None,
                "failed_at": final_at if o.status == "rejected" else None, "replaced_at": None, "replaced_by": None,
                "replaces": None, "asset_id": self.asset_ids[o.symbol], "symbol": o.symbol, "asset_class": "us_equity",
                "notional": None, "qty": num(o.qty), "filled_qty": num(o.filled),
                "filled_avg_price": num(o.avg_price) if o.filled else None, "order_class": "simple",
                "order_type": o.order_type, "type": o.order_type, "side": o.side,
                "time_in_force": getattr(o, "alpaca_tif", "day"), "limit_price": num(o.price) if o.order_type == "limit" else None,
                "stop_price": None, "status": STATUS[o.status], "extended_hours": o.extended_hours, "legs": None,
                "trail_percent": None, "trail_price": None, "hwm": None, "position_intent": "buy_to_open" if o.side == "buy" else "sell_to_close"}

    def h_submit(self, acct: Account, request: web.Request, body: dict) -> dict:
        m = self.emu.markets.get(str(body.get("symbol", "")))
        if m is None:
            raise AlpacaError("unknown_symbol")
        side, otype = body.get("side"), body.get("type", body.get("order_type"))
        tif = str(body.get("time_in_force", "")).lower()
        if tif not in ("day", "gtc", "ioc"):
            raise AlpacaError("bad_tif")
        extended = bool(body.get("extended_hours", False))
        if body.get("qty") is None:
            raise AlpacaError("bad_qty")
        qty = float(body["qty"])
        price = float(body["limit_price"]) if otype == "limit" and body.get("limit_price") is not None else None
        if otype == "limit" and price is None:
            raise AlpacaError("bad_price")
        if extended and not (otype == "limit" and tif == "day"):
            raise AlpacaError("extended_hours")
        if m.id in self.emu.faults.halted:
            raise AlpacaError("halted")
        self._check_session(m, otype, tif, extended)
        cid = str(body.get("client_order_id") or uuid.uuid4())
        o = self.emu.place(acct, m.id, side, otype, qty, price, tif="IOC" if tif == "ioc" else "GTC", client_id=cid,
                           extended_hours=extended)
        o.alpaca_tif = tif  # type: ignore[attr-defined]
        return self.order_json(o)

    def h_orders(self, acct: Account, request: web.Request, body: dict) -> list:
        q = request.query
        status = q.get("status", "open")
        limit = int(q.get("limit", 50))
        symbols = set(filter(None, q.get("symbols", "").split(",")))
        rows = [o for o in reversed(list(acct.orders.values()))
                if (status == "all" or (status == "open") != o.is_final) and (not symbols or o.symbol in symbols)]
        return [self.order_json(o) for o in rows[:limit]]

    def h_order(self, acct: Account, request: web.Request, body: dict) -> dict:
        o = acct.orders.get(request.match_info["order_id"])
        if o is None:
            raise AlpacaError("not_found")
        return self.order_json(o)

    def h_by_client(self, acct: Account, request: web.Request, body: dict) -> dict:
        o = acct.by_client_id.get(request.query.get("client_order_id", ""))
        if o is None:
            raise AlpacaError("not_found")
        return self.order_json(o)

    def h_cancel(self, acct: Account, request: web.Request, body: dict) -> None:
        o = acct.orders.get(request.match_info["order_id"])
        if o is None:
            raise AlpacaError("not_found")
        self.emu.cancel(acct, o)
        return None

    def h_cancel_all(self, acct: Account, request: web.Request, body: dict) -> web.Response:
        out = []
        for o in list(acct.orders.values()):
            if not o.is_final:
                self.emu.cancel(acct, o)
                out.append({"id": o.order_id, "status": 200, "body": self.order_json(o)})
        return web.json_response(out, status=207)

    # -- streams --
    async def ws_trading(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, "private")

    async def ws_data(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        c = Conn(ws, "public")
        c.state["msgpack"] = True
        self.conns.add(c)
        import asyncio

        c.writer = asyncio.create_task(c.run_writer())
        c.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    data = msgpack.unpackb(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                else:
                    continue
                self._on_data_message(c, data)
        finally:
            self.conns.discard(c)
            c.writer.cancel()
        return ws

    def _on_data_message(self, c: Conn, data: dict) -> None:
        action = data.get("action")
        if action == "auth":
            acct = self.emu.accounts.get(str(data.get("key", "")))
            if acct is None or str(data.get("secret", "")) != acct.secret:
                c.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
                return
            c.account = acct
            c.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
            return
        if c.account is None:
            c.send(msgpack.packb([{"T": "error", "code": 401, "msg": "not authenticated"}]))
            return
        if action in ("subscribe", "unsubscribe"):
            for channel in ("trades", "quotes"):
                for s in data.get(channel, []) or []:
                    (c.topics.add if action == "subscribe" else c.topics.discard)(f"{channel}:{s}")
            subs = {ch: sorted(t.split(":")[1] for t in c.topics if t.startswith(ch + ":")) for ch in ("trades", "quotes")}
            c.send(msgpack.packb([{"T": "subscription", **subs, "bars": [], "updatedBars": [], "dailyBars": [], "statuses": [],
                                   "lulds": [], "corrections": subs["trades"], "cancelErrors": subs["trades"]}]))
            for s in subs["quotes"]:
                if action == "subscribe" and s in self.emu.markets:
                    self._quote(c, self.emu.markets[s])
            return
        c.send(msgpack.packb([{"T": "error", "code": 400, "msg": "invalid syntax"}]))

    def _quote(self, c: Conn, m: MarketInfo) -> None:
        seq, ts, bids, asks = self.emu.shown_book(m, 1)
        if not bids and not asks:
            return
        top = (bids[0] if bids else (0.0, 0.0), asks[0] if asks else (0.0, 0.0))
        if c.state.get(f"top:{m.id}") == top:
            return
        c.state[f"top:{m.id}"] = top
        c.send(msgpack.packb([{"T": "q", "S": m.id, "bx": "V", "bp": top[0][0], "bs": top[0][1], "ax": "V", "ap": top[1][0],
                               "as": top[1][1], "c": ["R"], "z": "C",
                               "t": msgpack.Timestamp.from_unix_nano(self.clock.to_wall(ts))}], datetime=False))

    async def on_ws_message(self, c: Conn, data: Any) -> None:
        """The trade_updates stream (JSON)."""
        action = data.get("action") if isinstance(data, dict) else None
        d = data.get("data") or {} if isinstance(data, dict) else {}
        if action in ("authenticate", "auth"):
            acct = self.emu.accounts.get(str(d.get("key_id", "")))
            ok = acct is not None and str(d.get("secret_key", "")) == acct.secret
            if ok:
                c.account = acct
            c.send({"stream": "authorization", "data": {"action": "authenticate", "status": "authorized" if ok else "unauthorized"}})
            return
        if action == "listen":
            if c.account is None:
                c.send({"stream": "authorization", "data": {"action": "listen", "status": "unauthorized"}})
                return
            c.topics = set(d.get("streams") or [])
            c.send({"stream": "listening", "data": {"streams": sorted(c.topics)}})
            return
        c.send({"stream": "error", "data": {"error_message": "unrecognized action"}})

    def _update(self, acct: Account, event: str, o: Order, f: Fill | None = None) -> dict[str, Any]:
        d = {"event": event, "order": self.order_json(o), "timestamp": iso(self.clock.to_wall(f.ts if f else o.updated))}
        if event == "fill":  # the venue reports the order filled with its last fill
            d["order"].update(status="filled", filled_at=d["timestamp"])
        if f is not None:
            d.update({"execution_id": f.trade_id, "price": num(f.price), "qty": num(f.qty),
                      "position_qty": num(acct.balance(self.emu.markets[o.symbol].base).total)})
        return {"stream": "trade_updates", "data": d}

    # listener callbacks
    def on_book(self, m: MarketInfo) -> None:
        for c in list(self.conns):
            if c.state.get("msgpack") and f"quotes:{m.id}" in c.topics:
                self._quote(c, m)

    def on_trades(self, m: MarketInfo, trades: list[PublicTrade]) -> None:
        for c in list(self.conns):
            if c.state.get("msgpack") and f"trades:{m.id}" in c.topics:
                c.send(msgpack.packb([{"T": "t", "S": m.id, "i": int(t.id) if t.id.isdigit() else abs(hash(t.id)) % 10**12,
                                       "x": "V", "p": t.price, "s": t.size, "c": ["@"], "z": "C",
                                       "t": msgpack.Timestamp.from_unix_nano(self.clock.to_wall(t.ts))} for t in trades],
                                     datetime=False))

    def on_order(self, acct: Account, order: Order) -> None:
        if order.status in ("partially_filled", "filled") or (order.status == "new" and order.filled > 0):
            return  # carried by the fill events
        if self._exec_ids.get(order.order_id) == order.status:
            return  # one event per state
        self._exec_ids[order.order_id] = order.status
        event = {"new": "new", "cancelled": "canceled", "rejected": "rejected"}[order.status]
        self.private_send(acct, "trade_updates", self._update(acct, event, order), faulty=False)

    def on_fill(self, acct: Account, fill: Fill, order: Order) -> None:
        done = sum(x.qty for x in order.fills if x.seq <= fill.seq) >= order.qty - 1e-9
        self.private_send(acct, "trade_updates", self._update(acct, "fill" if done else "partial_fill", order, fill))
