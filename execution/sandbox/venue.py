"""One sandbox venue, protocol-neutral: its markets (replay + matching), accounts and faults.

The servers (bybit.py, kraken.py, alpaca.py) translate their venue's wire protocol into calls on a
:class:`VenueEmulator` and its listener callbacks back into messages. Everything a venue *decides*
is here or in backtest.matching (through market.py), so the three venues fill by the same rules.

The book a venue shows (:meth:`VenueEmulator.book`) is the matching's visible book - the recorded
market minus what our orders took - plus our own resting orders at their prices, as a real venue
shows every resting order. (The matching keeps our orders out of its book; it never lets them cross
it, so the sum is an uncrossed book.) Each change of a market's shown book bumps its ``seq``; the
last books are kept by ``seq`` (:meth:`VenueEmulator.book_at`) so a test can compare what a client
built with what the venue showed at that sequence number.

Units: data times ns UTC; prices quote currency; sizes tokens (shares at a broker); fees in the fee
currency a venue charges (see ledger.py).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from execution.sandbox.clock import ReplayClock
from execution.sandbox.faults import Faults, FaultRecord
from execution.sandbox.ledger import Account, Fill, Order
from execution.sandbox.market import GTC, IOC, MarketSim, PublicTrade, Report, StepResult

PRICE_EPS = 1e-9
BOOK_HISTORY = 256


class VenueReject(Exception):
    """A call the venue refuses. ``reason`` is protocol neutral (the servers map it to their own codes):
    unknown_symbol, bad_side, bad_type, bad_tif, bad_qty, qty_below_min, qty_off_lot, price_off_tick,
    bad_price, notional_below_min, insufficient_funds, duplicate_client_id, post_only_cross, halted,
    defaulted, not_found, market_closed, too_late (cancel of a final order)."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


@dataclass
class MarketInfo:
    """One symbol of the venue."""

    id: str               # the venue's own market id (e.g. AAPLXUSDT)
    symbol: str           # the config's unified symbol (e.g. AAPLX/USDT)
    instrument: str       # the config instrument name
    base: str
    quote: str
    tick: float           # price grid, quote ccy
    lot: float            # size grid and minimum size, tokens
    min_notional: float   # quote ccy
    sim: MarketSim
    hours: str = "24/7"
    seq: int = 0
    shown_ts: int = 0     # data ns of the last shown book change
    history: deque = field(default_factory=lambda: deque(maxlen=BOOK_HISTORY))  # (seq, data ns, bids, asks)
    trades: deque = field(default_factory=lambda: deque(maxlen=1000))           # PublicTrade, newest last


class Listener(Protocol):
    def on_book(self, m: MarketInfo) -> None: ...
    def on_trades(self, m: MarketInfo, trades: list[PublicTrade]) -> None: ...
    def on_order(self, acct: Account, order: Order) -> None: ...
    def on_fill(self, acct: Account, fill: Fill, order: Order) -> None: ...
    def on_balance(self, acct: Account) -> None: ...
    def on_fault(self, rec: FaultRecord) -> None: ...


FeeRule = Callable[[str, float, float, str, str], tuple[float, str]]


def fee_in_quote(side: str, fee_quote: float, price: float, base: str, quote: str) -> tuple[float, str]:
    """The fee charged in the quote currency (Kraken's default, the broker's commission)."""
    return fee_quote, quote


def _on_grid(x: float, unit: float) -> bool:
    k = round(x / unit)
    return abs(k * unit - x) <= 1e-9 * max(1.0, abs(x))


class VenueEmulator:
    """A sandbox venue over one clock: call :meth:`advance` as time passes; listeners hear the rest."""

    def __init__(self, name: str, clock: ReplayClock, *, order_id: Callable[[], str], trade_id: Callable[[], str],
                 fee_rule: FeeRule = fee_in_quote, sessions: Any = None):
        self.name = name
        self.clock = clock
        self.faults = Faults()
        self.markets: dict[str, MarketInfo] = {}      # by venue market id
        self.accounts: dict[str, Account] = {}        # by API key
        self.listeners: list[Listener] = []
        self._order_id = order_id
        self._trade_id = trade_id
        self._fee_rule = fee_rule
        self._by_sim: dict[tuple[str, int], tuple[Account, Order]] = {}  # live orders by (market, sim order id)
        self._exec_seq = itertools.count(1)
        self.sessions = sessions  # stockbridge.sessions.SessionCalendar for venues with equity hours
        self.fills: list[Fill] = []  # every fill of every account, in order (the venue's ledger)

    # -- setup --
    def add_market(self, info: MarketInfo) -> None:
        self.markets[info.id] = info

    def add_account(self, key: str, secret: str, balances: dict[str, float]) -> Account:
        acct = Account(key, secret, balances)
        self.accounts[key] = acct
        return acct

    def market(self, market_id: str) -> MarketInfo:
        m = self.markets.get(market_id)
        if m is None:
            raise VenueReject("unknown_symbol", f"unknown symbol {market_id!r}")
        return m

    # -- time --
    def advance(self) -> None:
        """Carry every market forward to the clock's data time and tell the listeners."""
        now = self.clock.data_now()
        for m in self.markets.values():
            self._dispatch(m, m.sim.advance(now))

    # -- the book as shown --
    def book(self, m: MarketInfo, depth: int | None = None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks) best first as the venue shows them: the matching's book plus our resting orders."""
        bids, asks = m.sim.book()
        own: dict[tuple[int, float], float] = {}
        for (mid, _), (_, o) in self._by_sim.items():  # live orders only: the book is shown every step
            if mid == m.id and not o.is_final and o.slot >= 0 and o.order_type == "limit" and o.leaves > 0:
                s = 0 if o.side == "buy" else 1
                own[(s, o.price)] = own.get((s, o.price), 0.0) + o.leaves
        if own:
            sides = [dict(bids), dict(asks)]
            for (s, p), q in own.items():
                match = next((x for x in sides[s] if abs(x - p) <= PRICE_EPS * max(1.0, p)), p)
                sides[s][match] = sides[s].get(match, 0.0) + q
            bids = sorted(sides[0].items(), key=lambda x: -x[0])
            asks = sorted(sides[1].items(), key=lambda x: x[0])
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks

    def book_at(self, m: MarketInfo, seq: int) -> tuple[list, list] | None:
        """The book shown at sequence number ``seq`` (None when too old)."""
        for s, _, b, a in reversed(m.history):
            if s == seq:
                return b, a
        return None

    def _show_book(self, m: MarketInfo) -> None:
        if self.faults.frozen:
            return  # the feed is frozen: what was shown stays shown
        bids, asks = self.book(m)
        last = m.history[-1] if m.history else None
        if last is not None and last[2] == bids and last[3] == asks:
            return
        m.seq += 1
        m.shown_ts = m.sim.now
        m.history.append((m.seq, m.sim.now, bids, asks))
        for lst in self.listeners:
            lst.on_book(m)

    def shown_book(self, m: MarketInfo, depth: int | None = None) -> tuple[int, int, list, list]:
        """(seq, data ns, bids, asks) of the last book shown (what REST answers; frozen when the feed is)."""
        if not m.history:
            return 0, m.sim.now, [], []
        seq, ts, b, a = m.history[-1]
        return seq, ts, (b if depth is None else b[:depth]), (a if depth is None else a[:depth])

    # -- orders --
    def place(self, acct: Account, market_id: str, side: str, order_type: str, qty: float, price: float | None,
              tif: str = "GTC", client_id: str = "", extended_hours: bool = False, check_grid: bool = True) -> Order:
        """A new order from ``acct``; returns it after it met the book (IOC / market orders are final).

        ``tif``: 'GTC', 'IOC' or 'PostOnly'. Raises :class:`VenueReject` for what the venue refuses
        before the matching sees it; a post-only order that would cross comes back 'rejected' with
        reason 'post_only'."""
        self._check_live()
        m = self.market(market_id)
        if side not in ("buy", "sell"):
            raise VenueReject("bad_side", f"side must be buy or sell, got {side!r}")
        if order_type not in ("limit", "market"):
            raise VenueReject("bad_type", f"order type must be limit or market, got {order_type!r}")
        if tif not in ("GTC", "IOC", "PostOnly"):
            raise VenueReject("bad_tif", f"unsupported time in force {tif!r}")
        if client_id and client_id in acct.by_client_id:
            raise VenueReject("duplicate_client_id", f"duplicate client order id {client_id!r}")
        if not (qty > 0 and math.isfinite(qty)):
            raise VenueReject("bad_qty", f"quantity must be > 0, got {qty}")
        if check_grid and qty < m.lot - 1e-12:
            raise VenueReject("qty_below_min", f"quantity {qty:g} below the minimum {m.lot:g}")
        if check_grid and not _on_grid(qty, m.lot):
            raise VenueReject("qty_off_lot", f"quantity {qty:g} is not a multiple of {m.lot:g}")
        if order_type == "limit":
            if price is None or not (price > 0 and math.isfinite(price)):
                raise VenueReject("bad_price", f"a limit order needs a price > 0, got {price}")
            if check_grid and not _on_grid(price, m.tick):
                raise VenueReject("price_off_tick", f"price {price:g} is not a multiple of the tick {m.tick:g}")
            if check_grid and price * qty < m.min_notional - 1e-9:
                raise VenueReject("notional_below_min", f"order value {price * qty:g} below the minimum {m.min_notional:g}")
        if m.id in self.faults.halted or m.sim.status == "halted":
            raise VenueReject("halted", f"{m.id} is halted")
        now = self.clock.data_now()
        # funds: a resting buy locks its notional, a sell its tokens; a market buy needs what the book walk costs
        if order_type == "market":
            s = 1 if side == "buy" else -1
            limit = math.inf if side == "buy" else 0.0
            avail, cost = m.sim.walk(s, limit, qty)
            if side == "buy" and cost > acct.balance(m.quote).free + 1e-9:
                raise VenueReject("insufficient_funds", f"insufficient {m.quote} balance")
            if side == "sell" and qty > acct.balance(m.base).free + 1e-12:
                raise VenueReject("insufficient_funds", f"insufficient {m.base} balance")
            sim_price = limit
            lock = 0.0
        else:
            need = price * qty if side == "buy" else qty
            ccy = m.quote if side == "buy" else m.base
            if need > acct.balance(ccy).free + 1e-9:
                raise VenueReject("insufficient_funds", f"insufficient {ccy} balance")
            sim_price = price
            lock = need
        o = Order(order_id=self._order_id(), client_id=client_id, key=acct.key, symbol=m.id, side=side,
                  order_type=order_type, tif=tif if order_type == "limit" else "IOC", price=price if order_type == "limit" else 0.0,
                  qty=qty, created=now, updated=now, extended_hours=extended_hours)
        acct.orders[o.order_id] = o
        if client_id:
            acct.by_client_id[client_id] = o
        if lock:
            acct.lock(m.quote if side == "buy" else m.base, lock)
            o.locked = lock
        sim_tif = IOC if (order_type == "market" or tif == "IOC") else GTC
        sim_qty = qty
        if sim_tif == IOC and self.faults.take("partial_fill"):  # the rest is cancelled when the sim is done
            sim_qty = math.floor(qty * self.faults.partial_fraction / m.lot + 1e-9) * m.lot
        self._notify_order(acct, o)  # 'new' first, as the venues report it
        if sim_qty <= 0.0:
            self._finish(acct, o, "cancelled", "partial_fill", now)
            return o
        slot, sim_id, out = m.sim.submit(1 if side == "buy" else -1, sim_price, sim_qty, sim_tif, tif == "PostOnly", now)
        o.slot, o.sim_id = slot, sim_id
        self._by_sim[(m.id, sim_id)] = (acct, o)
        self._dispatch(m, out)
        return o

    def cancel(self, acct: Account, order: Order) -> Order:
        """Cancel ``order``; returns it (cancelled, or filled first). Raises not_found / halted / too_late."""
        self._check_live()
        if order.is_final:
            raise VenueReject("too_late", f"order {order.order_id} is already {order.status}")
        m = self.market(order.symbol)
        sent, out = m.sim.cancel(order.slot, order.sim_id, self.clock.data_now())
        self._dispatch(m, out)
        if any(r.kind == "cancel_reject" and r.sim_id == order.sim_id for r in out.reports):
            raise VenueReject("halted", f"{m.id} is halted: the order keeps resting")
        if not sent and not order.is_final:
            raise VenueReject("too_late", f"order {order.order_id} cannot be cancelled")
        return order

    def find_order(self, acct: Account, order_id: str | None = None, client_id: str | None = None) -> Order:
        o = acct.orders.get(order_id) if order_id else acct.by_client_id.get(client_id or "")
        if o is None:
            raise VenueReject("not_found", "order does not exist")
        return o

    def _check_live(self) -> None:
        if self.faults.defaulted:
            raise VenueReject("defaulted", f"{self.name} is unavailable")

    # -- reports -> ledger -> listeners --
    def _dispatch(self, m: MarketInfo, out: StepResult) -> None:
        if out.trades:
            m.trades.extend(out.trades)
        for r in out.reports:
            self._apply(m, r, out)
        if out.trades and not self.faults.frozen:
            for lst in self.listeners:
                lst.on_trades(m, out.trades)
        self._show_book(m)

    def _apply(self, m: MarketInfo, r: Report, out: StepResult) -> None:
        hit = self._by_sim.get((m.id, r.sim_id))
        if hit is None:
            return
        acct, o = hit
        if r.kind == "fill":
            self._fill(m, acct, o, r, out)
        elif r.kind == "done":
            status = {"filled": "filled", "cancelled": "cancelled", "rejected": "rejected"}[r.state]
            if status == "filled" and o.filled < o.qty - 1e-9:  # the sim had only part of it (partial_fill)
                status = "cancelled"
            del self._by_sim[(m.id, r.sim_id)]
            self._finish(acct, o, status, r.reason, r.ts)

    def _finish(self, acct: Account, o: Order, status: str, reason: str, ts: int) -> None:
        """``o`` reaches its final ``status``: what it locked is freed and the clients are told."""
        o.status = status
        o.reason = reason
        o.updated = ts
        if o.locked:
            acct.unlock(self.market(o.symbol).quote if o.side == "buy" else self.market(o.symbol).base, o.locked)
            o.locked = 0.0
        o.slot = -1
        self._notify_order(acct, o)
        self._notify_balance(acct)

    def _fill(self, m: MarketInfo, acct: Account, o: Order, r: Report, out: StepResult) -> None:
        fee_amt, fee_ccy = self._fee_rule(o.side, r.fee, r.price, m.base, m.quote)
        notional = r.price * r.qty
        qb, bb = acct.balance(m.quote), acct.balance(m.base)
        if o.side == "buy":
            qb.total -= notional
            bb.total += r.qty
            if o.locked:
                part = min(o.locked, o.price * r.qty)
                acct.unlock(m.quote, part)
                o.locked -= part
        else:
            bb.total -= r.qty
            qb.total += notional
            if o.locked:
                part = min(o.locked, r.qty)
                acct.unlock(m.base, part)
                o.locked -= part
        acct.balance(fee_ccy).total -= fee_amt
        o.filled += r.qty
        o.cost += notional
        o.fee += fee_amt
        o.fee_currency = fee_ccy
        o.updated = r.ts
        if o.filled < o.qty - 1e-9:
            o.status = "partially_filled"
        f = Fill(trade_id=self._trade_id(), order_id=o.order_id, client_id=o.client_id, symbol=m.id, side=o.side,
                 price=r.price, qty=r.qty, fee=fee_amt, fee_currency=fee_ccy, fee_quote=r.fee,
                 fee_rate=(r.fee / notional if notional else 0.0), maker=r.maker, ts=r.ts, seq=next(self._exec_seq))
        o.fills.append(f)
        acct.fills.append(f)
        self.fills.append(f)
        if not r.maker:  # our take prints on the tape like any trade
            out.trades.append(PublicTrade(r.ts, r.price, r.qty, 1 if o.side == "buy" else -1, f.trade_id))
            m.trades.append(out.trades[-1])
        for lst in self.listeners:
            lst.on_fill(acct, f, o)
        self._notify_order(acct, o)
        self._notify_balance(acct)

    def _notify_order(self, acct: Account, o: Order) -> None:
        for lst in self.listeners:
            lst.on_order(acct, o)

    def _notify_balance(self, acct: Account) -> None:
        for lst in self.listeners:
            lst.on_balance(acct)

    # -- faults --
    def fault(self, kind: str, **params: Any) -> FaultRecord:
        """Set a fault (faults.py lists the kinds); applied now and logged with its time."""
        now = self.clock.data_now()
        rec = self.faults.record(kind, params, now)
        if kind == "halt":
            m = self.market(params["symbol"])
            self.faults.halted.add(m.id)
            self._dispatch(m, m.sim.set_status("halted", now))
        elif kind == "resume":
            m = self.market(params["symbol"])
            self.faults.halted.discard(m.id)
            self._dispatch(m, m.sim.set_status("ok", now))
        elif kind == "default":
            for m in self.markets.values():
                self._dispatch(m, m.sim.set_status("defaulted", now))
            for acct in self.accounts.values():
                acct.frozen = True
        elif kind == "skew_clock":
            self.clock.skew_ns = int(float(params["ms"]) * 1e6)
        elif kind == "clear":
            self.clock.skew_ns = 0
        elif kind == "unfreeze_feed":
            for m in self.markets.values():
                self._show_book(m)
        for lst in self.listeners:
            lst.on_fault(rec)
        return rec


def market_chunks(data_dir, cfg, venue: str, instrument: str) -> Iterator[np.ndarray]:
    """The recorded rows of one (venue, instrument) of a store, in chunks (data.reader.read_merged)."""
    from data.reader import read_merged

    vid, iid = cfg.venue_ids(), cfg.instrument_ids()
    for chunk in read_merged(data_dir, vid, iid, venues=[venue], chunk_size=200_000):
        sel = chunk[chunk["instrument"] == iid[instrument]]
        if len(sel):
            yield sel


def venue_from_config(cfg, name: str, data_dir, clock: ReplayClock, *, market_id: Callable[[str], tuple[str, str, str]],
                      order_id: Callable[[], str], trade_id: Callable[[], str], fee_rule: FeeRule = fee_in_quote,
                      sessions: Any = None) -> VenueEmulator:
    """A :class:`VenueEmulator` for config venue ``name``: one market per configured instrument, with
    the venue's fees, grid and hours, replaying ``data_dir`` (every row before the clock's start is
    carried out at once, so the books are built when the first client connects).

    ``market_id(unified symbol) -> (venue market id, base, quote)`` names markets as the venue does."""
    v = cfg.venues[name]
    emu = VenueEmulator(name, clock, order_id=order_id, trade_id=trade_id, fee_rule=fee_rule, sessions=sessions)
    for inst, symbol in v.instruments.items():
        mid, base, quote = market_id(symbol)
        sim = MarketSim(market_chunks(data_dir, cfg, name, inst), v.maker_fee_bps, v.taker_fee_bps, v.gas_per_trade,
                        queue_model=cfg.backtest.queue_model, seed=cfg.backtest.seed)
        emu.add_market(MarketInfo(id=mid, symbol=symbol, instrument=inst, base=base, quote=quote, tick=v.tick_size,
                                  lot=v.lot_size, min_notional=v.min_notional, sim=sim, hours=v.hours))
    emu.advance()
    return emu


def data_start(data_dir, cfg, venues: list[str]) -> int:
    """First ``exch_ts`` (ns UTC) in the store over ``venues``: where a replay starts by default."""
    import polars as pl

    from data.store import list_partitions, part_files, partition_dir

    parts = [p for p in list_partitions(data_dir) if p[0] in venues]
    if not parts:
        from stockbridge.errors import DataError

        raise DataError(str(data_dir), None, None, f"holds no data for the venues {', '.join(venues)}")
    first_day = min(p[2] for p in parts)
    files = [str(f) for v, i, d in parts if d == first_day for f in part_files(partition_dir(data_dir, v, i, d))]
    return int(pl.scan_parquet(files).select(pl.col("exch_ts").min()).collect().item())
