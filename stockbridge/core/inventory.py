"""Positions, cash, average cost, realised PnL and fees per (venue, instrument), in flat arrays.

Layout (V venues, I instruments, ids as in the config's table order):

- ``pos``: float64[V, I] signed units (tokens, or shares for the underlying);
- ``avg_cost``: float64[V, I] quote ccy per unit of the open position (0 when flat);
- ``realized``: float64[V, I] quote ccy, PnL of closed quantity against average cost, before fees;
- ``cash``: float64[V] quote ccy held at each venue (fees already taken out);
- ``fees_paid``: float64[V] quote ccy, fees and gas paid (negative total = net rebates earned).

Net PnL of a venue = realised + unrealised - fees_paid.

Multiplier changes (xStocks dividends reinvested, splits) need no bookkeeping here: positions are
kept in raw token units, which a multiplier step leaves unchanged; each token is simply worth
``multiplier`` shares from then on, which :func:`net_delta` and the fair value pick up. Venue
adapters that see rebasing balances (Solana ScaledUiAmount, EVM ``balanceOf``) convert them to raw
units at the edge.
"""

from __future__ import annotations

from numba import njit

BUY = 1
SELL = -1


@njit(cache=True)
def apply_fill(pos, cash, avg_cost, realized, fees_paid, venue, instrument, side, price, qty, fee_rate, gas):
    """Book one fill; returns the fee charged (quote ccy).

    ``side`` +1 buy / -1 sell, ``price`` quote ccy per unit, ``qty`` > 0 units, ``fee_rate``
    fraction of notional (negative = maker rebate), ``gas`` quote ccy per trade.
    ``fee = price*qty*fee_rate + gas``. A fill that adds to the position moves the average cost to
    the size-weighted mean; one that reduces it realises ``closed*(price - avg_cost)*sign(position)``
    and, if it flips the position, opens the remainder at ``price``.
    """
    fee = price * qty * fee_rate + gas
    signed = side * qty
    p0 = pos[venue, instrument]
    a0 = avg_cost[venue, instrument]
    p1 = p0 + signed
    # Sums of fills like 0.1 + 0.2 - 0.3 leave ~1e-17 behind; that is a flat position.
    if abs(p1) <= 1e-12 * max(1.0, abs(p0), qty):
        p1 = 0.0
    if p0 == 0.0 or (p0 > 0.0) == (signed > 0.0):
        a1 = (abs(p0) * a0 + qty * price) / abs(p1)
    else:
        closed = min(qty, abs(p0))
        realized[venue, instrument] += closed * (price - a0) * (1.0 if p0 > 0.0 else -1.0)
        if p1 == 0.0:
            a1 = 0.0
        elif (p1 > 0.0) != (p0 > 0.0):
            a1 = price
        else:
            a1 = a0
    pos[venue, instrument] = p1
    avg_cost[venue, instrument] = a1
    cash[venue] -= signed * price + fee
    fees_paid[venue] += fee
    return fee


@njit(cache=True)
def unrealized_pnl(pos, avg_cost, marks):
    """float64[V, I]: ``pos * (mark - avg_cost)`` with ``marks`` quote ccy per unit, shaped like pos."""
    return pos * (marks - avg_cost)


@njit(cache=True)
def venue_values(pos, cash, marks):
    """float64[V]: balance value at each venue, ``cash + sum_i pos[v, i] * marks[v, i]`` quote ccy."""
    out = cash.copy()
    for v in range(pos.shape[0]):
        for i in range(pos.shape[1]):
            if pos[v, i] != 0.0:
                out[v] += pos[v, i] * marks[v, i]
    return out


@njit(cache=True)
def net_delta(positions_tokens, multiplier, hedge_shares):
    """Net delta in share-equivalents: ``sum(token positions) * multiplier + hedge shares``."""
    total = 0.0
    for v in range(positions_tokens.shape[0]):
        total += positions_tokens[v]
    return total * multiplier + hedge_shares
