"""Session calendar pinned to known dates (America/New_York) and the variance clock's arithmetic."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stockbridge.config import SessionWeights
from stockbridge.sessions import AFTER, CLOSED, OVERNIGHT, PRE, REGULAR, SessionCalendar

NY = ZoneInfo("America/New_York")


def utc(y, m, d, hh=0, mm=0):
    return int(datetime(y, m, d, hh, mm, tzinfo=timezone.utc).timestamp()) * 10**9


def ny(y, m, d, hh=0, mm=0):
    return int(datetime(y, m, d, hh, mm, tzinfo=NY).timestamp()) * 10**9


@pytest.fixture(scope="module")
def cal():
    return SessionCalendar(ny(2024, 12, 20), ny(2026, 12, 31))


def test_half_day_2025_07_03_closes_at_13(cal):
    assert cal.state_at(ny(2025, 7, 3, 12, 59)) == REGULAR
    assert cal.state_at(ny(2025, 7, 3, 13, 0)) == AFTER
    assert cal.state_at(ny(2025, 7, 3, 16, 59)) == AFTER
    assert cal.state_at(ny(2025, 7, 3, 17, 0)) == CLOSED  # after-hours end at 17:00 on half days
    assert cal.next_close(ny(2025, 7, 3, 10)) == ny(2025, 7, 3, 13)


@pytest.mark.parametrize("day", [(2025, 11, 27), (2026, 4, 3), (2025, 1, 9), (2025, 7, 4), (2026, 11, 26)])
def test_holidays_closed_all_day(cal, day):
    for hh in (5, 10, 15, 18):
        assert cal.state_at(ny(*day, hh)) == CLOSED


def test_regular_day_states(cal):
    assert cal.state_at(ny(2025, 7, 2, 3, 59)) == OVERNIGHT
    assert cal.state_at(ny(2025, 7, 2, 4, 0)) == PRE
    assert cal.state_at(ny(2025, 7, 2, 9, 29)) == PRE
    assert cal.state_at(ny(2025, 7, 2, 9, 30)) == REGULAR
    assert cal.state_at(ny(2025, 7, 2, 16, 0)) == AFTER
    assert cal.state_at(ny(2025, 7, 2, 20, 0)) == OVERNIGHT  # Wednesday night before a trading Thursday


def test_weekend_and_sunday_overnight(cal):
    assert cal.state_at(ny(2025, 7, 11, 20, 0)) == CLOSED  # Friday night: no overnight session
    assert cal.state_at(ny(2025, 7, 12, 12)) == CLOSED  # Saturday
    assert cal.state_at(ny(2025, 7, 13, 19, 59)) == CLOSED
    assert cal.state_at(ny(2025, 7, 13, 20, 0)) == OVERNIGHT  # Sunday evening
    assert cal.state_at(ny(2025, 7, 14, 4, 0)) == PRE
    assert cal.next_open(ny(2025, 7, 12, 12)) == ny(2025, 7, 14, 9, 30)


def test_no_overnight_before_a_holiday(cal):
    # Thanksgiving 2025 is Thursday 27th: Wednesday night has no overnight session, Thursday night does.
    assert cal.state_at(ny(2025, 11, 26, 21)) == CLOSED
    assert cal.state_at(ny(2025, 11, 27, 21)) == OVERNIGHT


def test_dst_changes(cal):
    # 2025-03-10 (after spring forward): 09:30 New York is 13:30 UTC; 2025-03-07 it was 14:30 UTC.
    assert cal.next_open(ny(2025, 3, 10, 5)) == utc(2025, 3, 10, 13, 30)
    assert cal.next_open(ny(2025, 3, 7, 5)) == utc(2025, 3, 7, 14, 30)
    # 2025-11-03 (after fall back): 09:30 New York is 14:30 UTC
    assert cal.next_open(ny(2025, 11, 3, 5)) == utc(2025, 11, 3, 14, 30)
    assert cal.state_at(ny(2025, 11, 3, 9, 30)) == REGULAR


def test_vectorised_lookup_matches_scalar(cal):
    ts = np.array([ny(2025, 7, 3, 12), ny(2025, 7, 4, 12), ny(2025, 7, 6, 21)], dtype=np.int64)
    assert list(cal.state_at(ts)) == [REGULAR, CLOSED, OVERNIGHT]


def test_variance_clock_weekend_by_hand():
    w = SessionWeights(regular=1.0, pre=0.2, after=0.1, overnight=0.05, closed=0.01)
    cal = SessionCalendar(ny(2025, 7, 1), ny(2025, 7, 20), weights=w)
    # From Friday 2025-07-11 20:00 to Monday 09:30: closed Fri 20:00 -> Sun 20:00 (48 h),
    # overnight Sun 20:00 -> Mon 04:00 (8 h), pre 04:00 -> 09:30 (5.5 h).
    expected = (48 * 0.01 + 8 * 0.05 + 5.5 * 0.2) * 3600
    assert cal.variance_to_open(ny(2025, 7, 11, 20)) == pytest.approx(expected)
    assert cal.variance_time(ny(2025, 7, 11, 20), ny(2025, 7, 14, 9, 30)) == pytest.approx(expected)
    # Hedging allowed in extended hours too: the horizon ends at Monday's pre-market.
    assert cal.variance_to_open(ny(2025, 7, 11, 20), states=("pre", "regular", "after")) == pytest.approx((48 * 0.01 + 8 * 0.05) * 3600)
    assert cal.variance_to_open(ny(2025, 7, 14, 10)) == 0.0


def test_24_5_venue_hours(cal):
    assert not cal.venue_open("24/5", ny(2025, 7, 12, 12))
    assert cal.venue_open("24/5", ny(2025, 7, 11, 19, 59))
    assert not cal.venue_open("24/5", ny(2025, 7, 11, 20, 0))
    assert cal.venue_open("24/5", ny(2025, 7, 13, 20, 0))
    assert cal.venue_open("24/7", ny(2025, 7, 12, 12))
    assert not cal.venue_open("equity", ny(2025, 7, 12, 12))


def test_outside_table_is_an_error(cal):
    with pytest.raises(ValueError, match="outside the session table"):
        cal.state_at(ny(2030, 1, 2))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=ny(2025, 1, 2), max_value=ny(2026, 12, 1)), st.integers(min_value=0, max_value=10**15))
def test_variance_clock_is_monotone_and_next_open_is_open(t0, dt):
    cal = _CAL
    t1 = min(t0 + dt, ny(2026, 12, 1))
    assert cal.variance_time(t0, t1) >= 0
    nxt = cal.next_open(t0)
    assert nxt >= t0 and cal.state_at(nxt) == REGULAR
    assert cal.variance_to_open(t0) == pytest.approx(cal.variance_time(t0, nxt), abs=1e-6)


_CAL = SessionCalendar(ny(2024, 12, 20), ny(2026, 12, 31))
