"""One market of one sandbox venue (a symbol) driven incrementally by backtest.matching.

The sandbox does not match orders itself: each market is a one-venue, one-instrument
:class:`backtest.simvenue.SimVenues` with zero latency (the network between the client and the
emulator is real now), fed the recorded rows of that (venue, instrument) as the replay clock
passes their ``exch_ts``, and our orders are submitted with ``backtest.orders.submit_order`` at
their arrival. So our orders rest with the backtest's queue position estimates and fill by exactly
the backtest's rules (backtest.matching module doc).

A venue's symbols never interact in the matching, so one sim per symbol is the same matching as one
sim per venue, and it lets a fault halt one symbol (``venue_set_status`` acts on a sim).

How the sim is driven (see ``venue_advance``): the rows are given with ``local_ts = exch_ts`` and
``lmax = 0`` (the emulator *is* the venue: no feed latency to look ahead over), and the array passed
always holds at least one row after the time advanced to, or ``final`` is set, so the sim never asks
for more data mid-call. After each call the rows it has carried out are dropped (``venues_keep_from``
/ ``venues_rebase``).

Units: times int64 ns UTC (data time); prices quote currency; sizes tokens (shares at a broker).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from stockbridge.core.book import depth_walk
from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import (
    NEED_FILL_ROOM,
    NEED_MORE_DATA,
    NEED_REPORT_ROOM,
    VENUE_DEFAULTED,
    VENUE_HALTED,
    VENUE_OK,
    venue_advance,
    venue_set_status,
    venues_keep_from,
    venues_rebase,
)
from backtest.orders import GTC, IOC, REASON_NAMES, STATE_NAMES, TAG_QUOTE, request_cancel, submit_order, take_report
from backtest.pending import AUX, OID, REP_ACK, REP_CANCEL_REJECT, REP_DONE, REP_FILL
from backtest.simvenue import flush_fills, flush_orders, grow_queues, new_sim
from data.schema import EVENT_DTYPE, KIND_TRADE

__all__ = ["MarketSim", "Report", "GTC", "IOC"]


@dataclass
class Report:
    """What happened to one of our orders in the sim, in order: ``kind`` is 'ack', 'fill', 'done' or
    'cancel_reject'. Fills carry price (quote ccy), qty (tokens), fee (quote ccy, negative = rebate),
    maker, and the venue time ``ts`` (data ns); 'done' carries the final ``state`` and ``reason``
    names of backtest.orders."""

    kind: str
    sim_id: int
    ts: int
    price: float = 0.0
    qty: float = 0.0
    fee: float = 0.0
    maker: bool = False
    leaves: float = 0.0
    state: str = ""
    reason: str = ""


@dataclass
class PublicTrade:
    """A trade printed in the recorded market: price (quote ccy), size (tokens), aggressor side
    (+1 buy, -1 sell, 0 unknown), data time ns, the row's id."""

    ts: int
    price: float
    size: float
    side: int
    id: str


@dataclass
class StepResult:
    reports: list[Report] = field(default_factory=list)
    trades: list[PublicTrade] = field(default_factory=list)
    rows: int = 0


class MarketSim:
    """The matching of one symbol: the recorded rows in, our orders' reports out."""

    def __init__(self, chunks: Iterator[np.ndarray], maker_fee_bps: float, taker_fee_bps: float, gas_per_trade: float = 0.0,
                 *, book_levels: int = 128, order_capacity: int = 1024, queue_model: str = "conservative", seed: int = 1):
        """``chunks``: EVENT_DTYPE arrays of this market's rows in ``exch_ts`` order (any venue and
        instrument ids: they are rewritten to 0)."""
        fees = fee_table([maker_fee_bps], [taker_fee_bps], [gas_per_trade])
        lat = latency_table([0.0], [0.0], [0.0])
        self.sim = new_sim(1, 1, fees, lat, book_levels=book_levels, order_capacity=order_capacity,
                           fill_capacity=max(4096, book_levels, order_capacity),
                           queue_capacity=max(4096, 2 * order_capacity, book_levels + 2),
                           queue_model=queue_model, seed=seed)
        self._chunks = chunks
        self._buf = np.zeros(0, dtype=EVENT_DTYPE)
        self._pos = 0
        self._exhausted = False
        self.now = np.iinfo(np.int64).min  # data ns the market has been advanced to
        self._out_i = np.zeros(6, dtype=np.int64)
        self._out_f = np.zeros(3, dtype=np.float64)
        self._pending_fills: list[np.void] = []
        self.rows_done = 0

    # -- data --
    def _prep(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.array(chunk, dtype=EVENT_DTYPE, copy=True)
        chunk["venue"] = 0
        chunk["instrument"] = 0
        chunk["local_ts"] = chunk["exch_ts"]  # the venue acts at exch_ts; there is no feed latency here
        return chunk[np.argsort(chunk["exch_ts"], kind="stable")]

    def _ensure_beyond(self, t: int) -> None:
        """Load chunks until the buffer holds a row after ``t`` (or the data ends)."""
        while not self._exhausted and (len(self._buf) == self._pos or self._buf["exch_ts"][-1] <= t):
            nxt = next(self._chunks, None)
            if nxt is None:
                self._exhausted = True
                self.sim.final[0] = 1
                break
            if len(nxt) == 0:
                continue
            self._buf = np.concatenate((self._buf[self._pos:], self._prep(nxt)))
            self._pos = 0

    def first_ts(self) -> int | None:
        """exch_ts of the first row not yet carried out (None at the end of the data)."""
        self._ensure_beyond(np.iinfo(np.int64).min)
        return int(self._buf["exch_ts"][self._pos]) if self._pos < len(self._buf) else None

    @property
    def data_ended(self) -> bool:
        return self._exhausted and self._pos >= len(self._buf)

    # -- driving the sim --
    def advance(self, t: int) -> StepResult:
        """Carry out everything that happens in this market at data time <= ``t`` (ns)."""
        out = StepResult()
        t = int(max(t, self.now))
        self._ensure_beyond(t)
        hi = int(np.searchsorted(self._buf["exch_ts"], t, side="right"))
        hi = min(hi + 1, len(self._buf))  # one row past t: the sim knows nothing else comes earlier
        while True:
            win = self._buf[self._pos:hi]
            rc = venue_advance(self.sim, win, 0, t)
            keep = venues_keep_from(self.sim, len(win))
            done = win[:keep]
            if len(done):
                tr = done[done["kind"] == KIND_TRADE]
                out.trades.extend(PublicTrade(int(r["exch_ts"]), float(r["price"]), float(r["size"]), int(r["side"]), str(int(r["id"])))
                                  for r in tr)
                out.rows += len(done)
            venues_rebase(self.sim, keep)
            self._pos += keep
            self._drain(out)
            if rc == NEED_FILL_ROOM:
                continue  # _drain emptied the fill array and the order log
            if rc == NEED_REPORT_ROOM:
                self.sim = grow_queues(self.sim, 2 * self.sim.pq_i.shape[1])
                continue
            if rc == NEED_MORE_DATA:  # cannot happen with a row past t; kept as a guard
                raise RuntimeError("sandbox market: matching asked for more data")
            break
        self.now = t
        self.rows_done += out.rows
        return out

    def _drain(self, out: StepResult) -> None:
        """Move fills and reports out of the sim (zero latency: every report is due now)."""
        sim = self.sim
        self._pending_fills.extend(flush_fills(sim))
        flush_orders(sim)  # the order log is the backtest's output file; the sandbox keeps its own records
        while sim.pq_n[1] > 0:
            kind = take_report(sim, self._out_i, self._out_f)
            oid = int(self._out_i[OID])
            if kind == 0:
                continue
            t = int(self._out_i[0])
            if kind == REP_FILL:
                k = next(i for i, f in enumerate(self._pending_fills) if int(f["order_id"]) == oid)
                f = self._pending_fills.pop(k)
                out.reports.append(Report("fill", oid, int(f["ts_venue"]), float(f["price"]), float(f["qty"]), float(f["fee"]),
                                          bool(f["maker"]), float(f["leaves"])))
            elif kind == REP_ACK:
                out.reports.append(Report("ack", oid, t))
            elif kind == REP_DONE:
                slot = int(self._out_i[3])
                o = sim.orders[slot]
                out.reports.append(Report("done", oid, t, leaves=float(o["leaves"]), state=STATE_NAMES[int(self._out_i[AUX])],
                                          reason=REASON_NAMES[int(o["reason"])]))
            elif kind == REP_CANCEL_REJECT:
                out.reports.append(Report("cancel_reject", oid, t))

    def submit(self, side: int, price: float, qty: float, tif: int, post_only: bool, t: int) -> tuple[int, int, StepResult]:
        """Our order arrives at data time ``t``: (slot, sim order id, what happened up to ``t``).

        ``side`` +1 buy / -1 sell; ``price`` quote ccy (+inf / 0 for a market buy / sell, IOC);
        ``qty`` tokens. The market is advanced to ``t`` first, so the order meets the book as the
        data shows it at ``t``."""
        out = self.advance(t)
        slot = submit_order(self.sim, 0, 0, side, price, qty, tif, 1 if post_only else 0, TAG_QUOTE, self.now)
        if slot == -2:  # QUEUE_FULL
            self.sim = grow_queues(self.sim, 2 * self.sim.pq_i.shape[1])
            slot = submit_order(self.sim, 0, 0, side, price, qty, tif, 1 if post_only else 0, TAG_QUOTE, self.now)
        if slot < 0:
            raise RuntimeError(f"sandbox market: no order slot ({slot}); too many live orders")
        sim_id = int(self.sim.orders[slot]["id"])
        more = self._arrive()
        out.reports.extend(more.reports)
        out.trades.extend(more.trades)
        return slot, sim_id, out

    def _arrive(self) -> StepResult:
        """Carry out messages due now (after the market rows at the same time, as in the backtest)."""
        return self.advance(self.now)

    def cancel(self, slot: int, sim_id: int, t: int) -> tuple[bool, StepResult]:
        """Our cancel arrives at ``t``: (sent, what happened). Not sent when the order is already final."""
        out = self.advance(t)
        if int(self.sim.orders[slot]["id"]) != sim_id:
            return False, out
        sent = request_cancel(self.sim, slot, self.now)
        if sent == -2:
            self.sim = grow_queues(self.sim, 2 * self.sim.pq_i.shape[1])
            sent = request_cancel(self.sim, slot, self.now)
        if sent != 1:
            return False, out
        more = self._arrive()
        out.reports.extend(more.reports)
        return True, out

    def set_status(self, status: str, t: int) -> StepResult:
        """'ok', 'halted' or 'defaulted' from data time ``t`` (backtest.matching.venue_set_status)."""
        code = {"ok": VENUE_OK, "halted": VENUE_HALTED, "defaulted": VENUE_DEFAULTED}[status]
        out = self.advance(t)
        while True:
            rc = venue_set_status(self.sim, 0, code, self.now)
            if rc == NEED_REPORT_ROOM:
                self.sim = grow_queues(self.sim, 2 * self.sim.pq_i.shape[1])
                continue
            if rc == NEED_FILL_ROOM:
                self._drain(out)
                continue
            break
        self._drain(out)
        return out

    @property
    def status(self) -> str:
        return {VENUE_OK: "ok", VENUE_HALTED: "halted", VENUE_DEFAULTED: "defaulted"}[int(self.sim.status[0])]

    # -- the book --
    def book(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The visible book (the data's minus what our orders took): ([(price, size)] bids best
        first, [(price, size)] asks best first). Our resting orders are not in it (see venue.py)."""
        px, qty, nlev = self.sim.px, self.sim.qty, self.sim.nlev
        bids = [(float(px[0, 0, k]), float(qty[0, 0, k])) for k in range(int(nlev[0, 0]))]
        asks = [(float(px[0, 1, k]), float(qty[0, 1, k])) for k in range(int(nlev[0, 1]))]
        return bids, asks

    def walk(self, side: int, limit: float, want: float) -> tuple[float, float]:
        """(tokens available, their cost in quote ccy) for an order of ``side`` taking up to ``limit``."""
        s = 1 if side > 0 else 0  # a buy takes asks
        filled, notional, _ = depth_walk(self.sim.px, self.sim.qty, self.sim.nlev, 0, s, limit, want)
        return float(filled), float(notional)
