"""One live run, assembled: which venues, which adapters, the trader core, the journal, reconciliation.

:func:`plan_venues` decides what is traded and refuses what must not be (real money without both
the config and the command-line flag; a venue with no live adapter under real money);
:func:`open_adapters` makes each venue's client (ccxt.pro for the crypto venues, alpaca-py for the
broker) pointed at the in-process sandbox, the venues' own test environments, or the real venues;
:func:`check_grids` compares each market's tick and lot as the venue publishes them with the
config's; :func:`build_session` puts the core, journal, guards and runner together and reconciles.

Modes (``[live] sandbox``): ``true`` the loopback emulators in-process, replaying a store on the
replay's clock (the core runs on the replay's time and the venues show it); ``"testnet"`` the
venues' own sandboxes (ccxt ``set_sandbox_mode(True)``, alpaca-py ``paper=True``), keys from the
environment; ``false`` real venues, only with ``--real-money``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt

from execution.backoff import BackoffAdapter
from execution.guards import Guards
from execution.journal import Journal
from execution.reconcile import VenueReconciliation, reconcile_venue
from execution.runner import LiveRunner, LiveVenue
from execution.venue import VenueLink, orders_skip_the_queue, strictly_increasing_nonce
from stockbridge.config import StockbridgeConfig
from stockbridge.errors import ConfigError, StockbridgeError, key_path

log = logging.getLogger("stockbridge.live")

# a venue that cannot answer now (network, 5xx, timeouts, its rate limit, our back-off hold): worth asking again
TRANSIENT = (ccxt.NetworkError, asyncio.TimeoutError)


class VenueUnavailable(StockbridgeError):
    """A venue did not answer the start-up calls for ``live.startup_retry_s``."""

    exit_code = 3


async def until_answered(venue: str, what: str, call, *, give_up_s: float, first_s: float = 0.5, max_s: float = 8.0):
    """``await call()`` again through transient errors, waiting ``first_s`` doubling to ``max_s``
    between tries, for up to ``give_up_s`` (wall s); then :class:`VenueUnavailable` naming the venue,
    the step and the last error. Start-up calls only: each try must be safe to repeat."""
    began, wait = time.monotonic(), first_s
    while True:
        try:
            return await call()
        except TRANSIENT as exc:
            if time.monotonic() - began + wait > give_up_s:
                raise VenueUnavailable(f"{venue}: {what} failed for {give_up_s:g} s (last: {type(exc).__name__}); "
                                       "nothing was traded there") from None
            log.warning("%s: %s failed (%s), again in %.1f s", venue, what, type(exc).__name__, wait)
            await asyncio.sleep(wait)
            wait = min(2 * wait, max_s)


NS = 1_000_000_000
CCXT_VENUES = ("bybit", "kraken")
BROKER_VENUES = ("alpaca",)


class LiveRefused(StockbridgeError):
    """The run must not start; the message is the one line that says why."""


@dataclass
class VenuePlan:
    """Which venues of the config are traded this run and which are not (with why)."""

    mode: str                                   # "sandbox" / "testnet" / "real"
    traded: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def live_adapter_kind(venue_cfg) -> str | None:
    """'ccxt' or 'alpaca' for a venue the live bot can trade, None for one it cannot (a DEX)."""
    if venue_cfg.ccxt_id in CCXT_VENUES:
        return "ccxt"
    if venue_cfg.ccxt_id in BROKER_VENUES:
        return "alpaca"
    return None


def plan_venues(cfg: StockbridgeConfig, config_path: str, *, real_money: bool, skip: list[str]) -> VenuePlan:
    """The run's venues; LiveRefused with one line when the run must not start."""
    sandbox = cfg.live.sandbox
    mode = "sandbox" if sandbox is True else "testnet" if sandbox == "testnet" else "real"
    if mode == "real" and not real_money:
        raise LiveRefused(f"{config_path}: live.sandbox = false trades real money; add --real-money to the command "
                          "line to do that (refused)")
    if real_money and mode != "real":
        raise LiveRefused(f"--real-money given but {config_path} has live.sandbox = {sandbox!r}; set live.sandbox = "
                          "false to trade real venues (refused)")
    for name in skip:
        if name not in cfg.venues:
            raise LiveRefused(f"--skip-venue {name}: no such venue in {config_path} (venues: {', '.join(cfg.venues)})")
    traded, skipped = [], {}
    for name, v in cfg.venues.items():
        if name in skip:
            skipped[name] = "skipped (--skip-venue)"
        elif live_adapter_kind(v) is None:
            if mode == "real":
                raise LiveRefused(f"venue {name} ({v.kind.value if hasattr(v.kind, 'value') else v.kind}) has no live "
                                  f"adapter; with real money add --skip-venue {name} to trade without it (refused)")
            skipped[name] = f"no live adapter for a {getattr(v.kind, 'value', v.kind)} venue yet: not traded"
        else:
            traded.append(name)
    if not traded:
        raise LiveRefused(f"{config_path}: no venue the live bot can trade (ccxt_id {', '.join(CCXT_VENUES + BROKER_VENUES)})")
    return VenuePlan(mode, traded, skipped)


def _ccxt_real(venue_cfg, creds, testnet: bool):
    import ccxt.pro as ccxtpro

    options = {"defaultType": "spot"}
    ex = getattr(ccxtpro, venue_cfg.ccxt_id)({**creds.ccxt_options(), "enableRateLimit": True, "options": options})
    if testnet:
        ex.set_sandbox_mode(True)
    return ex


KRAKEN_CLOSED_PAGE = 50  # ClosedOrders answers 50 orders a page, newest first


async def kraken_find_by_client_ids(adapter: Any, symbol: str, texts: set[str], since_ms: int | None) -> dict[str, dict[str, Any]]:
    """Kraken's order lookup by our client ids: its QueryOrders takes only its own order ids, so the
    open orders and then the closed orders since ``since_ms`` (page by page, until every id is found
    or the pages end) are searched once for all of ``texts``; returns client id -> order dict."""
    found: dict[str, dict[str, Any]] = {}
    for od in await adapter.fetch_open_orders(symbol):
        if od.get("clientOrderId") in texts:
            found[od["clientOrderId"]] = od
    ofs = 0
    while len(found) < len(texts):
        page = await adapter.fetch_closed_orders(symbol, since_ms, None, {"ofs": ofs})
        for od in page:
            if od.get("clientOrderId") in texts:
                found[od["clientOrderId"]] = od
        if len(page) < KRAKEN_CLOSED_PAGE:
            break
        ofs += len(page)
    return found


async def kraken_find_by_client_id(adapter: Any, symbol: str, text: str, since_ms: int | None) -> dict[str, Any]:
    """:func:`kraken_find_by_client_ids` for one order; ``ccxt.OrderNotFound`` when it is not there."""
    found = await kraken_find_by_client_ids(adapter, symbol, {text}, since_ms)
    if text not in found:
        raise ccxt.OrderNotFound(f"kraken: no open or closed order with client id {text}")
    return found[text]


def client_id_params(ccxt_id: str):
    """The ``params`` that make ``fetch_order`` find an order by our client id at a ccxt venue."""
    if ccxt_id == "bybit":
        return lambda text: {"orderLinkId": text, "acknowledged": True}
    return lambda text: {"clientOrderId": text}


async def open_adapters(cfg: StockbridgeConfig, plan: VenuePlan, *, sandbox=None, environ=None,
                        call_timeout_s: float = 10.0, rate_scale: float | None = None) -> dict[str, Any]:
    """Each traded venue's client, markets loaded: name -> adapter. ``rate_scale``: in the in-process
    sandbox, the venues' request budgets times this (default the replay's speed; a stepped clock's
    test picks its own)."""
    out: dict[str, Any] = {}
    for name in plan.traded:
        v = cfg.venues[name]
        kind = live_adapter_kind(v)
        if plan.mode == "sandbox":
            sv = sandbox[name]
            if kind == "ccxt":
                from execution.sandbox.clients import ccxt_exchange

                # the replay runs `speed` times faster than the market did: so does the venue's
                # request budget, or the rate limiter would hold the bot to 1/speed of the venue's limit
                rate_ms = getattr(ccxt, v.ccxt_id)().rateLimit / (rate_scale or sandbox.clock.speed)
                ad = ccxt_exchange(v, sv, timeout=int(call_timeout_s * 1000), enableRateLimit=True, rateLimit=rate_ms)
            else:
                from execution.alpaca_venue import AlpacaVenue

                ad = AlpacaVenue.from_sandbox(sv, symbols=list(v.instruments.values()), timeout_s=call_timeout_s,
                                              maker_fee_bps=v.maker_fee_bps, taker_fee_bps=v.taker_fee_bps)
        else:
            lv = cfg.live.venues.get(name)
            if lv is None:
                raise ConfigError("<config>", key_path("live", "venues", name), "the names of the environment variables holding "
                                  "its API key and secret are needed outside the in-process sandbox")
            creds = lv.credentials(name, environ)
            if kind == "ccxt":
                ad = _ccxt_real(v, creds, testnet=plan.mode == "testnet")
            else:
                from execution.alpaca_venue import AlpacaVenue

                key, secret = creds.ccxt_options()["apiKey"], creds.ccxt_options()["secret"]
                ad = AlpacaVenue.from_keys(key, secret, paper=plan.mode == "testnet", symbols=list(v.instruments.values()),
                                           timeout_s=call_timeout_s, maker_fee_bps=v.maker_fee_bps,
                                           taker_fee_bps=v.taker_fee_bps)
        if kind == "ccxt":
            orders_skip_the_queue(ad)
        if v.ccxt_id == "kraken":
            strictly_increasing_nonce(ad)
        out[name] = ad
        await until_answered(name, "loading its markets", ad.load_markets, give_up_s=cfg.live.startup_retry_s)
        if kind == "alpaca":
            await ad.start()  # its private stream: connected before the first order
    return out


def market_grid(adapter: Any, symbol: str) -> tuple[float, float]:
    """(price tick, amount lot) of ``symbol`` as the venue publishes them (ccxt's market structure)."""
    m = adapter.markets[symbol]
    p = m["precision"]
    if getattr(adapter, "precisionMode", ccxt.TICK_SIZE) == ccxt.TICK_SIZE:
        return float(p["price"]), float(p["amount"])
    return 10.0 ** -float(p["price"]), 10.0 ** -float(p["amount"])


def check_grids(cfg: StockbridgeConfig, adapters: dict[str, Any], config_path: str) -> None:
    """The config's tick and lot per traded market must be the venue's: ConfigError naming the key."""
    for name, ad in adapters.items():
        v = cfg.venues[name]
        for inst, symbol in v.instruments.items():
            if symbol not in ad.markets:
                raise ConfigError(config_path, key_path("venues", name, "instruments", inst),
                                  f"{symbol!r} is not a market at {name} (it lists {len(ad.markets)} markets)")
            tick, lot = market_grid(ad, symbol)
            for key, ours, theirs in (("tick_size", v.tick_size, tick), ("lot_size", v.lot_size, lot)):
                if abs(ours - theirs) > 1e-12 * max(abs(theirs), 1.0):
                    raise ConfigError(config_path, key_path("venues", name, key),
                                      f"{ours:g} in the config but {theirs:g} at the venue for {symbol}; the venue's "
                                      "grid is the one orders must land on")


def run_prefix(seed: int, started_ns: int) -> int:
    """The client-id prefix of one live run: from the seed and the start, so two runs never share ids."""
    from stockbridge.trader import cid_prefix

    return cid_prefix(seed, f"live-{started_ns}")


@dataclass
class LiveSession:
    runner: LiveRunner
    journal: Journal
    adapters: dict[str, Any]
    reconciliation: list[VenueReconciliation]
    plan: VenuePlan


async def build_session(cfg: StockbridgeConfig, config_path: str, run_dir: Path, plan: VenuePlan,
                        adapters: dict[str, Any], *, clock, start_ns: int, horizon_ns: int,
                        secrets: list[str] = (), policy: str = "cancel", on_decision=None,
                        recorder=None) -> LiveSession:
    """The core, journal, guards and runner for a run starting at ``start_ns`` (the clock's time)
    and lasting up to ``horizon_ns``; every traded venue reconciled. ``recorder``
    (execution.recorder.Recorder) gets every book and trade the runner receives."""
    from stockbridge.commands.preflight import check_backtest_config
    from stockbridge.core import trader as T
    from stockbridge.tables import build_tables
    from stockbridge.trader import TraderCore, build_trader

    spec, params = check_backtest_config(cfg, config_path)
    venue_ids = cfg.venue_ids()
    tables = build_tables(cfg, start_ns - 86_400 * NS, start_ns + horizon_ns + 7 * 86_400 * NS)
    depth = 25
    trader = build_trader(cfg, tables, start_ns, book_depth=depth, prefix=run_prefix(cfg.backtest.seed, time.time_ns()),
                          initial_cash=0.0)
    if cfg.live.decision_interval_ms is not None:
        trader.cf[T.C_DECISION_NS] = cfg.live.decision_interval_ms * 1e6
    core = TraderCore(trader, params.to_array(), spec.kernel)
    run_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(run_dir / cfg.live.journal, redact=list(secrets), sync=cfg.live.journal_sync)
    journal.set_meta("config_sha256", hashlib.sha256(Path(config_path).read_bytes()).hexdigest())
    caps = [float(tables.exposure_cap[k]) for k in range(len(tables.venue_names))]
    guards = Guards.from_config(cfg.live, list(tables.venue_names), caps, cfg.risk.max_position)
    hold_ns = int(cfg.live.guards.rate_limit_hold_ms * 1e6)
    venues: dict[int, LiveVenue] = {}
    for name in plan.traded:
        v = cfg.venues[name]
        vid = venue_ids[name]
        ins = int(tables.venue_instrument[vid])
        inst_name = tables.instrument_names[ins]
        symbol = v.instruments[inst_name]
        m = adapters[name].markets[symbol]
        paced = BackoffAdapter(adapters[name], clock, first_ns=hold_ns, max_ns=64 * hold_ns,
                               on_hold=lambda until, vid=vid: guards.rate.hold(vid, until))
        link = VenueLink(name, paced, symbols={ins: symbol}, instrument_names={ins: inst_name},
                         base_currency={ins: m["base"]}, quote_currency={ins: m["quote"]},
                         client_id_params=client_id_params(v.ccxt_id),
                         find_by_client_id=kraken_find_by_client_id if v.ccxt_id == "kraken" else None,
                         find_by_client_ids=kraken_find_by_client_ids if v.ccxt_id == "kraken" else None)
        venues[vid] = LiveVenue(vid, name, link, ins, symbol, m["base"], m["quote"])
    halted = {venue_ids[n]: why for n, why in plan.skipped.items()}
    lc = cfg.live
    runner = LiveRunner(core, journal, venues, guards, clock=clock, venue_names=list(tables.venue_names), halted=halted,
                        sample_interval_ns=int(lc.sample_interval_s * NS), call_timeout_s=lc.call_timeout_ms / 1000,
                        unknown_grace_ns=int(lc.unknown_order_grace_ms * 1e6),
                        lookup_interval_ns=int(lc.lookup_interval_ms * 1e6), book_depth=depth,
                        on_decision=on_decision, recorder=recorder,
                        default_after_ns=None if lc.guards.default_after_ms is None else int(lc.guards.default_after_ms * 1e6),
                        recovery_rate=lc.guards.recovery_rate)
    for name in plan.traded:
        if live_adapter_kind(cfg.venues[name]) == "alpaca":
            # regular vs extended hours per order from our session calendar: no round trip to the broker's clock
            adapters[name].session_state = lambda: runner.session(clock())
    recs = []
    for lv in venues.values():
        began = time.perf_counter()
        # a fault mid-way repeats it all: cancels of orders already gone are done, fills are booked once
        recs.append(await until_answered(lv.name, "reconciling at start-up", lambda lv=lv: reconcile_venue(
            lv, journal, core, own_ids=set(), policy=policy, position_tolerance=lc.guards.position_tolerance,
            timeout_s=lc.call_timeout_ms / 1000, now=clock()), give_up_s=lc.startup_retry_s))
        log.info("%s: reconciled in %.1f s: %s", lv.name, time.perf_counter() - began, "; ".join(recs[-1].lines()) or "nothing to do")
    return LiveSession(runner, journal, adapters, recs, plan)


async def close_adapters(adapters: dict[str, Any]) -> None:
    for ad in adapters.values():
        try:
            await ad.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort; the run is over
            log.warning("closing a venue client failed (%s)", type(exc).__name__)


__all__ = ["LiveRefused", "LiveSession", "VenuePlan", "build_session", "check_grids", "close_adapters",
           "live_adapter_kind", "market_grid", "open_adapters", "plan_venues", "run_prefix"]
