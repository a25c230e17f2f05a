"""TOML configuration -> validated pydantic models.

Unknown keys are errors. Every error becomes one :class:`ConfigError` line naming the file, the key
path (``venues.bybit.maker_fee_bps``; a key that is not a bare TOML key is quoted, ``venues."my venue"``,
see :func:`stockbridge.errors.key_path`) and what was expected.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from stockbridge.errors import ConfigError, key_path
from stockbridge.instruments import Instrument, InstrumentKind, Strict, Venue, VenueKind, to_ns
from stockbridge.live_config import LiveConfig


class SessionWeights(Strict):
    """Return variance per hour of each US equity session state, relative to a regular-hours hour.

    French & Roll (1986): per hour, variance is 13-100x higher when the market is open than when it
    is closed; a weekend adds roughly 0.1-0.2 of a trading day's variance.
    """

    regular: float = Field(default=1.0, gt=0, description="weight of a regular-hours hour")
    pre: float = Field(default=0.15, ge=0, description="weight of a pre-market hour")
    after: float = Field(default=0.12, ge=0, description="weight of an after-hours hour")
    overnight: float = Field(default=0.05, ge=0, description="weight of an overnight (ATS) hour")
    closed: float = Field(default=0.02, ge=0, description="weight of a closed hour (weekend, holiday)")


class SessionsConfig(Strict):
    calendar: str = Field(default="NYSE", description="pandas_market_calendars calendar name")
    weights: SessionWeights = Field(default_factory=SessionWeights)
    gap_z: float = Field(default=2.0, ge=0, description="gap allowance in std-devs while the hedge market is closed")


class StrategyConfig(Strict):
    name: str = Field(description="registered strategy name (see `stockbridge strategies list`)")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the strategy's params model")
    quote_venues: tuple[str, ...] = Field(default=(), description="venues to quote on; empty = every token venue")
    instrument: str | None = Field(default=None, description="token to quote; default: the first token")


class RiskConfig(Strict):
    max_position: float = Field(default=100.0, gt=0, description="max |inventory| per token venue, tokens")
    max_net_delta: float = Field(default=200.0, gt=0, description="max |net delta| across venues, share-equivalents")
    hedge_band: float = Field(default=20.0, ge=0, description="hedge when |net delta| exceeds this, shares")
    hedge_target: float = Field(default=0.0, description="net delta a hedge trades toward, shares")
    offhours_size_factor: float = Field(default=0.3, gt=0, le=1, description="quote size multiplier while the hedge market is closed")
    credit_skew_bps: float = Field(default=0.0, ge=0, description="move a venue's quotes down by this many bps x (haircut / mean haircut - 1): sell on riskier venues, buy on safer ones")
    min_spread_z: float = Field(default=1.0, ge=0, description="quotes keep a half-spread of at least this many fair-value std-devs")
    hedge_gamma: float = Field(default=0.01, ge=0, description="risk aversion pricing unhedged delta against hedge cost, 1/quote ccy (0 = band only)")
    hedge_hold_s: float = Field(default=86_400.0, gt=0, description="expected life of a short hedge for its borrow cost, seconds")
    hedge_slippage_ticks: float = Field(default=5.0, ge=0, description="hedge IOC limit this many ticks through the touch")


class FairValueConfig(Strict):
    """Fair value and volatility estimation (stockbridge.core.fair_value, volatility)."""

    consensus_half_life_s: float = Field(default=60.0, gt=0, description="a token venue mid loses half its weight after this many seconds")
    venue_noise_bps: float = Field(default=10.0, gt=0, description="std-dev of one fresh venue mid around fair, bps")
    prior_annual_vol: float = Field(default=0.3, gt=0, description="volatility assumed until the estimator has data, annualised")
    vol_half_life_var_s: float = Field(default=7_200.0, gt=0, description="EWMA half-life, variance-seconds")
    vol_min_interval_var_s: float = Field(default=5.0, gt=0, description="shortest return interval sampled, variance-seconds")


class ScenarioConfig(Strict):
    kind: Literal["default", "halt", "depeg"] = Field(description="venue default, venue halt, or token depeg")
    venue: str = Field(description="venue affected")
    at: str = Field(description="start time, ISO-8601 with zone")
    until: str | None = Field(default=None, description="end time for halt/depeg, ISO-8601 with zone")
    recovery_rate: float = Field(default=0.4, ge=0, le=1, description="default: fraction of balances recovered")
    depeg_bps: float = Field(default=0.0, description="depeg: shift of the venue's prices, bps")


class BacktestConfig(Strict):
    start: str | None = Field(default=None, description="replay from, ISO-8601 with zone (default: data start)")
    end: str | None = Field(default=None, description="replay until, ISO-8601 with zone (default: data end)")
    seed: int = Field(default=1, description="seed for latency draws and probabilistic fills")
    initial_cash: float = Field(default=25_000.0, gt=0, description="cash per venue at start, quote currency")
    decision_interval_ms: float = Field(default=0.0, ge=0, description="0 = decide on every event, else a cadence in ms")
    decide_when_changed: bool = Field(
        default=False,
        description="skip a due decision unless a top of book, a report, a venue status, the session or the "
                    "multiplier changed since the last one (faster; results differ from deciding on every event)")
    decide_max_idle_ms: float = Field(default=1000.0, gt=0, description="with decide_when_changed: decide at least this often, ms")
    requote_ticks: float = Field(default=1.0, ge=0, description="leave an order alone if the new price is within N ticks")
    requote_size_frac: float = Field(default=0.2, ge=0, description="... and its size within this fraction")
    queue_model: Literal["conservative", "probabilistic"] = Field(default="conservative")
    sample_interval_s: float = Field(default=60.0, gt=0, description="timeseries sampling interval, seconds")
    scenarios: tuple[ScenarioConfig, ...] = Field(default=())


class SynthConfig(Strict):
    """Parameters of the synthetic market generator (`stockbridge data synth`)."""

    start: str = Field(default="2025-07-07T00:00:00Z", description="first day of the dataset (ISO-8601 with zone)")
    days: int = Field(default=5, ge=1, description="number of calendar days")
    share_price: float = Field(default=200.0, gt=0, description="underlying price at start, quote currency")
    annual_vol: float = Field(default=0.3, gt=0, description="annualised volatility of the underlying")
    quote_interval_ms: float = Field(default=250.0, gt=0, description="mean time between book updates per venue, ms")
    trade_rate_per_min: float = Field(default=6.0, ge=0, description="mean trades per minute per token venue in regular hours")
    informed_fraction: float = Field(default=0.3, ge=0, le=1, description="share of trades that predict the next move")


class StockbridgeConfig(Strict):
    instruments: dict[str, Instrument] = Field(min_length=1)
    venues: dict[str, Venue] = Field(min_length=1)
    strategy: StrategyConfig | None = None
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    fair_value: FairValueConfig = Field(default_factory=FairValueConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)

    @model_validator(mode="after")
    def _cross_check(self) -> "StockbridgeConfig":
        # names are the user's table keys and strings, any text: shown as TOML keys or quoted (repr)
        # so that one with a line break in it cannot split the error over two lines
        for name, inst in self.instruments.items():
            if inst.kind is InstrumentKind.token:
                under = self.instruments.get(inst.underlying or "")
                if under is None or under.kind is not InstrumentKind.share:
                    raise _KeyedError(key_path("instruments", name, "underlying"), f"{inst.underlying!r} is not a share instrument in [instruments]")
        for vname, venue in self.venues.items():
            for iname in venue.instruments:
                if iname not in self.instruments:
                    raise _KeyedError(key_path("venues", vname, "instruments", iname), f"unknown instrument (known: {_names(self.instruments)})")
        if self.strategy is not None:
            for v in self.strategy.quote_venues:
                if v not in self.venues:
                    raise _KeyedError("strategy.quote_venues", f"unknown venue {v!r} (known: {_names(self.venues)})")
            if self.strategy.instrument is not None and self.strategy.instrument not in self.instruments:
                raise _KeyedError("strategy.instrument", f"unknown instrument {self.strategy.instrument!r}")
        for vname in self.live.venues:
            if vname not in self.venues:
                raise _KeyedError(key_path("live", "venues", vname), f"unknown venue (known: {_names(self.venues)})")
        for i, sc in enumerate(self.backtest.scenarios):
            if sc.venue not in self.venues:
                raise _KeyedError(key_path("backtest", "scenarios", i, "venue"), f"unknown venue {sc.venue!r}")
        times = [("backtest.start", self.backtest.start), ("backtest.end", self.backtest.end), ("synth.start", self.synth.start)]
        for i, sc in enumerate(self.backtest.scenarios):  # read by the replay only: a bad one would stop it midway
            times += [(key_path("backtest", "scenarios", i, "at"), sc.at), (key_path("backtest", "scenarios", i, "until"), sc.until)]
        for key, value in times:
            if value is not None:
                try:
                    to_ns(value)
                except ValueError as exc:
                    raise _KeyedError(key, f"expected an ISO-8601 time with zone, got {value!r} ({exc})") from None
        return self

    # -- ids: the order of the TOML tables fixes the integer ids the event stream and kernels use --
    def venue_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.venues)}

    def instrument_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.instruments)}

    def token_venues(self) -> list[str]:
        return [n for n, v in self.venues.items() if v.kind is not VenueKind.equity_broker]

    def hedge_venue(self) -> str | None:
        return next((n for n, v in self.venues.items() if v.kind is VenueKind.equity_broker), None)

    def quoted_token(self) -> str:
        if self.strategy is not None and self.strategy.instrument:
            return self.strategy.instrument
        return next(n for n, i in self.instruments.items() if i.kind is InstrumentKind.token)


def _names(table: dict) -> str:
    """The keys of a table for a message: ``bybit, kraken, "odd name"``."""
    return ", ".join(key_path(k) for k in table)


class _KeyedError(ValueError):
    """Raised inside validators to report a key path other than pydantic's own location."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


def _describe(err: dict) -> tuple[str, str]:
    loc = key_path(*err["loc"])
    kind, msg = err["type"], err["msg"]
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _KeyedError):
        return inner.key, inner.message
    got = err.get("input")
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required key is missing"
    msg = msg.removeprefix("Value error, ")
    if isinstance(got, (dict, list)):  # a table-level problem: the message says it all
        return loc, msg
    return loc, f"{msg} (got {got!r})"


def parse_config(data: dict[str, Any], path: str | Path = "<config>") -> StockbridgeConfig:
    """Validate an already-parsed TOML document; raise ConfigError listing every problem found."""
    try:
        return StockbridgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        (key, message), *more = problems
        raise ConfigError(str(path), key, message, tuple(more)) from None


def load_config(path: str | Path) -> StockbridgeConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where, what = _toml_position(str(exc), text)
        raise ConfigError(str(path), where, f"TOML syntax error: {what}") from None
    except ValueError as exc:
        # tomllib reads an integer with int(), which refuses one of more than 4300 digits (Python's
        # guard against quadratic-time conversion) with a plain ValueError, not a TOMLDecodeError
        if "integer string conversion" not in str(exc):
            raise
        limit = sys.get_int_max_str_digits()
        at = re.search(r"\d(?:_?\d){%d,}" % limit, text)  # that integer (or a digit string before it)
        raise ConfigError(str(path), _line_column(text, at.start() if at else 0),
                          f"an integer of more than {limit} digits, the most Python converts") from None
    except RecursionError:
        # tomllib parses a nested array or inline table by recursion: a few hundred levels exhaust
        # the interpreter's stack
        depth, at = _deepest_nesting(text)
        raise ConfigError(str(path), _line_column(text, at),
                          f"arrays or inline tables nested {depth} deep, too deep to read") from None
    return parse_config(data, path)


def _line_column(text: str, at: int) -> str:
    """'line L, column C' (1-based) of the character at offset ``at``."""
    line, line_start = text.count("\n", 0, at) + 1, text.rfind("\n", 0, at) + 1
    return f"line {line}, column {at - line_start + 1}"


def _deepest_nesting(text: str) -> tuple[int, int]:
    """(depth, offset of its outermost bracket) of the most deeply nested array or inline table in a
    TOML text, brackets in strings and comments skipped."""
    depth = deepest = start = deepest_start = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif c in "\"'":
            quote = text[i:i + 3] if text.startswith(c * 3, i) else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                i += 2 if c == '"' and text[i] == "\\" else 1  # a basic string's escape: skip the escaped character
            i += len(quote) - 1
        elif c in "[{":
            start = i if depth == 0 else start
            depth += 1
            if depth > deepest:
                deepest, deepest_start = depth, start
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest, deepest_start


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _toml_position(message: str, text: str) -> tuple[str, str]:
    """('line L, column C', what) from a tomllib message ('Invalid value (at line 5, column 12)');
    tomllib says 'at end of document' for some errors: that is the last line, one past its end."""
    if m := _TOML_AT.search(message):
        return f"line {m[1]}, column {m[2]}", message[: m.start()]
    what = message.removesuffix(" (at end of document)")
    lines = text.splitlines() or [""]
    return f"line {len(lines)}, column {len(lines[-1]) + 1} (end of file)", what
