"""Lay a ladder of quotes on every quotable venue: the shared last step of the built-in market makers."""

from __future__ import annotations

from numba import njit

from stockbridge.core.context import ASK, BID, MAX_LEVELS
from stockbridge.core.risk import credit_skew


@njit(cache=True)
def write_ladder(ctx, quotes, bid0, ask0, step, size, levels):
    """On each venue with ``ctx.quotable[v] == 1``: bids at ``bid0 - l*step + c_v``, asks at ``ask0 + l*step + c_v``.

    ``l`` = 0 .. levels-1 (at most MAX_LEVELS); prices quote currency, ``step`` quote currency,
    ``size`` tokens per level. ``c_v`` is the core's credit skew (stockbridge.core.risk.credit_skew
    with ``ctx.credit_skew_bps``): a venue riskier than the average quoted one is quoted lower, so
    inventory drifts to safer venues. Raw wishes: the core rounds them to the venue grid and applies
    limits.
    """
    n = min(levels, MAX_LEVELS)
    for v in range(ctx.n_venues):
        if ctx.quotable[v] != 1:
            continue
        c = 0.0
        if ctx.credit_skew_bps > 0.0:
            c = credit_skew(ctx.haircut, ctx.quotable, v, ctx.credit_skew_bps, ctx.fair)
        for lvl in range(n):
            quotes[v, BID, lvl, 0] = bid0 - lvl * step + c
            quotes[v, BID, lvl, 1] = size
            quotes[v, ASK, lvl, 0] = ask0 + lvl * step + c
            quotes[v, ASK, lvl, 1] = size
