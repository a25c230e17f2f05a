"""Instruments (tokens and their underlying shares) and venues (fees, grids, hours, credit risk).

A token maps to its underlying share through a multiplier schedule: at each activation time the
multiplier changes (net dividends reinvested raise it a little, a 1:2 split doubles it). The fair
value of one token is ``share_price * multiplier(t)``.

Units: times are int64 ns UTC; prices are quote currency; sizes are tokens (shares for the
underlying); fees are basis points of notional (negative = rebate); gas is quote currency per trade.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Base model: unknown keys are errors, and so are nan and inf in a float field (TOML writes
    them ``nan`` and ``inf``; a bound like ``ge=0`` lets inf through, no bound lets nan through) unless
    the field allows them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1


def to_ns(value: datetime | str | int) -> int:
    """An ISO-8601 string, an aware datetime or int ns -> int64 ns since the epoch, UTC.

    ValueError for a time int64 ns cannot hold (before 1677-09-21 or after 2262-04-11 UTC)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone (e.g. '2025-07-01T00:00:00Z')")
    # a difference of aware datetimes, not astimezone(utc): that overflows near year 1 and 9999
    # (0001-01-01T00:00+14:00 is in year 0 in UTC), and timestamp() is a float
    d = value - _EPOCH
    ns = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
    if not _NS_MIN <= ns <= _NS_MAX:
        raise ValueError(f"{value.isoformat()} is outside the int64-nanosecond time range (1677-09-21 to 2262-04-11 UTC)")
    return ns


class MultiplierStep(Strict):
    """From ``active_from`` on, one token represents ``value`` shares."""

    active_from: datetime = Field(description="activation time (ISO-8601 with zone)")
    value: float = Field(gt=0, description="shares per token from this time on")

    @field_validator("active_from")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("activation time needs a time zone, e.g. 2025-07-01T00:00:00Z")
        to_ns(v)  # here, so a time out of the int64 ns range is an error at this key, not at the instrument
        return v


class InstrumentKind(str, Enum):
    token = "token"
    share = "share"


class Instrument(Strict):
    """A tradable instrument: a tokenized stock (``token``) or the share behind it (``share``)."""

    kind: InstrumentKind = Field(description="'token' (e.g. AAPLx) or 'share' (e.g. AAPL)")
    underlying: str | None = Field(default=None, description="for a token: the symbol of its share")
    multipliers: tuple[MultiplierStep, ...] = Field(
        default=(), description="multiplier schedule; before the first step the multiplier is 1.0"
    )

    @model_validator(mode="after")
    def _check(self) -> "Instrument":
        if self.kind is InstrumentKind.token and not self.underlying:
            raise ValueError("a token needs 'underlying'")
        if self.kind is InstrumentKind.share and self.multipliers:
            raise ValueError("a share has no multiplier schedule")
        times = [to_ns(s.active_from) for s in self.multipliers]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("multipliers must have strictly increasing 'active_from'")
        return self

    def multiplier_schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(activation ns int64[], multiplier float64[]), starting with (int64 min, 1.0)."""
        ts = [np.iinfo(np.int64).min] + [to_ns(s.active_from) for s in self.multipliers]
        vals = [1.0] + [s.value for s in self.multipliers]
        return np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)

    def multiplier_at(self, ts_ns: np.ndarray | int) -> np.ndarray | float:
        """Multiplier in force at each timestamp (ns UTC); scalar in, scalar out."""
        times, vals = self.multiplier_schedule()
        idx = np.searchsorted(times, np.asarray(ts_ns, dtype=np.int64), side="right") - 1
        out = vals[idx]
        return float(out) if np.ndim(out) == 0 else out


class VenueKind(str, Enum):
    cex_spot = "cex_spot"
    dex = "dex"
    equity_broker = "equity_broker"
    perpetual = "perpetual"


VENUE_KIND_CODE = {VenueKind.cex_spot: 0, VenueKind.dex: 1, VenueKind.equity_broker: 2, VenueKind.perpetual: 3}

TradingHours = Literal["24/7", "24/5", "equity"]
"""``24/7`` never closes; ``24/5`` closes from Friday 20:00 to Sunday 20:00 New York time;
``equity`` follows the US equity session calendar (see stockbridge.sessions)."""


class Venue(Strict):
    """A place to trade: fees, price/size grid, hours and platform credit risk."""

    kind: VenueKind = Field(description="cex_spot, dex, equity_broker or perpetual")
    instruments: dict[str, str] = Field(
        min_length=1, description="instrument name -> the venue's own symbol (ccxt unified, e.g. 'AAPLX/USDT')"
    )
    maker_fee_bps: float = Field(default=0.0, ge=-100, le=1000, description="maker fee, bps of notional; negative = rebate")
    taker_fee_bps: float = Field(default=0.0, ge=-100, le=1000, description="taker fee, bps of notional; negative (a taker rebate) is warned about, and maker + taker must be >= 0")
    gas_per_trade: float = Field(default=0.0, ge=0, description="fixed cost per trade, quote currency (DEX gas)")
    tick_size: float = Field(gt=0, description="price grid, quote currency")
    lot_size: float = Field(gt=0, description="size grid, tokens or shares")
    min_notional: float = Field(default=0.0, ge=0, description="smallest order value, quote currency")
    hours: TradingHours = Field(default="24/7", description="'24/7', '24/5' or 'equity'")
    hedge_sessions: tuple[Literal["pre", "regular", "after", "overnight"], ...] = Field(
        default=("regular",), description="equity session states in which this venue may hedge (equity venues)"
    )
    haircut: float = Field(default=0.0, ge=0, lt=1, description="credit haircut on balances held here (0..1)")
    exposure_cap: float = Field(default=float("inf"), gt=0, allow_inf_nan=True, description="max balance value held here, quote currency (inf: no cap)")
    borrow_bps_annual: float = Field(default=0.0, ge=0, description="borrow cost of short positions, bps per year")
    ccxt_id: str | None = Field(default=None, description="ccxt exchange id for live trading (e.g. 'bybit')")
    order_latency_ms: float = Field(default=20.0, ge=0, description="our order -> venue, milliseconds")
    response_latency_ms: float = Field(default=20.0, ge=0, description="venue ack/fill -> us, milliseconds")
    latency_jitter_ms: float = Field(default=0.0, ge=0, description="std-dev of a lognormal latency jitter, ms")
    clock_offset_ms: float = Field(
        default=0.0, allow_inf_nan=False,
        description="added to the stored local_ts of this venue's events when the store is read, ms (corrects a capture clock that ran behind: positive)",
    )

    @model_validator(mode="after")
    def _check(self) -> "Venue":
        if self.kind is VenueKind.equity_broker and self.hours != "equity":
            raise ValueError("an equity_broker venue must have hours = 'equity'")
        # A negative taker fee alone can be real (inverted "taker-maker" venues pay takers and charge
        # makers more); the CLI warns about it. A maker and a taker fill that sum to a rebate cannot
        # be: trading with yourself would print money, so no venue charges that.
        if self.maker_fee_bps + self.taker_fee_bps < 0:
            raise ValueError(
                f"maker_fee_bps + taker_fee_bps = {self.maker_fee_bps:g} + {self.taker_fee_bps:g} < 0: a round trip "
                "(one maker and one taker fill) would earn a rebate; check the signs (rebates are negative fees)"
            )
        return self
