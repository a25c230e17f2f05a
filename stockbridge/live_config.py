"""The ``[live]`` section of a config: how the live bot runs, its guards, where its keys come from.

Keys are never in the config: a venue's entry names the *environment variables* holding them
(``api_key_env = "BYBIT_API_KEY"``), and :meth:`LiveVenueConfig.credentials` reads them at start-up
into pydantic SecretStr values (repr and str show ``**********``). A value that does not look like
an environment variable name is refused, so a key pasted into the file by mistake is an error, not a
secret kept in the config (the error does not echo it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, SecretStr, StrictBool, field_validator, model_validator

from stockbridge.errors import ConfigError, key_path
from stockbridge.instruments import Strict

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


def _bad_env_name(value: str | None) -> bool:
    return value is not None and not _ENV_NAME.match(value)


class GuardsConfig(Strict):
    """Risk guards between the trader core and the venues (execution.guards)."""

    stale_book_ms: float = Field(default=5_000.0, gt=0, description="a venue whose book has not updated for this long is stale: its quotes are pulled and no new order goes there, ms")
    max_orders_per_second: float = Field(default=5.0, gt=0, description="sustained order actions (new and cancel) per venue, per second")
    order_burst: int = Field(default=10, ge=1, description="order actions a venue may take at once before the rate applies")
    default_after_ms: float | None = Field(default=None, gt=0, description="a venue that has answered nothing (no REST answer, no book) for this long is treated as defaulted: quoting stops there for the run and its balance is valued as a claim worth recovery_rate of it; unset: never, ms")
    recovery_rate: float = Field(default=0.4, ge=0, le=1, description="a defaulted venue's balance is a claim worth this fraction of its value at the marks when it went")
    rate_limit_hold_ms: float = Field(default=1_000.0, gt=0, description="after a venue's rate-limit answer no call goes there for this long, doubling with each such answer in a row up to 64x; new orders there are refused meanwhile, its cancels wait and go first, ms")
    position_tolerance: float = Field(default=0.0, ge=0, description="largest gap between a venue's reported position and our books before new orders stop there, tokens (shares at the broker)")
    cash_tolerance: float = Field(default=1.0, ge=0, description="largest gap between a venue's reported cash and our books before new orders stop there, quote currency")
    max_drawdown: float = Field(default=5_000.0, gt=0, description="kill switch: equity's fall from its peak, quote currency")
    max_drawdown_haircut: float = Field(default=5_000.0, gt=0, description="kill switch: equity-after-haircut's fall from its peak, quote currency")


class Credentials:
    """A venue's keys, read from the environment; nothing here prints them."""

    def __init__(self, api_key: SecretStr, secret: SecretStr, passphrase: SecretStr | None):
        self.api_key, self.secret, self.passphrase = api_key, secret, passphrase

    def ccxt_options(self) -> dict[str, str]:
        """``apiKey`` / ``secret`` / ``password`` for a ccxt exchange's constructor."""
        out = {"apiKey": self.api_key.get_secret_value(), "secret": self.secret.get_secret_value()}
        if self.passphrase is not None:
            out["password"] = self.passphrase.get_secret_value()
        return out

    def secrets(self) -> list[str]:
        """Every secret value: the journal's and the logs' redaction list."""
        return [s.get_secret_value() for s in (self.api_key, self.secret, self.passphrase) if s is not None]

    def __repr__(self) -> str:
        return "Credentials(**********)"

    __str__ = __repr__


class LiveVenueConfig(Strict):
    """One venue's live settings: the names of the environment variables holding its keys."""

    api_key_env: str = Field(description="environment variable holding the API key (its name, never the key)")
    api_secret_env: str = Field(description="environment variable holding the API secret")
    passphrase_env: str | None = Field(default=None, description="environment variable holding the passphrase, for venues that use one")

    @classmethod
    def attached_sandbox(cls, venue: str) -> "LiveVenueConfig":
        """The variables that name a sandbox venue's keys for ``stockbridge live --attach`` when the
        config has no ``[live.venues.NAME]``: ``STOCKBRIDGE_SANDBOX_<NAME>_KEY`` and ``..._SECRET``
        (what ``stockbridge sandbox chaos`` sets for the bot it starts)."""
        stem = "STOCKBRIDGE_SANDBOX_" + "".join(c if c.isalnum() else "_" for c in venue.upper())
        return cls(api_key_env=f"{stem}_KEY", api_secret_env=f"{stem}_SECRET")

    def credentials(self, venue: str, environ: Mapping[str, str] | None = None) -> Credentials:
        """The keys from the environment; ConfigError naming the missing variables (never a value)."""
        env = os.environ if environ is None else environ
        names = [self.api_key_env, self.api_secret_env] + ([self.passphrase_env] if self.passphrase_env else [])
        missing = [n for n in names if not env.get(n)]
        if missing:
            raise ConfigError("<environment>", key_path("live", "venues", venue),
                              f"environment variable{'s' if len(missing) > 1 else ''} {', '.join(missing)} not set")
        return Credentials(SecretStr(env[self.api_key_env]), SecretStr(env[self.api_secret_env]),
                           SecretStr(env[self.passphrase_env]) if self.passphrase_env else None)


class LiveConfig(Strict):
    """``[live]``: the live bot (``stockbridge live``)."""

    sandbox: Annotated[StrictBool, Field()] | Literal["testnet"] = Field(
        default=True,
        description='true: the loopback emulators in-process; "testnet": the venues\' own sandboxes (keys from the '
                    "environment); false: real venues, which also needs --real-money on the command line")
    journal: str = Field(default="journal.sqlite", description="journal file name inside the run directory")
    journal_sync: Literal["full", "normal"] = Field(
        default="full",
        description='"full": every journal commit is fsynced to disk, an order\'s intent before the order is sent, '
                    "the rest in a thread while the event loop goes on; \"normal\": no fsync, a "
                    "commit is in the write-ahead log (a crash of the bot loses nothing, a power cut may lose the "
                    "last commits, which start-up reconciliation recovers from the venues), and no fsync delays an "
                    "order")
    decision_interval_ms: float | None = Field(
        default=None, ge=0,
        description="0 = decide on every book change of the quoted instrument, else a cadence in ms; "
                    "unset = backtest.decision_interval_ms (the same cadence as the backtest)")
    sample_interval_s: float = Field(default=1.0, gt=0, description="time-series sample interval of the run's report, seconds of the run's clock")
    call_timeout_ms: float = Field(default=10_000.0, gt=0, description="a venue call with no answer after this long is abandoned and its order is unknown until looked up, ms")
    unknown_order_grace_ms: float = Field(default=3_000.0, ge=0, description="an unknown order may be declared absent only this long after its call failed, ms")
    startup_retry_s: float = Field(default=60.0, gt=0, description="a venue that cannot answer at start-up (network, 5xx, timeouts, rate limit) is asked again for this long before the run stops with one line, s")
    lookup_interval_ms: float = Field(default=1_000.0, gt=0, description="first retry of a lookup that could not answer (doubling up to 16x), ms")
    guards: GuardsConfig = Field(default_factory=GuardsConfig, description="risk guard thresholds (execution.guards)")
    venues: dict[str, LiveVenueConfig] = Field(default_factory=dict, description="per venue: environment variable names of its keys (sandbox = true needs none)")

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_value(cls, v: object) -> object:
        # one error naming live.sandbox; pydantic's own gives one per member of the union, under
        # keys that are not in the file (live.sandbox.bool and live.sandbox."literal['testnet']")
        if v is True or v is False or v == "testnet":
            return v
        raise ValueError('expected true, false or "testnet"')

    @field_validator("journal")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError("expected a file name inside the run directory, not a path")
        if not v.isprintable():  # a NUL cannot be in a file name at all; a line break would split the log lines naming it
            raise ValueError("expected a file name of printable characters")
        return v

    @model_validator(mode="after")
    def _env_names(self) -> "LiveConfig":
        # checked here, not per field, so the error names the whole key and carries no value:
        # stockbridge.config reports a keyed error without the input (it may be a pasted key)
        from stockbridge.config import _KeyedError

        for name, v in self.venues.items():
            for fld in ("api_key_env", "api_secret_env", "passphrase_env"):
                if _bad_env_name(getattr(v, fld)):
                    raise _KeyedError(key_path("live", "venues", name, fld),
                                      "expected an environment variable name (A-Z, 0-9, _), not a key; the value is not shown")
        return self

    def needs_keys(self) -> bool:
        """Whether the run trades venues that want keys (testnet or real), not the emulators."""
        return self.sandbox is not True


__all__ = ["Credentials", "GuardsConfig", "LiveConfig", "LiveVenueConfig"]
