"""Bybit v5 spot, emulated: the REST paths, the public and private websockets and the error codes
that ccxt's ``bybit`` / ``ccxt.pro.bybit`` use, over a :class:`VenueEmulator`.

Wire formats follow the v5 docs as ccxt parses them (ccxt/bybit.py, ccxt/pro/bybit.py). The account
is a unified trading account (``/v5/user/query-api`` says ``uta: 1``), so ccxt takes its UTA paths.

Signatures are checked as Bybit checks them: ``X-BAPI-SIGN`` = hex HMAC-SHA256(secret, timestamp +
api key + recv window + (raw JSON body for POST | raw query string for GET)), and the timestamp must
satisfy ``server_time - recv_window <= timestamp < server_time + 1000`` (ms). The private websocket's
``auth`` op carries ``[key, expires, hex HMAC-SHA256(secret, "GET/realtime" + expires)]`` and fails
once ``expires`` has passed.

Fees as Bybit charges spot fees (and as ccxt infers their currency): a buy pays a positive fee in the
base token and gets a rebate in quote; a sell pays in quote and gets a rebate in base. The amount is
the matching engine's fee in quote currency, converted at the fill price.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from execution.sandbox import garbage as G
from execution.sandbox.ledger import Account, Fill, Order
from execution.sandbox.market import PublicTrade
from execution.sandbox.server import Conn, VenueServer
from execution.sandbox.venue import MarketInfo, VenueEmulator, VenueReject, venue_from_config

DEFAULT_RECV_WINDOW = 5000

# neutral reject reason -> (retCode, retMsg) as Bybit answers
ERRORS: dict[str, tuple[int, str]] = {
    "params": (10001, "params error"),
    "unknown_symbol": (170121, "Invalid symbol."),
    "bad_side": (10001, "params error: side invalid"),
    "bad_type": (170116, "Invalid orderType."),
    "bad_tif": (170115, "Invalid timeInForce."),
    "bad_qty": (170130, "Data sent for paramter 'qty' is not valid."),
    "bad_price": (170130, "Data sent for paramter 'price' is not valid."),
    "qty_below_min": (170136, "Order quantity lower than the minimum."),
    "qty_off_lot": (170137, "Order volume decimal too long"),
    "price_off_tick": (170134, "Order price decimal too long."),
    "notional_below_min": (170140, "Order value exceeded lower limit."),
    "insufficient_funds": (170131, "Insufficient balance."),
    "duplicate_client_id": (170141, "Duplicate clientOrderId"),
    "post_only_cross": (170218, "The LIMIT-MAKER order is rejected due to invalid price."),
    "halted": (170210, "New order rejected."),
    "not_found": (170213, "Order does not exist."),
    "too_late": (170213, "Order does not exist."),
    "defaulted": (10016, "System error. Please try again later."),
    "api_key": (10003, "API key is invalid."),
    "sign": (10004, "error sign! Signature for this request is not valid."),
    "timestamp": (10002, "invalid request, please check your server timestamp or recv_window param"),
    "rate_limit": (10006, "Too many visits. Exceeded the API Rate Limit."),
}

STATUS = {"new": "New", "partially_filled": "PartiallyFilled", "filled": "Filled", "cancelled": "Cancelled",
          "rejected": "Rejected"}


def num(x: float) -> str:
    """A number as Bybit writes it: a decimal string, no exponent, no trailing zeros."""
    s = f"{x:.10f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def bybit_fee(side: str, fee_quote: float, price: float, base: str, quote: str) -> tuple[float, str]:
    """Bybit spot: a fee is paid in what you receive, a rebate in what you pay (see module doc)."""
    in_base = (side == "buy") == (fee_quote > 0)
    return (fee_quote / price, base) if in_base else (fee_quote, quote)


def market_id(symbol: str) -> tuple[str, str, str]:
    """'AAPLX/USDT' -> ('AAPLXUSDT', 'AAPLX', 'USDT')."""
    base, quote = symbol.split("/")
    return base + quote, base, quote


def new_emulator(cfg, name: str, data_dir, clock) -> VenueEmulator:
    ids = itertools.count(1_900_000_000_000_000_000)
    return venue_from_config(cfg, name, data_dir, clock, market_id=market_id, order_id=lambda: str(next(ids)),
                             trade_id=lambda: str(uuid.uuid4()), fee_rule=bybit_fee)


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class BybitError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        code, msg = ERRORS[reason]
        super().__init__(msg)
        self.code, self.msg = code, (msg if not detail else f"{msg} {detail}".strip())


class BybitServer(VenueServer):
    """Bybit v5 spot over HTTP + websockets on one loopback port."""

    kind = "bybit"

    def urls(self) -> dict[str, str]:
        return {"rest": self.http_url, "ws_public": f"{self.ws_url}/v5/public/spot", "ws_private": f"{self.ws_url}/v5/private"}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v5/market/time", self.h_time)
        r.add_get("/v5/market/instruments-info", self.h_instruments)
        r.add_get("/v5/market/orderbook", self.h_orderbook)
        r.add_get("/v5/market/recent-trade", self.h_recent_trade)
        r.add_get("/v5/user/query-api", self.private(self.h_query_api))
        r.add_get("/v5/account/info", self.private(self.h_account_info))
        r.add_get("/v5/asset/coin/query-info", self.private(self.h_coin_info))
        r.add_get("/v5/account/wallet-balance", self.private(self.h_wallet))
        r.add_post("/v5/order/create", self.private(self.h_create, order_call=True))
        r.add_post("/v5/order/cancel", self.private(self.h_cancel, order_call=True))
        r.add_post("/v5/order/cancel-all", self.private(self.h_cancel_all, order_call=True))
        r.add_get("/v5/order/realtime", self.private(self.h_realtime))
        r.add_get("/v5/order/history", self.private(self.h_history))
        r.add_get("/v5/execution/list", self.private(self.h_executions))
        r.add_get("/v5/public/spot", self.ws_public)
        r.add_get("/v5/private", self.ws_private)

    # -- envelopes --
    def ok(self, result: Any) -> web.Response:
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                                  "time": self.clock.wall_now() // 1_000_000})

    def err(self, code: int, msg: str, status: int = 200, headers: dict | None = None) -> web.Response:
        return web.json_response({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                                  "time": self.clock.wall_now() // 1_000_000}, status=status, headers=headers)

    def rate_limit_response(self) -> web.Response:
        code, msg = ERRORS["rate_limit"]
        reset = self.clock.wall_now() // 1_000_000 + 1000
        return self.err(code, msg, headers={"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
                                            "X-Bapi-Limit-Reset-Timestamp": str(reset)})

    def private(self, handler, order_call: bool = False):
        async def wrapped(request: web.Request) -> web.Response:
            raw = await request.text() if request.method == "POST" else request.query_string
            try:
                acct = self.authenticate(request, raw)
                params = (json.loads(raw) if raw else {}) if request.method == "POST" else dict(parse_qsl(raw, keep_blank_values=True))
                result = handler(acct, params)
            except BybitError as exc:
                return self.err(exc.code, exc.msg)
            except VenueReject as exc:
                await self.hold_refusal(order_call)
                code, msg = ERRORS.get(exc.reason, ERRORS["params"])
                return self.err(code, msg)
            except ValueError:
                return self.err(*ERRORS["params"])
            await self.hold_ack(order_call)
            return self.ok(result)
        return wrapped

    def authenticate(self, request: web.Request, payload: str) -> Account:
        h = request.headers
        key = h.get("X-BAPI-API-KEY", "")
        acct = self.emu.accounts.get(key)
        if acct is None:
            raise BybitError("api_key")
        try:
            ts = int(h.get("X-BAPI-TIMESTAMP", ""))
            window = int(h.get("X-BAPI-RECV-WINDOW", DEFAULT_RECV_WINDOW))
        except ValueError:
            raise BybitError("timestamp") from None
        now = self.clock.wall_now() // 1_000_000
        if not (now - window <= ts < now + 1000):
            raise BybitError("timestamp", f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]")
        want = sign(acct.secret, f"{ts}{key}{window}{payload}")
        if not hmac.compare_digest(want, h.get("X-BAPI-SIGN", "")):
            raise BybitError("sign")
        return acct

    # -- public REST --
    async def h_time(self, request: web.Request) -> web.Response:
        ns = self.clock.wall_now()
        return self.ok({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)})

    def instrument(self, m: MarketInfo) -> dict[str, Any]:
        return {"symbol": m.id, "baseCoin": m.base, "quoteCoin": m.quote, "innovation": "0",
                "status": "Trading", "marginTrading": "none", "stTag": "0",
                "lotSizeFilter": {"basePrecision": num(m.lot), "quotePrecision": num(m.tick), "minOrderQty": num(m.lot),
                                  "maxOrderQty": "1000000", "minOrderAmt": num(m.min_notional), "maxOrderAmt": "10000000"},
                "priceFilter": {"tickSize": num(m.tick)}, "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"}}

    async def h_instruments(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("category") != "spot":
            return self.ok({"category": q.get("category", ""), "list": [], "nextPageCursor": ""})
        ms = [m for m in self.emu.markets.values() if not q.get("symbol") or q["symbol"] == m.id]
        return self.ok({"category": "spot", "list": [self.instrument(m) for m in ms], "nextPageCursor": ""})

    def _market_q(self, request: web.Request) -> MarketInfo:
        try:
            return self.emu.market(request.query.get("symbol", ""))
        except VenueReject:
            raise BybitError("unknown_symbol") from None

    async def h_orderbook(self, request: web.Request) -> web.Response:
        try:
            m = self._market_q(request)
        except BybitError as exc:
            return self.err(exc.code, exc.msg)
        limit = min(int(request.query.get("limit", 1)), 200)
        seq, ts, bids, asks = self.emu.shown_book(m, limit)
        result = {"s": m.id, "b": [[num(p), num(q)] for p, q in bids], "a": [[num(p), num(q)] for p, q in asks],
                  "ts": self.clock.wall_ms(ts), "u": seq, "seq": seq, "cts": self.clock.wall_ms(ts)}
        what = self.emu.faults.take_garbage("rest")
        if what is not None:
            return self._garbage_rest(m, what, result, bids, asks)
        return self.ok(result)

    def _garbage_rest(self, m: MarketInfo, what: str, result: dict, bids: list, asks: list) -> web.Response:
        """A hostile order-book answer in Bybit's envelope (garbage.py says what each kind is)."""
        r = dict(result)
        if what == "nan_strings":
            r["b"] = [["NaN", "NaN"]] + r["b"]
        elif what == "negative_size" and bids:
            r["b"] = [[num(bids[0][0]), "-" + num(bids[0][1])]] + r["b"][1:]
        elif what == "crossed_book" and G.crossed_bid(bids, asks, m.tick):
            p, q = G.crossed_bid(bids, asks, m.tick)
            r["b"] = [[num(p), num(q)]] + r["b"]
        elif what == "wrong_symbol":
            r["s"] = G.other_id(m.id)
            r["b"] = [[num(p), num(q)] for p, q in G.scaled(bids)]
            r["a"] = [[num(p), num(q)] for p, q in G.scaled(asks)]
        elif what == "enormous":
            k = G.repeats(len(json.dumps(r["b"] + r["a"])))
            r["b"], r["a"] = r["b"] * k, r["a"] * k
        body = json.dumps({"retCode": 0, "retMsg": "OK", "result": r, "retExtInfo": {},
                           "time": self.clock.wall_now() // 1_000_000})
        if what == "truncated_json":
            body = G.truncated(body)
        self.emu.faults.garbage_out(what, "rest", m.id, len(body), self.clock.data_now())
        return web.Response(text=body, content_type="application/json")

    async def h_recent_trade(self, request: web.Request) -> web.Response:
        try:
            m = self._market_q(request)
        except BybitError as exc:
            return self.err(exc.code, exc.msg)
        limit = min(int(request.query.get("limit", 60)), 60)
        rows = list(m.trades)[-limit:][::-1]
        return self.ok({"category": "spot", "list": [
            {"execId": t.id, "symbol": m.id, "price": num(t.price), "size": num(t.size),
             "side": "Buy" if t.side > 0 else "Sell", "time": str(self.clock.wall_ms(t.ts)), "isBlockTrade": False}
            for t in rows]})

    # -- private REST --
    def h_query_api(self, acct: Account, p: dict) -> dict:
        return {"id": "1", "note": "stockbridge sandbox", "readOnly": 0, "secret": "", "type": 1,
                "permissions": {"Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"]}, "ips": ["*"], "unified": 0, "uta": 1,
                "userID": 1, "isMaster": True}

    def h_account_info(self, acct: Account, p: dict) -> dict:
        return {"unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
                "spotHedgingStatus": "OFF", "updatedTime": str(self.clock.wall_now() // 1_000_000), "dcpStatus": "OFF",
                "timeWindow": 10, "smpGroup": 0}

    def h_coin_info(self, acct: Account, p: dict) -> dict:
        coins = sorted({c for m in self.emu.markets.values() for c in (m.base, m.quote)})
        return {"rows": [{"name": c, "coin": c, "remainAmount": "1000000", "chains": []} for c in coins]}

    def wallet(self, acct: Account) -> dict:
        coins = []
        for c, b in sorted(acct.balances.items()):
            coins.append({"coin": c, "walletBalance": num(b.total), "locked": num(b.locked), "equity": num(b.total),
                          "usdValue": "", "borrowAmount": "0", "accruedInterest": "0", "totalOrderIM": "0",
                          "totalPositionIM": "0", "availableToWithdraw": "", "spotHedgingQty": "0"})
        return {"accountType": "UNIFIED", "totalEquity": "", "coin": coins}

    def h_wallet(self, acct: Account, p: dict) -> dict:
        if p.get("accountType", "UNIFIED") != "UNIFIED":
            raise BybitError("params", "accountType only support UNIFIED")
        return {"list": [self.wallet(acct)]}

    def _spot(self, p: dict) -> None:
        if p.get("category") != "spot":
            raise BybitError("params", "category only support spot")

    def h_create(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        side = {"Buy": "buy", "Sell": "sell"}.get(p.get("side", ""))
        if side is None:
            raise VenueReject("bad_side")
        otype = {"Limit": "limit", "Market": "market"}.get(p.get("orderType", ""))
        if otype is None:
            raise VenueReject("bad_type")
        tif = p.get("timeInForce", "GTC" if otype == "limit" else "IOC")
        if tif == "FOK":
            raise VenueReject("bad_tif")
        m = self.emu.market(p.get("symbol", ""))
        try:
            qty = float(p.get("qty", ""))
            price = float(p["price"]) if otype == "limit" else None
        except (KeyError, ValueError):
            raise BybitError("params") from None
        if otype == "market" and side == "buy" and p.get("marketUnit", "quoteCoin") == "quoteCoin":
            # a market buy's qty is the quote amount to spend: take what that buys at the current asks
            qty = self._base_for_cost(m, qty)
        o = self.emu.place(acct, m.id, side, otype, qty, price, tif=tif, client_id=p.get("orderLinkId", ""),
                           check_grid=True)
        if o.status == "rejected" and o.reason == "post_only":
            raise VenueReject("post_only_cross")
        return {"orderId": o.order_id, "orderLinkId": o.client_id}

    def _base_for_cost(self, m: MarketInfo, cost: float) -> float:
        bids, asks = m.sim.book()
        left, base = cost, 0.0
        for p, q in asks:
            take = min(q, left / p)
            base += take
            left -= take * p
            if left <= 1e-9:
                break
        lots = int(base / m.lot + 1e-9)
        if lots <= 0:
            raise VenueReject("qty_below_min")
        return lots * m.lot

    def _find(self, acct: Account, p: dict) -> Order:
        if not p.get("orderId") and not p.get("orderLinkId"):
            raise BybitError("params", "orderId or orderLinkId is required")
        o = self.emu.find_order(acct, p.get("orderId"), p.get("orderLinkId"))
        if p.get("symbol") and o.symbol != p["symbol"]:
            raise VenueReject("not_found")
        return o

    def h_cancel(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        o = self._find(acct, p)
        self.emu.cancel(acct, o)
        return {"orderId": o.order_id, "orderLinkId": o.client_id}

    def h_cancel_all(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        out = []
        for o in list(acct.orders.values()):
            if o.is_final or (p.get("symbol") and o.symbol != p["symbol"]):
                continue
            try:
                self.emu.cancel(acct, o)
            except VenueReject as exc:
                if exc.reason == "halted":
                    raise
                continue
            out.append({"orderId": o.order_id, "orderLinkId": o.client_id})
        return {"list": out, "success": "1"}

    def order_json(self, o: Order, ws: bool = False) -> dict[str, Any]:
        status = STATUS[o.status]
        if o.status == "cancelled" and o.filled > 0:
            status = "PartiallyFilledCanceled"
        d = {"orderId": o.order_id, "orderLinkId": o.client_id, "blockTradeId": "", "symbol": o.symbol,
             "price": num(o.price), "qty": num(o.qty), "side": "Buy" if o.side == "buy" else "Sell", "isLeverage": "0",
             "positionIdx": 0, "orderStatus": status,
             "cancelType": {"user": "CancelByUser", "defaulted": "CancelBySystem", "ioc": "UNKNOWN"}.get(o.reason, "UNKNOWN"),
             "rejectReason": "EC_PostOnlyWillTakeLiquidity" if o.reason == "post_only" else ("EC_NoError" if o.status != "rejected" else "EC_Others"),
             "avgPrice": num(o.avg_price) if o.filled else "", "leavesQty": num(o.leaves), "leavesValue": num(o.leaves * o.price),
             "cumExecQty": num(o.filled), "cumExecValue": num(o.cost), "cumExecFee": num(o.fee),
             "timeInForce": o.tif, "orderType": "Limit" if o.order_type == "limit" else "Market", "stopOrderType": "",
             "orderIv": "", "triggerPrice": "0", "takeProfit": "", "stopLoss": "", "tpTriggerBy": "", "slTriggerBy": "",
             "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "reduceOnly": False, "closeOnTrigger": False,
             "smpType": "None", "smpGroup": 0, "smpOrderId": "", "marketUnit": "baseCoin" if o.order_type == "market" else "",
             "createdTime": str(self.clock.wall_ms(o.created)), "updatedTime": str(self.clock.wall_ms(o.updated))}
        if o.fee_currency:
            d["cumFeeDetail"] = {o.fee_currency: num(o.fee)}
        if ws:
            d["category"] = "spot"
        return d

    def _select(self, acct: Account, p: dict, final: bool | None) -> list[Order]:
        out = []
        for o in reversed(list(acct.orders.values())):  # newest first, as Bybit lists
            if p.get("symbol") and o.symbol != p["symbol"]:
                continue
            if p.get("orderId") and o.order_id != p["orderId"]:
                continue
            if p.get("orderLinkId") and o.client_id != p["orderLinkId"]:
                continue
            if final is not None and o.is_final != final:
                continue
            out.append(o)
        return out

    def _page(self, rows: list, p: dict, default: int, most: int) -> tuple[list, str]:
        limit = max(1, min(int(p.get("limit", default)), most))
        start = int(p.get("cursor") or 0)
        page = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else ""
        return page, nxt

    def h_realtime(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        by_id = bool(p.get("orderId") or p.get("orderLinkId"))
        # open orders; asked by id, recent closed ones too (UTA: openOnly=0 with an id)
        rows = self._select(acct, p, None if by_id else False)
        page, nxt = self._page(rows, p, 20, 50)
        return {"category": "spot", "list": [self.order_json(o) for o in page], "nextPageCursor": nxt}

    def h_history(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        rows = self._select(acct, p, True)
        rows = self._time_filter(rows, p, lambda o: o.updated)
        page, nxt = self._page(rows, p, 20, 50)
        return {"category": "spot", "list": [self.order_json(o) for o in page], "nextPageCursor": nxt}

    def _time_filter(self, rows: list, p: dict, ts_of) -> list:
        lo = int(p["startTime"]) if p.get("startTime") else None
        hi = int(p["endTime"]) if p.get("endTime") else None
        out = []
        for r in rows:
            ms = self.clock.wall_ms(ts_of(r))
            if (lo is None or ms >= lo) and (hi is None or ms <= hi):
                out.append(r)
        return out

    def exec_json(self, f: Fill, o: Order, ws: bool = False) -> dict[str, Any]:
        d = {"symbol": f.symbol, "orderId": f.order_id, "orderLinkId": f.client_id, "side": "Buy" if f.side == "buy" else "Sell",
             "orderPrice": num(o.price), "orderQty": num(o.qty), "leavesQty": num(max(o.qty - sum(x.qty for x in o.fills if x.seq <= f.seq), 0.0)),
             "orderType": "Limit" if o.order_type == "limit" else "Market", "stopOrderType": "", "execFee": num(f.fee),
             "execId": f.trade_id, "execPrice": num(f.price), "execQty": num(f.qty), "execType": "Trade",
             "execValue": num(f.price * f.qty), "execTime": str(self.clock.wall_ms(f.ts)), "feeCurrency": f.fee_currency,
             "isMaker": f.maker, "feeRate": num(abs(f.fee_rate)) if f.fee_rate >= 0 else num(f.fee_rate), "tradeIv": "", "markIv": "",
             "markPrice": num(f.price), "indexPrice": "", "underlyingPrice": "", "blockTradeId": "", "closedSize": "", "seq": f.seq}
        if ws:
            d["category"] = "spot"
        return d

    def h_executions(self, acct: Account, p: dict) -> dict:
        self._spot(p)
        rows = [f for f in reversed(acct.fills)
                if (not p.get("symbol") or f.symbol == p["symbol"]) and (not p.get("orderId") or f.order_id == p["orderId"])
                and (not p.get("orderLinkId") or f.client_id == p["orderLinkId"])]
        rows = self._time_filter(rows, p, lambda f: f.ts)
        page, nxt = self._page(rows, p, 50, 100)
        return {"category": "spot", "list": [self.exec_json(f, acct.orders[f.order_id]) for f in page], "nextPageCursor": nxt}

    # -- websockets --
    async def ws_public(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, "public")

    async def ws_private(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, "private")

    def _conn_id(self, c: Conn) -> str:
        return c.state.setdefault("conn_id", str(uuid.uuid4()))

    async def on_ws_message(self, c: Conn, data: Any) -> None:
        op = data.get("op") if isinstance(data, dict) else None
        req_id = data.get("req_id") if isinstance(data, dict) else None
        base = {"conn_id": self._conn_id(c)}
        if req_id is not None:
            base["req_id"] = req_id
        if op == "ping":
            if c.scope == "public":
                c.send({"success": True, "ret_msg": "pong", **base, "op": "ping"})
            else:
                c.send({**base, "op": "pong", "args": [str(self.clock.wall_now() // 1_000_000)]})
            return
        if op == "auth" and c.scope == "private":
            c.send(self._auth(c, data.get("args") or []) | base)
            return
        if op in ("subscribe", "unsubscribe"):
            topics = [str(t) for t in data.get("args") or []]
            if c.scope == "private" and c.account is None:
                c.send({"success": False, "ret_msg": "Request not authorized", **base, "op": op})
                return
            bad = [t for t in topics if not self._valid_topic(c, t)]
            if bad:
                c.send({"success": False, "ret_msg": f"Invalid topic :[{','.join(bad)}]", **base, "op": op})
                return
            if op == "unsubscribe":
                c.topics.difference_update(topics)
                c.send({"success": True, "ret_msg": "", **base, "op": op})
                return
            c.topics.update(topics)
            c.send({"success": True, "ret_msg": "subscribe" if c.scope == "public" else "", **base, "op": op})
            for t in topics:
                if t.startswith("orderbook."):
                    self._send_book(c, t, snapshot=True)
            return
        c.send({"success": False, "ret_msg": f"Invalid op: {op}", **base, "op": op or ""})

    def _auth(self, c: Conn, args: list) -> dict:
        fail = {"success": False, "ret_msg": "Request not authorized", "op": "auth"}
        if len(args) != 3:
            return fail | {"ret_msg": "Params Error"}
        key, expires, signature = str(args[0]), args[1], str(args[2])
        acct = self.emu.accounts.get(key)
        if acct is None:
            return fail | {"ret_msg": "Invalid apikey"}
        try:
            exp = int(expires)
        except ValueError:
            return fail | {"ret_msg": "Params Error"}
        if exp < self.clock.wall_now() // 1_000_000:
            return fail | {"ret_msg": "Params Error: expires is in the past"}
        if not hmac.compare_digest(sign(acct.secret, f"GET/realtime{exp}"), signature):
            return fail | {"ret_msg": "Invalid sign"}
        c.account = acct
        return {"success": True, "ret_msg": "", "op": "auth"}

    def _valid_topic(self, c: Conn, t: str) -> bool:
        if c.scope == "private":
            return t in ("order", "execution", "wallet")
        parts = t.split(".")
        if parts[0] == "orderbook" and len(parts) == 3:
            return parts[1] in ("1", "50", "200", "1000") and parts[2] in self.emu.markets
        if parts[0] == "publicTrade" and len(parts) == 2:
            return parts[1] in self.emu.markets
        return False

    def _send_book(self, c: Conn, topic: str, snapshot: bool) -> None:
        _, depth, mid = topic.split(".")
        m = self.emu.markets[mid]
        seq, ts, bids, asks = self.emu.shown_book(m, int(depth))
        last = c.state.get(topic)
        now_ms = self.clock.wall_ms(ts)
        if snapshot or last is None or int(depth) == 1:
            b, a, kind = bids, asks, "snapshot"
        else:
            b = _diff(last[0], bids)
            a = _diff(last[1], asks)
            kind = "delta"
            if not b and not a:
                return
        c.state[topic] = (bids, asks)
        c.send({"topic": topic, "ts": now_ms, "type": kind,
                "data": {"s": m.id, "b": [[num(p), num(q)] for p, q in b], "a": [[num(p), num(q)] for p, q in a],
                         "u": seq, "seq": seq}, "cts": now_ms})

    def _garbage_book(self, c: Conn, topic: str, what: str) -> str | dict:
        """A hostile message on book ``topic`` of ``c``, made from the book this connection was last
        sent (the client's book, if it applied every message); garbage.py says what each kind is."""
        _, depth, mid = topic.split(".")
        m = self.emu.markets[mid]
        seq, ts, _, _ = self.emu.shown_book(m, int(depth))
        bids, asks = c.state.get(topic) or ([], [])
        now_ms = self.clock.wall_ms(ts)
        rows = lambda lv: [[num(p), num(q)] for p, q in lv]  # noqa: E731
        b, a, kind, s = rows(bids), rows(asks), "delta", m.id
        if what == "nan_strings":
            b, a = [["NaN", "NaN"]], []
        elif what == "negative_size" and bids:
            p, q = G.negative_bid(bids, asks, m.tick)
            b, a = [[num(p), "-" + num(-q)]], []
        elif what == "crossed_book" and G.crossed_bid(bids, asks, m.tick):
            p, q = G.crossed_bid(bids, asks, m.tick)
            b, a = [[num(p), num(q)]], []
        elif what == "wrong_symbol":
            b, a, kind, s = rows(G.scaled(bids)), rows(G.scaled(asks)), "snapshot", G.other_id(m.id)
        elif what == "enormous":  # the unchanged levels, many times over: harmless content, hostile size
            k = G.repeats(len(json.dumps(b + a)))
            b, a = b * k, a * k
        msg = {"topic": topic, "ts": now_ms, "type": kind, "data": {"s": s, "b": b, "a": a, "u": seq, "seq": seq},
               "cts": now_ms}
        return G.truncated(msg) if what == "truncated_json" else msg

    def _garbage_trades(self, m: MarketInfo, topic: str, trades: list[PublicTrade], what: str) -> str | dict:
        """A hostile print on ``topic`` shaped like Bybit's publicTrade message (garbage.py)."""
        t = trades[-1]
        row = {"T": self.clock.wall_ms(t.ts), "s": m.id, "S": "Buy" if t.side >= 0 else "Sell", "v": num(t.size),
               "p": num(t.price), "L": "ZeroPlusTick", "i": str(uuid.uuid4()), "BT": False}
        data = [row]
        if what == "nan_strings":
            row["p"] = row["v"] = "NaN"
        elif what == "negative_size":
            row["v"] = "-" + num(t.size)
        elif what == "wrong_symbol":
            row["s"], row["p"] = G.other_id(m.id), num(t.price * G.WRONG_SYMBOL_SCALE)
        elif what == "enormous":
            data = [row] * G.repeats(len(json.dumps(row)))
        msg = {"topic": topic, "type": "snapshot", "ts": self.clock.wall_ms(t.ts), "data": data}
        return G.truncated(msg) if what == "truncated_json" else msg

    def _send_garbage(self, c: Conn, msg: str | dict, what: str, channel: str, symbol: str) -> None:
        text = msg if isinstance(msg, str) else json.dumps(msg)
        c.send(text)
        self.emu.faults.garbage_out(what, channel, symbol, len(text), self.clock.data_now())

    # listener callbacks
    def on_book(self, m: MarketInfo) -> None:
        subs = [(c, t) for c in list(self.conns) for t in list(c.topics)
                if t.startswith("orderbook.") and t.endswith("." + m.id)]
        what = self.emu.faults.take_garbage("book") if subs else None  # kept pending until someone listens
        for c, t in subs:
            if what is not None and int(t.split(".")[1]) > 1:  # depth 1 is all snapshots: nothing to poison
                self._send_garbage(c, self._garbage_book(c, t, what), what, "book", m.id)
            self._send_book(c, t, snapshot=False)

    def on_trades(self, m: MarketInfo, trades: list[PublicTrade]) -> None:
        topic = f"publicTrade.{m.id}"
        subs = [c for c in self.conns if topic in c.topics]
        if not subs:
            return
        what = self.emu.faults.take_garbage("trade")
        if what is not None:
            bad = self._garbage_trades(m, topic, trades, what)
            for c in subs:
                self._send_garbage(c, bad, what, "trade", m.id)
        data = [{"T": self.clock.wall_ms(t.ts), "s": m.id, "S": "Buy" if t.side >= 0 else "Sell", "v": num(t.size),
                 "p": num(t.price), "L": "ZeroPlusTick", "i": t.id, "BT": False} for t in trades]
        msg = {"topic": topic, "type": "snapshot", "ts": self.clock.wall_ms(trades[-1].ts), "data": data}
        for c in subs:
            c.send(msg)

    def on_order(self, acct: Account, order: Order) -> None:
        self.private_send(acct, "order", {"id": str(uuid.uuid4()), "topic": "order",
                                          "creationTime": self.clock.wall_ms(order.updated), "data": [self.order_json(order, ws=True)]},
                          faulty=False)

    def on_fill(self, acct: Account, fill: Fill, order: Order) -> None:
        self.private_send(acct, "execution", {"id": str(uuid.uuid4()), "topic": "execution",
                                              "creationTime": self.clock.wall_ms(fill.ts), "data": [self.exec_json(fill, order, ws=True)]})

    def on_balance(self, acct: Account) -> None:
        self.private_send(acct, "wallet", {"id": str(uuid.uuid4()), "topic": "wallet",
                                           "creationTime": self.clock.wall_now() // 1_000_000, "data": [self.wallet(acct)]},
                          faulty=False)


def _diff(old: list[tuple[float, float]], new: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Levels that changed from ``old`` to ``new`` (size 0 = removed), as Bybit deltas carry them."""
    o, n = dict(old), dict(new)
    out = [(p, q) for p, q in new if o.get(p) != q]
    out += [(p, 0.0) for p in o if p not in n]
    return out
