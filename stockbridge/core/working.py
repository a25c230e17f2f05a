"""Our working orders as the trader core knows them: a flat record array with client order ids.

``wo`` is WORKING_DTYPE[capacity]; ``wfree`` int64[capacity] a stack of free slots (its fill level is
kept by the caller). A client order id (``cid``, int64) is made by the core, deterministically:

    cid = prefix << 44 | serial << SLOT_BITS | slot

``prefix`` (19 bits) is chosen per run (the backtest's seed; the live bot's start), ``serial`` counts
orders from 1, ``slot`` is where the order lives here, so a report finds its order in O(1) and a
report about a finished order (its slot since reused) is recognised. As text (:func:`cid_text` in
stockbridge.trader) it is 15 characters of [0-9a-z], valid as ccxt's ``clientOrderId`` at Bybit
(``orderLinkId``, 36) and Kraken (``cl_ord_id`` free text, 18) and as Alpaca's ``client_order_id`` (128).

States are stockbridge.core.order_codes'; ``stale`` marks an order we no longer want that may still
fill (a replaced quote whose cancel is in flight, or was refused and will be sent again).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stockbridge.core.order_codes import FREE

SLOT_BITS = 12
MAX_WORKING = 1 << SLOT_BITS
SERIAL_BITS = 32
PREFIX_BITS = 63 - SERIAL_BITS - SLOT_BITS

STALE_NO, STALE_CANCELLING, STALE_REFUSED = 0, 1, 2

WORKING_DTYPE = np.dtype(
    [
        ("cid", np.int64),
        ("ts_sent", np.int64),       # ns UTC when the core sent it
        ("stale_retry", np.int64),   # ns UTC: send the refused cancel again from then on
        ("price", np.float64),       # limit, quote ccy
        ("qty", np.float64),         # tokens (shares at the equity venue)
        ("leaves", np.float64),      # tokens open as far as the reports say
        ("venue", np.int16),
        ("instrument", np.int16),
        ("side", np.int8),           # +1 buy, -1 sell
        ("tif", np.int8),            # order_codes GTC / IOC
        ("post_only", np.int8),
        ("tag", np.int8),            # order_codes TAG_*
        ("state", np.int8),          # order_codes state as the reports say
        ("stale", np.int8),          # STALE_*
    ],
    align=True,
)


def new_working(capacity: int = MAX_WORKING) -> tuple[np.ndarray, np.ndarray]:
    """Empty working orders: ``(wo WORKING_DTYPE[capacity], wfree int64[capacity])``, all slots free
    (the free stack's fill level is ``capacity``; slot 0 comes out first)."""
    if not 1 <= capacity <= MAX_WORKING:
        raise ValueError(f"working-order capacity must be in 1..{MAX_WORKING}, got {capacity}")
    return np.zeros(capacity, dtype=WORKING_DTYPE), np.arange(capacity - 1, -1, -1, dtype=np.int64)


@njit(cache=True, inline="always", _nrt=False)
def make_cid(prefix, serial, slot):
    return (prefix << (SERIAL_BITS + SLOT_BITS)) | (serial << SLOT_BITS) | slot


@njit(cache=True, inline="always", _nrt=False)
def working_find(wo, cid):
    """Slot of our working order ``cid``, -1 if it is not one (finished, or never ours)."""
    slot = cid & (MAX_WORKING - 1)
    if cid <= 0 or slot >= wo.shape[0] or wo[slot].cid != cid or wo[slot].state == FREE:
        return -1
    return slot


@njit(cache=True, inline="always", _nrt=False)
def working_alloc(wfree, n_free):
    """A free slot from the stack of ``n_free``; -1 if none. The caller stores ``n_free - 1``."""
    if n_free == 0:
        return -1
    return wfree[n_free - 1]


@njit(cache=True, inline="always", _nrt=False)
def working_free(wo, wfree, n_free, slot):
    """Release a finished order's slot; returns the new fill level of the free stack."""
    wo[slot].state = FREE
    wfree[n_free] = slot
    return n_free + 1
