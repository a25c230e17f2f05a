"""Fair value of one token and its uncertainty, around the clock.

While the underlying trades, fair = its mid x multiplier. While it is closed, the last underlying
mid x the current multiplier is carried forward and blended with a robust consensus of the token
venues' own mids, which keep trading:

- consensus: weighted median of venue mids, weight ``exp(-ln2 * age / half_life_s)`` (stale
  venues count less); its variance ``(noise_bps/1e4 * consensus)^2 / sum(weights)``, i.e. one fresh
  venue mid is an estimate of fair with std ``noise_bps``;
- reference variance: ``(sigma_rel * reference)^2 * var_since_print``, zero right after the close
  and growing with the variance-time since the underlying's last print;
- blend: inverse-variance weights, so fair starts at the reference and drifts to the consensus as
  the reference ages.

``fair_std = sigma_rel * reference * sqrt(var_since_print)``: it measures how far the share may have
moved since its last print. It is deliberately not shrunk by the consensus (token venues off-hours
are thin and may be off the share), so it keeps growing until the underlying prints again; the
quoting floor (quoting.min_half_spread) widens with it.

State, float64[FAIR_STATE_SIZE] (``M`` = MAX_VENUES):

- ``[0]`` last underlying mid, quote ccy per share (NaN: none yet);
- ``[1]`` its time, ns UTC, stored as float64 (~256 ns resolution, ample for ages);
- ``[2 + v]`` token venue v's mid, quote ccy per token (NaN: none);
- ``[2 + M + v]`` the time of that mid, ns UTC;
- ``[2 + 2M :]`` work space of venue_consensus (2M values).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stockbridge.core.context import MAX_VENUES

_MID0 = 2
_TS0 = 2 + MAX_VENUES
_SCRATCH0 = 2 + 2 * MAX_VENUES  # work space of venue_consensus (values, weights): no allocation per mark
FAIR_STATE_SIZE = _SCRATCH0 + 2 * MAX_VENUES
_LN2 = math.log(2.0)


def new_fair_state() -> np.ndarray:
    """A fresh state: no underlying print, no venue mids."""
    return np.full(FAIR_STATE_SIZE, np.nan)


@njit(cache=True)
def fair_value_update_underlying(state, ts, mid):
    """Record the underlying's mid (quote ccy per share) at ``ts`` (ns UTC); ignored unless finite > 0."""
    if math.isfinite(mid) and mid > 0.0:
        state[0] = mid
        state[1] = float(ts)


@njit(cache=True)
def fair_value_update_venue(state, venue, ts, mid):
    """Record token venue ``venue``'s mid (quote ccy per token) at ``ts``; ignored unless finite > 0."""
    if math.isfinite(mid) and mid > 0.0:
        state[_MID0 + venue] = mid
        state[_TS0 + venue] = float(ts)


@njit(cache=True)
def last_print_ts(state):
    """ns UTC of the underlying's last recorded mid (-1 if none): the caller turns it into var_since_print."""
    if math.isfinite(state[1]):
        return np.int64(state[1])
    return np.int64(-1)


@njit(cache=True, inline="always")
def _before(values, a, b):
    """``values[a]`` sorts before ``values[b]``: ascending, NaN last, ties by index (a stable sort's order)."""
    x = values[a]
    y = values[b]
    if x < y or (math.isnan(y) and not math.isnan(x)):
        return True
    if y < x or (math.isnan(x) and not math.isnan(y)):
        return False
    return a < b


@njit(cache=True)
def _next_in_order(values, n, prev):
    """Index of the value after index ``prev`` in that order (``prev`` -1: the first; -1 after the last)."""
    best = -1
    for k in range(n):
        if (prev < 0 or _before(values, prev, k)) and (best < 0 or _before(values, k, best)):
            best = k
    return best


@njit(cache=True)
def weighted_median(values, weights, n):
    """Weighted median of ``values[:n]`` (n >= 1); when the half-weight falls exactly between two values, their mean.

    Walks the values in stable ascending order by selection rather than with an argsort: n is a handful
    of venues, and this runs at every off-hours mark, so an O(n^2) scan beats allocating index arrays."""
    total = 0.0
    for i in range(n):
        total += weights[i]
    half = 0.5 * total
    cum = 0.0
    i = -1
    for j in range(n):
        i = _next_in_order(values, n, i)
        cum += weights[i]
        if cum >= half * (1.0 - 1e-12):
            if abs(cum - half) <= 1e-12 * total and j + 1 < n:
                return 0.5 * (values[i] + values[_next_in_order(values, n, i)])
            return values[i]
    return values[i]


@njit(cache=True)
def venue_consensus(state, ts, half_life_s):
    """(weighted median of token venue mids, total weight); (NaN, 0) without any venue mid."""
    values = state[_SCRATCH0:_SCRATCH0 + MAX_VENUES]
    weights = state[_SCRATCH0 + MAX_VENUES:_SCRATCH0 + 2 * MAX_VENUES]
    n = 0
    for v in range(MAX_VENUES):
        mid = state[_MID0 + v]
        if not math.isfinite(mid):
            continue
        age = max(0.0, (ts - state[_TS0 + v]) * 1e-9)
        w = math.exp(-_LN2 * age / half_life_s)
        if w <= 0.0:
            continue
        values[n] = mid
        weights[n] = w
        n += 1
    if n == 0:
        return math.nan, 0.0
    total = 0.0
    for i in range(n):
        total += weights[i]
    return weighted_median(values, weights, n), total


@njit(cache=True)
def fair_value(state, ts, multiplier, underlying_open, var_since_print, sigma_rel, half_life_s, noise_bps):
    """(fair, fair_std), quote ccy per token, at ``ts`` (ns UTC).

    ``multiplier`` shares per token now; ``underlying_open`` 1 while the underlying's market prints
    prices; ``var_since_print`` variance-seconds since the last underlying mid; ``sigma_rel``
    relative sigma per sqrt(variance-second) (volatility.vol_sigma); ``half_life_s`` clock seconds
    for venue staleness; ``noise_bps`` std of one fresh venue mid around fair, bps. NaNs when
    nothing is known. See the module doc for the rules.
    """
    ref = state[0] * multiplier
    var_ref = (sigma_rel * ref) ** 2 * max(var_since_print, 0.0)
    std_ref = math.sqrt(var_ref)
    if math.isfinite(ref) and underlying_open:
        return ref, std_ref
    cons, weight = venue_consensus(state, ts, half_life_s)
    if not math.isfinite(cons):
        return ref, std_ref
    var_cons = (noise_bps * 1e-4 * cons) ** 2 / weight
    if not math.isfinite(ref):
        return cons, math.sqrt(var_cons)
    # Without a volatility (or with zero elapsed variance) the reference cannot be weighed: keep it.
    if not math.isfinite(var_ref) or var_ref + var_cons <= 0.0:
        return ref, std_ref
    w_cons = var_ref / (var_ref + var_cons)
    return ref + w_cons * (cons - ref), std_ref
