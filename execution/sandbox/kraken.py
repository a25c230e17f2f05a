"""Kraken spot, emulated: the REST API (``/0/public/*``, ``/0/private/*``) and the websocket API v2
that ccxt's ``kraken`` / ``ccxt.pro.kraken`` use (book with checksum, trade, executions), over a
:class:`VenueEmulator`.

Private calls are checked as Kraken checks them: the ``nonce`` must grow per API key
(``EAPI:Invalid nonce``), except that a nonce not used before and at most the key's nonce window
below the highest one seen is taken (Kraken's API key setting, which it recommends at 10-15 s:
concurrent requests reach it out of the order they were signed in), and ``API-Sign`` = base64(HMAC-SHA512(base64-decoded secret, URI path +
SHA256(nonce + POST body))). Errors are Kraken's ``{"error": ["EOrder:..."]}`` strings.

Markets are listed as Kraken lists tokenized stocks: pair ``AAPLxUSD`` (altname too), base asset
``AAPLx`` with ``aclass_base: "tokenized_asset"``, quote ``ZUSD``. The websocket v2 ``symbol`` field
carries the symbol the client subscribed with (ccxt sends its unified symbol, ``AAPLX/USD``, and
matches replies by it). Fees are charged in the quote currency (Kraken's default ``fciq``).

A post-only order that would take is accepted and cancelled at once (reason "Post only order"), as
Kraken does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import string
import zlib
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from execution.sandbox import garbage as G
from execution.sandbox.ledger import Account, Fill, Order
from execution.sandbox.market import PublicTrade
from execution.sandbox.server import Conn, VenueServer
from execution.sandbox.venue import MarketInfo, VenueEmulator, VenueReject, fee_in_quote, venue_from_config

ERRORS: dict[str, str] = {
    "params": "EGeneral:Invalid arguments",
    "unknown_symbol": "EQuery:Invalid asset pair",
    "bad_side": "EGeneral:Invalid arguments:type",
    "bad_type": "EGeneral:Invalid arguments:ordertype",
    "bad_tif": "EGeneral:Invalid arguments:timeinforce",
    "bad_qty": "EGeneral:Invalid arguments:volume",
    "bad_price": "EGeneral:Invalid arguments:price",
    "qty_below_min": "EOrder:Order minimum not met",
    "qty_off_lot": "EGeneral:Invalid arguments:volume",
    "price_off_tick": "EGeneral:Invalid arguments:price",
    "notional_below_min": "EOrder:Cost minimum not met",
    "insufficient_funds": "EOrder:Insufficient funds",
    "duplicate_client_id": "EOrder:Duplicate order",
    "halted": "EService:Market in cancel_only mode",
    "not_found": "EOrder:Unknown order",
    "too_late": "EOrder:Unknown order",
    "defaulted": "EService:Unavailable",
    "api_key": "EAPI:Invalid key",
    "sign": "EAPI:Invalid signature",
    "nonce": "EAPI:Invalid nonce",
    "rate_limit": "EAPI:Rate limit exceeded",
    "token": "EAPI:Invalid token",
}
CLOSED_PAGE = 50  # ClosedOrders answers 50 orders a page
STATUS = {"new": "open", "partially_filled": "open", "filled": "closed", "cancelled": "canceled", "rejected": "canceled"}
WS_STATUS = {"new": "new", "partially_filled": "partially_filled", "filled": "filled", "cancelled": "canceled",
             "rejected": "canceled"}
REASONS = {"user": "User requested", "ioc": "Insufficient liquidity", "post_only": "Post only order",
           "defaulted": "Market unavailable", "halted": "Market in cancel_only mode"}


def decimals(unit: float) -> int:
    """Decimals of a grid unit (0.01 -> 2)."""
    s = f"{unit:.10f}".rstrip("0")
    return len(s.split(".")[1]) if "." in s else 0


def fmt(x: float, dec: int) -> str:
    return f"{x:.{dec}f}"


def iso(ms_or_ns: int, ns: bool = True) -> str:
    us = ms_or_ns // 1000 if ns else ms_or_ns * 1000
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def asset_id(code: str) -> str:
    """Kraken's asset id for a unified code: fiat gets its Z prefix; an xStock its lower-case x."""
    if code in ("USD", "EUR", "GBP", "CAD", "JPY"):
        return "Z" + code
    if len(code) > 1 and code.endswith("X") and code[:-1].isupper() and code not in ("XBTX",):
        return code[:-1] + "x"
    return code


def market_id(symbol: str) -> tuple[str, str, str]:
    """'AAPLX/USD' -> ('AAPLxUSD', 'AAPLX', 'USD'): Kraken's pair id (= altname), unified base and quote."""
    base, quote = symbol.split("/")
    return asset_id(base) + quote, base, quote


def _kraken_id(prefix: str) -> str:
    """An id in Kraken's form, e.g. OQCLML-BW3P3-BUCMWZ."""
    abc = string.ascii_uppercase + string.digits
    parts = ["".join(secrets.choice(abc) for _ in range(n)) for n in (5, 5, 6)]
    return prefix + parts[0] + "-" + parts[1] + "-" + parts[2]


def new_emulator(cfg, name: str, data_dir, clock) -> VenueEmulator:
    return venue_from_config(cfg, name, data_dir, clock, market_id=market_id, order_id=lambda: _kraken_id("O"),
                             trade_id=lambda: _kraken_id("T"), fee_rule=fee_in_quote)


def checksum(bids: list[tuple[float, float]], asks: list[tuple[float, float]], pdec: int, qdec: int) -> int:
    """Kraken's book checksum: CRC32 over the top 10 asks then the top 10 bids, each price and qty
    written at the pair's precision with the decimal point and leading zeros removed."""
    def part(p: float, q: float) -> str:
        return fmt(p, pdec).replace(".", "").lstrip("0") + fmt(q, qdec).replace(".", "").lstrip("0")
    payload = "".join(part(p, q) for p, q in asks[:10]) + "".join(part(p, q) for p, q in bids[:10])
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


class KrakenError(Exception):
    def __init__(self, reason: str):
        super().__init__(ERRORS[reason])
        self.text = ERRORS[reason]


class KrakenServer(VenueServer):
    """Kraken spot REST + websocket v2 on one loopback port."""

    kind = "kraken"

    NONCE_WINDOW = 10_000  # the sandbox key's nonce window: 10 s of ccxt's nonces (ms), as Kraken recommends

    def __init__(self, emu: VenueEmulator, *, nonce_window: int = NONCE_WINDOW):
        super().__init__(emu)
        self.nonce_window = nonce_window
        self._nonces: dict[str, int] = {}
        self._used: dict[str, set[int]] = {}  # per key, the nonces within the window below the highest
        self._tokens: dict[str, Account] = {}
        self._sent_status: dict[str, str] = {}
        self._trade_ids = itertools.count(1)
        self._exec_seq = itertools.count(1)
        for m in emu.markets.values():
            m.pdec, m.qdec = decimals(m.tick), decimals(m.lot)  # type: ignore[attr-defined]

    def urls(self) -> dict[str, str]:
        return {"rest": self.http_url, "ws_public": f"{self.ws_url}/ws/v2", "ws_private": f"{self.ws_url}/ws-auth/v2"}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/0/public/Time", self.h_time)
        r.add_get("/0/public/SystemStatus", self.h_status)
        r.add_get("/0/public/Assets", self.h_assets)
        r.add_get("/0/public/AssetPairs", self.h_pairs)
        r.add_get("/0/public/Depth", self.h_depth)
        r.add_get("/0/public/Trades", self.h_trades)
        for name, h, order_call in (("AddOrder", self.h_add, True), ("CancelOrder", self.h_cancel, True),
                                    ("CancelAll", self.h_cancel_all, True), ("OpenOrders", self.h_open, False),
                                    ("ClosedOrders", self.h_closed, False), ("QueryOrders", self.h_query, False),
                                    ("TradesHistory", self.h_history, False), ("BalanceEx", self.h_balance_ex, False),
                                    ("Balance", self.h_balance, False), ("GetWebSocketsToken", self.h_token, False)):
            r.add_post(f"/0/private/{name}", self.private(h, order_call))
        r.add_get("/ws/v2", self.ws_public)
        r.add_get("/ws-auth/v2", self.ws_private)

    # -- envelopes --
    def ok(self, result: Any) -> web.Response:
        return web.json_response({"error": [], "result": result})

    def err(self, text: str, status: int = 200) -> web.Response:
        return web.json_response({"error": [text]}, status=status)

    def rate_limit_response(self) -> web.Response:
        return self.err(ERRORS["rate_limit"])

    def private(self, handler, order_call: bool):
        async def wrapped(request: web.Request) -> web.Response:
            raw = await request.text()
            try:
                params = dict(parse_qsl(raw, keep_blank_values=True))
                acct = self.authenticate(request, raw, params)
                result = handler(acct, params)
            except KrakenError as exc:
                return self.err(exc.text)
            except VenueReject as exc:
                await self.hold_refusal(order_call)
                return self.err(ERRORS.get(exc.reason, ERRORS["params"]))
            except ValueError:
                return self.err(ERRORS["params"])
            await self.hold_ack(order_call)
            return self.ok(result)
        return wrapped

    def authenticate(self, request: web.Request, raw: str, params: dict) -> Account:
        key = request.headers.get("API-Key", "")
        acct = self.emu.accounts.get(key)
        if acct is None:
            raise KrakenError("api_key")
        nonce_s = params.get("nonce", "")
        try:
            nonce = int(nonce_s)
        except ValueError:
            raise KrakenError("nonce") from None
        digest = hashlib.sha256((nonce_s + raw).encode()).digest()
        want = base64.b64encode(hmac.new(base64.b64decode(acct.secret), request.path.encode() + digest, hashlib.sha512).digest()).decode()
        if not hmac.compare_digest(want, request.headers.get("API-Sign", "")):
            raise KrakenError("sign")
        self._take_nonce(key, nonce)
        return acct

    def _take_nonce(self, key: str, nonce: int) -> None:
        top, used = self._nonces.get(key, 0), self._used.setdefault(key, set())
        if nonce > top:
            self._nonces[key] = nonce
            used.add(nonce)
            if len(used) > 4096:
                self._used[key] = {n for n in used if n >= nonce - self.nonce_window}
        elif top - nonce <= self.nonce_window and nonce not in used:
            used.add(nonce)  # late, within the window, and never seen: a replay is still refused
        else:
            raise KrakenError("nonce")

    # -- public REST --
    async def h_time(self, request: web.Request) -> web.Response:
        ns = self.clock.wall_now()
        return self.ok({"unixtime": ns // 1_000_000_000, "rfc1123": datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%a, %d %b %y %H:%M:%S +0000")})

    async def h_status(self, request: web.Request) -> web.Response:
        return self.ok({"status": "online", "timestamp": iso(self.clock.wall_now())})

    async def h_assets(self, request: web.Request) -> web.Response:
        out = {}
        for m in self.emu.markets.values():
            out[asset_id(m.base)] = {"aclass": "tokenized_asset" if asset_id(m.base).endswith("x") else "currency",
                                     "altname": asset_id(m.base), "decimals": 10, "display_decimals": m.qdec, "status": "enabled"}
            out[asset_id(m.quote)] = {"aclass": "currency", "altname": m.quote, "decimals": 4, "display_decimals": 2,
                                      "status": "enabled"}
        return self.ok(out)

    def pair(self, m: MarketInfo) -> dict[str, Any]:
        maker = float(m.sim.sim.fees[0, 0]) * 100  # percent, as Kraken lists fee tiers
        taker = float(m.sim.sim.fees[0, 1]) * 100
        b = asset_id(m.base)
        return {"altname": m.id, "wsname": f"{b}/{m.quote}", "aclass_base": "tokenized_asset" if b.endswith("x") else "currency",
                "base": b, "aclass_quote": "currency", "quote": asset_id(m.quote), "lot": "unit", "cost_decimals": 5,
                "pair_decimals": m.pdec, "lot_decimals": m.qdec, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                "fees": [[0, round(taker, 6)]], "fees_maker": [[0, round(maker, 6)]], "fee_volume_currency": "ZUSD",
                "margin_call": 80, "margin_stop": 40, "ordermin": fmt(m.lot, m.qdec), "costmin": f"{m.min_notional:g}",
                "tick_size": fmt(m.tick, m.pdec), "status": "online"}

    async def h_pairs(self, request: web.Request) -> web.Response:
        want = request.query.get("pair")
        ms = [m for m in self.emu.markets.values() if not want or m.id in want.split(",")]
        if want and not ms:
            return self.err(ERRORS["unknown_symbol"])
        return self.ok({m.id: self.pair(m) for m in ms})

    def _market(self, pair: str) -> MarketInfo:
        for m in self.emu.markets.values():
            if pair in (m.id, m.symbol, f"{asset_id(m.base)}/{m.quote}"):
                return m
        raise KrakenError("unknown_symbol")

    async def h_depth(self, request: web.Request) -> web.Response:
        try:
            m = self._market(request.query.get("pair", ""))
        except KrakenError as exc:
            return self.err(exc.text)
        count = min(int(request.query.get("count", 100)), 500)
        seq, ts, bids, asks = self.emu.shown_book(m, count)
        t = self.clock.to_wall(ts) // 1_000_000_000
        rows = lambda lv: [[fmt(p, m.pdec), fmt(q, m.qdec), t] for p, q in lv]  # noqa: E731
        what = self.emu.faults.take_garbage("rest")
        if what is None:
            return self.ok({m.id: {"asks": rows(asks), "bids": rows(bids)}})
        # a hostile answer in Kraken's envelope (garbage.py says what each kind is)
        key, b, a = m.id, rows(bids), rows(asks)
        if what == "nan_strings":
            b = [["NaN", "NaN", t]] + b
        elif what == "negative_size" and bids:
            b = [[fmt(bids[0][0], m.pdec), fmt(-bids[0][1], m.qdec), t]] + b[1:]
        elif what == "crossed_book" and G.crossed_bid(bids, asks, m.tick):
            b = rows([G.crossed_bid(bids, asks, m.tick)]) + b
        elif what == "wrong_symbol":
            key, b, a = G.other_id(m.id), rows(G.scaled(bids)), rows(G.scaled(asks))
        elif what == "enormous":
            k = G.repeats(len(json.dumps(b + a)))
            b, a = b * k, a * k
        body = json.dumps({"error": [], "result": {key: {"asks": a, "bids": b}}})
        if what == "truncated_json":
            body = G.truncated(body)
        self.emu.faults.garbage_out(what, "rest", m.id, len(body), self.clock.data_now())
        return web.Response(text=body, content_type="application/json")

    async def h_trades(self, request: web.Request) -> web.Response:
        try:
            m = self._market(request.query.get("pair", ""))
        except KrakenError as exc:
            return self.err(exc.text)
        count = min(int(request.query.get("count", 1000)), 1000)
        rows = list(m.trades)[-count:]
        out = [[fmt(t.price, m.pdec), fmt(t.size, m.qdec), self.clock.to_wall(t.ts) / 1e9, "b" if t.side >= 0 else "s", "l", "", t.id]
               for t in rows]
        return self.ok({m.id: out, "last": str(self.clock.to_wall(rows[-1].ts) if rows else 0)})

    # -- private REST --
    def h_token(self, acct: Account, p: dict) -> dict:
        token = base64.b64encode(secrets.token_bytes(24)).decode()
        self._tokens[token] = acct
        return {"token": token, "expires": 900}

    def balances(self, acct: Account) -> dict[str, dict[str, str]]:
        return {asset_id(c): {"balance": f"{b.total:.10f}", "hold_trade": f"{b.locked:.10f}"} for c, b in sorted(acct.balances.items())}

    def h_balance_ex(self, acct: Account, p: dict) -> dict:
        return self.balances(acct)

    def h_balance(self, acct: Account, p: dict) -> dict:
        return {k: v["balance"] for k, v in self.balances(acct).items()}

    def h_add(self, acct: Account, p: dict) -> dict:
        m = self._market(p.get("pair", ""))
        side = p.get("type")
        if side not in ("buy", "sell"):
            raise VenueReject("bad_side")
        otype = p.get("ordertype")
        if otype not in ("limit", "market"):
            raise VenueReject("bad_type")
        flags = set(filter(None, p.get("oflags", "").split(",")))
        tif = p.get("timeinforce", "GTC")
        if tif not in ("GTC", "IOC"):
            raise VenueReject("bad_tif")
        if "post" in flags:
            tif = "PostOnly"
        try:
            qty = float(p["volume"])
            price = float(p["price"]) if otype == "limit" else None
        except (KeyError, ValueError):
            raise KrakenError("params") from None
        o = self.emu.place(acct, m.id, side, otype, qty, price, tif=tif, client_id=p.get("cl_ord_id", ""))
        descr = f"{side} {fmt(qty, m.qdec)} {m.id} @ " + (f"limit {fmt(price, m.pdec)}" if otype == "limit" else "market")
        return {"descr": {"order": descr}, "txid": [o.order_id]}

    def _find(self, acct: Account, p: dict) -> Order:
        if p.get("cl_ord_id"):
            return self.emu.find_order(acct, client_id=p["cl_ord_id"])
        return self.emu.find_order(acct, order_id=p.get("txid", ""))

    def h_cancel(self, acct: Account, p: dict) -> dict:
        o = self._find(acct, p)
        self.emu.cancel(acct, o)
        return {"count": 1}

    def h_cancel_all(self, acct: Account, p: dict) -> dict:
        n = 0
        for o in list(acct.orders.values()):
            if not o.is_final:
                self.emu.cancel(acct, o)
                n += 1
        return {"count": n}

    def order_json(self, o: Order) -> dict[str, Any]:
        m = self.emu.markets[o.symbol]
        price = fmt(o.price, m.pdec) if o.order_type == "limit" else "0"
        d = {"refid": None, "userref": 0, "cl_ord_id": o.client_id or None, "status": STATUS[o.status],
             "opentm": self.clock.to_wall(o.created) / 1e9, "starttm": 0, "expiretm": 0,
             "descr": {"pair": o.symbol, "type": o.side, "ordertype": o.order_type, "price": price, "price2": "0",
                       "leverage": "none", "order": f"{o.side} {fmt(o.qty, m.qdec)} {o.symbol} @ {o.order_type} {price}",
                       "close": ""},
             "vol": fmt(o.qty, m.qdec), "vol_exec": fmt(o.filled, m.qdec), "cost": f"{o.cost:.5f}", "fee": f"{o.fee:.5f}",
             "price": fmt(o.avg_price, m.pdec), "stopprice": "0", "limitprice": "0", "misc": "",
             "oflags": "fciq" + (",post" if o.tif == "PostOnly" else ""), "trades": [f.trade_id for f in o.fills]}
        if o.is_final:
            d["closetm"] = self.clock.to_wall(o.updated) / 1e9
            d["reason"] = REASONS.get(o.reason) if o.status != "filled" else None
        if not d["cl_ord_id"]:
            del d["cl_ord_id"]
        return d

    def _orders(self, acct: Account, p: dict, final: bool) -> dict[str, Any]:
        out = {}
        for o in reversed(list(acct.orders.values())):
            if o.is_final != final:
                continue
            if p.get("cl_ord_id") and o.client_id != p["cl_ord_id"]:
                continue
            out[o.order_id] = self.order_json(o)
        return out

    def h_open(self, acct: Account, p: dict) -> dict:
        return {"open": self._orders(acct, p, False)}

    def h_closed(self, acct: Account, p: dict) -> dict:
        """Kraken's ClosedOrders: newest first, 50 a page (``ofs`` the offset), closed after ``start``
        (unix seconds, exclusive) and up to ``end`` (inclusive); ``count`` is all that match."""
        rows = self._orders(acct, p, True)
        start = float(p["start"]) if p.get("start") else None
        end = float(p["end"]) if p.get("end") else None
        if start is not None or end is not None:
            rows = {k: o for k, o in rows.items() if (start is None or o["closetm"] > start)
                    and (end is None or o["closetm"] <= end)}
        ofs = int(p.get("ofs") or 0)
        page = dict(list(rows.items())[ofs:ofs + CLOSED_PAGE])
        return {"closed": page, "count": len(rows)}

    def h_query(self, acct: Account, p: dict) -> dict:
        out = {}
        for txid in filter(None, p.get("txid", "").split(",")):
            o = acct.orders.get(txid)
            if o is not None:
                out[txid] = self.order_json(o)
        if not out:
            raise VenueReject("not_found")
        return out

    def trade_json(self, f: Fill, o: Order) -> dict[str, Any]:
        m = self.emu.markets[f.symbol]
        return {"ordertxid": f.order_id, "postxid": _kraken_id("T"), "pair": f.symbol, "aclass": "forex",
                "time": self.clock.to_wall(f.ts) / 1e9, "type": f.side, "ordertype": o.order_type,
                "price": fmt(f.price, m.pdec), "cost": f"{f.price * f.qty:.5f}", "fee": f"{f.fee:.8f}",
                "vol": fmt(f.qty, m.qdec), "margin": "0.00000", "leverage": "0", "misc": "",
                "trade_id": f.seq, "maker": f.maker}

    def h_history(self, acct: Account, p: dict) -> dict:
        start = float(p["start"]) if p.get("start") else None  # unix seconds, exclusive
        end = float(p["end"]) if p.get("end") else None        # inclusive
        out = {}
        for f in reversed(acct.fills):
            t = self.clock.to_wall(f.ts) / 1e9
            if (start is None or t > start) and (end is None or t <= end):
                out[f.trade_id] = self.trade_json(f, acct.orders[f.order_id])
        return {"trades": out, "count": len(out)}

    # -- websocket v2 --
    async def ws_public(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, "public")

    async def ws_private(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, "private")

    def _times(self) -> dict[str, str]:
        t = iso(self.clock.wall_now())
        return {"time_in": t, "time_out": t}

    async def on_ws_message(self, c: Conn, data: Any) -> None:
        if not c.state.get("greeted"):
            c.state["greeted"] = True
            c.send({"channel": "status", "type": "update", "data": [{"api_version": "v2", "connection_id": id(c),
                                                                     "system": "online", "version": "2.0.0"}]})
        method = data.get("method") if isinstance(data, dict) else None
        req_id = data.get("req_id")
        if method == "ping":
            c.send({"method": "pong", "req_id": req_id, **self._times()})
            return
        params = data.get("params") or {}
        channel = params.get("channel")
        if method not in ("subscribe", "unsubscribe"):
            c.send({"error": f"Method not found: {method}", "method": method, "success": False, "req_id": req_id, **self._times()})
            return
        if c.scope == "private":
            if channel != "executions":
                c.send({"error": "Channel not found", "method": method, "success": False, "req_id": req_id, **self._times()})
                return
            acct = self._tokens.get(params.get("token", ""))
            if acct is None:
                c.send({"error": ERRORS["token"], "method": method, "success": False, "req_id": req_id, **self._times()})
                return
            c.account = acct
            if method == "unsubscribe":
                c.topics.discard("executions")
            else:
                c.topics.add("executions")
            c.send({"method": method, "result": {"channel": "executions", "snapshot": True}, "success": True, "req_id": req_id,
                    **self._times()})
            if method == "subscribe":
                self._exec_snapshot(c, acct, bool(params.get("snap_orders", True)), bool(params.get("snap_trades", False)))
            return
        if channel not in ("book", "trade"):
            c.send({"error": "Channel not found", "method": method, "success": False, "req_id": req_id, **self._times()})
            return
        symbols = params.get("symbol") or []
        for sym in symbols:
            try:
                m = self._market(sym)
            except KrakenError:
                c.send({"error": f"Currency pair not supported {sym}", "method": method, "success": False,
                        "symbol": sym, "req_id": req_id, **self._times()})
                continue
            depth = int(params.get("depth", 10))
            topic = f"{channel}:{m.id}"
            if method == "unsubscribe":
                c.topics.discard(topic)
                c.send({"method": method, "result": {"channel": channel, "symbol": sym}, "success": True, "req_id": req_id})
                continue
            c.topics.add(topic)
            c.state[f"sym:{topic}"] = sym
            c.state[f"depth:{topic}"] = depth
            result = {"channel": channel, "symbol": sym, "snapshot": True}
            if channel == "book":
                result["depth"] = depth
            c.send({"method": method, "result": result, "success": True, "req_id": req_id, **self._times()})
            if channel == "book":
                self._send_book(c, m, snapshot=True)
            elif params.get("snapshot", True) and m.trades:
                c.send({"channel": "trade", "type": "snapshot", "data": [self._trade(m, t, sym) for t in list(m.trades)[-50:]]})

    def _send_book(self, c: Conn, m: MarketInfo, snapshot: bool) -> None:
        topic = f"book:{m.id}"
        depth = c.state[f"depth:{topic}"]
        sym = c.state[f"sym:{topic}"]
        seq, ts, bids, asks = self.emu.shown_book(m, depth)
        last = c.state.get(topic)
        if snapshot or last is None:
            b, a, kind = bids, asks, "snapshot"
        else:
            b, a, kind = _diff(last[0], bids), _diff(last[1], asks), "update"
            if not b and not a:
                return
        c.state[topic] = (bids, asks)
        row = {"symbol": sym, "bids": [{"price": float(fmt(p, m.pdec)), "qty": float(fmt(q, m.qdec))} for p, q in b],
               "asks": [{"price": float(fmt(p, m.pdec)), "qty": float(fmt(q, m.qdec))} for p, q in a],
               "checksum": checksum(bids, asks, m.pdec, m.qdec)}
        if kind == "update":
            row["timestamp"] = iso(self.clock.to_wall(ts))
        c.send({"channel": "book", "type": kind, "data": [row]})

    def _trade(self, m: MarketInfo, t: PublicTrade, sym: str) -> dict[str, Any]:
        return {"symbol": sym, "side": "buy" if t.side >= 0 else "sell", "price": t.price, "qty": t.size,
                "ord_type": "limit", "trade_id": int(t.id) if t.id.isdigit() else next(self._trade_ids),
                "timestamp": iso(self.clock.to_wall(t.ts))}

    def _exec_snapshot(self, c: Conn, acct: Account, orders: bool, trades: bool) -> None:
        if orders:
            rows = [self._order_row(o, None) for o in acct.orders.values() if not o.is_final]
            if rows:
                c.send({"channel": "executions", "type": "snapshot", "data": rows, "sequence": next(self._exec_seq)})
        if trades and acct.fills:
            rows = [self._fill_row(f, acct.orders[f.order_id]) for f in acct.fills[-50:]]
            c.send({"channel": "executions", "type": "snapshot", "data": rows, "sequence": next(self._exec_seq)})

    def _order_row(self, o: Order, exec_type: str | None) -> dict[str, Any]:
        m = self.emu.markets[o.symbol]
        d = {"order_id": o.order_id, "order_userref": 0, "symbol": m.symbol, "order_qty": o.qty, "cum_qty": o.filled,
             "cum_cost": round(o.cost, 8), "avg_price": round(o.avg_price, 8), "time_in_force": "IOC" if o.tif == "IOC" else "GTC",
             "side": o.side, "order_type": o.order_type, "limit_price_type": "static", "limit_price": o.price,
             "stop_price": 0.0, "order_status": WS_STATUS[o.status], "fee_usd_equiv": round(o.fee, 8), "fee_ccy_pref": "fciq",
             "post_only": o.tif == "PostOnly", "timestamp": iso(self.clock.to_wall(o.updated))}
        if o.client_id:
            d["cl_ord_id"] = o.client_id
        if exec_type:
            d["exec_type"] = exec_type
        if o.status in ("cancelled", "rejected"):
            d["reason"] = d["cancel_reason"] = REASONS.get(o.reason, o.reason)
        return d

    def _fill_row(self, f: Fill, o: Order) -> dict[str, Any]:
        m = self.emu.markets[f.symbol]
        return {"order_id": f.order_id, "exec_id": f.trade_id, "exec_type": "trade", "trade_id": f.seq, "symbol": m.symbol,
                "side": f.side, "last_qty": f.qty, "last_price": f.price, "liquidity_ind": "m" if f.maker else "t",
                "cost": round(f.price * f.qty, 8), "order_userref": 0,
                "order_status": "filled" if sum(x.qty for x in o.fills if x.seq <= f.seq) >= o.qty - 1e-9 else "partially_filled",
                "order_type": o.order_type, "fee_usd_equiv": round(f.fee, 8), "fees": [{"asset": f.fee_currency, "qty": f.fee}],
                "timestamp": iso(self.clock.to_wall(f.ts))}

    def _garbage_book(self, c: Conn, m: MarketInfo, what: str) -> str | dict:
        """A hostile book message to ``c``, made from the book this connection was last sent (the
        client's book, if it applied every message). Its checksum is the true book's, as a corrupted
        message's would be; garbage.py says what each kind is."""
        topic = f"book:{m.id}"
        sym = c.state[f"sym:{topic}"]
        seq, ts, _, _ = self.emu.shown_book(m, c.state[f"depth:{topic}"])
        bids, asks = c.state.get(topic) or ([], [])
        lv = lambda rows: [{"price": float(fmt(p, m.pdec)), "qty": float(fmt(q, m.qdec))} for p, q in rows]  # noqa: E731
        b, a, kind = lv(bids), lv(asks), "update"
        if what == "nan_strings":
            b, a = [{"price": "NaN", "qty": "NaN"}], []
        elif what == "negative_size" and bids:
            p, q = G.negative_bid(bids, asks, m.tick)
            b, a = [{"price": float(fmt(p, m.pdec)), "qty": -float(fmt(-q, m.qdec))}], []
        elif what == "crossed_book" and G.crossed_bid(bids, asks, m.tick):
            b, a = lv([G.crossed_bid(bids, asks, m.tick)]), []
        elif what == "wrong_symbol":
            sym, b, a, kind = G.other_id(sym), lv(G.scaled(bids)), lv(G.scaled(asks)), "snapshot"
        elif what == "enormous":  # the unchanged levels, many times over: harmless content, hostile size
            k = G.repeats(len(json.dumps(b + a)))
            b, a = b * k, a * k
        row = {"symbol": sym, "bids": b, "asks": a, "checksum": checksum(bids, asks, m.pdec, m.qdec)}
        if kind == "update":
            row["timestamp"] = iso(self.clock.to_wall(ts))
        msg = {"channel": "book", "type": kind, "data": [row]}
        return G.truncated(msg) if what == "truncated_json" else msg

    def _garbage_trades(self, c: Conn, m: MarketInfo, trades: list[PublicTrade], what: str) -> str | dict:
        """A hostile print to ``c`` shaped like Kraken's v2 trade message (garbage.py)."""
        row = self._trade(m, trades[-1], c.state[f"sym:trade:{m.id}"])
        row["trade_id"] = next(self._trade_ids)
        data = [row]
        if what == "nan_strings":
            row["price"] = row["qty"] = "NaN"
        elif what == "negative_size":
            row["qty"] = -row["qty"]
        elif what == "wrong_symbol":
            row["symbol"], row["price"] = G.other_id(row["symbol"]), row["price"] * G.WRONG_SYMBOL_SCALE
        elif what == "enormous":
            data = [row] * G.repeats(len(json.dumps(row)))
        msg = {"channel": "trade", "type": "update", "data": data}
        return G.truncated(msg) if what == "truncated_json" else msg

    def _send_garbage(self, c: Conn, msg: str | dict, what: str, channel: str, symbol: str) -> None:
        text = msg if isinstance(msg, str) else json.dumps(msg)
        c.send(text)
        self.emu.faults.garbage_out(what, channel, symbol, len(text), self.clock.data_now())

    # listener callbacks
    def on_book(self, m: MarketInfo) -> None:
        subs = [c for c in list(self.conns) if f"book:{m.id}" in c.topics]
        what = self.emu.faults.take_garbage("book") if subs else None  # kept pending until someone listens
        for c in subs:
            if what is not None:
                self._send_garbage(c, self._garbage_book(c, m, what), what, "book", m.id)
            self._send_book(c, m, snapshot=False)

    def on_trades(self, m: MarketInfo, trades: list[PublicTrade]) -> None:
        subs = [c for c in list(self.conns) if f"trade:{m.id}" in c.topics]
        what = self.emu.faults.take_garbage("trade") if subs else None
        for c in subs:
            if what is not None:
                self._send_garbage(c, self._garbage_trades(c, m, trades, what), what, "trade", m.id)
            sym = c.state[f"sym:trade:{m.id}"]
            c.send({"channel": "trade", "type": "update", "data": [self._trade(m, t, sym) for t in trades]})

    def on_order(self, acct: Account, order: Order) -> None:
        # one report per state change; a fill's own report is the 'trade' execution
        if order.status == "partially_filled" or self._sent_status.get(order.order_id) == order.status:
            return
        self._sent_status[order.order_id] = order.status
        exec_type = {"new": "new", "filled": "filled", "cancelled": "canceled", "rejected": "canceled"}[order.status]
        self.private_send(acct, "executions", {"channel": "executions", "type": "update",
                                               "data": [self._order_row(order, exec_type)], "sequence": next(self._exec_seq)},
                          faulty=False)

    def on_fill(self, acct: Account, fill: Fill, order: Order) -> None:
        self.private_send(acct, "executions", {"channel": "executions", "type": "update",
                                               "data": [self._fill_row(fill, order)], "sequence": next(self._exec_seq)})


def _diff(old: list[tuple[float, float]], new: list[tuple[float, float]]) -> list[tuple[float, float]]:
    o, n = dict(old), dict(new)
    out = [(p, q) for p, q in new if o.get(p) != q]
    out += [(p, 0.0) for p in o if p not in n]
    return out
