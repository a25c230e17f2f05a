"""Displayed liquidity we have already taken, so that the same lots never fill us twice.

The replayed data does not know about our fills: after we take 3 tokens from a level of 3, the next
row that restates that level (a depth row, or an L1 quote at the same price) still says 3. A real
venue would show 0. So per book side we keep ``consumed[price]``: tokens taken from the displayed
level at that price (an aggressive order of ours walking the book, or an opposite level that
appeared through our resting order and filled it). The venue's book holds the *effective* size
``max(data size - consumed, 0)`` (a level at 0 is absent).

An amount stays attached to its price until the data shows that level genuinely refreshed:

- a data trade printed at or through that price on that side reduces it by the trade's size (the
  orders we took were the ones that trade would have met);
- the data removes the level (a depth row with size 0; an L1 quote, which shows the whole side,
  implies every level better than its price is gone; a level of the other side at or through it
  uncrosses the data's book): the amount is dropped;
- a snapshot (a row with ``F_CLEAR``) rebuilds the book from the venue's own view: all amounts of
  that book are dropped.

A size increase needs no rule: ``data size - consumed`` already gives the new orders to others.

Layout (in ``sim``): ``cpx``, ``cq`` float64[B, 2, K] (price, tokens), ``cn`` int64[B, 2] entries
used, ``cevict`` int64[1]. A side keeps at most K prices; when a new one does not fit, the entry
farthest from the top of the book is forgotten and counted in ``cevict`` (the runner warns: it is
the one case where a restated level could fill us again).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stockbridge.core.book import better, same_price

CONSUMED_SLOTS = 16


def new_consumed(n_books: int, slots: int = CONSUMED_SLOTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Empty tables: ``(cpx, cq, cn, cevict)``."""
    return (np.zeros((n_books, 2, slots)), np.zeros((n_books, 2, slots)), np.zeros((n_books, 2), dtype=np.int64),
            np.zeros(1, dtype=np.int64))


@njit(cache=True, inline="always", _nrt=False)
def _find(cpx, cn, b, s, price) -> int:
    for k in range(cn[b, s]):
        if same_price(cpx[b, s, k], price):
            return k
    return -1


@njit(cache=True, _nrt=False)
def _remove(cpx, cq, cn, b, s, k):
    last = cn[b, s] - 1
    cpx[b, s, k] = cpx[b, s, last]
    cq[b, s, k] = cq[b, s, last]
    cn[b, s] = last


@njit(cache=True, _nrt=False)
def consume(cpx, cq, cn, cevict, b, s, price, amount):
    """We took ``amount`` tokens from the displayed level at ``price`` of side ``s``."""
    k = _find(cpx, cn, b, s, price)
    if k >= 0:
        cq[b, s, k] += amount
        return
    n = cn[b, s]
    if n == cpx.shape[2]:
        worst = 0
        for j in range(1, n):
            if better(s, cpx[b, s, worst], cpx[b, s, j]):
                worst = j
        cevict[0] += 1
        _remove(cpx, cq, cn, b, s, worst)
        n -= 1
    cpx[b, s, n] = price
    cq[b, s, n] = amount
    cn[b, s] = n + 1


@njit(cache=True, inline="always", _nrt=False)
def effective_size(cpx, cq, cn, b, s, price, size) -> float:
    """The venue's size at ``price`` when the data states ``size`` there; forgets the amount if the
    data removed the level."""
    if cn[b, s] == 0:
        return size
    k = _find(cpx, cn, b, s, price)
    if k < 0:
        return size
    if size <= 0.0:
        _remove(cpx, cq, cn, b, s, k)
        return 0.0
    return max(size - cq[b, s, k], 0.0)


@njit(cache=True, _nrt=False)
def drop_better_than(cpx, cq, cn, b, s, price, inclusive):
    """The data says side ``s`` has no level better than ``price`` (nor at it, if ``inclusive``): an
    L1 quote at ``price`` on side s, or a level of the other side at ``price`` (the data's book is
    uncrossed)."""
    k = 0
    while k < cn[b, s]:
        if better(s, cpx[b, s, k], price) or (inclusive and same_price(cpx[b, s, k], price)):
            _remove(cpx, cq, cn, b, s, k)
        else:
            k += 1


@njit(cache=True, _nrt=False)
def data_best(cpx, cn, b, s, venue_best) -> float:
    """Best price of side ``s`` as the data shows it: the venue's best (``venue_best``, NaN if the
    side is empty) or a level we emptied, whichever is better."""
    best = venue_best
    for k in range(cn[b, s]):
        if not (best == best) or better(s, cpx[b, s, k], best):
            best = cpx[b, s, k]
    return best


@njit(cache=True, _nrt=False)
def traded_through(cpx, cq, cn, b, s, price, size):
    """A data trade of ``size`` at ``price`` against side ``s`` met the levels at or better than it."""
    # An entry refreshed to 0 stays until the data removes its level: the level we emptied is still
    # in the data's book (data_best), though the venue shows nothing there until the data restates it.
    for k in range(cn[b, s]):
        if not better(s, price, cpx[b, s, k]):
            cq[b, s, k] = max(cq[b, s, k] - size, 0.0)


@njit(cache=True, inline="always", _nrt=False)
def clear(cn, b):
    cn[b, 0] = 0
    cn[b, 1] = 0
