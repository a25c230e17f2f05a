"""The [live] section (stockbridge.live_config): defaults, the sandbox switch, key env var names and
what an error about them shows; the section hooked into the full config as the lead will hook it."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from stockbridge import config as sbc
from stockbridge.errors import ConfigError
from stockbridge.live_config import LiveConfig, LiveVenueConfig

SECRET = "AbCdEf0123456789secretKEY"


class HookedConfig(sbc.StockbridgeConfig):
    """StockbridgeConfig with the new [live] model, as the config.py diff in the report does it."""

    live: LiveConfig = LiveConfig()


def parse(data: dict) -> HookedConfig:
    try:
        return HookedConfig.model_validate(data)
    except ValidationError as exc:
        problems = [sbc._describe(e) for e in exc.errors()]
        (key, message), *more = problems
        raise ConfigError("c.toml", key, message, tuple(more)) from None


def demo() -> dict:
    from pathlib import Path

    return tomllib.loads((Path(__file__).resolve().parents[2] / "configs" / "demo.toml").read_text())


def test_defaults_trade_the_emulators_and_take_the_backtest_cadence():
    live = LiveConfig()
    assert live.sandbox is True and not live.needs_keys()
    assert live.decision_interval_ms is None and live.journal == "journal.sqlite"
    assert live.guards.stale_book_ms == 5_000 and live.guards.max_orders_per_second == 5
    assert LiveConfig(sandbox="testnet").needs_keys() and LiveConfig(sandbox=False).needs_keys()


@pytest.mark.parametrize("value", ["yes", "true", 1, "paper", None])
def test_sandbox_is_true_testnet_or_false_and_nothing_that_looks_like_them(value):
    with pytest.raises(ValidationError):
        LiveConfig(sandbox=value)


def test_every_field_has_a_description():
    from stockbridge.live_config import GuardsConfig

    for model in (LiveConfig, GuardsConfig, LiveVenueConfig):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name}"


def test_the_demo_config_validates_with_the_new_section_hooked_in():
    cfg = parse(demo())
    assert cfg.live.sandbox is True


def test_a_key_pasted_where_an_env_var_name_goes_is_refused_without_echoing_it():
    data = demo()
    data["live"] = {"sandbox": "testnet", "venues": {"bybit": {"api_key_env": SECRET, "api_secret_env": "BYBIT_SECRET"}}}
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert "c.toml: live.venues.bybit.api_key_env: expected an environment variable name" in str(err.value)
    assert SECRET not in str(err.value)


def test_keys_come_from_the_environment_and_never_print():
    v = LiveVenueConfig(api_key_env="BYBIT_KEY", api_secret_env="BYBIT_SECRET")
    with pytest.raises(ConfigError, match="BYBIT_KEY, BYBIT_SECRET not set"):
        v.credentials("bybit", environ={})
    creds = v.credentials("bybit", environ={"BYBIT_KEY": SECRET, "BYBIT_SECRET": SECRET[::-1]})
    assert creds.ccxt_options() == {"apiKey": SECRET, "secret": SECRET[::-1]}
    assert SECRET not in repr(creds) and SECRET not in str(creds) and SECRET not in repr(creds.api_key)
    assert creds.secrets() == [SECRET, SECRET[::-1]]
    with_pass = LiveVenueConfig(api_key_env="K", api_secret_env="S", passphrase_env="P")
    assert with_pass.credentials("okx", environ={"K": "a", "S": "b", "P": "c"}).ccxt_options()["password"] == "c"


def test_the_journal_is_a_file_name_inside_the_run_directory():
    with pytest.raises(ValidationError, match="not a path"):
        LiveConfig(journal="../elsewhere.sqlite")
