"""Order and response latencies of the simulated venues.

Three delays separate a decision from its effect:

- feed latency (venue -> us, market data) is in the data: ``local_ts - exch_ts`` of each event;
- order latency (us -> venue): an order decided at local time ``t`` acts at the venue at
  ``t + order_latency``;
- response latency (venue -> us): an ack, fill or cancel that happens at venue time ``T`` reaches
  us at ``T + response_latency``.

Each latency is either constant or lognormal with a given mean and standard deviation (ns), drawn
from the ``RNG_LATENCY`` stream, so a replay with the same seed and the same decisions is
identical. Messages on one connection keep their order (a venue session is one TCP/WebSocket
stream): a message never overtakes an earlier one of the same venue and direction, so a cancel never
reaches the venue before the order it cancels, and a fill report never arrives after the
"done" report of its order.

Table layout ``lat float64[n_venues, 4]``: order mean ns, order std ns, response mean ns, response
std ns. The clocks ``last_arrive int64[n_venues]`` and ``last_report int64[n_venues]`` hold the
latest time already handed out per venue and direction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.rng import RNG_LATENCY, normal

ORDER = 0
RESPONSE = 1

_MS = 1_000_000.0


def latency_table(order_ms, response_ms, jitter_ms) -> np.ndarray:
    """Per-venue mean order / response latencies and lognormal std-devs (ms) -> ``float64[n, 4]`` in ns."""
    order_ms = np.asarray(order_ms, dtype=np.float64)
    response_ms = np.asarray(response_ms, dtype=np.float64)
    jitter_ms = np.broadcast_to(np.asarray(jitter_ms, dtype=np.float64), order_ms.shape)
    if order_ms.shape != response_ms.shape or order_ms.ndim != 1:
        raise ValueError("order_ms and response_ms must be 1-D and of the same length (one per venue)")
    for name, arr in (("order_ms", order_ms), ("response_ms", response_ms), ("jitter_ms", jitter_ms)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must be finite and >= 0, got {arr.tolist()}")
    if np.any((jitter_ms > 0) & ((order_ms == 0) | (response_ms == 0))):
        raise ValueError("a lognormal jitter needs a mean latency > 0")
    lat = np.empty((order_ms.shape[0], 4), dtype=np.float64)
    lat[:, 0] = order_ms * _MS
    lat[:, 1] = jitter_ms * _MS
    lat[:, 2] = response_ms * _MS
    lat[:, 3] = jitter_ms * _MS
    return lat


@njit(cache=True)
def draw_latency(lat, rng, v, direction) -> np.int64:
    """One latency in ns for venue ``v``, ``direction`` ORDER or RESPONSE.

    Lognormal with mean m and std sd: sigma^2 = ln(1 + sd^2/m^2), mu = ln m - sigma^2/2.
    """
    mean = lat[v, 2 * direction]
    sd = lat[v, 2 * direction + 1]
    if sd <= 0.0:
        return np.int64(np.round(mean))
    s2 = np.log1p((sd / mean) ** 2)
    mu = np.log(mean) - 0.5 * s2
    return np.int64(np.round(np.exp(mu + np.sqrt(s2) * normal(rng, RNG_LATENCY))))


@njit(cache=True)
def deliver(lat, last, rng, v, t_sent, direction) -> np.int64:
    """When a message sent at ``t_sent`` arrives: ``direction`` ORDER (we -> venue ``v``, venue time,
    ``last`` = sim.last_arrive) or RESPONSE (venue ``v`` -> us, local time, ``last`` = sim.last_report).
    Never before an earlier message in the same direction: messages do not overtake."""
    t = t_sent + draw_latency(lat, rng, v, direction)
    if t < last[v]:
        t = last[v]
    last[v] = t
    return t
