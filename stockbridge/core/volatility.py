"""Online volatility: EWMA of squared log returns per variance-second, updated per event.

Time is the *variance clock* (session_clock.variance_at): seconds of regular-hours-equivalent
variance, so a closed weekend hour counts as a small fraction of a regular hour and the estimate is
not diluted by quiet clock time.

State, float64[VOL_STATE_SIZE]:

- ``[0]`` anchor price (last sampled), quote ccy; NaN before the first price;
- ``[1]`` variance clock at the anchor, variance-seconds;
- ``[2]`` EWMA variance rate, (log return)^2 per variance-second; NaN until known;
- ``[3]`` half-life of the EWMA, variance-seconds;
- ``[4]`` minimum sampling interval, variance-seconds (> 0);
- ``[5]`` number of returns folded in.

A price that arrives less than the minimum interval after the anchor is not sampled: the return
then spans several events, which keeps bid-ask bounce on tick data out of the estimate.

``sigma`` returned is *relative* (per sqrt(variance-second)); in quote ccy it is ``sigma * price``
(what ctx.sigma holds: ``vol_sigma(state) * fair``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

VOL_STATE_SIZE = 6


def new_vol_state(half_life_var_s: float, min_interval_var_s: float, sigma0: float = math.nan) -> np.ndarray:
    """A fresh state. ``sigma0``: prior relative sigma per sqrt(variance-second) (NaN: none).

    Raises ValueError for a half-life or minimum interval that is not > 0.
    """
    if not half_life_var_s > 0:
        raise ValueError(f"half_life_var_s must be > 0, got {half_life_var_s}")
    if not min_interval_var_s > 0:
        raise ValueError(f"min_interval_var_s must be > 0, got {min_interval_var_s}")
    state = np.full(VOL_STATE_SIZE, np.nan)
    state[1] = 0.0
    state[2] = sigma0 * sigma0
    state[3] = half_life_var_s
    state[4] = min_interval_var_s
    state[5] = 0.0
    return state


@njit(cache=True)
def vol_sigma(state):
    """Current relative sigma per sqrt(variance-second) (NaN until known)."""
    return math.sqrt(state[2])


@njit(cache=True)
def vol_update(state, ts_var, price):
    """Fold in a price seen at variance clock ``ts_var``; returns the relative sigma (see vol_sigma).

    With ``dt`` the variance-seconds since the anchor and ``r = ln(price/anchor)``, the observation
    ``r^2/dt`` enters with weight ``alpha = 1 - exp(-ln2 * dt / half_life)``. Non-positive or
    non-finite prices leave the state alone.
    """
    if not (math.isfinite(price) and price > 0.0):
        return vol_sigma(state)
    if not math.isfinite(state[0]):
        state[0] = price
        state[1] = ts_var
        return vol_sigma(state)
    dt = ts_var - state[1]
    if dt < state[4]:
        return vol_sigma(state)
    r = math.log(price / state[0])
    observed = r * r / dt
    if math.isfinite(state[2]):
        alpha = 1.0 - math.exp(-math.log(2.0) * dt / state[3])
        state[2] += alpha * (observed - state[2])
    else:
        state[2] = observed
    state[0] = price
    state[1] = ts_var
    state[5] += 1.0
    return vol_sigma(state)
