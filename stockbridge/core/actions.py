"""The trader core's output: actions for the venues, in a preallocated record array.

After each decision ``actions[:n]`` (``n`` = ``Trader.iv[T_N_ACTIONS]``) holds, in the order they
were decided, the orders to send (``kind`` ACT_NEW) and the cancels (ACT_CANCEL, by client id).
Whoever carries them out - the simulated venues or the live order manager - does so in that order
and then clears the count (stockbridge.core.cycle.actions_done). Prices and sizes are already on
the venue's tick and lot grid.
"""

from __future__ import annotations

import numpy as np

ACTION_DTYPE = np.dtype(
    [
        ("cid", np.int64),         # client order id (stockbridge.core.working)
        ("ts", np.int64),          # ns UTC when decided
        ("price", np.float64),     # limit, quote ccy (ACT_NEW)
        ("qty", np.float64),       # tokens, shares at the equity venue (ACT_NEW)
        ("kind", np.int8),         # order_codes ACT_NEW / ACT_CANCEL
        ("side", np.int8),         # +1 buy / -1 sell
        ("tif", np.int8),          # order_codes GTC / IOC
        ("post_only", np.int8),    # 1 = the venue must reject it rather than let it take
        ("tag", np.int8),          # order_codes TAG_QUOTE / TAG_HEDGE / TAG_ARB
        ("venue", np.int16),
        ("instrument", np.int16),
    ],
    align=True,
)


def new_actions(capacity: int) -> np.ndarray:
    return np.zeros(capacity, dtype=ACTION_DTYPE)
