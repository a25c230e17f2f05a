"""Crossed markets between venues, found and sized from top of book.

Two kinds of pair, both a buy at venue ``a``'s best ask and a sale at venue ``b``'s best bid:

- token vs token: two token venues whose books cross;
- token vs underlying: a token venue against the hedge venue's share book x multiplier, only while
  the hedge venue may trade (``ctx.hedge_open``).

Legs are compared per share-equivalent (``u`` = shares per unit: the multiplier for a token, 1 for
a share). The edge of a pair per share-equivalent is::

    bid_b/u_b * (1 - taker_fee_b) - ask_a/u_a * (1 + taker_fee_a) - max(0, haircut_a - haircut_b) * ask_a/u_a

The last term is the credit cost of the balance moved: the bought holding lands at ``a`` and the
one sold leaves ``b``. Moving value to a *safer* venue is not counted as a gain (a haircut is a
risk charge, not cash). A pair is taken if, after both venues' gas, its edge is positive and at
least ``min_edge_bps`` of the buy leg's notional.

Size: the smaller top-of-book depth of the two legs, within each venue's position bound and the
buying venue's exposure cap (the same room rules as quoting.finalize_takes, counting pairs already
chosen), on both lot grids (the legs then match within one lot of the finer grid); pairs whose
lot rounding would leave net delta outside its limit are skipped. Best edge (bps) first, as many pairs as ``takes`` has room for (two rows each).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stockbridge.core.context import MAX_VENUES
from stockbridge.core.quoting import GRID_EPS, buy_room, sell_room, unit_delta, unit_mark, floor_to_grid


@njit(cache=True)
def _leg_ok(ctx, v):
    if v >= ctx.n_venues or ctx.tradable[v] != 1 or ctx.tick[v] <= 0.0 or ctx.lot[v] <= 0.0:
        return False
    return v != ctx.hedge_venue or ctx.hedge_open == 1


@njit(cache=True)
def pair_edge(ctx, a, b):
    """Edge per share-equivalent (quote ccy) of buying at ``a``'s ask and selling at ``b``'s bid, before gas."""
    ua = unit_delta(ctx, a)
    ub = unit_delta(ctx, b)
    buy = ctx.ask[a] / ua
    return ctx.bid[b] / ub * (1.0 - ctx.taker_fee[b]) - buy * (1.0 + ctx.taker_fee[a]) - max(
        0.0, ctx.haircut[a] - ctx.haircut[b]
    ) * buy


@njit(cache=True)
def detect_arbitrage(ctx, min_edge_bps, takes):
    """Write pairs of taker rows ``(venue, +1/-1, limit, size)`` into ``takes``; returns rows written.

    ``min_edge_bps``: minimum net edge, bps of the buy leg's notional. See the module doc.
    """
    if not (ctx.multiplier > 0.0):
        return 0
    nv = min(ctx.n_venues, MAX_VENUES)
    buy_at = np.empty(nv * nv, dtype=np.int64)
    sell_at = np.empty(nv * nv, dtype=np.int64)
    score = np.empty(nv * nv)
    nc = 0
    for a in range(nv):
        if not (_leg_ok(ctx, a) and ctx.ask[a] > 0.0 and ctx.ask_size[a] > 0.0):
            continue
        for b in range(nv):
            if b == a or not (_leg_ok(ctx, b) and ctx.bid[b] > 0.0 and ctx.bid_size[b] > 0.0):
                continue
            edge = pair_edge(ctx, a, b)
            if not (edge > 0.0):
                continue
            buy_at[nc] = a
            sell_at[nc] = b
            score[nc] = -edge / (ctx.ask[a] / unit_delta(ctx, a))
            nc += 1
    order = np.argsort(score[:nc])

    buys = np.zeros(MAX_VENUES)
    sells = np.zeros(MAX_VENUES)
    pending_delta = 0.0
    delta_limit = max(ctx.max_net_delta, abs(ctx.net_delta))
    n = 0
    for j in range(nc):
        if n + 2 > takes.shape[0]:
            break
        a = buy_at[order[j]]
        b = sell_at[order[j]]
        ua = unit_delta(ctx, a)
        ub = unit_delta(ctx, b)
        mark = unit_mark(ctx, a)
        mark = ctx.ask[a] if not math.isfinite(mark) else max(mark, ctx.ask[a])
        # Share-equivalents both legs can carry.
        x = min(
            (ctx.ask_size[a] - buys[a]) * ua,
            (ctx.bid_size[b] - sells[b]) * ub,
            buy_room(ctx, a, buys[a], mark) * ua,
            sell_room(ctx, b, sells[b]) * ub,
        )
        if not (x > 0.0):
            continue
        # Size the coarser-lot leg first and match the finer one to it, so the legs differ by less
        # than one fine lot in share-equivalents.
        if ctx.lot[a] * ua >= ctx.lot[b] * ub:
            qa = floor_to_grid(x / ua, ctx.lot[a])
            qb = floor_to_grid(qa * ua / ub, ctx.lot[b])
        else:
            qb = floor_to_grid(x / ub, ctx.lot[b])
            qa = floor_to_grid(qb * ub / ua, ctx.lot[a])
        if qa < ctx.lot[a] * (1.0 - GRID_EPS) or qb < ctx.lot[b] * (1.0 - GRID_EPS):
            continue
        if qa * ctx.ask[a] < ctx.min_notional[a] or qb * ctx.bid[b] < ctx.min_notional[b]:
            continue
        pair_delta = qa * ua - qb * ub
        if abs(ctx.net_delta + pending_delta + pair_delta) > delta_limit:
            continue
        matched = min(qa * ua, qb * ub)
        net = matched * pair_edge(ctx, a, b) - ctx.gas[a] - ctx.gas[b]
        if not (net > 0.0 and net >= min_edge_bps * 1e-4 * qa * ctx.ask[a]):
            continue
        takes[n, 0] = a
        takes[n, 1] = 1.0
        takes[n, 2] = ctx.ask[a]
        takes[n, 3] = qa
        takes[n + 1, 0] = b
        takes[n + 1, 1] = -1.0
        takes[n + 1, 2] = ctx.bid[b]
        takes[n + 1, 3] = qb
        n += 2
        buys[a] += qa
        sells[b] += qb
        pending_delta += pair_delta
    return n
