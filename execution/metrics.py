"""The live bot's Prometheus endpoint (prometheus-client), on loopback only: the figures of the
terminal view, from :meth:`LiveRunner.snapshot`.

Gauges (labels in brackets): ``stockbridge_equity{basis=raw|haircut}`` and
``stockbridge_pnl{basis}`` quote ccy; ``stockbridge_net_delta`` shares; per venue
``stockbridge_position{venue}`` tokens, ``stockbridge_exposure{venue}`` and
``stockbridge_exposure_cap{venue}`` quote ccy, ``stockbridge_market_bid/ask{venue}`` and
``stockbridge_quote_bid/ask{venue}`` quote ccy (NaN when none), ``stockbridge_venue_ok{venue}``
(1 quoting allowed, 0 stale/stopped/not traded); counters as gauges of run totals:
``stockbridge_fills{venue}``, ``stockbridge_decisions``, ``stockbridge_events``,
``stockbridge_orders{venue,state}``, ``stockbridge_feed_rejected{feed,reason}`` (market-data
messages and books refused, execution/market_data.py and wire_guard.py),
``stockbridge_feed_resyncs{feed}``; ``stockbridge_kill_switch`` (1 tripped).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server


class LiveMetrics:
    """A registry of the run's gauges; :meth:`update` from a snapshot, :meth:`serve` on 127.0.0.1."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        g = lambda name, doc, labels=(): Gauge(name, doc, labels, registry=self.registry)  # noqa: E731
        self.equity = g("stockbridge_equity", "equity, quote ccy", ("basis",))
        self.pnl = g("stockbridge_pnl", "PnL since the start, quote ccy", ("basis",))
        self.net_delta = g("stockbridge_net_delta", "net delta, shares")
        self.position = g("stockbridge_position", "position relative to the start-up baseline, tokens", ("venue",))
        self.exposure = g("stockbridge_exposure", "balance value at the venue, quote ccy", ("venue",))
        self.cap = g("stockbridge_exposure_cap", "exposure cap, quote ccy", ("venue",))
        self.mkt = g("stockbridge_market", "market best price, quote ccy", ("venue", "side"))
        self.quote = g("stockbridge_quote", "our best quote, quote ccy", ("venue", "side"))
        self.ok = g("stockbridge_venue_ok", "1 when quoting is allowed at the venue", ("venue",))
        self.fills = g("stockbridge_fills", "fills journalled this run", ("venue",))
        self.orders = g("stockbridge_orders", "orders by state", ("venue", "state"))
        self.decisions = g("stockbridge_decisions", "decisions made by the trader core")
        self.events = g("stockbridge_events", "market-data events handed to the core")
        self.kill = g("stockbridge_kill_switch", "1 when the drawdown kill switch has tripped")
        self.feed_rejected = g("stockbridge_feed_rejected", "market-data messages or books refused, by reason",
                               ("feed", "reason"))
        self.feed_resyncs = g("stockbridge_feed_resyncs", "book streams resubscribed for a fresh snapshot", ("feed",))
        self.server = None
        self.thread = None

    def serve(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:``port`` (0: a free port); returns the port."""
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return int(self.server.server_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None

    def update(self, snap: dict[str, Any]) -> None:
        for basis in ("raw", "haircut"):
            self.equity.labels(basis).set(snap[f"equity_{basis}"])
            self.pnl.labels(basis).set(snap[f"pnl_{basis}"])
        self.net_delta.set(snap["net_delta"])
        for name, v in snap["venues"].items():
            self.position.labels(name).set(v["position"])
            self.exposure.labels(name).set(v["exposure"])
            self.cap.labels(name).set(v["cap"])
            self.mkt.labels(name, "bid").set(v["bid"])
            self.mkt.labels(name, "ask").set(v["ask"])
            self.quote.labels(name, "bid").set(v["our_bid"])
            self.quote.labels(name, "ask").set(v["our_ask"])
            self.ok.labels(name).set(1.0 if v["status"] == "ok" else 0.0)
            self.fills.labels(name).set(snap["fills"].get(name, 0))
        for name, states in snap["orders"]["orders"].items():
            for state, n in states.items():
                self.orders.labels(name, state).set(n)
        self.decisions.set(snap["decisions"])
        self.events.set(snap["events"])
        self.kill.set(1.0 if snap["guards"]["drawdown"]["state"] == "killed" else 0.0)
        for name, st in (snap.get("feeds") or {}).items():
            for reason, n in (st.rejected + st.wire).items():
                self.feed_rejected.labels(name, reason).set(n)
            self.feed_resyncs.labels(name).set(st.resyncs)


__all__ = ["LiveMetrics"]
