"""``fixed_spread``: a constant half-spread in bps around fair, skewed linearly against inventory.

Level ``l`` (0 = closest to fair) on every quotable venue, with ``f`` = fair and ``q`` = net
inventory in tokens (``ctx.net_delta / ctx.multiplier``: net delta across all venues including the
hedge, in tokens, so a hedged position does not skew)::

    bid_l = f * (1 - (half_spread_bps + skew_bps_per_token * q + l * level_spacing_bps) / 1e4)
    ask_l = f * (1 + (half_spread_bps - skew_bps_per_token * q + l * level_spacing_bps) / 1e4)

Sessions enter only through the core: it cuts size off-hours and bounds inventory.
"""

from __future__ import annotations

from numba import njit

from stockbridge.core.context import MAX_LEVELS
from strategies.base import StrategyParams, StrategySpec, param
from strategies.ladder import write_ladder


class FixedSpreadParams(StrategyParams):
    half_spread_bps: float = param(10.0, unit="bps", description="distance of the first bid and ask from fair, bps of fair", gt=0)
    skew_bps_per_token: float = param(
        0.2, unit="bps/token", description="both quotes move down by this per token of net long inventory (up when short)", ge=0
    )
    size: float = param(1.0, unit="tokens", description="order size per level and side", gt=0)
    levels: int = param(1, unit="levels", description="price levels per side", ge=1, le=MAX_LEVELS)
    level_spacing_bps: float = param(5.0, unit="bps", description="distance between consecutive levels, bps of fair", gt=0)


HALF, SKEW, SIZE, LEVELS, SPACING = FixedSpreadParams.indices(
    "half_spread_bps", "skew_bps_per_token", "size", "levels", "level_spacing_bps"
)


@njit(cache=True)
def kernel(ctx, params, quotes, takes):
    bps = ctx.fair * 1e-4
    q = ctx.net_delta / ctx.multiplier
    center = ctx.fair - params[SKEW] * q * bps
    half = params[HALF] * bps
    write_ladder(ctx, quotes, center - half, center + half, params[SPACING] * bps, params[SIZE], int(params[LEVELS]))
    return 0


SPEC = StrategySpec(
    name="fixed_spread",
    params_model=FixedSpreadParams,
    kernel=kernel,
    description="constant half-spread in bps around fair, linear inventory skew in bps per token",
)
