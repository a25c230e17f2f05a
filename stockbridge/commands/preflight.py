"""The checks a backtest makes before it reads any data, shared by `backtest` and `config check`.

`config check FILE` passing means `backtest FILE` will not stop on its config: both call
:func:`check_backtest_config`. :func:`fee_warnings` lists fee settings that are legal but almost
always a mistake (a negative taker fee); what cannot be right at all is refused by the config
model itself (``stockbridge.instruments.Venue``).
"""

from __future__ import annotations

from pathlib import Path

from stockbridge.config import StockbridgeConfig
from stockbridge.errors import ConfigError, key_path
from stockbridge.instruments import InstrumentKind


def check_backtest_config(cfg: StockbridgeConfig, path: str | Path):
    """(strategy spec, validated params) for ``cfg``; raises ConfigError naming the key on any problem."""
    from stockbridge.core.context import MAX_VENUES
    from strategies import registry

    path = str(path)
    spec, params = registry.from_config(cfg, path)
    if len(cfg.venues) > MAX_VENUES:
        raise ConfigError(path, "venues", f"at most {MAX_VENUES} venues are supported, the config has {len(cfg.venues)}")
    if not any(i.kind is InstrumentKind.token for i in cfg.instruments.values()):
        raise ConfigError(path, "instruments", "a backtest quotes a token: add an instrument with kind = 'token'")
    token = cfg.quoted_token()
    if cfg.instruments[token].kind is not InstrumentKind.token:
        raise ConfigError(path, "strategy.instrument", f"{token!r} is a share; the strategy quotes a token")
    quoted = [v for v in (cfg.strategy.quote_venues or cfg.token_venues()) if token in cfg.venues[v].instruments]
    if not quoted:
        raise ConfigError(path, "strategy.quote_venues", f"no quote venue lists the token {token!r} in its instruments")
    _check_calendar(cfg, path)
    return spec, params


def _check_calendar(cfg: StockbridgeConfig, path: str) -> None:
    import pandas_market_calendars as mcal

    try:
        mcal.get_calendar(cfg.sessions.calendar)
    except Exception:  # the library raises RuntimeError/KeyError depending on version
        raise ConfigError(path, "sessions.calendar", f"unknown market calendar {cfg.sessions.calendar!r} (e.g. 'NYSE')") from None


def fee_warnings(cfg: StockbridgeConfig, path: str | Path) -> list[str]:
    """One line per suspicious fee, naming file, venue and key."""
    lines = []
    for name, venue in cfg.venues.items():
        if venue.taker_fee_bps < 0:
            lines.append(
                f"{path}: {key_path('venues', name, 'taker_fee_bps')}: negative taker fee ({venue.taker_fee_bps:g} bps): the venue would pay "
                "you for taking liquidity; fees are positive and rebates negative, is the sign right?"
            )
    return lines
