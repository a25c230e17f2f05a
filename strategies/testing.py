"""A realistic decision context for testing and benchmarking strategy kernels without a market feed.

Venues as in configs/demo.toml: 0 bybit, 1 kraken, 2 solana_dex quote the token AAPLx; 3 is the
equity broker that hedges in AAPL. Numbers are chosen to be plausible for AAPL near $210 with a 30 %
annual volatility, not taken from a real market.
"""

from __future__ import annotations

import math

import numpy as np

from stockbridge.core.context import new_context

SHARE_PRICE = 210.0               # AAPL, quote ccy per share
MULTIPLIER = 1.0025               # shares per AAPLx token
FAIR = SHARE_PRICE * MULTIPLIER   # quote ccy per token
# 30 % a year spread over 252 regular sessions of 6.5 h: quote ccy per sqrt(variance-second)
SIGMA = FAIR * 0.30 / math.sqrt(252 * 6.5 * 3600)
REGULAR_TS = 1_751_896_800_000_000_000   # Mon 2025-07-07 10:00 New York, regular session
WEEKEND_TS = 1_751_731_200_000_000_000   # Sat 2025-07-05 12:00 New York, market closed
# ctx.tau is core.quoting.gap_tau: 0 while the hedge venue trades; on the weekend the variance-time
# to the Monday 09:30 open (the demo hedges in regular hours) with the demo's weights, 32 h closed
# x 0.02 + 8 h overnight x 0.05 + 5.5 h pre x 0.15 = 6714 variance-s, times 1 + gap_z^2 (gap_z 2).
REGULAR_TAU = 0.0
WEEKEND_TAU = 6714.0 * (1 + 2.0**2)
# Variance-time since the underlying's last print, which sets fair_std: one second in regular
# hours; on the weekend since the Thursday 17:00 half-day after-hours close (Friday Jul 4 is a
# holiday), 43 h closed x 0.02 = 3096 variance-s.
REGULAR_SINCE_PRINT = 1.0
WEEKEND_SINCE_PRINT = 3096.0

TOKEN_VENUES = (0, 1, 2)
HEDGE_VENUE = 3


def example_context(net_delta: float = 0.0, hedge_open: bool = True, fair: float = FAIR) -> np.ndarray:
    """A one-element CTX_DTYPE array (pass ``ctx[0]`` to kernels) for the demo venues.

    ``net_delta`` (share-equivalents) is held as tokens on bybit. ``hedge_open=False`` gives a
    Saturday: broker closed, long ``tau``, wide ``fair_std``, size factor 0.3. Books sit a few
    bps around ``fair`` and are not crossed; ``spread_z`` is 1 (new_context's default).
    """
    ctx = new_context()
    c = ctx[0]
    c["ts"] = REGULAR_TS if hedge_open else WEEKEND_TS
    c["session"] = 2 if hedge_open else 0
    c["hedge_open"] = int(hedge_open)
    c["tau"] = REGULAR_TAU if hedge_open else WEEKEND_TAU
    c["size_factor"] = 1.0 if hedge_open else 0.3
    c["fair"] = fair
    c["sigma"] = SIGMA
    c["fair_std"] = SIGMA * math.sqrt(REGULAR_SINCE_PRINT if hedge_open else WEEKEND_SINCE_PRINT)
    c["multiplier"] = MULTIPLIER
    c["net_delta"] = net_delta
    c["max_net_delta"] = 200.0
    c["n_venues"] = 4
    c["hedge_venue"] = HEDGE_VENUE

    c["quotable"][:4] = (1, 1, 1, 0)
    c["tradable"][:4] = (1, 1, 1, int(hedge_open))
    half_bps = np.array([6.0, 7.0, 9.0])  # each token venue's own half-spread around fair
    c["bid"][:3] = fair * (1 - half_bps * 1e-4)
    c["ask"][:3] = fair * (1 + half_bps * 1e-4)
    c["bid"][3], c["ask"][3] = SHARE_PRICE - 0.01, SHARE_PRICE + 0.01
    c["bid_size"][:4] = c["ask_size"][:4] = (40.0, 25.0, 12.0, 500.0)
    c["last_update"][:4] = c["ts"] - 50_000_000
    c["position"][0] = net_delta / MULTIPLIER
    c["cash"][:4] = (20_000.0, 20_000.0, 10_000.0, 50_000.0)
    c["haircut"][:4] = (0.06, 0.04, 0.10, 0.01)
    c["exposure"][:4] = c["cash"][:4] + c["position"][:4] * fair
    c["exposure_cap"][:4] = (60_000.0, 80_000.0, 30_000.0, np.inf)
    c["max_position"][:4] = (100.0, 100.0, 100.0, np.inf)
    c["tick"][:4] = (0.01, 0.01, 0.001, 0.01)
    c["lot"][:4] = (0.01, 0.001, 0.0001, 1.0)
    c["min_notional"][:4] = (5.0, 5.0, 1.0, 0.0)
    c["maker_fee"][:4] = (-1e-4, 2e-4, 0.0, 0.0)
    c["taker_fee"][:4] = (10e-4, 26e-4, 25e-4, 0.5e-4)
    c["gas"][:4] = (0.0, 0.0, 0.02, 0.0)
    c["equity_raw"] = float(np.sum(c["exposure"][:4]))
    c["equity_haircut"] = float(np.sum(c["exposure"][:4] * (1 - c["haircut"][:4])))
    return ctx
