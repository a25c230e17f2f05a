"""US equity session calendar: per-timestamp session state, next open/close, and the variance clock.

Holidays, early closes and pre/after-hours come from ``pandas_market_calendars`` (NYSE calendar:
pre 04:00, regular 09:30-16:00 or 13:00 on half days, post until 20:00 or 17:00 on half days, all
America/New_York). Neither that library nor ``exchange_calendars`` models the overnight ATS session,
so it is derived here from the calendar: 20:00 on the calendar day before each trading day until
04:00 of that trading day (Sunday-Thursday nights, none before a holiday).

The variance clock integrates per-state weights (variance per hour relative to a regular-hours hour,
after French & Roll 1986) so that "variance-time until the next hedge opportunity" is one call.
Units: times int64 ns UTC; variance-time in variance-seconds (seconds of regular-hours variance).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas_market_calendars as mcal

from stockbridge.config import SessionWeights
from stockbridge.core import session_clock as sc

NEW_YORK = ZoneInfo("America/New_York")

CLOSED, PRE, REGULAR, AFTER, OVERNIGHT = 0, 1, 2, 3, 4
STATE_NAMES = ("closed", "pre", "regular", "after", "overnight")
STATE_CODES = {name: code for code, name in enumerate(STATE_NAMES)}
OPEN_HOURS = {"24/7", "24/5", "equity"}

_NS = 1_000_000_000
_PAD = timedelta(days=10)


def weights_array(weights: SessionWeights) -> np.ndarray:
    """float64[5] indexed by state code."""
    out = np.empty(5, dtype=np.float64)
    for name, code in STATE_CODES.items():
        out[code] = getattr(weights, name)
    return out


def state_mask(states: Iterable[int | str]) -> np.ndarray:
    """uint8[5] with 1 at each given state (codes or names)."""
    mask = np.zeros(5, dtype=np.uint8)
    for s in states:
        mask[STATE_CODES[s] if isinstance(s, str) else int(s)] = 1
    return mask


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * _NS + dt.microsecond * 1000


def _ny(d: date, t: time) -> int:
    return _ns(datetime.combine(d, t, tzinfo=NEW_YORK))


@lru_cache(maxsize=16)
def _schedule(calendar: str, first: date, last: date):
    cal = mcal.get_calendar(calendar)
    return cal.schedule(start_date=first.isoformat(), end_date=last.isoformat(), start="pre", end="post")


class SessionCalendar:
    """Session table over [start_ns - 10 days, end_ns + 10 days] (padding lets next_open look ahead)."""

    def __init__(self, start_ns: int, end_ns: int, calendar: str = "NYSE", weights: SessionWeights | None = None):
        if end_ns < start_ns:
            raise ValueError("end_ns must not precede start_ns")
        self.calendar = calendar
        self.weights = weights_array(weights or SessionWeights())
        first = datetime.fromtimestamp(start_ns / _NS, NEW_YORK).date() - _PAD
        last = datetime.fromtimestamp(end_ns / _NS, NEW_YORK).date() + _PAD
        sched = _schedule(calendar, first, last)
        trading_days = [d.date() for d in sched.index]
        starts, codes = [_ny(first, time(0))], [CLOSED]

        def add(t: int, state: int) -> None:
            if t > starts[-1]:
                starts.append(t)
                codes.append(state)
            else:  # a segment starting at the same instant replaces the one before it
                codes[-1] = state

        for d, row in zip(trading_days, sched.itertuples(index=False)):
            pre, open_, close, post = (_ns(ts.to_pydatetime()) for ts in (row.pre, row.market_open, row.market_close, row.post))
            add(_ny(d - timedelta(days=1), time(20)), OVERNIGHT)
            add(pre, PRE)
            add(open_, REGULAR)
            add(close, AFTER)
            add(post, CLOSED)
        self.boundaries = np.asarray(starts, dtype=np.int64)
        self.states = np.asarray(codes, dtype=np.int8)
        seg_seconds = np.diff(self.boundaries).astype(np.float64) / _NS
        self.cumvar = np.concatenate(([0.0], np.cumsum(seg_seconds * self.weights[self.states[:-1]])))
        self.start_ns, self.end_ns = int(self.boundaries[0]), int(self.boundaries[-1])

    # -- lookups (vectorised over int64 ns arrays; scalars in give scalars out) --
    def _check(self, ts) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        if arr.size and (arr.min() < self.start_ns or arr.max() > self.end_ns):
            raise ValueError(
                f"timestamp outside the session table ({self.start_ns}..{self.end_ns} ns); build a wider SessionCalendar"
            )
        return arr

    @staticmethod
    def _out(ts, arr):
        return arr[0].item() if np.ndim(ts) == 0 else arr

    def state_at(self, ts):
        """Session state code(s) at ts (ns UTC)."""
        return self._out(ts, sc.states_of(self.boundaries, self.states, self._check(ts)))

    def next_open(self, ts, states: Iterable[int | str] = (REGULAR,)):
        """ts if a state in ``states`` holds now, else the next moment one begins (ns UTC)."""
        return self._out(ts, sc.next_opens_of(self.boundaries, self.states, state_mask(states), self._check(ts)))

    def next_close(self, ts, states: Iterable[int | str] = (REGULAR,)):
        """End of the current (or next) run of ``states`` (ns UTC)."""
        return self._out(ts, sc.next_closes_of(self.boundaries, self.states, state_mask(states), self._check(ts)))

    def variance_at(self, ts):
        """Variance-seconds accumulated since the start of the table."""
        return self._out(ts, sc.variances_of(self.boundaries, self.states, self.cumvar, self.weights, self._check(ts)))

    def variance_time(self, t0, t1):
        """Variance-seconds between t0 and t1 (ns UTC)."""
        return np.asarray(self.variance_at(t1)) - np.asarray(self.variance_at(t0))

    def variance_to_open(self, ts, states: Iterable[int | str] = (REGULAR,)):
        """Variance-seconds from ts until a state in ``states`` next holds: the risk horizon until a hedge."""
        return self._out(
            ts,
            sc.variances_until_open_of(
                self.boundaries, self.states, self.cumvar, self.weights, state_mask(states), self._check(ts)
            ),
        )

    # -- venue hours --
    def venue_table(self, hours: str) -> tuple[np.ndarray, np.ndarray]:
        """(boundaries int64[], open uint8[]) for a venue's trading hours, in the same form as the session table."""
        if hours == "24/7":
            return np.array([self.start_ns], dtype=np.int64), np.array([1], dtype=np.uint8)
        if hours == "equity":
            return self.boundaries, (self.states != CLOSED).astype(np.uint8)
        if hours == "24/5":
            # closed from Friday 20:00 to Sunday 20:00 New York time
            day = datetime.fromtimestamp(self.start_ns / _NS, NEW_YORK).date()
            day -= timedelta(days=(day.weekday() - 4) % 7)  # the Friday on or before the start
            bounds, flags = [self.start_ns], [1]
            while True:
                fri = _ny(day, time(20))
                sun = _ny(day + timedelta(days=2), time(20))
                if fri > self.end_ns:
                    break
                if fri <= self.start_ns:
                    bounds[0], flags[0] = self.start_ns, int(sun <= self.start_ns)
                else:
                    bounds.append(fri)
                    flags.append(0)
                if sun > self.start_ns:
                    bounds.append(sun)
                    flags.append(1)
                day += timedelta(days=7)
            return np.asarray(bounds, dtype=np.int64), np.asarray(flags, dtype=np.uint8)
        raise ValueError(f"unknown trading hours {hours!r} (expected one of {sorted(OPEN_HOURS)})")

    def venue_open(self, hours: str, ts):
        """Whether a venue with these trading hours is open at ts (bool or bool array)."""
        bounds, flags = self.venue_table(hours)
        arr = self._check(ts)
        idx = np.clip(np.searchsorted(bounds, arr, side="right") - 1, 0, None)
        return self._out(ts, flags[idx].astype(bool))
