"""The decision context a strategy kernel reads, and the output arrays it writes.

A strategy kernel has one fixed signature (see strategies/base.py)::

    @njit(cache=True)
    def kernel(ctx, params, quotes, takes) -> int   # returns the number of taker intents written

- ``ctx``: one record of ``CTX_DTYPE`` (``ctx_array[0]``), filled by the core before each decision.
- ``params``: float64[:], the strategy's params model flattened in field order (bools as 0/1).
- ``quotes``: float64[MAX_VENUES, 2, MAX_LEVELS, 2] - ``quotes[v, side, level] = (price, size)``,
  side ``BID``=0 / ``ASK``=1, level 0 closest to the mid; size 0 means "no order there". Zeroed
  by the core before the call.
- ``takes``: float64[MAX_TAKES, 4] - rows ``(venue, side(+1 buy/-1 sell), limit price, size)``.

The core then passes the raw quotes through its own rules (tick/lot grid, no crossing, inventory
bounds, exposure caps, off-hours size): see stockbridge/core/quoting.py ``finalize_quotes``.

Units: ts ns UTC; prices quote currency per token; sizes tokens; ``tau`` and variance-times are in
seconds of regular-hours-equivalent variance ("variance-seconds"); ``sigma`` is quote currency per
sqrt(variance-second); fees are fractions of notional (bps / 1e4), negative = rebate.
"""

from __future__ import annotations

import numpy as np

MAX_VENUES = 8
MAX_LEVELS = 3
MAX_TAKES = 8
BID = 0
ASK = 1

_V = (MAX_VENUES,)

CTX_DTYPE = np.dtype(
    [
        # -- time and sessions --
        ("ts", np.int64),              # decision time, ns UTC
        ("session", np.int64),         # underlying's session state (stockbridge.sessions codes)
        ("hedge_open", np.int64),      # 1 when the hedge venue may trade now
        ("tau", np.float64),           # variance-seconds until the next hedge opportunity (+ gap allowance)
        ("var_rate", np.float64),      # variance-seconds per wall-clock second in the current session state (1 in regular hours)
        ("size_factor", np.float64),   # 1.0 while hedgeable, risk.offhours_size_factor otherwise
        # -- fair value and risk of the quoted token --
        ("fair", np.float64),          # fair value of one token, quote ccy
        ("fair_std", np.float64),      # std-dev of fair, quote ccy
        ("spread_z", np.float64),      # core's quote floor: half-spread >= spread_z * fair_std (std-devs)
        ("credit_skew_bps", np.float64),  # quotes at a venue riskier than average move down by this x (h_v/h_avg - 1) bps
        ("sigma", np.float64),         # quote ccy per sqrt(variance-second)
        ("multiplier", np.float64),    # shares per token now
        ("net_delta", np.float64),     # share-equivalents across all venues incl. hedge
        ("max_net_delta", np.float64), # share-equivalents
        ("equity_raw", np.float64),    # quote ccy
        ("equity_haircut", np.float64),  # quote ccy, after per-venue haircuts
        ("n_venues", np.int64),        # venues 0..n_venues-1 are configured (config order)
        ("hedge_venue", np.int64),     # venue id of the equity broker, -1 if none
        # -- per venue (index = venue id) --
        ("quotable", np.int64, _V),    # 1 = strategy may quote the token here
        ("tradable", np.int64, _V),    # 1 = venue open and not halted/defaulted now
        ("bid", np.float64, _V),       # best bid, quote ccy (NaN if none)
        ("ask", np.float64, _V),       # best ask, quote ccy (NaN if none)
        ("bid_size", np.float64, _V),  # tokens at best bid
        ("ask_size", np.float64, _V),  # tokens at best ask
        ("last_update", np.int64, _V), # local ns UTC of the venue's last book update
        ("position", np.float64, _V),  # tokens (shares at the hedge venue)
        ("cash", np.float64, _V),      # quote ccy
        ("working_buy", np.float64, _V),   # tokens in buy orders we are cancelling (they may still fill)
        ("working_sell", np.float64, _V),  # tokens in sell orders we are cancelling
        ("haircut", np.float64, _V),   # fraction 0..1
        ("exposure", np.float64, _V),  # balance value at this venue, quote ccy
        ("exposure_cap", np.float64, _V),  # quote ccy
        ("max_position", np.float64, _V),  # tokens
        ("tick", np.float64, _V),      # price grid
        ("lot", np.float64, _V),       # size grid
        ("min_notional", np.float64, _V),  # quote ccy
        ("maker_fee", np.float64, _V), # fraction of notional, negative = rebate
        ("taker_fee", np.float64, _V), # fraction of notional
        ("gas", np.float64, _V),       # quote ccy per trade
    ],
    align=True,
)


def new_context() -> np.ndarray:
    """A one-element CTX_DTYPE array with NaN books and zero state; pass ``ctx[0]`` to kernels."""
    ctx = np.zeros(1, dtype=CTX_DTYPE)
    for name in ("bid", "ask"):
        ctx[name] = np.nan
    ctx["hedge_venue"] = -1
    ctx["size_factor"] = 1.0
    ctx["var_rate"] = 1.0
    ctx["spread_z"] = 1.0
    return ctx


def new_quotes() -> np.ndarray:
    return np.zeros((MAX_VENUES, 2, MAX_LEVELS, 2), dtype=np.float64)


def new_takes() -> np.ndarray:
    return np.zeros((MAX_TAKES, 4), dtype=np.float64)
