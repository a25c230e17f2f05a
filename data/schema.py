"""The one event schema every market event travels in, as a numpy dtype and the matching polars schema.

One row is one event: an L1 quote side, an L2 depth update or snapshot level, a trade, a session
change or a multiplier change. Rows are 48 bytes, flat, so numba kernels read them with no Python
objects (style of hftbacktest's event rows).

Fields
- ``kind``: one of the ``KIND_*`` codes below.
- ``side``: +1 bid / buy, -1 ask / sell, 0 none or unknown. For trades it is the aggressor's side.
- ``venue``, ``instrument``: integer ids, the order of the ``[venues]`` / ``[instruments]`` tables.
- ``flags``: bit set of ``F_*`` below.
- ``exch_ts``, ``local_ts``: ns since the epoch, UTC: when the venue stamped it, when we received it.
- ``price``: quote currency (for ``KIND_MULTIPLIER``: the new multiplier; for ``KIND_SESSION``: 0).
- ``size``: tokens or shares (0 removes a depth level; for ``KIND_SESSION``: the new state code).
- ``id``: trade id or order id where the source has one, else 0.
"""

from __future__ import annotations

import numpy as np
import polars as pl

KIND_QUOTE = 1        # L1 best bid or best ask (one row per side)
KIND_DEPTH = 2        # L2 incremental update of one price level (size 0 deletes it)
KIND_SNAPSHOT = 3     # L2 snapshot level; the first row of a snapshot carries F_CLEAR
KIND_TRADE = 4        # a trade printed on the venue
KIND_SESSION = 5      # the underlying's session state changed (size = new state code)
KIND_MULTIPLIER = 6   # the token's multiplier changed (price = new multiplier)

KIND_NAMES = {
    KIND_QUOTE: "quote",
    KIND_DEPTH: "depth",
    KIND_SNAPSHOT: "snapshot",
    KIND_TRADE: "trade",
    KIND_SESSION: "session",
    KIND_MULTIPLIER: "multiplier",
}

SIDE_BUY = 1
SIDE_SELL = -1

F_CLEAR = 1 << 0      # clear the whole book of this venue/instrument before applying this row
F_BATCH_END = 1 << 1  # last row of an atomic update (a snapshot, or all levels with one timestamp)
F_REPAIRED = 1 << 2   # row kept after `--repair` changed something about it

EVENT_DTYPE = np.dtype(
    [
        ("kind", np.uint8),
        ("side", np.int8),
        ("venue", np.uint16),
        ("instrument", np.uint16),
        ("flags", np.uint16),
        ("exch_ts", np.int64),
        ("local_ts", np.int64),
        ("price", np.float64),
        ("size", np.float64),
        ("id", np.int64),
    ],
    align=True,
)
assert EVENT_DTYPE.itemsize == 48

POLARS_SCHEMA = pl.Schema(
    {
        "kind": pl.UInt8,
        "side": pl.Int8,
        "venue": pl.UInt16,
        "instrument": pl.UInt16,
        "flags": pl.UInt16,
        "exch_ts": pl.Int64,
        "local_ts": pl.Int64,
        "price": pl.Float64,
        "size": pl.Float64,
        "id": pl.Int64,
    }
)
COLUMNS = tuple(POLARS_SCHEMA.names())


def empty(n: int = 0) -> np.ndarray:
    """A zeroed event array of length n."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def to_numpy(df: pl.DataFrame) -> np.ndarray:
    """A polars frame in POLARS_SCHEMA -> an EVENT_DTYPE array (column by column, no Python loop)."""
    out = np.empty(df.height, dtype=EVENT_DTYPE)
    for name in COLUMNS:
        out[name] = df.get_column(name).to_numpy()
    return out


def to_polars(events: np.ndarray) -> pl.DataFrame:
    """An EVENT_DTYPE array -> a polars frame in POLARS_SCHEMA."""
    return pl.DataFrame({name: events[name] for name in COLUMNS}, schema=POLARS_SCHEMA)


# OHLCV bars (e.g. ccxt ``fetch_ohlcv``), stored apart from events: ``ts`` is the bar's open time in
# ns UTC, prices are quote currency, ``volume`` is tokens or shares traded in the bar.
BAR_SCHEMA = pl.Schema(
    {
        "ts": pl.Int64,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Float64,
    }
)
