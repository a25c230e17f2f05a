"""A small, round-numbered decision context for the core's tests (not collected: no test_ prefix).

Venues 0 and 1 quote a token, venue 2 is the hedge venue (shares). Fair 100, multiplier 1, books
99.50 / 100.50 on the token venues and 99.99 / 100.01 for the share, no fees, no haircuts, limits
far away: each test moves only the numbers it is about.
"""

from __future__ import annotations

import math

import numpy as np

from stockbridge.core.context import new_context

TOKEN_A, TOKEN_B, HEDGE = 0, 1, 2


def make_ctx(**scalars) -> np.ndarray:
    """A one-element CTX_DTYPE array; keyword arguments override scalar fields (e.g. fair=50.0)."""
    ctx = new_context()
    c = ctx[0]
    c["ts"] = 1_751_896_800_000_000_000
    c["session"] = 2
    c["hedge_open"] = 1
    c["tau"] = 0.0
    c["size_factor"] = 1.0
    c["fair"] = 100.0
    c["fair_std"] = 0.0
    c["spread_z"] = 1.0
    c["sigma"] = 0.01
    c["multiplier"] = 1.0
    c["net_delta"] = 0.0
    c["max_net_delta"] = 1000.0
    c["n_venues"] = 3
    c["hedge_venue"] = HEDGE
    c["quotable"][:3] = (1, 1, 0)
    c["tradable"][:3] = (1, 1, 1)
    c["bid"][:3] = (99.5, 99.5, 99.99)
    c["ask"][:3] = (100.5, 100.5, 100.01)
    c["bid_size"][:3] = (10.0, 10.0, 1000.0)
    c["ask_size"][:3] = (10.0, 10.0, 1000.0)
    c["cash"][:3] = 10_000.0
    c["exposure_cap"][:3] = math.inf
    c["max_position"][:3] = 1000.0
    c["tick"][:3] = (0.01, 0.01, 0.01)
    c["lot"][:3] = (0.01, 0.01, 1.0)
    c["min_notional"][:3] = 0.0
    for key, value in scalars.items():
        c[key] = value
    return ctx


def on_grid(x: float, step: float) -> bool:
    """x is a whole multiple of step, allowing for float representation."""
    k = x / step
    return abs(k - round(k)) < 1e-6
