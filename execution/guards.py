"""Risk guards between the trader core's actions and the venues. Pure: time is passed in (ns UTC),
nothing sleeps, nothing calls a venue; the runner carries out what :meth:`Guards.screen` says.

- :class:`StaleBookGuard`: a venue whose book has not updated for ``stale_ns`` is stale: its resting
  quotes are to be cancelled (once, when it turns stale) and no new order goes there until a fresh
  update (a quote, a hedge limit or an arbitrage leg priced off a stale book is a guess). A venue
  never heard from is stale.
- :class:`RateGuard`: a token bucket per venue (``rate_per_s`` sustained, ``burst`` at once). An
  action over the limit waits in the venue's queue; cancels leave before new orders (pulling risk
  first); a cancel of a new order still waiting annuls both (nothing is sent). A venue that answered
  with its rate-limit error is *held* (execution.backoff): nothing leaves for it until the hold
  ends, new orders for it are refused meanwhile, its cancels wait and leave first.
- :class:`BalanceGuard`: the core's inventory limit and the venue's exposure cap re-checked on the
  balances the venue reports; a gap between the venue's figures and the core's books beyond the
  tolerance stops new orders there until a snapshot agrees again.
- :class:`DrawdownGuard`: equity (raw, and after haircut) falling more than the limit from its peak
  kills the run: cancel everything, send nothing new, latched until restart.

Every guard's state is readable (:meth:`Guards.snapshot`) for the terminal view and the metrics.
Units: ns UTC; quote currency; tokens (shares at the equity venue).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stockbridge.core.actions import ACTION_DTYPE
from stockbridge.core.order_codes import ACT_CANCEL, ACT_NEW

NS = 1_000_000_000
MS = 1_000_000


class StaleBookGuard:
    """Per venue: the last book update and whether the venue is stale (see module doc)."""

    def __init__(self, n_venues: int, stale_ns: int):
        if stale_ns <= 0:
            raise ValueError(f"stale_ns must be positive, got {stale_ns}")
        self.stale_ns = stale_ns
        self.last = [None] * n_venues   # ns UTC of the last update, None = never
        self.stale = [True] * n_venues
        self.since = [0] * n_venues     # ns UTC the current state began
        self._pulled = [True] * n_venues  # quotes already pulled for the current stale spell

    def book_update(self, venue: int, now: int) -> None:
        self.last[venue] = now
        if self.stale[venue]:
            self.stale[venue], self.since[venue], self._pulled[venue] = False, now, False

    def check(self, now: int) -> list[int]:
        """Venues that turned stale since the last check (their quotes are to be cancelled once)."""
        out = []
        for v, last in enumerate(self.last):
            if not self.stale[v] and (last is None or now - last > self.stale_ns):
                self.stale[v], self.since[v] = True, now
            if self.stale[v] and not self._pulled[v]:
                self._pulled[v] = True
                out.append(v)
        return out

    def allows(self, venue: int, now: int) -> bool:
        last = self.last[venue]
        return last is not None and now - last <= self.stale_ns

    def view(self, venue: int, now: int) -> dict[str, Any]:
        last = self.last[venue]
        return {"state": "ok" if self.allows(venue, now) else "stale",
                "age_ms": None if last is None else (now - last) / MS, "since_ns": self.since[venue]}


@dataclass
class TokenBucket:
    """``rate_per_s`` tokens a second up to ``burst``; full at start."""

    rate_per_s: float
    burst: float
    tokens: float = math.nan
    last_ns: int | None = None

    def __post_init__(self):
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {self.rate_per_s}, {self.burst}")
        if math.isnan(self.tokens):
            self.tokens = float(self.burst)

    def _refill(self, now: int) -> None:
        if self.last_ns is not None and now > self.last_ns:
            self.tokens = min(self.burst, self.tokens + (now - self.last_ns) * self.rate_per_s / NS)
        if self.last_ns is None or now > self.last_ns:
            self.last_ns = now

    def take(self, now: int) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def next_ns(self, now: int) -> int:
        """When the next token is there (``now`` if it is)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return now
        t = now + math.ceil((1.0 - self.tokens) * NS / self.rate_per_s)
        # the first ns at which take() succeeds, in take()'s own float arithmetic (the estimate can be a ns off)
        at = lambda ns: min(self.burst, self.tokens + (ns - now) * self.rate_per_s / NS)  # noqa: E731
        while t - 1 > now and at(t - 1) >= 1.0:
            t -= 1
        while at(t) < 1.0:
            t += 1
        return t


class RateGuard:
    """Order-rate limit per venue: a token bucket and a queue where cancels go first."""

    def __init__(self, n_venues: int, rate_per_s: float, burst: float):
        self.buckets = [TokenBucket(rate_per_s, burst) for _ in range(n_venues)]
        self.cancels: list[deque] = [deque() for _ in range(n_venues)]
        self.news: list[deque] = [deque() for _ in range(n_venues)]
        self.held_until = [0] * n_venues  # ns UTC: the venue rate-limited us, nothing leaves before

    def hold(self, venue: int, until_ns: int) -> None:
        self.held_until[venue] = max(self.held_until[venue], int(until_ns))

    def held(self, venue: int, now: int) -> bool:
        return now < self.held_until[venue]

    def push(self, row: np.void) -> np.void | None:
        """Queue an action; for a cancel of a new order still queued, both go and the new order's row is
        returned (annulled: the caller tells the core it was never sent)."""
        v = int(row["venue"])
        if int(row["kind"]) == ACT_CANCEL:
            for k, queued in enumerate(self.news[v]):
                if int(queued["cid"]) == int(row["cid"]):
                    del self.news[v][k]
                    return queued
            self.cancels[v].append(row)
        else:
            self.news[v].append(row)
        return None

    def release(self, now: int) -> list[np.void]:
        """Actions whose turn has come: per venue cancels first, then new orders, one token each."""
        out = []
        for v, bucket in enumerate(self.buckets):
            if self.held(v, now):
                continue
            for q in (self.cancels[v], self.news[v]):
                while q and bucket.take(now):
                    out.append(q.popleft())
                if q:
                    break  # out of tokens: the new orders wait behind any waiting cancel
        return out

    def next_release_ns(self, now: int) -> int | None:
        """When :meth:`release` has something to give next (None: nothing is waiting)."""
        due = [max(b.next_ns(now), self.held_until[v]) for v, b in enumerate(self.buckets) if self.cancels[v] or self.news[v]]
        return min(due) if due else None

    def view(self, venue: int, now: int) -> dict[str, Any]:
        b = self.buckets[venue]
        b._refill(now)
        waiting = len(self.cancels[venue]) + len(self.news[venue])
        state = "held" if self.held(venue, now) else "waiting" if waiting else "ok"
        return {"state": state, "held_ms": max(0, self.held_until[venue] - now) / MS, "tokens": b.tokens, "queued_cancels": len(self.cancels[venue]),
                "queued_news": len(self.news[venue])}


@dataclass
class VenueBalanceCheck:
    """The last balance check of one venue (tokens, quote ccy)."""

    position: float = 0.0        # venue-reported, tokens
    value: float = 0.0           # venue-reported cash + position x mark, quote ccy
    drift_position: float = 0.0  # venue - core, tokens
    drift_cash: float = 0.0      # venue - core, quote ccy
    reason: str | None = None    # why new orders are stopped here (drift or exposure), None if they are not
    checked_ns: int | None = None


class BalanceGuard:
    """Inventory and exposure on the venues' reported balances; drift from the core's books.

    ``max_position``: max |inventory| per venue, tokens (the core's risk.max_position);
    ``exposure_cap``: per venue, max balance value held there, quote ccy (the venue's exposure_cap);
    ``position_tolerance`` (tokens) and ``cash_tolerance`` (quote ccy): the gap allowed between the
    venue's figures and the core's before the venue is stopped.
    """

    def __init__(self, max_position: float, exposure_cap: Sequence[float], position_tolerance: float,
                 cash_tolerance: float):
        self.max_position = max_position
        self.exposure_cap = list(exposure_cap)
        self.position_tolerance, self.cash_tolerance = position_tolerance, cash_tolerance
        self.checks = [VenueBalanceCheck() for _ in self.exposure_cap]

    def on_balance(self, venue: int, *, position: float, cash: float, mark: float, core_position: float,
                   core_cash: float, now: int, name: str = "") -> str | None:
        """A venue balance snapshot (tokens, quote ccy, mark quote ccy per token) against the core's
        books; returns the one-line reason new orders stop there, None if all is within limits."""
        c = self.checks[venue]
        c.position, c.value = position, cash + position * mark
        c.drift_position, c.drift_cash = position - core_position, cash - core_cash
        c.checked_ns = now
        where = name or f"venue {venue}"
        # sums of fills carry float rounding: a drift within it is no drift
        if abs(c.drift_position) > self.position_tolerance + 1e-9 * max(1.0, abs(position)):
            c.reason = (f"{where}: reported position {position:g} differs from our books' {core_position:g} by more "
                        f"than {self.position_tolerance:g} tokens; new orders stopped there")
        elif abs(c.drift_cash) > self.cash_tolerance + 1e-9 * max(1.0, abs(cash)):
            c.reason = (f"{where}: reported cash {cash:.2f} differs from our books' {core_cash:.2f} by more than "
                        f"{self.cash_tolerance:g}; new orders stopped there")
        elif c.value > self.exposure_cap[venue]:
            c.reason = f"{where}: balance value {c.value:.2f} is over the exposure cap {self.exposure_cap[venue]:.2f}"
        else:
            c.reason = None
        return c.reason

    def allows(self, venue: int, side: int, qty: float) -> str | None:
        """None if a new order (side +1 buy / -1 sell, qty tokens) may go; else why not. Over the
        inventory limit only an order that brings the position back toward zero may go."""
        c = self.checks[venue]
        if c.reason is not None:
            return c.reason
        after = c.position + side * qty
        if abs(after) > self.max_position and abs(after) > abs(c.position):
            return (f"venue {venue}: reported position {c.position:g} {'+' if side > 0 else '-'} {qty:g} would exceed "
                    f"the inventory limit {self.max_position:g}")
        return None

    def view(self, venue: int) -> dict[str, Any]:
        c = self.checks[venue]
        return {"state": "ok" if c.reason is None else "stopped", "reason": c.reason, "position": c.position,
                "value": c.value, "cap": self.exposure_cap[venue], "drift_position": c.drift_position,
                "drift_cash": c.drift_cash, "checked_ns": c.checked_ns}


class DrawdownGuard:
    """Kill switch on equity's fall from its peak, raw and after haircut (quote ccy)."""

    def __init__(self, max_drawdown: float, max_drawdown_haircut: float):
        self.max_raw, self.max_haircut = max_drawdown, max_drawdown_haircut
        self.peak_raw = self.peak_haircut = -math.inf
        self.drawdown_raw = self.drawdown_haircut = 0.0
        self.killed_ns: int | None = None
        self.reason: str | None = None

    def update(self, equity_raw: float, equity_haircut: float, now: int) -> bool:
        """New equity marks; True the first time the switch trips."""
        self.peak_raw = max(self.peak_raw, equity_raw)
        self.peak_haircut = max(self.peak_haircut, equity_haircut)
        self.drawdown_raw = self.peak_raw - equity_raw
        self.drawdown_haircut = self.peak_haircut - equity_haircut
        if self.killed_ns is not None:
            return False
        if self.drawdown_raw > self.max_raw:
            self.reason = f"drawdown {self.drawdown_raw:.2f} from the peak {self.peak_raw:.2f} exceeds {self.max_raw:.2f}"
        elif self.drawdown_haircut > self.max_haircut:
            self.reason = (f"drawdown after haircut {self.drawdown_haircut:.2f} from the peak {self.peak_haircut:.2f} "
                           f"exceeds {self.max_haircut:.2f}")
        else:
            return False
        self.killed_ns = now
        return True

    def view(self) -> dict[str, Any]:
        return {"state": "ok" if self.killed_ns is None else "killed", "reason": self.reason,
                "drawdown_raw": self.drawdown_raw, "drawdown_haircut": self.drawdown_haircut,
                "limit_raw": self.max_raw, "limit_haircut": self.max_haircut, "killed_ns": self.killed_ns}


@dataclass
class Screened:
    """What the runner does after :meth:`Guards.screen`: ``send`` these actions (ACTION_DTYPE, in
    order) to the order manager; tell the core ``refuse`` (rows, reason) were never sent; cancel
    the resting quotes at ``pull_quotes`` venues; on ``kill``, cancel everything and stop."""

    send: np.ndarray
    refuse: list[tuple[np.ndarray, str]] = field(default_factory=list)
    pull_quotes: list[int] = field(default_factory=list)
    kill: str | None = None


def _rows(rows: list[np.void]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=ACTION_DTYPE)
    for k, r in enumerate(rows):
        out[k] = r
    return out


class Guards:
    """All guards for ``venue_names`` (ids in config order)."""

    def __init__(self, venue_names: Sequence[str], *, stale_book_ns: int, rate_per_s: float, burst: float,
                 max_position: float, exposure_cap: Sequence[float], position_tolerance: float,
                 cash_tolerance: float, max_drawdown: float, max_drawdown_haircut: float):
        n = len(venue_names)
        self.venue_names = list(venue_names)
        self.stale = StaleBookGuard(n, stale_book_ns)
        self.rate = RateGuard(n, rate_per_s, burst)
        self.balance = BalanceGuard(max_position, exposure_cap, position_tolerance, cash_tolerance)
        self.drawdown = DrawdownGuard(max_drawdown, max_drawdown_haircut)
        self._kill_reported = False

    @classmethod
    def from_config(cls, live: Any, venue_names: Sequence[str], exposure_cap: Sequence[float],
                    max_position: float) -> "Guards":
        """From a stockbridge.live_config.LiveConfig and the config's venues and risk limits."""
        g = live.guards
        return cls(venue_names, stale_book_ns=int(g.stale_book_ms * MS), rate_per_s=g.max_orders_per_second,
                   burst=g.order_burst, max_position=max_position, exposure_cap=exposure_cap,
                   position_tolerance=g.position_tolerance, cash_tolerance=g.cash_tolerance,
                   max_drawdown=g.max_drawdown, max_drawdown_haircut=g.max_drawdown_haircut)

    @property
    def killed(self) -> bool:
        return self.drawdown.killed_ns is not None

    def book_update(self, venue: int, now: int) -> None:
        self.stale.book_update(venue, now)

    def screen(self, actions: np.ndarray | None, now: int) -> Screened:
        """The core's actions (or None on a timer tick) through every guard at ``now``."""
        refuse: list[tuple[np.ndarray, str]] = []
        kill = None
        if self.killed and not self._kill_reported:
            self._kill_reported = True
            kill = self.drawdown.reason
        for row in actions if actions is not None else ():
            if int(row["kind"]) == ACT_NEW:
                reason = self._why_not(row, now)
                if reason is not None:
                    refuse.append((_rows([row]), reason))
                    continue
            elif int(row["kind"]) != ACT_CANCEL:
                raise ValueError(f"action kind {int(row['kind'])} is neither ACT_NEW nor ACT_CANCEL")
            annulled = self.rate.push(row)
            if annulled is not None:
                refuse.append((_rows([annulled]), "cancelled before it was sent (rate limit queue)"))
        pull = self.stale.check(now)
        if self.killed:
            # nothing new leaves once killed; what waits in the queue is refused, cancels still go
            for v in range(len(self.venue_names)):
                while self.rate.news[v]:
                    refuse.append((_rows([self.rate.news[v].popleft()]), f"kill switch: {self.drawdown.reason}"))
        return Screened(send=_rows(self.rate.release(now)), refuse=refuse, pull_quotes=pull, kill=kill)

    def _why_not(self, row: np.void, now: int) -> str | None:
        v = int(row["venue"])
        if self.killed:
            return f"kill switch: {self.drawdown.reason}"
        if not self.stale.allows(v, now):
            return f"{self.venue_names[v]}: book stale (no update for more than {self.stale.stale_ns / MS:g} ms)"
        if self.rate.held(v, now):
            return (f"{self.venue_names[v]}: the venue rate-limited us; nothing new goes there for "
                    f"{(self.rate.held_until[v] - now) / MS:.0f} ms more")
        return self.balance.allows(v, int(row["side"]), float(row["qty"]))

    def next_wakeup_ns(self, now: int) -> int | None:
        """When the runner should call :meth:`screen` again for queued actions (None: nothing waits)."""
        return self.rate.next_release_ns(now)

    def snapshot(self, now: int) -> dict[str, Any]:
        return {"venues": {name: {"stale_book": self.stale.view(v, now), "rate": self.rate.view(v, now),
                                  "balance": self.balance.view(v)} for v, name in enumerate(self.venue_names)},
                "drawdown": self.drawdown.view()}


__all__ = ["BalanceGuard", "DrawdownGuard", "Guards", "RateGuard", "Screened", "StaleBookGuard", "TokenBucket"]
