"""What every sandbox server shares: the aiohttp app on a free loopback port, the clock driver, the
fault gate in front of the venue's routes, websocket connections with ordered outgoing queues, and the
control API.

Control API (HTTP on the same server, JSON):

- ``POST /sandbox/faults`` ``{"kind": ..., params...}`` -> the logged record (faults.py lists kinds);
- ``GET /sandbox/faults`` -> every fault set so far, with its wall and data time;
- ``POST /sandbox/step`` ``{"seconds": x}`` -> move a stepped clock (tests; ``--step``);
- ``GET /sandbox/info`` -> venue, kind, URLs, data time, markets and their book sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from typing import Any

from aiohttp import WSMsgType, web

from execution.sandbox.faults import FaultError, FaultRecord
from execution.sandbox.ledger import Account, Fill, Order
from execution.sandbox.market import PublicTrade
from execution.sandbox.venue import MarketInfo, VenueEmulator, VenueReject

log = logging.getLogger("stockbridge.sandbox")

HANG_S = 3600.0  # a "timeout" fault holds the request this long: the client gives up first


class Conn:
    """One websocket connection: messages leave in order through one writer task."""

    def __init__(self, ws: web.WebSocketResponse, scope: str):
        self.ws = ws
        self.scope = scope  # 'public' / 'private'
        self.account: Account | None = None
        self.topics: set[str] = set()
        self.state: dict[str, Any] = {}  # per-connection protocol state (e.g. last book sent per topic)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.writer: asyncio.Task | None = None

    def send(self, msg: Any, delay: float = 0.0) -> None:
        self.queue.put_nowait((msg, delay))

    async def run_writer(self) -> None:
        while True:
            msg, delay = await self.queue.get()
            if delay > 0:
                await asyncio.sleep(delay)  # a delayed message holds back the ones after it, as on one TCP stream
            if self.ws.closed:
                return
            try:
                if isinstance(msg, bytes):
                    await self.ws.send_bytes(msg)  # msgpack frames (Alpaca market data)
                else:
                    await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))
            except (ConnectionResetError, RuntimeError):
                return


class VenueServer(ABC):
    """Base of the per-venue servers: subclasses add routes and translate listener calls to messages."""

    kind = "venue"
    tick_s = 0.05  # how often a running (not stepped) sandbox carries the market forward, wall seconds

    def __init__(self, emu: VenueEmulator):
        self.emu = emu
        self.clock = emu.clock
        self.app = web.Application(middlewares=[self._gate])
        self.conns: set[Conn] = set()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._driver: asyncio.Task | None = None
        self._hanging: set[asyncio.Task] = set()
        self._held_fills: list[tuple[Account, str, Any]] = []  # fill messages a 'reorder' fault holds back
        self.app.router.add_post("/sandbox/faults", self._ctl_fault)
        self.app.router.add_get("/sandbox/faults", self._ctl_faults)
        self.app.router.add_post("/sandbox/step", self._ctl_step)
        self.app.router.add_get("/sandbox/info", self._ctl_info)
        self.add_routes(self.app)
        emu.listeners.append(self)

    # -- lifecycle --
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "VenueServer":
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.drive()
        return self

    def drive(self) -> None:
        """Carry the market forward as a running clock moves (a no-op on a stepped clock)."""
        if not self.clock.stepped and self._driver is None:
            self._driver = asyncio.create_task(self._drive())

    async def stop(self) -> None:
        if self._driver:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
        for c in list(self.conns):
            await self._close(c)
        if self.runner:
            await self.runner.cleanup()
        self.emu.listeners.remove(self)

    async def _drive(self) -> None:
        while True:
            try:
                self.emu.advance()
            except Exception:  # a bug in one step must not stop the sandbox silently
                log.exception("sandbox %s: advancing the market failed", self.emu.name)
            await asyncio.sleep(self.tick_s)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def urls(self) -> dict[str, str]:
        return {"rest": self.http_url, "ws": self.ws_url}

    # -- each venue's server defines these --
    @abstractmethod
    def add_routes(self, app: web.Application) -> None: ...

    def rate_limit_response(self) -> web.Response:
        return web.json_response({"error": "rate limit"}, status=429)

    def ban_response(self) -> web.Response:
        """A banned client's answer (HTTP 418, as Binance bans): ccxt raises DDoSProtection."""
        return web.Response(status=418, text="banned: too many requests after rate-limit errors", content_type="text/plain")

    def unavailable_response(self, status: int = 503) -> web.Response:
        return web.Response(status=status, text="Service Unavailable", content_type="text/html")

    # listener callbacks (venue.py): the venue servers send their own messages
    def on_book(self, m: MarketInfo) -> None: ...
    def on_trades(self, m: MarketInfo, trades: list[PublicTrade]) -> None: ...
    def on_order(self, acct: Account, order: Order) -> None: ...
    def on_fill(self, acct: Account, fill: Fill, order: Order) -> None: ...
    def on_balance(self, acct: Account) -> None: ...

    def on_fault(self, rec: FaultRecord) -> None:
        log.warning("sandbox %s: fault %s %s set (data time %d ns)", self.emu.name, rec.kind, rec.params, rec.data_ns)
        if rec.kind == "drop_ws":
            scope = rec.params.get("scope", "all")
            for c in list(self.conns):
                if scope in ("all", c.scope):
                    asyncio.ensure_future(self._close(c))
        elif rec.kind == "default":
            for c in list(self.conns):
                asyncio.ensure_future(self._close(c))

    # -- the fault gate --
    @web.middleware
    async def _gate(self, request: web.Request, handler):
        if request.path.startswith("/sandbox/"):
            return await handler(request)
        f = self.emu.faults
        if f.defaulted:
            return self.unavailable_response(503)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        if f.take("timeout"):
            await asyncio.sleep(HANG_S)
        if f.take("http_error"):
            return self.unavailable_response(f.http_status)
        now = self.clock.data_now()
        if f.banned(now):
            return self.ban_response()
        if f.refuse_for_rate(now):
            return self.rate_limit_response()
        return await handler(request)

    async def hold_ack(self, is_order_call: bool) -> None:
        """Apply the ack faults to an order call whose effect has already happened at the venue."""
        if not is_order_call:
            return
        f = self.emu.faults
        if f.take("lose_ack"):
            await asyncio.sleep(HANG_S)  # the client times out; the order stands
        if f.delay_s["ack"] > 0:
            await asyncio.sleep(f.delay_s["ack"])

    async def hold_refusal(self, is_order_call: bool) -> None:
        """Apply ``lose refusal`` to an order call the venue refused (nothing happened there)."""
        if is_order_call and self.emu.faults.take("lose_refusal"):
            await asyncio.sleep(HANG_S)  # the client times out, not knowing the venue said no

    def private_send(self, acct: Account, topic: str, msg: Any, faulty: bool = True) -> None:
        """A private message to every connection of ``acct`` subscribed to ``topic``. ``faulty``: the
        fill faults (lose / delay) apply to it: fill reports (executions, own trades), not order
        status or balance pushes, so a test sees a fill missing from the stream while the order
        stream and REST still tell the truth."""
        f = self.emu.faults
        targets = [c for c in self.conns if c.account is acct and topic in c.topics]
        if not targets:
            return
        if faulty and f.take("lose_fill"):
            return
        if faulty and f.take("reorder"):
            self._held_fills.append((acct, topic, msg))  # goes out after the next fill message
            return
        copies = 2 if faulty and f.take("duplicate") else 1
        for c in targets:
            for _ in range(copies):
                c.send(msg, f.delay_s["fill"] if faulty else 0.0)
        if faulty and self._held_fills:
            held, self._held_fills = self._held_fills, []
            for a, t, m in held:
                for c in (c for c in self.conns if c.account is a and t in c.topics):
                    c.send(m, f.delay_s["fill"])

    # -- websockets --
    async def serve_ws(self, request: web.Request, scope: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        c = Conn(ws, scope)
        c.writer = asyncio.create_task(c.run_writer())
        self.conns.add(c)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    await self.on_ws_garbage(c, msg.data)
                    continue
                await self.on_ws_message(c, data)
        finally:
            self.conns.discard(c)
            if c.writer:
                c.writer.cancel()
        return ws

    @abstractmethod
    async def on_ws_message(self, c: Conn, data: Any) -> None: ...

    async def on_ws_garbage(self, c: Conn, text: str) -> None:
        pass

    async def _close(self, c: Conn) -> None:
        self.conns.discard(c)
        if c.writer:
            c.writer.cancel()
        with contextlib.suppress(Exception):
            await c.ws.close(code=1001, message=b"sandbox: connection dropped")

    # -- control API --
    async def _ctl_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        kind = body.pop("kind", None)
        try:
            rec = self.emu.fault(kind, **body)
        except (FaultError, VenueReject) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(rec.as_dict())

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        return web.json_response([r.as_dict() for r in self.emu.faults.log])

    async def _ctl_step(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if not self.clock.stepped:
            return web.json_response({"error": "this sandbox runs on --speed; it has no stepped clock"}, status=400)
        self.clock.step(float(body.get("seconds", 1.0)))
        self.emu.advance()
        return web.json_response({"data_ns": self.clock.data_now()})

    async def _ctl_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.info())

    def info(self) -> dict[str, Any]:
        return {
            "venue": self.emu.name, "kind": self.kind, "urls": self.urls(), "data_ns": self.clock.data_now(),
            "stepped": self.clock.stepped, "speed": self.clock.speed,
            "markets": {m.id: {"symbol": m.symbol, "seq": m.seq, "status": m.sim.status} for m in self.emu.markets.values()},
        }
