"""When and how much to hedge the net delta in the underlying share.

The rule (all sizes in shares, prices quote ccy per share):

1. No hedge while the hedge venue is closed, or without a two-sided book there. The hedge that is
   owed meanwhile is *carried* (:func:`carry_after`).
2. At the next moment the hedge venue may trade, a carried hedge goes first and in full: the
   order takes net delta to ``target``, with no band and no cost test. That risk was only ever
   accepted because the hedge venue was closed.
3. Otherwise hedge only when ``|net_delta - target| > band``, trading to ``target``, and only if the
   risk removed is worth the cost:
   ``risk_price * (e^2 - (e + n)^2) >= |n| * (half_spread + fee_rate * mid) + borrow``, where
   ``e = net_delta - target``, ``n`` the hedge, and ``borrow = borrow_rate_per_s * expected_hold_s *
   mid * (extra shares short)``: only the part of a sale that grows a short share position pays it.
   ``risk_price`` (quote ccy per share^2) is the mean-variance cost of keeping one share^2 of delta
   unhedged, e.g. ``0.5 * gamma * sigma_share^2 * hold_var_s`` (:func:`hedge_risk_price`).
   ``risk_price <= 0`` switches the cost test off: the band alone decides.

Hedge sizes are on the share lot grid, rounded to the nearest lot.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def round_to_lot(x, lot):
    """Nearest multiple of ``lot`` (half away from zero), signed."""
    units = math.floor(abs(x) / lot + 0.5)
    return math.copysign(units * lot, x) if units > 0 else 0.0


@njit(cache=True)
def hedge_risk_price(gamma, sigma_share, hold_var_s):
    """``0.5 * gamma * sigma_share^2 * hold_var_s``: quote ccy per share^2 of delta left unhedged.

    ``gamma`` 1/quote ccy, ``sigma_share`` quote ccy per share per sqrt(variance-second),
    ``hold_var_s`` variance-seconds the delta would otherwise stay open.
    """
    return 0.5 * gamma * sigma_share * sigma_share * hold_var_s


@njit(cache=True)
def hedge_cost(n, hedge_position, bid, ask, fee_rate, borrow_rate_per_s, expected_hold_s):
    """Cost (quote ccy) of trading ``n`` shares (signed) now: half-spread, fees, borrow of new shorts."""
    mid = 0.5 * (bid + ask)
    # Shares borrowed on top of today's short; a buy that covers a short borrows nothing.
    new_short = max(0.0, max(0.0, -(hedge_position + n)) - max(0.0, -hedge_position))
    return abs(n) * (0.5 * (ask - bid) + fee_rate * mid) + new_short * borrow_rate_per_s * expected_hold_s * mid


@njit(cache=True)
def hedge_decision(
    net_delta, band, target, hedge_open, carried, bid, ask, fee_rate, borrow_rate_per_s, expected_hold_s, lot,
    hedge_position, risk_price,
):
    """Signed shares to trade at the hedge venue now (+ buy, - sell; 0 = no hedge). See module doc.

    ``net_delta``, ``band``, ``target``, ``carried``, ``hedge_position`` shares; ``hedge_open`` 1 when
    the hedge venue may trade; ``bid``/``ask`` its book; ``fee_rate`` fraction of notional;
    ``borrow_rate_per_s`` fraction of short value per second; ``expected_hold_s`` seconds a new
    short is expected to stay open; ``lot`` share lot; ``risk_price`` quote ccy per share^2.
    """
    if not hedge_open or lot <= 0.0:
        return 0.0
    if not (math.isfinite(bid) and math.isfinite(ask) and 0.0 < bid <= ask):
        return 0.0
    excess = net_delta - target
    n = round_to_lot(-excess, lot)
    if n == 0.0:
        return 0.0
    if carried != 0.0:
        return n
    if abs(excess) <= band:
        return 0.0
    if risk_price > 0.0:
        benefit = risk_price * (excess * excess - (excess + n) * (excess + n))
        if benefit < hedge_cost(n, hedge_position, bid, ask, fee_rate, borrow_rate_per_s, expected_hold_s):
            return 0.0
    return n


@njit(cache=True)
def carry_after(carried, shares_sent, net_delta, band, target, hedge_open, lot):
    """The hedge still owed (signed shares) after a decision.

    While closed: ``target - net_delta`` if net delta is outside the band, else 0 (fills may bring it
    back inside). While open: 0 once a hedge was sent or nothing rounds to a lot, else unchanged
    (the hedge venue is open but had no book, so the carry waits for the next decision).
    """
    if not hedge_open:
        if abs(net_delta - target) > band:
            return target - net_delta
        return 0.0
    if shares_sent != 0.0 or round_to_lot(target - net_delta, lot) == 0.0:
        return 0.0
    return carried
