"""L2 order books rebuilt from the event stream, one per (venue, instrument), in flat arrays.

Layout (all books of a replay share three arrays):

- book index ``b = venue * n_instruments + instrument``;
- side index ``s``: 0 = bids, 1 = asks (``stockbridge.core.context`` BID / ASK); an event's side
  +1 maps to 0 and -1 to 1 (:func:`side_index`);
- ``px[b, s, :nlev[b, s]]``: prices, best first (bids descending, asks ascending), quote currency;
- ``qty[b, s, k]``: visible size at ``px[b, s, k]``, tokens (shares at an equity venue);
- ``dropped[b]``: levels that did not fit (see capacity below).

Why sorted arrays rather than a price-indexed ring around the mid: the venues of one token use
different tick grids (0.01, 0.001) and prices gap across closed-market hours, so a ring would need a
tick size per book and a re-centre on every gap. Sorted arrays need neither; updates cluster at the
top of the book, so a binary search plus a short shift of the few levels above it is cheap.

Capacity: each side keeps its best ``capacity`` levels. A level worse than the worst kept one on a
full side is not stored, and inserting a better level into a full side pushes the worst one out;
both count in ``dropped[b]`` so the caller can report it (choose a capacity above the data's depth).

The book is kept uncrossed: setting a level with size > 0 removes opposite levels at or through its
price, which can only be stale rows (a live venue cannot show a crossed book).
"""

from __future__ import annotations

import numpy as np
from numba import njit

PRICE_EPS = 1e-9  # relative tolerance for "same price": our prices are rounded to the grid, data prices parsed


def new_book(n_books: int, capacity: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Empty books: ``(px float64[n_books, 2, capacity], qty float64[...], nlev int64[n_books, 2], dropped int64[n_books])``."""
    if n_books < 1 or capacity < 1:
        raise ValueError(f"need n_books >= 1 and capacity >= 1, got {n_books}, {capacity}")
    px = np.zeros((n_books, 2, capacity), dtype=np.float64)
    qty = np.zeros((n_books, 2, capacity), dtype=np.float64)
    nlev = np.zeros((n_books, 2), dtype=np.int64)
    dropped = np.zeros(n_books, dtype=np.int64)
    return px, qty, nlev, dropped


@njit(cache=True)
def side_index(side) -> int:
    """Event / order side (+1 bid or buy, -1 ask or sell) -> book side index (0 bids, 1 asks)."""
    return 0 if side > 0 else 1


@njit(cache=True)
def same_price(a: float, b: float) -> bool:
    # scale by the smaller magnitude so an infinite limit (market order) never equals a real price
    return abs(a - b) <= PRICE_EPS * max(1.0, min(abs(a), abs(b)))


@njit(cache=True)
def better(s: int, a: float, b: float) -> bool:
    """True if price ``a`` is strictly better than ``b`` on side ``s`` (higher bid, lower ask)."""
    if same_price(a, b):
        return False
    return a > b if s == 0 else a < b


@njit(cache=True, inline="always")
def _insert_pos(px, nlev, b, s, price) -> int:
    """First index whose price is not strictly better than ``price`` (binary search)."""
    lo = 0
    hi = nlev[b, s]
    while lo < hi:
        mid = (lo + hi) >> 1
        if better(s, px[b, s, mid], price):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def find_level(px, nlev, b, s, price) -> int:
    """Index of the level at ``price`` on side ``s`` of book ``b``, or -1."""
    k = _insert_pos(px, nlev, b, s, price)
    if k < nlev[b, s] and same_price(px[b, s, k], price):
        return k
    return -1


@njit(cache=True, inline="always")
def _delete_at(px, qty, nlev, b, s, k):
    n = nlev[b, s]
    for j in range(k, n - 1):
        px[b, s, j] = px[b, s, j + 1]
        qty[b, s, j] = qty[b, s, j + 1]
    nlev[b, s] = n - 1


@njit(cache=True, inline="always")
def _drop_better_than(px, qty, nlev, b, s, price, inclusive):
    """Remove levels on side ``s`` better than ``price`` (and at it if ``inclusive``)."""
    n = nlev[b, s]
    k = 0
    while k < n and (better(s, px[b, s, k], price) or (inclusive and same_price(px[b, s, k], price))):
        k += 1
    if k == 0:
        return
    for j in range(k, n):
        px[b, s, j - k] = px[b, s, j]
        qty[b, s, j - k] = qty[b, s, j]
    nlev[b, s] = n - k


@njit(cache=True, inline="always")
def set_level(px, qty, nlev, dropped, b, s, price, size) -> float:
    """Set the visible size at ``price`` on side ``s`` (size <= 0 deletes). Returns the previous size (0 if absent)."""
    cap = px.shape[2]
    k = _insert_pos(px, nlev, b, s, price)
    n = nlev[b, s]
    exists = k < n and same_price(px[b, s, k], price)
    prev = qty[b, s, k] if exists else 0.0
    if size <= 0.0:
        if exists:
            _delete_at(px, qty, nlev, b, s, k)
        return prev
    if exists:
        qty[b, s, k] = size
    else:
        if k >= cap:
            dropped[b] += 1
            return prev
        if n == cap:
            dropped[b] += 1
            n -= 1
        for j in range(n, k, -1):
            px[b, s, j] = px[b, s, j - 1]
            qty[b, s, j] = qty[b, s, j - 1]
        px[b, s, k] = price
        qty[b, s, k] = size
        nlev[b, s] = n + 1
    _drop_better_than(px, qty, nlev, b, 1 - s, price, True)
    return prev


@njit(cache=True)
def uncross(px, qty, nlev, b, s, price):
    """Remove side ``s``'s levels at or through ``price`` (a level of the other side at ``price``)."""
    _drop_better_than(px, qty, nlev, b, s, price, True)


@njit(cache=True, inline="always")
def apply_quote(px, qty, nlev, dropped, b, s, price, size) -> float:
    """An L1 row: a quote feed shows one level per side, so ``price`` becomes side ``s``'s only level
    (a worse level left from an earlier quote would be liquidity that no longer exists). Returns the
    previous size at ``price``."""
    prev = size_at(px, qty, nlev, b, s, price)
    nlev[b, s] = 0
    set_level(px, qty, nlev, dropped, b, s, price, size)
    return prev


@njit(cache=True)
def clear_book(nlev, b):
    nlev[b, 0] = 0
    nlev[b, 1] = 0


@njit(cache=True)
def best_price(px, nlev, b, s) -> float:
    """Best price of side ``s``, NaN if the side is empty."""
    return px[b, s, 0] if nlev[b, s] > 0 else np.nan


@njit(cache=True)
def best_size(qty, nlev, b, s) -> float:
    """Size at the best level of side ``s``, 0 if the side is empty."""
    return qty[b, s, 0] if nlev[b, s] > 0 else 0.0


@njit(cache=True, inline="always")
def size_at(px, qty, nlev, b, s, price) -> float:
    """Visible size at ``price`` on side ``s``, 0 if there is no such level."""
    k = find_level(px, nlev, b, s, price)
    return qty[b, s, k] if k >= 0 else 0.0


@njit(cache=True)
def take_at(px, qty, nlev, b, s, k, amount):
    """Remove ``amount`` from level ``k`` (our own fills), deleting the level when it is used up."""
    left = qty[b, s, k] - amount
    if left <= 1e-12 * max(1.0, qty[b, s, k]):
        _delete_at(px, qty, nlev, b, s, k)
    else:
        qty[b, s, k] = left


@njit(cache=True)
def depth_walk(px, qty, nlev, b, s, limit, want) -> tuple:
    """Walk side ``s`` best first up to ``limit`` for ``want`` tokens, without changing the book.

    Returns ``(filled, notional, levels)``: tokens available up to ``want``, their cost in quote
    currency, and the number of levels touched. ``limit`` is inclusive; use +inf / 0 for no limit.
    """
    filled = 0.0
    notional = 0.0
    levels = 0
    for k in range(nlev[b, s]):
        p = px[b, s, k]
        if better(s, limit, p):
            break
        if filled >= want:
            break
        q = min(qty[b, s, k], want - filled)
        filled += q
        notional += q * p
        levels += 1
    return filled, notional, levels
