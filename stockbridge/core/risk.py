"""Platform credit risk: balances valued after haircuts, exposure room, credit skew, off-hours size.

A venue balance is a claim on the venue (or, on a DEX, on the token issuer): if the venue fails,
part of it is lost (DOMAIN.md "Platform credit risk"). ``haircut`` (0..1) is the fraction of a
venue's balance value written off for risk purposes; ``values`` are per-venue balance values
(cash + holdings marked at fair, quote ccy, see inventory.venue_values).

A haircut applies to what the venue owes us. A negative balance (we owe the venue) is owed in full,
so it gets no haircut: equity after haircuts therefore never exceeds raw equity.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def equity_raw(values):
    """Sum of venue balance values, quote ccy."""
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i]
    return total


@njit(cache=True)
def haircut_charge(values, haircuts):
    """``sum(haircut * max(value, 0))``: the value written off for credit risk, quote ccy (>= 0)."""
    total = 0.0
    for i in range(values.shape[0]):
        if values[i] > 0.0:
            total += haircuts[i] * values[i]
    return total


@njit(cache=True)
def equity_after_haircut(values, haircuts):
    """``sum(value * (1 - haircut))`` over positive balances plus negative balances in full, quote ccy."""
    return equity_raw(values) - haircut_charge(values, haircuts)


@njit(cache=True)
def exposure_room(cap, position, mark):
    """Units that may still be bought at a venue before the long holding's value hits ``cap``.

    ``(position + room) * mark == cap``; 0 when already at or above the cap; ``inf`` for an
    infinite cap. ``mark`` quote ccy per unit (> 0), ``cap`` quote ccy, position in units.
    """
    if not math.isfinite(cap):
        return math.inf
    return max(0.0, cap / mark - position)


@njit(cache=True)
def credit_skew(haircuts, mask, venue, skew_bps, fair):
    """Price shift (quote ccy) for venue ``venue``'s quotes: ``-fair * skew_bps/1e4 * (h_v/h_avg - 1)``.

    ``h_avg`` is the mean haircut over venues with ``mask[v] == 1`` (e.g. ctx.quotable). A venue
    riskier than average gets its bid and ask moved down, so we sell more and buy less there and
    inventory drifts to safer venues; a safer one gets them moved up. 0 when all haircuts are 0.
    """
    total = 0.0
    count = 0
    for v in range(haircuts.shape[0]):
        if mask[v] == 1:
            total += haircuts[v]
            count += 1
    if count == 0 or total <= 0.0:
        return 0.0
    avg = total / count
    return -fair * skew_bps * 1e-4 * (haircuts[venue] / avg - 1.0)


@njit(cache=True)
def size_factor(hedge_open, offhours_factor):
    """Quote size multiplier: 1 while the hedge venue may trade, ``offhours_factor`` (0..1] otherwise."""
    if hedge_open:
        return 1.0
    return offhours_factor
