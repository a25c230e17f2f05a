"""Trading fees of the simulated venues.

``fee = notional * rate + gas``, in quote currency, where ``rate`` is the venue's maker or taker fee
as a fraction of notional (negative = rebate, so the fee is negative: money received) and ``gas`` is
a fixed cost per on-chain trade (DEX). Gas is charged once per trade, not once per level: an
aggressive order that walks three levels settles as one transaction, so only its first fill carries
the gas; each maker fill is a trade of its own and carries it.

Table layout ``fees float64[n_venues, 3]``: maker rate, taker rate, gas per trade (quote currency).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAKER_RATE = 0
TAKER_RATE = 1
GAS = 2


def fee_table(maker_bps, taker_bps, gas_per_trade) -> np.ndarray:
    """Per-venue maker / taker fees in bps and gas per trade -> ``float64[n, 3]`` (rates as fractions)."""
    maker = np.asarray(maker_bps, dtype=np.float64)
    taker = np.asarray(taker_bps, dtype=np.float64)
    gas = np.broadcast_to(np.asarray(gas_per_trade, dtype=np.float64), maker.shape)
    if maker.ndim != 1 or maker.shape != taker.shape:
        raise ValueError("maker_bps and taker_bps must be 1-D and of the same length (one per venue)")
    if not (np.all(np.isfinite(maker)) and np.all(np.isfinite(taker)) and np.all(np.isfinite(gas))):
        raise ValueError("fees must be finite")
    if np.any(gas < 0):
        raise ValueError(f"gas_per_trade must be >= 0, got {gas.tolist()}")
    table = np.empty((maker.shape[0], 3), dtype=np.float64)
    table[:, MAKER_RATE] = maker / 1e4
    table[:, TAKER_RATE] = taker / 1e4
    table[:, GAS] = gas
    return table


@njit(cache=True)
def fill_fee(fees, v, price, qty, maker, with_gas) -> float:
    """Fee of one fill at venue ``v`` in quote currency (negative = rebate received)."""
    rate = fees[v, MAKER_RATE] if maker else fees[v, TAKER_RATE]
    fee = price * qty * rate
    if with_gas:
        fee += fees[v, GAS]
    return fee
