"""``cross_venue_arb``: take crossed markets between token venues; quote nothing.

When one venue's bid exceeds another venue's ask by more than taker fees, gas and ``min_edge_bps``,
the core's detector (stockbridge.core.arbitrage.detect_arbitrage) writes a buy and a sell intent;
sizes, inventory bounds and exposure caps are the core's.
"""

from __future__ import annotations

from numba import njit

from stockbridge.core.arbitrage import detect_arbitrage
from strategies.base import StrategyParams, StrategySpec, param


class CrossVenueArbParams(StrategyParams):
    min_edge_bps: float = param(5.0, unit="bps", description="minimum edge after taker fees and gas, bps of fair", ge=0)


(MIN_EDGE,) = CrossVenueArbParams.indices("min_edge_bps")


@njit(cache=True)
def kernel(ctx, params, quotes, takes):
    return detect_arbitrage(ctx, params[MIN_EDGE], takes)


SPEC = StrategySpec(
    name="cross_venue_arb",
    params_model=CrossVenueArbParams,
    kernel=kernel,
    description="buy on one token venue and sell on another when the books cross by more than costs",
)
