"""Hostile public market data (the ``garbage`` fault, faults.py): the venue-neutral part.

The servers (bybit.py, kraken.py) build each hostile message in their own wire format from the book
they show and these helpers; what each kind is:

- ``truncated_json``: the real message's JSON text cut in half (a frame or body that ends early);
- ``nan_strings``: a level (book) or print (trade) whose price and size are the string ``"NaN"``
  (the JSON has no NaN literal; venues that send numbers as strings can send this, and ccxt's
  ``safe_number`` turns it into a float NaN);
- ``negative_size``: a print (trade) with a negative size; in a book, a bid level with a negative size
  one tick above the best bid (:func:`negative_bid`: a price no real update will touch, so a client
  that stores it keeps it), or the best bid's own level in a REST answer;
- ``crossed_book``: a bid level ``CROSS_TICKS`` ticks above the best ask, with the best bid's size;
- ``wrong_symbol``: a message on our subscription that names another market (:func:`other_id`), at
  ``WRONG_SYMBOL_SCALE`` times our prices (another instrument's prices);
- ``enormous``: the real levels repeated until the message is more than :data:`ENORMOUS_BYTES`
  (content a client could apply harmlessly, a size none should accept).

Prices quote currency, sizes tokens; the book rows are (price, size) best first.
"""

from __future__ import annotations

import json
import math
from typing import Any

# ccxt.pro opens its websockets with aiohttp's max_msg_size=10485760 (10 MiB,
# ccxt/async_support/base/ws/client.py): a frame past it must be what "enormous" means
ENORMOUS_BYTES = 11 * 2**20
CROSS_TICKS = 5
WRONG_SYMBOL_SCALE = 3.0

Rows = list[tuple[float, float]]


def truncated(msg: Any) -> str:
    """``msg`` as JSON, cut in half: never valid JSON (an object or array that does not close)."""
    text = msg if isinstance(msg, str) else json.dumps(msg)
    return text[: max(1, len(text) // 2)]


def crossed_bid(bids: Rows, asks: Rows, tick: float) -> tuple[float, float] | None:
    """A bid level above the best ask (None when a side is empty)."""
    if not bids or not asks:
        return None
    return asks[0][0] + CROSS_TICKS * tick, bids[0][1]


def negative_bid(bids: Rows, asks: Rows, tick: float) -> tuple[float, float] | None:
    """A bid level with a negative size one tick above the best bid if that is inside the spread,
    else at the best bid (None when there are no bids)."""
    if not bids:
        return None
    p, q = bids[0]
    if asks and p + tick < asks[0][0] - tick / 2:
        p = p + tick
    return p, -q


def scaled(rows: Rows, k: float = WRONG_SYMBOL_SCALE) -> Rows:
    return [(p * k, q) for p, q in rows]


def repeats(one_copy_bytes: int) -> int:
    """How many copies of a ``one_copy_bytes`` level list make a message past :data:`ENORMOUS_BYTES`."""
    return max(2, math.ceil(ENORMOUS_BYTES / max(one_copy_bytes, 1)) + 1)


def other_id(market_id: str) -> str:
    """Another market id of the same form: the stock's letters (up to the token's x/X) swapped for
    another stock's (AAPLXUSDT -> MSFTXUSDT, AAPLxUSD -> MSFTxUSD, AAPLX/USD -> MSFTX/USD)."""
    cut = next((i for i, ch in enumerate(market_id) if ch in "xX" and i > 0), min(4, len(market_id)))
    stem = "TSLA" if market_id[:cut] == "MSFT" else "MSFT"
    return stem + market_id[cut:]
