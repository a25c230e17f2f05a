"""``avellaneda_stoikov``: Avellaneda-Stoikov (2008) quotes with the horizon set by the session clock.

With ``s`` = fair, ``q`` = net inventory in tokens (``ctx.net_delta / ctx.multiplier``: net delta
across all venues including the hedge, so a hedged position does not skew), ``sigma`` = ctx.sigma
(quote ccy per token per sqrt(variance-second)) and ``T - t`` = ctx.tau (variance-seconds until the
next hedge opportunity plus the gap allowance)::

    r = s - q * gamma * sigma^2 * tau                      reservation price
    delta_a + delta_b = gamma * sigma^2 * tau + (2/gamma) * ln(1 + gamma/k)
    bid_0 = r - spread/2,  ask_0 = r + spread/2,  level l further out by l * level_spacing_bps of fair

q counts tokens rather than orders so that ``gamma`` (1/quote ccy) keeps its meaning whatever
``size`` is: ``q*gamma*sigma^2*tau`` is then quote ccy per token, as the model's CARA derivation
gives. ``tau`` is 0 while the hedge venue trades (inventory is hedged, no skew) and grows toward a
weekend, so quotes widen and skew hardest exactly when inventory cannot be laid off
(stockbridge.core.quoting.avellaneda_stoikov).
"""

from __future__ import annotations

from numba import njit

from stockbridge.core.context import MAX_LEVELS
from stockbridge.core.quoting import avellaneda_stoikov
from strategies.base import StrategyParams, StrategySpec, param
from strategies.ladder import write_ladder


class AvellanedaStoikovParams(StrategyParams):
    gamma: float = param(0.002, unit="1/quote ccy", description="risk aversion: inventory penalty per unit of price variance", gt=0)
    k: float = param(10.0, unit="1/quote ccy", description="fill intensity decay: lambda(delta) = A exp(-k delta), delta in quote ccy", gt=0)
    size: float = param(1.0, unit="tokens", description="order size per level and side", gt=0)
    levels: int = param(1, unit="levels", description="price levels per side", ge=1, le=MAX_LEVELS)
    level_spacing_bps: float = param(5.0, unit="bps", description="distance between consecutive levels, bps of fair", gt=0)


GAMMA, K, SIZE, LEVELS, SPACING = AvellanedaStoikovParams.indices("gamma", "k", "size", "levels", "level_spacing_bps")


@njit(cache=True)
def kernel(ctx, params, quotes, takes):
    q = ctx.net_delta / ctx.multiplier
    bid, ask = avellaneda_stoikov(ctx.fair, q, params[GAMMA], ctx.sigma, ctx.tau, params[K])
    write_ladder(ctx, quotes, bid, ask, params[SPACING] * ctx.fair * 1e-4, params[SIZE], int(params[LEVELS]))
    return 0


SPEC = StrategySpec(
    name="avellaneda_stoikov",
    params_model=AvellanedaStoikovParams,
    kernel=kernel,
    description="Avellaneda-Stoikov reservation price and spread, horizon = variance-time to the next hedge",
)
