"""Time-ordered queues of messages in flight: our order actions on their way to a venue, and the
venue's reports on their way back to us.

One binary min-heap per queue, all in three flat arrays (queue ``q`` = venue id for actions
travelling to that venue; queue ``n_venues`` = reports travelling to us). A heap rather than sorted
insertion: latencies are drawn (jitter), so pushes do not arrive in time order, and a heap keeps
both push and pop at O(log n) with no shifting. Entries with equal times leave in push order
(``seq`` breaks ties), so a replay is deterministic.

Layout
- ``pq_i int64[n_queues, capacity, 6]``: columns ``T`` (ns: venue time for actions, local time for
  reports), ``SEQ``, ``KIND`` (ACT_* / REP_*), ``SLOT`` (order slot), ``OID`` (order id, guards
  against a reused slot), ``AUX`` (REP_FILL: 1 maker / 0 taker; REP_DONE: final state);
- ``pq_f float64[n_queues, capacity, 3]``: ``PRICE``, ``QTY``, ``FEE`` (REP_FILL only);
- ``pq_n int64[n_queues + 1]``: entries per queue; the last cell is the push counter behind ``SEQ``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# entry kinds (ACT_NEW, ACT_CANCEL, REP_ACK, REP_FILL, REP_DONE, REP_CANCEL_REJECT): stockbridge.core.order_codes
from stockbridge.core.order_codes import ACT_CANCEL, ACT_NEW, REP_ACK, REP_CANCEL_REJECT, REP_DONE, REP_FILL  # noqa: E402,F401

# int columns
T = 0
SEQ = 1
KIND = 2
SLOT = 3
OID = 4
AUX = 5
# float columns
PRICE = 0
QTY = 1
FEE = 2

NEVER = np.iinfo(np.int64).max


def new_pending(n_queues: int, capacity: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty queues: ``(pq_i, pq_f, pq_n)``."""
    if n_queues < 1 or capacity < 1:
        raise ValueError(f"need n_queues >= 1 and capacity >= 1, got {n_queues}, {capacity}")
    return (
        np.zeros((n_queues, capacity, 6), dtype=np.int64),
        np.zeros((n_queues, capacity, 3), dtype=np.float64),
        np.zeros(n_queues + 1, dtype=np.int64),
    )


def grow_pending(pq_i: np.ndarray, pq_f: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the queues with a larger capacity (heap order is kept: entries stay at their index)."""
    if capacity < pq_i.shape[1]:
        raise ValueError(f"capacity {capacity} is below the current {pq_i.shape[1]}")
    new_i = np.zeros((pq_i.shape[0], capacity, 6), dtype=np.int64)
    new_f = np.zeros((pq_f.shape[0], capacity, 3), dtype=np.float64)
    new_i[:, : pq_i.shape[1]] = pq_i
    new_f[:, : pq_f.shape[1]] = pq_f
    return new_i, new_f


@njit(cache=True)
def room(pq_i, pq_n, q) -> int:
    return pq_i.shape[1] - pq_n[q]


@njit(cache=True)
def _less(pq_i, q, a, b) -> bool:
    ta = pq_i[q, a, T]
    tb = pq_i[q, b, T]
    if ta != tb:
        return ta < tb
    return pq_i[q, a, SEQ] < pq_i[q, b, SEQ]


@njit(cache=True)
def _swap(pq_i, pq_f, q, a, b):
    for c in range(pq_i.shape[2]):
        x = pq_i[q, a, c]
        pq_i[q, a, c] = pq_i[q, b, c]
        pq_i[q, b, c] = x
    for c in range(pq_f.shape[2]):
        y = pq_f[q, a, c]
        pq_f[q, a, c] = pq_f[q, b, c]
        pq_f[q, b, c] = y


@njit(cache=True)
def push(pq_i, pq_f, pq_n, q, t, kind, slot, oid, aux, price, qty, fee) -> bool:
    """Add an entry to queue ``q``; False (and nothing changes) if the queue is full."""
    n = pq_n[q]
    if n >= pq_i.shape[1]:
        return False
    seq = pq_n[pq_n.shape[0] - 1]
    pq_n[pq_n.shape[0] - 1] = seq + 1
    pq_i[q, n, T] = t
    pq_i[q, n, SEQ] = seq
    pq_i[q, n, KIND] = kind
    pq_i[q, n, SLOT] = slot
    pq_i[q, n, OID] = oid
    pq_i[q, n, AUX] = aux
    pq_f[q, n, PRICE] = price
    pq_f[q, n, QTY] = qty
    pq_f[q, n, FEE] = fee
    pq_n[q] = n + 1
    k = n
    while k > 0:
        parent = (k - 1) >> 1
        if _less(pq_i, q, k, parent):
            _swap(pq_i, pq_f, q, k, parent)
            k = parent
        else:
            break
    return True


@njit(cache=True)
def peek_time(pq_i, pq_n, q) -> np.int64:
    """Time of the earliest entry of queue ``q``, NEVER if empty."""
    return pq_i[q, 0, T] if pq_n[q] > 0 else NEVER


@njit(cache=True)
def pop(pq_i, pq_f, pq_n, q, out_i, out_f):
    """Move the earliest entry of non-empty queue ``q`` into ``out_i int64[6]`` / ``out_f float64[3]``."""
    for c in range(pq_i.shape[2]):
        out_i[c] = pq_i[q, 0, c]
    for c in range(pq_f.shape[2]):
        out_f[c] = pq_f[q, 0, c]
    drop_top(pq_i, pq_f, pq_n, q)


@njit(cache=True)
def drop_top(pq_i, pq_f, pq_n, q):
    """Remove the earliest entry of non-empty queue ``q`` (read it in place first)."""
    n = pq_n[q] - 1
    pq_n[q] = n
    if n == 0:
        return
    _swap(pq_i, pq_f, q, 0, n)
    k = 0
    while True:
        left = 2 * k + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and _less(pq_i, q, left + 1, left):
            child = left + 1
        if _less(pq_i, q, child, k):
            _swap(pq_i, pq_f, q, child, k)
            k = child
        else:
            break
