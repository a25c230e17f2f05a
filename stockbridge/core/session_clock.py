"""Session-state lookups and the variance clock, compiled for per-event use.

A session table is three flat arrays built by :class:`stockbridge.sessions.SessionCalendar`:

- ``boundaries``: int64 ns UTC, start of each segment, strictly increasing;
- ``states``: int8 state code of each segment (CLOSED=0, PRE=1, REGULAR=2, AFTER=3, OVERNIGHT=4);
- ``cumvar``: float64 variance-seconds accumulated from ``boundaries[0]`` to each boundary.

``weights`` (float64[5], indexed by state code) is the variance per second of each state relative
to a regular-hours second. A time before the first boundary belongs to the first segment, a time
after the last to the last segment (the calendar pads its table so callers stay inside it).
``mask`` (uint8[5], indexed by state code) marks the states a caller counts as "open" (for example
the states in which the hedge venue may trade).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NO_TIME = np.iinfo(np.int64).max  # "never" for next_open / next_close beyond the table


@njit(cache=True)
def segment_index(boundaries, ts):
    """Index of the segment holding ts (clamped to the table)."""
    i = np.searchsorted(boundaries, ts, side="right") - 1
    if i < 0:
        return 0
    return i


@njit(cache=True)
def state_at(boundaries, states, ts):
    """Session state code at ts (ns UTC)."""
    return states[segment_index(boundaries, ts)]


@njit(cache=True)
def variance_at(boundaries, states, cumvar, weights, ts):
    """Variance-seconds accumulated from the table's first boundary to ts."""
    i = segment_index(boundaries, ts)
    return cumvar[i] + weights[states[i]] * (ts - boundaries[i]) * 1e-9


@njit(cache=True)
def next_open(boundaries, states, mask, ts):
    """ts itself if its state is in mask, else the start of the next segment in mask (NO_TIME if none)."""
    i = segment_index(boundaries, ts)
    if mask[states[i]] and ts >= boundaries[0]:
        return ts
    for j in range(i + 1, boundaries.shape[0]):
        if mask[states[j]]:
            return boundaries[j]
    return NO_TIME


@njit(cache=True)
def next_close(boundaries, states, mask, ts):
    """End of the current (or, if closed now, the next) run of segments whose states are in mask."""
    i = segment_index(boundaries, ts)
    j = i
    n = boundaries.shape[0]
    if not mask[states[j]]:
        while j < n and not mask[states[j]]:
            j += 1
    while j < n and mask[states[j]]:
        j += 1
    if j >= n:
        return NO_TIME
    return boundaries[j]


@njit(cache=True)
def variance_until_open(boundaries, states, cumvar, weights, mask, ts):
    """Variance-seconds from ts until the next time a state in mask holds (0 if one holds now; inf if never)."""
    t_open = next_open(boundaries, states, mask, ts)
    if t_open == NO_TIME:
        return np.inf
    if t_open == ts:
        return 0.0
    return variance_at(boundaries, states, cumvar, weights, t_open) - variance_at(
        boundaries, states, cumvar, weights, ts
    )


@njit(cache=True)
def states_of(boundaries, states, ts_array):
    """Vectorised state_at: int64 ns[] -> int8[]."""
    out = np.empty(ts_array.shape[0], dtype=np.int8)
    for k in range(ts_array.shape[0]):
        out[k] = state_at(boundaries, states, ts_array[k])
    return out


@njit(cache=True)
def variances_of(boundaries, states, cumvar, weights, ts_array):
    """Vectorised variance_at: int64 ns[] -> float64 variance-seconds[]."""
    out = np.empty(ts_array.shape[0], dtype=np.float64)
    for k in range(ts_array.shape[0]):
        out[k] = variance_at(boundaries, states, cumvar, weights, ts_array[k])
    return out


@njit(cache=True)
def next_opens_of(boundaries, states, mask, ts_array):
    out = np.empty(ts_array.shape[0], dtype=np.int64)
    for k in range(ts_array.shape[0]):
        out[k] = next_open(boundaries, states, mask, ts_array[k])
    return out


@njit(cache=True)
def next_closes_of(boundaries, states, mask, ts_array):
    out = np.empty(ts_array.shape[0], dtype=np.int64)
    for k in range(ts_array.shape[0]):
        out[k] = next_close(boundaries, states, mask, ts_array[k])
    return out


@njit(cache=True)
def variances_until_open_of(boundaries, states, cumvar, weights, mask, ts_array):
    out = np.empty(ts_array.shape[0], dtype=np.float64)
    for k in range(ts_array.shape[0]):
        out[k] = variance_until_open(boundaries, states, cumvar, weights, mask, ts_array[k])
    return out


@njit(cache=True)
def hedge_tables(boundaries, states, cumvar, weights, mask):
    """Per segment k, what the decision needs of the hedge venue's sessions, so that a decision at any
    ts inside segment k (``boundaries[k] <= ts``) needs no search:

    - ``open_var[k]``: variance_at(next_open(ts)) (NaN when open now, inf when it never opens again):
      variance_until_open(ts) = 0 if NaN, else ``open_var[k] - variance_at(ts)``;
    - ``close_var[k]``: variance_at(next_close(ts)) (NaN when it never closes), and
      ``after_close[k]``: variance_until_open(next_close(ts)).

    Each is computed with the functions above at ``ts = boundaries[k]``; next_open / next_close give
    the same answer anywhere in the segment, so the values are the very numbers those functions return."""
    n = boundaries.shape[0]
    open_var = np.empty(n)
    close_var = np.empty(n)
    after_close = np.empty(n)
    for k in range(n):
        ts = boundaries[k]
        t_open = next_open(boundaries, states, mask, ts)
        if t_open == ts:
            open_var[k] = np.nan
        elif t_open == NO_TIME:
            open_var[k] = np.inf
        else:
            open_var[k] = variance_at(boundaries, states, cumvar, weights, t_open)
        t_close = next_close(boundaries, states, mask, ts)
        if t_close == NO_TIME:
            close_var[k] = np.nan
            after_close[k] = np.nan
        else:
            close_var[k] = variance_at(boundaries, states, cumvar, weights, t_close)
            after_close[k] = variance_until_open(boundaries, states, cumvar, weights, mask, t_close)
    return open_var, close_var, after_close
