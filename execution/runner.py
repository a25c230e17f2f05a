"""The live bot's event loop: venues' streams into the trader core, its actions out through the guards
and the order manager, on one asyncio loop (uvloop where installed).

What runs, one task each:

- per venue and instrument, a :class:`~execution.market_data.BookFeed` (book and trade streams, REST
  fallback): every book goes into the core (``TraderCore.book_snapshot``) and wakes the decider;
- per venue, the private streams (``watch_orders`` / ``watch_my_trades``) into the order manager;
  a stream that fails is replaced by REST (``check_live`` + ``sync_fills``) until it is back, and
  after every reconnect the venue is reconciled the same way;
- the decider: on every wake (a book, a report) or every ``tick_s``, ``core.step(now)``; the actions
  go through :class:`~execution.guards.Guards` and the order manager. No decision is made here: a
  stale book or a stopped venue reaches the core as a venue status (it pulls its quotes there);
- housekeeping: lookups of unknown orders (``OrderManager.poll``), balances every ``balance_s`` into
  the journal and the balance guard, samples for the report, the kill switch.

On stop (the duration, SIGINT/SIGTERM, the kill switch, or any task failing) every order is
cancelled, the runner waits up to ``cancel_wait_s`` for the venues to confirm, takes the final
balances and returns. ``LiveRunner.run`` re-raises a task's failure after the cancel-all.

Inventory: a spot venue cannot sell what it does not hold, so the bot starts holding a position;
the position at the first start-up (``baseline``, kept in the journal's meta for restarts) counts as
flat. The core's books are the venue's balances less the baseline; the balance guard compares the
venue's reported position less the baseline, and less the fees it charged in the base asset, with
the core's.

Units: times ns UTC on ``clock`` (the replay's time in the in-process sandbox, wall time live);
prices quote currency; sizes tokens (shares at the broker).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from execution.guards import Guards
from execution.journal import FINAL_STATES, Journal
from execution.live_report import Sampler
from execution.market_data import Book, BookFeed
from execution.order_manager import LIVE, OrderManager, OrderState
from execution.venue import VenueLink
from stockbridge.core import cycle
from stockbridge.core import order_codes as oc
from stockbridge.core import trader as T

log = logging.getLogger("stockbridge.live")
NS = 1_000_000_000
REST_POLL_S = 1.0  # while a private stream is down, REST reconciles this often (wall seconds)


@dataclass
class LiveVenue:
    """One traded venue: the core's venue id, its adapter and link, and what the runner tracks."""

    id: int
    name: str
    link: VenueLink
    instrument: int                  # the instrument the core trades there
    symbol: str
    base: str
    quote: str
    baseline: float = 0.0            # position held at first start-up that counts as flat
    stopped: str | None = None       # why quoting is stopped there (reconciliation, kill), None if not
    stale: bool = False
    private_errors: int = 0
    last_balance: dict[str, dict[str, float | None]] = field(default_factory=dict)
    pending_drift: tuple | None = None   # a drift seen once (drift, fills booked then), confirmed at the next check
    defaulted: bool = False          # treated as defaulted (check_default): its balance is a claim


class LiveRunner:
    """The loop around one TraderCore. ``venues``: the traded venues by core id; ``halted``: core
    venue ids not traded this run (no adapter) with the reason; ``clock``: ns UTC."""

    def __init__(self, core: Any, journal: Journal, venues: dict[int, LiveVenue], guards: Guards, *,
                 clock: Callable[[], int], venue_names: list[str], halted: dict[int, str] | None = None,
                 sample_interval_ns: int = NS, tick_s: float = 0.05, balance_s: float = 5.0,
                 call_timeout_s: float = 10.0, unknown_grace_ns: int = 3 * NS, lookup_interval_ns: int = NS,
                 book_depth: int = 25, cancel_wait_s: float = 10.0,
                 on_decision: Callable[[int, np.ndarray], None] | None = None,
                 recorder: Any = None, stepped: bool = False, default_after_ns: int | None = None,
                 recovery_rate: float = 0.4):
        self.core, self.journal, self.venues, self.guards, self.clock = core, journal, venues, guards, clock
        self.venue_names = venue_names
        self.halted = dict(halted or {})
        self.default_after_ns, self.recovery_rate = default_after_ns, recovery_rate
        self.tick_s, self.balance_s, self.cancel_wait_s = tick_s, balance_s, cancel_wait_s
        self.sampler = Sampler(core, venue_names, sample_interval_ns, clock(), clock)
        self.om = OrderManager(core, journal, {v.id: v.link for v in venues.values()}, clock=clock,
                               call_timeout_s=call_timeout_s, unknown_grace_ns=unknown_grace_ns,
                               lookup_interval_ns=lookup_interval_ns, marks=self.sampler.marks_for_fill)
        self.feeds = [BookFeed(v.name, v.id, v.instrument, v.link.adapter, v.symbol, clock=clock,
                               on_book=self.on_book, on_trades=self.on_trades, depth=book_depth,
                               call_timeout_s=call_timeout_s) for v in venues.values()]
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._streams_done = False           # private streams listen past stop: the exit's cancel-all needs them
        self._rest_locks: dict[int, asyncio.Lock] = {}
        self._rest_last: dict[int, float] = {}  # venue -> loop time its last REST reconciliation began
        self._failure: BaseException | None = None
        self.stop_reason: str | None = None
        self.events = 0                      # books and trades handed to the core
        self.decisions = 0
        self.submits: set[asyncio.Task] = set()
        # (perf ns the book this decision followed arrived, actions sent), for decisions a book caused: the latency bench
        self.on_decision = on_decision
        self._book_perf_ns = 0
        self.notices: list[str] = []
        self.recorder = recorder             # market-data recorder (execution.recorder): book() / trades()
        # stepped: no decider task; whoever moves a stepped clock calls decide() once the bot has taken
        # in what the step brought (the backtest/live parity test decides exactly when the backtest does)
        self.stepped = stepped

    # -- inputs -------------------------------------------------------------------------------------

    def without_our_orders(self, book: Book) -> Book:
        """The book less our own resting quotes: a venue shows every resting order, ours too, and
        the core reads the market as others make it (as the backtest's data shows it). Orders the
        venue has acknowledged are taken out at their price, by what is left of them."""
        tr = self.core.tr
        rows = []
        for side in range(2):
            for slot in tr.qslot[book.venue, side]:
                if slot >= 0 and tr.wo[slot]["state"] in (oc.OPEN, oc.PENDING_CANCEL):
                    rows.append((side, float(tr.wo[slot]["price"]), float(tr.wo[slot]["leaves"])))
        if not rows:
            return book
        sides = [book.bids.copy(), book.asks.copy()]
        for side, price, leaves in rows:
            levels = sides[side]
            hit = np.flatnonzero(np.abs(levels[:, 0] - price) <= 1e-9 * max(price, 1.0))
            if len(hit):
                levels[hit[0], 1] -= leaves
        bids, asks = (lv[lv[:, 1] > 1e-12] for lv in sides)
        return Book(book.venue, book.instrument, np.ascontiguousarray(bids), np.ascontiguousarray(asks),
                    book.exch_ns, book.local_ns, book.is_quote, book.source)

    def on_book(self, book: Book) -> None:
        book = self.without_our_orders(book)
        if self.recorder is not None:
            self.recorder.book(book)  # the market as others make it: a backtest of it simulates ours
        self.core.book_snapshot(book.venue, book.instrument, book.bids, book.asks, is_quote=book.is_quote,
                                now=book.local_ns)
        self.guards.book_update(book.venue, book.local_ns)
        self.events += 1
        self._book_perf_ns = time.perf_counter_ns()
        self._wake.set()

    def on_trades(self, venue: int, instrument: int, trades: list[dict[str, Any]], now: int) -> None:
        for t in trades:
            side = 1 if t.get("side") == "buy" else -1 if t.get("side") == "sell" else 0
            self.core.trade(venue, instrument, side, float(t["price"]), float(t["amount"]), now)
        if self.recorder is not None:
            self.recorder.trades(venue, instrument, trades, now)
        self.events += len(trades)

    # -- decisions ------------------------------------------------------------------------------------

    def _venue_states(self, now: int) -> None:
        """Each venue's status in the core: halted when not traded, stopped, its book stale, or held after
        a rate-limit answer."""
        for v in range(len(self.venue_names)):
            lv, held = self.venues.get(v), False
            if lv is None:
                status = T.VENUE_HALTED
            else:
                lv.stale = not self.guards.stale.allows(v, now)
                held = self.guards.rate.held(v, now)
                status = T.VENUE_HALTED if (lv.stopped or lv.stale or held) else T.VENUE_OK
            if int(self.core.tr.vstatus[v]) != T.VENUE_DEFAULTED and int(self.core.tr.vstatus[v]) != status:
                self.core.venue_status(v, status)
                # a rate-limit hold sends nothing: the core's cancels wait in the guard and go first
                if status == T.VENUE_HALTED and lv is not None and not held:
                    # pull what rests there now: the core would only cancel at its next decision,
                    # and it decides from the books it has, which are the stale ones
                    self._spawn(self.om.cancel_all(v))

    def decide(self) -> None:
        """One pass: the core steps if due; what it decided goes through the guards to the venues."""
        now = self.clock()
        self._venue_states(now)
        rc = self.core.step(now)
        actions = None
        if rc != cycle.STEP_IDLE:
            self.decisions += 1
            actions = self.core.actions()
        book_perf_ns, self._book_perf_ns = self._book_perf_ns, 0  # a book came in since the last pass
        screened = self.guards.screen(actions if actions is not None and len(actions) else None, now)
        for rows, reason in screened.refuse:
            self.om.refuse(rows, reason)
        if screened.kill is not None:
            self._end(f"kill switch: {screened.kill}")
        if len(screened.send):
            if self.on_decision is not None and book_perf_ns:
                self.on_decision(book_perf_ns, screened.send)
            for send in self.om.dispatch(screened.send):
                self._spawn(send)
        if self.sampler.due(now):
            val = self.sampler.sample(now, self.session(now))
            if self.guards.drawdown.update(float(val["equity_raw"]), float(val["equity_haircut"]), now):
                self._wake.set()

    def session(self, now: int) -> int:
        """The session state (stockbridge.sessions) of the market calendar at ``now``."""
        tr = self.core.tr
        k = int(np.searchsorted(tr.sess_boundaries, now, side="right")) - 1
        return int(tr.sess_states[min(max(k, 0), len(tr.sess_states) - 1)])

    async def _decider(self) -> None:
        while not self._stop.is_set():
            try:
                # in this task: wait_for would wrap the wait in a task of its own, and a set wake
                # would reach the decision three passes of the loop later instead of one
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._stop.is_set():
                self.decide()

    # -- private streams --------------------------------------------------------------------------

    async def _private(self, lv: LiveVenue, watch: str) -> None:
        ad = lv.link.adapter
        handle = self.om.on_order if watch == "watch_orders" else self.om.on_trade
        backoff, failed = 0.5, False
        while not self._streams_done:
            try:
                # no symbol: with one, ccxt.pro filters its whole cache (up to 1,000 orders or fills)
                # on every call, a quarter of the bot's CPU in bench/live_latency.py. The order
                # manager knows ours by client id and leaves every other order alone.
                got = await getattr(ad, watch)()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a stream down: REST until it is back
                lv.private_errors += 1
                failed = True
                log.warning("%s: %s failed (%s); reconciling by REST", lv.name, watch, type(exc).__name__)
                await self._rest_while_down(lv, backoff)
                backoff = min(backoff * 2, 16.0)
                continue
            if failed:
                failed, backoff = False, 0.5
                log.info("%s: %s is back; reconciling what it missed", lv.name, watch)
                await self._rest_reconcile(lv)  # what happened while the stream was down
            for item in got:
                handle(lv.id, item)
            self._wake.set()

    async def _rest_while_down(self, lv: LiveVenue, seconds: float) -> None:
        """REST in place of a failed private stream for ``seconds`` (its reconnect backoff): reconcile
        now and every ``REST_POLL_S`` (or twice as long as a poll takes) until then, so fills and
        cancels are heard while it is down."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        every_s = REST_POLL_S
        while True:
            began = loop.time()
            await self._rest_reconcile(lv, fresh_s=every_s)
            # a poll that took long waited in ccxt's rate limiter (Kraken: a fills query costs 6 s of
            # its budget): polling takes at most half the time, the orders' calls the rest
            every_s = max(REST_POLL_S, 2.0 * (loop.time() - began))
            left = until - loop.time()
            if left <= 0 or self._streams_done:
                return
            await asyncio.sleep(min(left, every_s))

    async def _rest_reconcile(self, lv: LiveVenue, *, fresh_s: float = 0.0) -> None:
        """Orders and fills of ``lv`` by REST: the fills first (a fill that completes an order ends it
        without a lookup), then every order held live that the venue does not list. One at a time per
        venue, and not again if one began less than ``fresh_s`` ago: both private streams fall back
        to it when a venue's socket drops, and a venue with a small request budget (Kraken) would
        spend it all on polling while our cancels wait behind."""
        loop = asyncio.get_running_loop()
        lock = self._rest_locks.setdefault(lv.id, asyncio.Lock())
        async with lock:
            if fresh_s and loop.time() - self._rest_last.get(lv.id, -math.inf) < fresh_s:
                return
            self._rest_last[lv.id] = loop.time()
            try:
                await self.om.sync_fills(lv.id)
                await self.om.check_live(lv.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next attempt will try again
                log.warning("%s: REST reconciliation failed (%s)", lv.name, type(exc).__name__)

    # -- housekeeping -----------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        next_balance = 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            for lv in self.venues.values():
                self.check_default(lv, self.clock())
            await self.om.poll()
            if loop.time() >= next_balance:
                next_balance = loop.time() + self.balance_s
                for lv in self.venues.values():
                    # the orders too: a stream that reconnects between two watch calls raises nothing,
                    # and what it missed meanwhile (a cancel, a fill) is only found by REST
                    await self._rest_reconcile(lv)
                    await self.check_balance(lv)
            await asyncio.sleep(min(self.tick_s * 4, 0.25))

    def check_default(self, lv: LiveVenue, now: int) -> bool:
        """Treat ``lv`` as defaulted if it has answered nothing (no REST answer, no book) for
        ``default_after_ns``: quoting stops there for the run, and our balance there becomes a claim
        worth ``recovery_rate`` of its value at the marks (the baseline position included: it is
        lost with the rest). Journalled as a ``default`` event; True the once it happens."""
        if self.default_after_ns is None or lv.defaulted:
            return False
        heard = max(getattr(lv.link.adapter, "last_answer_ns", 0), self.guards.stale.last[lv.id] or 0)
        if now - heard <= self.default_after_ns:
            return False
        tr = self.core.tr
        before = self.core.valuation(now)
        books = float(before["venue_value"][lv.id])  # our books there: full cash, position less the baseline
        mark = float(tr.f[T.T_SHARE_MARK] if lv.instrument == int(tr.ci[T.K_SHARE]) else tr.f[T.T_TOKEN_MARK])
        fee_tokens, fee_value = self.base_fees(lv)
        held = books + (lv.baseline - fee_tokens) * mark + fee_value  # what the venue holds of ours, at the mark
        loss = (1.0 - self.recovery_rate) * held if held > 0.0 else 0.0
        self.core.venue_status(lv.id, T.VENUE_DEFAULTED, books - loss)
        lv.defaulted = True
        lv.stopped = (f"{lv.name}: no answer for {(now - heard) / 1e9:.1f} s; treated as defaulted, its balance "
                      f"{held:.2f} valued at {self.recovery_rate:g} of it (loss {loss:.2f})")
        after = self.core.valuation(now)
        self.journal.record_event(lv.name, "default", now, detail={
            "silent_s": (now - heard) / 1e9, "held": held, "mark": mark, "recovery_rate": self.recovery_rate,
            "loss": loss, "claim": books - loss, "equity_raw_before": float(before["equity_raw"]),
            "equity_raw_after": float(after["equity_raw"])})
        self.notices.append(lv.stopped)
        log.warning("%s", lv.stopped)
        return True

    def base_fees(self, lv: LiveVenue) -> tuple[float, float]:
        """Fees the venue charged in the base asset: (tokens, their value in quote ccy as booked)."""
        row = self.journal.db.execute("SELECT COALESCE(SUM(fee_cost), 0), COALESCE(SUM(fee), 0) FROM fills"
                                      " WHERE venue = ? AND fee_currency = ?", (lv.name, lv.base)).fetchone()
        return float(row[0]), float(row[1])

    async def check_balance(self, lv: LiveVenue) -> str | None:
        """Fetch ``lv``'s balance, journal it, and check it against the core's books (balance guard)."""
        # fills by REST before and after the balance: if none arrived after it, our books hold every
        # fill the balance reflects, and a difference is a real one (not a report still on its way)
        try:
            await self.om.sync_fills(lv.id)
            bal = await asyncio.wait_for(lv.link.adapter.fetch_balance(), self.om.call_timeout_s)
            late = await self.om.sync_fills(lv.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: balance check failed (%s)", lv.name, type(exc).__name__)
            return None
        per = self.om.on_balance(lv.id, bal)
        lv.last_balance = per
        if late or any(o.venue == lv.id and not o.final and o.state not in LIVE for o in self.om.orders.values()):
            return None  # a fill or an order outcome not in our books yet: they cannot be compared now
        fee_tokens, fee_value = self.base_fees(lv)
        tr = self.core.tr
        position = (per.get(lv.base, {}).get("total") or 0.0) - lv.baseline + fee_tokens
        cash = (per.get(lv.quote, {}).get("total") or 0.0) - fee_value
        mark = float(tr.f[T.T_SHARE_MARK] if lv.instrument == int(tr.ci[T.K_SHARE]) else tr.f[T.T_TOKEN_MARK])
        core_pos, core_cash = float(tr.kpos[lv.id, lv.instrument]), float(tr.kcash[lv.id])
        bg = self.guards.balance
        drift = (round(position - core_pos, 9), round(cash - core_cash, 6))
        off = abs(drift[0]) > bg.position_tolerance + 1e-9 * max(1.0, abs(position)) or \
            abs(drift[1]) > bg.cash_tolerance + 1e-9 * max(1.0, abs(cash))
        booked = len(self.om._seen)
        if off and lv.pending_drift != (drift, booked):
            # a report still on its way looks like a drift once; a real one stays the same, with no
            # fill booked in between, at the next check
            lv.pending_drift = (drift, booked)
            return None
        lv.pending_drift = None
        reason = bg.on_balance(
            lv.id, position=position, cash=cash, mark=mark if math.isfinite(mark) else 0.0,
            core_position=core_pos, core_cash=core_cash, now=self.clock(), name=lv.name)
        if reason is not None and reason not in self.notices:
            self.notices.append(reason)
            log.warning("%s", reason)
        return reason

    # -- running ------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.submits.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.submits.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self._end(f"error: {type(self._failure).__name__}: {self.journal.scrub(str(self._failure))}")

    def _end(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def stop(self, reason: str = "stopped") -> None:
        """Ask the run to end (a signal handler, a test)."""
        self._end(reason)

    async def run(self, duration_s: float | None = None) -> str:
        """Run until ``duration_s`` wall seconds pass or :meth:`stop`; cancel everything; return why it ended."""
        # what start-up made (modules, numba's dispatchers, ccxt's markets, the core) is moved out of
        # the collector's reach: a full collection would walk it all again, a pause in the middle of
        # some book's way to an order
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(f()) for feed in self.feeds for f in feed.tasks()]
        for lv in self.venues.values():
            tasks += [asyncio.create_task(self._private(lv, w)) for w in ("watch_orders", "watch_my_trades")]
        tasks.append(asyncio.create_task(self._housekeeping()))
        if not self.stepped:
            tasks.append(asyncio.create_task(self._decider()))
        for t in tasks:
            t.add_done_callback(self._task_done)
        try:
            if duration_s is not None:
                try:
                    await asyncio.wait_for(self._stop.wait(), duration_s)
                except TimeoutError:
                    self._end("duration reached")
            else:
                await self._stop.wait()
            await self._cancel_everything()
        finally:
            self._stop.set()  # loops end on it even if a cancellation is swallowed (asyncio.wait_for in 3.11)
            self._streams_done = True
            for feed in self.feeds:
                feed.closed = True
            for t in tasks:
                t.remove_done_callback(self._task_done)
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in list(self.submits):
                t.cancel()
            await asyncio.gather(*self.submits, return_exceptions=True)
            gc.unfreeze()
        for lv in self.venues.values():
            await self.check_balance(lv)
        self.sampler.sample(self.clock(), self.session(self.clock()))
        if self._failure is not None:
            raise self._failure
        return self.stop_reason or "stopped"

    async def _cancel_everything(self) -> None:
        """Stop deciding, cancel every order, and wait (streams still running) for the venues to
        confirm; orders still open after ``cancel_wait_s`` are looked up once more."""
        await asyncio.gather(*list(self.submits), return_exceptions=True)
        loop = asyncio.get_running_loop()
        until = loop.time() + self.cancel_wait_s
        while loop.time() < until:
            await self.om.cancel_all()
            open_ = [o for o in self.om.orders.values() if not o.final]
            if not open_:
                break
            await asyncio.sleep(0.1)
            await self.om.poll()
        for lv in self.venues.values():
            await self._rest_reconcile(lv)
        await self._settle_unanswered()
        left = [o.client_id for o in self.om.orders.values() if not o.final and not self._journal_final(o.client_id)]
        if left:
            self.notices.append(f"{len(left)} order(s) not confirmed final at exit: {', '.join(left[:5])}")
            log.error("%s", self.notices[-1])

    async def _settle_unanswered(self) -> None:
        """Creates still unanswered at exit (UNKNOWN) may have reached the venue and filled, and the
        journal is what the run's report and the next start-up trust: such a venue is reconciled now
        as at start-up (execution.reconcile): the orders found by client id in one batch, one still
        resting cancelled, their fills journalled, the position compared with the venue's. Only when
        there are such orders: a reconciliation costs a venue with a small request budget seconds."""
        # both build on this module (LiveVenue)
        from execution.live import until_answered
        from execution.reconcile import reconcile_venue

        for lv in self.venues.values():
            if lv.defaulted or not any(o.venue == lv.id and o.state == OrderState.UNKNOWN
                                       for o in self.om.orders.values()):
                continue  # a defaulted venue's balance is a claim: nothing there to reconcile now
            try:
                # the calls that went unanswered may still be queued at the venue's rate limit: asked
                # again through timeouts, as at start-up (every step is safe to repeat), for as long
                # as the exit waits for cancels
                async with asyncio.timeout(self.cancel_wait_s):
                    rec = await until_answered(lv.name, "reconciling at exit", lambda lv=lv: reconcile_venue(
                        lv, self.journal, self.core, own_ids=set(), policy="cancel",
                        position_tolerance=self.guards.balance.position_tolerance, timeout_s=self.om.call_timeout_s,
                        now=self.clock()), give_up_s=self.cancel_wait_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next start-up reconciles what this could not
                log.warning("%s: reconciliation at exit failed (%s); the next start-up does it", lv.name,
                            self.journal.scrub(str(exc)) or type(exc).__name__)
                continue
            log.info("%s: reconciled at exit: %d unanswered order(s) looked up, %d fill(s) journalled, %d order(s)"
                     " still resting cancelled, %d closed", lv.name, rec.unacked_resolved, rec.fills_recovered,
                     len(rec.leftover_cancelled), rec.orders_closed)
            if rec.stopped:
                self.notices.append(rec.stopped)

    def _journal_final(self, client_id: str) -> bool:
        row = self.journal.order(client_id)
        return row is not None and row["state"] in FINAL_STATES

    def snapshot(self) -> dict[str, Any]:
        """What the terminal view and the metrics show, at the clock's now."""
        now = self.clock()
        tr = self.core.tr
        val = self.core.valuation(now)
        ni = int(tr.ci[T.K_NI])
        venues = {}
        for v, name in enumerate(self.venue_names):
            lv = self.venues.get(v)
            ins = int(tr.venue_instrument[v])
            b = v * ni + max(ins, 0)
            ours = [[float(tr.wo[s]["price"]) for s in tr.qslot[v, side] if s >= 0] for side in range(2)]
            venues[name] = {
                "traded": lv is not None,
                "status": ("not traded" if lv is None else "stopped" if lv.stopped else "stale book" if lv.stale
                           else "ok"),
                "why": self.halted.get(v) or (lv.stopped if lv else None),
                "bid": float(tr.lpx[b, 0, 0]) if tr.lnlev[b, 0] else math.nan,
                "ask": float(tr.lpx[b, 1, 0]) if tr.lnlev[b, 1] else math.nan,
                "our_bid": max(ours[0]) if ours[0] else math.nan,
                "our_ask": min(ours[1]) if ours[1] else math.nan,
                "position": float(tr.kpos[v, ins]) if ins >= 0 else 0.0,
                "exposure": float(val["venue_value"][v]), "cap": float(tr.exposure_cap[v]),
            }
        fills = self.journal.db.execute("SELECT venue, COUNT(*) FROM fills GROUP BY venue").fetchall()
        return {"now": now, "session": self.session(now), "venues": venues, "fills": dict(fills),
                "equity_raw": float(val["equity_raw"]), "equity_haircut": float(val["equity_haircut"]),
                "net_delta": float(val["net_delta"]), "fair": float(val["fair"]),
                "pnl_raw": float(val["equity_raw"]) - float((self.sampler.first or val)["equity_raw"]),
                "pnl_haircut": float(val["equity_haircut"]) - float((self.sampler.first or val)["equity_haircut"]),
                "decisions": self.decisions, "events": self.events, "orders": self.om.snapshot(),
                "guards": self.guards.snapshot(now), "feeds": {f.name: f.stats for f in self.feeds},
                "stop_reason": self.stop_reason}


__all__ = ["LiveRunner", "LiveVenue"]
