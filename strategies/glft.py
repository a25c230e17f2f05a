"""``glft``: Gueant-Lehalle-Fernandez-Tapia quotes (Gueant 2017 form), widened by the session clock.

With ``s`` = fair, ``q`` = net inventory in tokens (``ctx.net_delta / ctx.multiplier``: net delta
across all venues including the hedge) and ``Delta`` = ``size`` tokens per order, the long-horizon
approximation gives the distances below and above fair (stockbridge.core.quoting.glft_xi_half_spreads)::

    c1 = ln(1 + xi*Delta/k) / (xi*Delta)
    c2 = sqrt(gamma / (2*A*Delta*k) * (1 + xi*Delta/k)^(k/(xi*Delta) + 1))
    delta_b = c1 + (Delta/2 + q) * sigma_h * c2,   delta_a = c1 + (Delta/2 - q) * sigma_h * c2

so the inventory counts as ``q/Delta`` lots of the order size, as in the paper. GLFT has no horizon;
``sigma_h = sigma * sqrt(var_rate) * sqrt(max(1, tau/tau_ref))`` carries the variance-time
until the next hedge: equal to ``sigma`` while the hedge venue trades, larger through a closure, so
spread and skew grow toward a weekend and shrink at the open. ``xi = gamma`` is the GLFT (2013)
model, ``xi = 0`` its mean-variance variant.

Units: ``A`` is fills per wall-clock second, so the price variance must be per wall-clock second too.
``ctx.sigma`` is quote ccy per sqrt(variance-second); a wall-clock second of the current session state
holds ``ctx.var_rate`` variance-seconds (1 in regular hours, the session weight otherwise), so
``sigma * sqrt(var_rate)`` is quote ccy per sqrt(wall-clock second). The horizon factor
``sqrt(max(1, tau/tau_ref))`` is a ratio of variance-times (``core.quoting.horizon_sigma``). Level ``l`` sits ``l * level_spacing_bps`` of fair further out.
"""

from __future__ import annotations

import math
from typing import ClassVar

from numba import njit

from stockbridge.core.context import MAX_LEVELS
from stockbridge.core.quoting import glft_xi_coefficients, glft_xi_from_coefficients, horizon_sigma
from strategies.base import StrategyParams, StrategySpec, param
from strategies.ladder import write_ladder


class GlftParams(StrategyParams):
    gamma: float = param(0.05, unit="1/quote ccy", description="risk aversion: inventory penalty per unit of price variance", gt=0)
    k: float = param(10.0, unit="1/quote ccy", description="fill intensity decay: lambda(delta) = A exp(-k delta), delta in quote ccy", gt=0)
    A: float = param(1.0, unit="1/s", description="fill intensity at zero distance from fair, fills per second", gt=0)
    xi: float = param(0.05, unit="1/quote ccy", description="adverse-selection term: = gamma for GLFT 2013, 0 for the mean-variance model", ge=0)
    size: float = param(1.0, unit="tokens", description="order size Delta per level and side", gt=0)
    tau_ref: float = param(60.0, unit="variance-s", description="variance-time a position waits for its hedge in open hours", gt=0)
    levels: int = param(1, unit="levels", description="price levels per side", ge=1, le=MAX_LEVELS)
    level_spacing_bps: float = param(5.0, unit="bps", description="distance between consecutive levels, bps of fair", gt=0)

    DERIVED: ClassVar[tuple[str, ...]] = ("c1", "c2")

    def derived(self) -> tuple[float, float]:
        """The GLFT coefficients c1, c2 (stockbridge.core.quoting.glft_xi_coefficients): constants of the
        params, so the kernel does not take a log and a power at every decision."""
        return glft_xi_coefficients(self.gamma, self.k, self.A, self.xi, self.size)


SIZE, TAU_REF, LEVELS, SPACING, C1, C2 = GlftParams.indices("size", "tau_ref", "levels", "level_spacing_bps", "c1", "c2")


@njit(cache=True)
def kernel(ctx, params, quotes, takes):
    q = ctx.net_delta / ctx.multiplier
    sigma = horizon_sigma(ctx.sigma * math.sqrt(ctx.var_rate), ctx.tau, params[TAU_REF])
    delta_b, delta_a = glft_xi_from_coefficients(q, sigma, params[SIZE], params[C1], params[C2])
    write_ladder(
        ctx, quotes, ctx.fair - delta_b, ctx.fair + delta_a, params[SPACING] * ctx.fair * 1e-4, params[SIZE], int(params[LEVELS])
    )
    return 0


SPEC = StrategySpec(
    name="glft",
    params_model=GlftParams,
    kernel=kernel,
    description="Gueant-Lehalle-Fernandez-Tapia inventory-bounded quotes, sigma widened by variance-time to the next hedge",
)
