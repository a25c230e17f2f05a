"""Market-making quote formulas and the core's last word on every quote and take.

Formulas (DOMAIN.md "Quoting models"; reference price dS = sigma dW, fill intensity
lambda(delta) = A exp(-k delta), risk aversion gamma):

- Avellaneda-Stoikov (2008): ``r = s - q*gamma*sigma^2*tau``, total spread
  ``gamma*sigma^2*tau + (2/gamma)*ln(1 + gamma/k)``, quotes ``r -/+ spread/2``.
- Gueant-Lehalle-Fernandez-Tapia (2013) long-horizon half-spreads, and Gueant (2017) with an
  adverse-selection term ``xi`` and order size ``Delta``.

Units: prices quote currency per token; ``sigma`` quote currency per sqrt(variance-second); ``tau``
variance-seconds (regular-hours-equivalent seconds); ``gamma`` 1/quote ccy; ``k`` 1/quote ccy;
``A`` fills per second at zero distance; ``q`` inventory in the units the model counts (A-S: tokens
if sigma is per token; GLFT: number of orders of size Delta).

GLFT has no horizon T. ``horizon_sigma`` lets a GLFT kernel widen with the variance-time until the
next hedge: over a closure the inventory carries variance ``sigma^2*tau`` instead of the
``sigma^2*tau_ref`` it carries between hedges in open hours, so the kernel passes
``sigma*sqrt(max(1, tau/tau_ref))`` as sigma. Both the inventory skew (``q*C``) and the spread
(``C/2`` per side) grow with it, and never shrink below the open-hours values.

``finalize_quotes`` and ``finalize_takes`` apply the same safety rules to every strategy's raw
output (see their docstrings). Quote rows are ``quotes[v, side, level] = (price, size)`` with side
BID=0 / ASK=1; take rows are ``(venue, +1 buy / -1 sell, limit price, size)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stockbridge.core.context import ASK, BID, MAX_VENUES
from stockbridge.core.risk import exposure_room

# Relative slack when snapping to a grid: a price computed as 100.01 may be 100.00999999999999.
GRID_EPS = 1e-9


# -- formulas -----------------------------------------------------------------------------------


@njit(cache=True)
def as_reservation_price(s, q, gamma, sigma, tau):
    """Avellaneda-Stoikov reservation price ``s - q*gamma*sigma^2*tau`` (quote ccy)."""
    return s - q * gamma * sigma * sigma * tau


@njit(cache=True)
def as_spread(gamma, sigma, tau, k):
    """Avellaneda-Stoikov total spread ``gamma*sigma^2*tau + (2/gamma)*ln(1 + gamma/k)`` (quote ccy)."""
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(gamma / k)


@njit(cache=True)
def avellaneda_stoikov(s, q, gamma, sigma, tau, k):
    """(bid, ask) = reservation price -/+ half the Avellaneda-Stoikov spread, quote ccy."""
    r = as_reservation_price(s, q, gamma, sigma, tau)
    half = 0.5 * as_spread(gamma, sigma, tau, k)
    return r - half, r + half


@njit(cache=True)
def glft_half_spreads(q, gamma, sigma, k, A):
    """GLFT (2013) long-horizon (delta_b, delta_a), distances below/above the reference price.

    ``C = sqrt(sigma^2*gamma/(2*k*A) * (1 + gamma/k)^(1 + k/gamma))``,
    ``delta_b = (1/gamma)*ln(1 + gamma/k) + (2q + 1)/2 * C``,
    ``delta_a = (1/gamma)*ln(1 + gamma/k) - (2q - 1)/2 * C``; q in orders (multiples of the order size).
    """
    c = math.sqrt(sigma * sigma * gamma / (2.0 * k * A) * (1.0 + gamma / k) ** (1.0 + k / gamma))
    base = math.log1p(gamma / k) / gamma
    return base + (2.0 * q + 1.0) * 0.5 * c, base - (2.0 * q - 1.0) * 0.5 * c


@njit(cache=True)
def glft_xi_half_spreads(q, gamma, sigma, k, A, xi, Delta):
    """Gueant (2017) (delta_b, delta_a) with adverse-selection ``xi`` (1/quote ccy) and order size ``Delta``.

    ``c1 = 1/(xi*Delta) * ln(1 + xi*Delta/k)``,
    ``c2 = sqrt(gamma/(2*A*Delta*k) * (1 + xi*Delta/k)^(k/(xi*Delta) + 1))``,
    ``delta_b = c1 + Delta/2*sigma*c2 + q*sigma*c2``, ``delta_a = c1 + Delta/2*sigma*c2 - q*sigma*c2``;
    q in the units of Delta. ``xi = 0`` takes the limit: c1 = 1/k, the power term -> e.
    With ``xi = gamma`` and ``Delta = 1`` this is exactly :func:`glft_half_spreads`.
    """
    c1, c2 = glft_xi_coefficients(gamma, k, A, xi, Delta)
    return glft_xi_from_coefficients(q, sigma, Delta, c1, c2)


@njit(cache=True)
def glft_xi_coefficients(gamma, k, A, xi, Delta):
    """``(c1, c2)`` of :func:`glft_xi_half_spreads`, which depend on the model's constants alone: c1 in
    quote ccy, c2 in 1/sqrt(token x quote ccy per second) (times sigma and tokens: quote ccy)."""
    x = xi * Delta
    if x == 0.0:
        c1 = 1.0 / k
        growth = math.e
    else:
        c1 = math.log1p(x / k) / x
        growth = (1.0 + x / k) ** (k / x + 1.0)
    return c1, math.sqrt(gamma / (2.0 * A * Delta * k) * growth)


@njit(cache=True)
def glft_xi_from_coefficients(q, sigma, Delta, c1, c2):
    """:func:`glft_xi_half_spreads` from its coefficients (:func:`glft_xi_coefficients`), for a caller
    that computed them once."""
    common = c1 + 0.5 * Delta * sigma * c2
    return common + q * sigma * c2, common - q * sigma * c2


@njit(cache=True)
def horizon_sigma(sigma, tau, tau_ref):
    """``sigma * sqrt(max(1, tau/tau_ref))``: the sigma a horizon-free model (GLFT) should use.

    ``tau`` variance-seconds until the next hedge, ``tau_ref`` (> 0) the variance-seconds a position
    normally waits for its hedge while the hedge venue is open. Same units as ``sigma``.
    """
    return sigma * math.sqrt(max(1.0, tau / tau_ref))


@njit(cache=True)
def gap_tau(var_to_open, z):
    """Horizon for quoting while the hedge venue is closed: ``var_to_open * (1 + z^2)`` variance-seconds.

    ``var_to_open`` is the variance-time until a hedge can trade (session_clock.variance_until_open);
    the gap allowance of ``z`` standard deviations of that same move is added in variance, so that
    ``sigma*sqrt(tau)`` is ``sqrt(1 + z^2)`` times the diffusion std until the open. 0 while open.
    """
    return var_to_open * (1.0 + z * z)


# -- grid helpers -------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _whole_inverse(step):
    """``1/step`` when it is a whole number (0.01, 0.001, 0.25 -> 100, 1000, 4), else 0."""
    inv = 1.0 / step
    r = math.floor(inv + 0.5)
    if r >= 1.0 and abs(inv - r) <= 1e-9 * r:
        return r
    return 0.0


@njit(cache=True)
def floor_to_grid(x, step):
    """Largest multiple of ``step`` not above x (within GRID_EPS of a step), as the double nearest
    the decimal the venue prints: ``k / (1/step)`` when ``1/step`` is whole (IEEE division is
    correctly rounded; 20789 * 0.01 is 207.89000000000001, 20789 / 100 is 207.89), else ``k * step``.
    ``x * (1/step)`` instead of ``x / step`` keeps one division, not two, on the path from ``x``."""
    r = _whole_inverse(step)
    if r > 0.0:
        return math.floor(x * r + GRID_EPS) / r
    return math.floor(x / step + GRID_EPS) * step


@njit(cache=True)
def ceil_to_grid(x, step):
    """Smallest multiple of ``step`` not below x (within GRID_EPS of a step); the same numbers as
    :func:`floor_to_grid`."""
    r = _whole_inverse(step)
    if r > 0.0:
        return math.ceil(x * r - GRID_EPS) / r
    return math.ceil(x / step - GRID_EPS) * step


@njit(cache=True)
def unit_delta(ctx, v):
    """Share-equivalents per unit traded at venue v: shares at the hedge venue, tokens elsewhere."""
    if v == ctx.hedge_venue:
        return 1.0
    return ctx.multiplier


@njit(cache=True)
def unit_mark(ctx, v):
    """Fair value of one unit held at venue v, quote ccy (NaN if fair is unknown)."""
    if v == ctx.hedge_venue:
        return ctx.fair / ctx.multiplier
    return ctx.fair


@njit(cache=True)
def _venue_grid_ok(ctx, v):
    return ctx.tick[v] > 0.0 and ctx.lot[v] > 0.0 and ctx.multiplier > 0.0


@njit(cache=True)
def buy_room(ctx, v, committed, mark):
    """Units a buy at venue v may still add after ``committed`` pending buys (position and exposure cap).

    The exposure cap bounds the value of the long holding at the venue:
    ``(position + committed + q) * mark <= exposure_cap`` (risk.exposure_room); ``mark`` quote ccy
    per unit. Negative when the position is already beyond its bound.
    """
    pos = ctx.position[v] + committed
    return min(ctx.max_position[v] - pos, exposure_room(ctx.exposure_cap[v], pos, mark))


@njit(cache=True)
def sell_room(ctx, v, committed):
    """Units a sale at venue v may still take off after ``committed`` pending sales (position bound)."""
    return ctx.max_position[v] + ctx.position[v] - committed


# -- the core's rules ---------------------------------------------------------------------------


@njit(cache=True)
def min_half_spread(ctx, v):
    """Smallest half-spread a quote pair at venue v may have: ``max(spread_z*fair_std, tick/2)``.

    In venue units (per share at the hedge venue, per token elsewhere). ``fair_std`` grows with the
    variance-time since the underlying's last print, so quotes widen by themselves while the
    underlying is closed. Half a tick keeps our own bid strictly below our ask.
    """
    h = 0.5 * ctx.tick[v]
    if ctx.fair_std > 0.0 and ctx.spread_z > 0.0:
        h = max(h, ctx.spread_z * ctx.fair_std * unit_delta(ctx, v) / ctx.multiplier)
    return h


@njit(cache=True)
def _live(price, size):
    return size > 0.0 and math.isfinite(size) and math.isfinite(price) and price > 0.0


@njit(cache=True)
def quote_center(quotes, v, ref):
    """Center the half-spread floor at venue v is measured from, venue units.

    The mid of the innermost level where the raw quotes have both a bid and an ask: the strategy's
    own center, which keeps its inventory skew (a long book may offer below fair to unload). A
    venue quoted on one side only gets no such benefit of the doubt: ``ref`` (fair) is used.
    One center per venue keeps the ladder's order and puts every bid below every ask.
    """
    for lvl in range(quotes.shape[2]):
        bid = quotes[v, BID, lvl, 0]
        ask = quotes[v, ASK, lvl, 0]
        if _live(bid, quotes[v, BID, lvl, 1]) and _live(ask, quotes[v, ASK, lvl, 1]):
            return 0.5 * (bid + ask)
    return ref


@njit(cache=True)
def finalize_quotes(ctx, quotes):
    """Apply the core's rules to raw quotes, in place; returns the number of live quote rows.
    (:func:`finalize_quotes_into` with a work array of its own; the decision cycle passes one it keeps.)

    Rows of venues beyond ``n_venues``, with ``quotable`` or ``tradable`` 0, without a tick/lot grid,
    or while fair is unknown are zeroed. Otherwise, per venue ``v`` and level:

    1. price: the half-spread is at least ``h`` (:func:`min_half_spread`) around the venue's center
       (:func:`quote_center`): bids <= center - h, asks >= center + h. Post-only: a bid at most one tick
       below the venue's best ask, an ask at least one tick above its best bid. Then bids round
       DOWN and asks UP to the tick grid.
    2. size: times ``ctx.size_factor``; trimmed to the room left, counting every quote already
       accepted on that side as filled (level 0 of every venue first, then level 1, ...), after the
       orders still working that we are cancelling (``working_buy`` / ``working_sell``):
       per venue ``|position| <= max_position``; net delta (share-equivalents) within
       ``+/- max_net_delta``; a buy may not take the long holding's value at the venue,
       ``(position + buys) * max(fair, highest bid)``, above ``exposure_cap``. Then DOWN to the lot grid; a quote under
       one lot or under ``min_notional`` is dropped.

    Every rule only lowers bids, raises asks or cuts sizes, so for the same raw quotes a larger
    ``fair_std`` or a smaller ``size_factor`` never gives a tighter or larger result.
    """
    return finalize_quotes_into(ctx, quotes, np.zeros((4, MAX_VENUES)))


@njit(cache=True, _nrt=False)
def finalize_quotes_into(ctx, quotes, work):
    """:func:`finalize_quotes` with ``work`` float64[4, >= MAX_VENUES] as its scratch (overwritten):
    no allocation, for a caller that decides often. Without reference counting (see
    backtest.engine's module doc), so no array views either: the work rows are indexed in place."""
    fair = ctx.fair
    usable = math.isfinite(fair) and fair > 0.0
    n_live = 0
    for v in range(quotes.shape[0]):
        ok = usable and v < ctx.n_venues and ctx.quotable[v] == 1 and ctx.tradable[v] == 1
        if not (ok and _venue_grid_ok(ctx, v)):
            for side in range(quotes.shape[1]):  # element by element: a row view costs reference counting
                for lvl in range(quotes.shape[2]):
                    for c in range(quotes.shape[3]):
                        quotes[v, side, lvl, c] = 0.0

    # work rows: 0 the center per venue, 1 / 2 units pending to buy / sell (counted as filled),
    # 3 the highest mark a pending buy at the venue was valued at
    n_used = min(ctx.n_venues, quotes.shape[0])  # rows past n_venues were zeroed above
    for v in range(n_used):
        work[0, v] = quote_center(quotes, v, unit_mark(ctx, v))
        work[3, v] = 0.0
    delta_up = 0.0  # share-equivalents pending on the buy side, all venues
    delta_down = 0.0
    for v in range(n_used):  # orders being cancelled may still fill: they count first
        work[1, v] = ctx.working_buy[v]
        work[2, v] = ctx.working_sell[v]
        delta_up += ctx.working_buy[v] * unit_delta(ctx, v)
        delta_down += ctx.working_sell[v] * unit_delta(ctx, v)
    for lvl in range(quotes.shape[2]):
        for v in range(n_used):
            if quotes[v, BID, lvl, 1] == 0.0 and quotes[v, ASK, lvl, 1] == 0.0:
                quotes[v, BID, lvl, 0] = 0.0  # nothing asked for here (most slots): skip the arithmetic
                quotes[v, ASK, lvl, 0] = 0.0
                continue
            tick = ctx.tick[v]
            lot = ctx.lot[v]
            h = min_half_spread(ctx, v)
            unit = unit_delta(ctx, v)
            ref = unit_mark(ctx, v)
            center = work[0, v]
            for side in (BID, ASK):
                price = quotes[v, side, lvl, 0]
                size = quotes[v, side, lvl, 1]
                quotes[v, side, lvl, 0] = 0.0
                quotes[v, side, lvl, 1] = 0.0
                if not _live(price, size):
                    continue
                if side == BID:
                    price = min(price, center - h)
                    if math.isfinite(ctx.ask[v]):
                        price = min(price, ctx.ask[v] - tick)
                    price = floor_to_grid(price, tick)
                    mark = max(ref, price, work[3, v])
                    room = min(
                        buy_room(ctx, v, work[1, v], mark),
                        (ctx.max_net_delta - ctx.net_delta - delta_up) / unit,
                    )
                else:
                    price = max(price, center + h)
                    if math.isfinite(ctx.bid[v]):
                        price = max(price, ctx.bid[v] + tick)
                    price = ceil_to_grid(price, tick)
                    room = min(
                        sell_room(ctx, v, work[2, v]),
                        (ctx.max_net_delta + ctx.net_delta - delta_down) / unit,
                    )
                size = floor_to_grid(min(size * ctx.size_factor, room), lot)
                if not (price > 0.0 and size >= lot * (1.0 - GRID_EPS) and price * size >= ctx.min_notional[v]):
                    continue
                quotes[v, side, lvl, 0] = price
                quotes[v, side, lvl, 1] = size
                if side == BID:
                    work[1, v] += size
                    work[3, v] = mark
                    delta_up += size * unit
                else:
                    work[2, v] += size
                    delta_down += size * unit
                n_live += 1
    return n_live


@njit(cache=True)
def _take_ok(ctx, v, side, price, size):
    if v < 0 or v >= ctx.n_venues or ctx.tradable[v] != 1 or not _venue_grid_ok(ctx, v):
        return False
    if v == ctx.hedge_venue and ctx.hedge_open != 1:
        return False
    if side != 1.0 and side != -1.0:
        return False
    return math.isfinite(price) and price > 0.0 and math.isfinite(size) and size > 0.0


@njit(cache=True, _nrt=True)
def finalize_takes(ctx, takes, n):
    """Apply the core's rules to the first ``n`` raw taker intents, in place; returns rows kept.

    Rows kept are packed to the front, the rest zeroed. A row is dropped if its venue is unknown,
    not tradable, the hedge venue while ``hedge_open`` is 0, or its side/price/size is not valid.

    - Limit price: a buy's limit rounds DOWN and a sale's UP to the tick grid. The conservative
      choice: the order never trades at a price worse than the one the decision priced; if the book
      price was off-grid the order may not fill, which is the safe failure.
    - Size: trimmed, row by row with earlier rows counted as filled, to the venue position bound
      and (buys) the exposure cap, the holding valued at ``max(fair, highest buy limit)``; DOWN to the lot grid; dropped
      under one lot or ``min_notional``.
    - Net delta is checked on the batch as a whole, because an arbitrage's legs cancel: only if all
      rows together leave ``|net_delta|`` above ``max_net_delta`` and above where it started are the
      rows pushing that way trimmed, last row first.
    """
    n = min(max(n, 0), takes.shape[0])
    if n == 0:  # nothing to check (most decisions): what the rules below would leave, without their scratch
        takes[:] = 0.0
        return 0
    work = np.zeros((3, MAX_VENUES))  # one allocation for the three per-venue rows: this runs at every decision
    buys = work[0]
    sells = work[1]
    marks = work[2]
    kept = 0
    for i in range(n):
        v = int(takes[i, 0])
        side = takes[i, 1]
        price = takes[i, 2]
        size = takes[i, 3]
        if not _take_ok(ctx, v, side, price, size):
            continue
        if side > 0.0:
            price = floor_to_grid(price, ctx.tick[v])
            mark = unit_mark(ctx, v)
            mark = max(price if not math.isfinite(mark) else max(mark, price), marks[v])
            room = buy_room(ctx, v, buys[v], mark)
        else:
            price = ceil_to_grid(price, ctx.tick[v])
            room = sell_room(ctx, v, sells[v])
        size = floor_to_grid(min(size, room), ctx.lot[v])
        if not (price > 0.0 and size >= ctx.lot[v] * (1.0 - GRID_EPS) and price * size >= ctx.min_notional[v]):
            continue
        if side > 0.0:
            buys[v] += size
            marks[v] = mark
        else:
            sells[v] += size
        takes[kept, 0] = v
        takes[kept, 1] = side
        takes[kept, 2] = price
        takes[kept, 3] = size
        kept += 1
    kept = _trim_batch_delta(ctx, takes, kept)
    takes[kept:] = 0.0
    return kept


@njit(cache=True)
def _trim_batch_delta(ctx, takes, n):
    """Trim the rows of a batch that push net delta past its limit (see finalize_takes)."""
    batch = 0.0
    for i in range(n):
        batch += takes[i, 1] * takes[i, 3] * unit_delta(ctx, int(takes[i, 0]))
    after = ctx.net_delta + batch
    limit = max(ctx.max_net_delta, abs(ctx.net_delta))
    excess = abs(after) - limit
    if excess <= 0.0:
        return n
    direction = 1.0 if after > 0.0 else -1.0
    for i in range(n - 1, -1, -1):
        if excess <= 0.0:
            break
        if takes[i, 1] != direction:
            continue
        v = int(takes[i, 0])
        unit = unit_delta(ctx, v)
        new_size = floor_to_grid(max(takes[i, 3] - excess / unit, 0.0), ctx.lot[v])
        if new_size < ctx.lot[v] * (1.0 - GRID_EPS) or takes[i, 2] * new_size < ctx.min_notional[v]:
            new_size = 0.0
        excess -= (takes[i, 3] - new_size) * unit
        takes[i, 3] = new_size
    kept = 0
    for i in range(n):
        if takes[i, 3] > 0.0:
            takes[kept] = takes[i]
            kept += 1
    return kept
