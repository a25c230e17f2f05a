"""Config loading: the demo loads; each kind of mistake gives one line naming file, key and expectation."""

import pytest

from stockbridge.config import load_config
from stockbridge.errors import ConfigError

DEMO_TEXT = (__import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "demo.toml").read_text()


def test_demo_loads_with_ids_in_table_order(demo_config_path):
    cfg = load_config(demo_config_path)
    assert cfg.venue_ids() == {"bybit": 0, "kraken": 1, "solana_dex": 2, "broker": 3}
    assert cfg.instrument_ids() == {"AAPL": 0, "AAPLx": 1}
    assert cfg.hedge_venue() == "broker"
    assert cfg.token_venues() == ["bybit", "kraken", "solana_dex"]
    assert cfg.venues["solana_dex"].gas_per_trade == pytest.approx(0.02)
    assert cfg.venues["bybit"].maker_fee_bps == -1.0  # a rebate


def test_multiplier_schedule_switches_at_activation(demo_config_path):
    tok = load_config(demo_config_path).instruments["AAPLx"]
    t = 1751895000 * 10**9  # 2025-07-07T13:30:00Z, the activation time
    assert tok.multiplier_at(t - 1) == 1.0
    assert tok.multiplier_at(t) == pytest.approx(1.0025)


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


CASES = [
    # (what, edit of the demo text, expected key path, expected words)
    ("unknown key", lambda t: t.replace('kind = "cex_spot"\ninstruments = { AAPLx = "AAPLX/USDT" }',
                                         'kind = "cex_spot"\ninstruments = { AAPLx = "AAPLX/USDT" }\nmaker_fee = 1', 1),
     "venues.bybit.maker_fee", "unknown key"),
    ("wrong type", lambda t: t.replace("taker_fee_bps = 10.0", 'taker_fee_bps = "ten"', 1),
     "venues.bybit.taker_fee_bps", "number"),
    ("out of range", lambda t: t.replace("haircut = 0.06", "haircut = 1.5", 1), "venues.bybit.haircut", "less than 1"),
    ("negative tick", lambda t: t.replace("tick_size = 0.01", "tick_size = -0.01", 1), "venues.bybit.tick_size", "greater than 0"),
    ("bad enum", lambda t: t.replace('hours = "24/7"', 'hours = "weekdays"', 1), "venues.bybit.hours", "24/7"),
    ("unknown instrument", lambda t: t.replace('instruments = { AAPLx = "AAPLX/USDT" }', 'instruments = { MSFTx = "MSFTX/USDT" }', 1),
     "venues.bybit.instruments.MSFTx", "unknown instrument"),
    ("unknown venue in strategy", lambda t: t.replace('quote_venues = ["bybit", "kraken", "solana_dex"]', 'quote_venues = ["binance"]'),
     "strategy.quote_venues", "unknown venue 'binance'"),
    ("missing required", lambda t: t.replace('kind = "cex_spot"\ninstruments = { AAPLx = "AAPLX/USDT" }\n', 'kind = "cex_spot"\n', 1),
     "venues.bybit.instruments", "required"),
    ("timestamp without zone", lambda t: t.replace('active_from = "2025-07-07T13:30:00Z"', 'active_from = "2025-07-07T13:30:00"'),
     "instruments.AAPLx.multipliers.0.active_from", "time zone"),
    ("token without share", lambda t: t.replace('underlying = "AAPL"', 'underlying = "MSFT"'), "instruments.AAPLx.underlying", "not a share"),
]


@pytest.mark.parametrize("what,edit,key,words", CASES, ids=[c[0] for c in CASES])
def test_bad_config_one_line_error(tmp_path, what, edit, key, words):
    text = edit(DEMO_TEXT)
    assert text != DEMO_TEXT, "the edit must change the config"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: "), msg
    assert words in msg, msg


def test_toml_syntax_error_names_line(tmp_path):
    path = _write(tmp_path, DEMO_TEXT.replace("tick_size = 0.01", "tick_size = = 0.01", 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "TOML syntax error" in str(info.value) and "line" in str(info.value)


def test_cli_config_check_prints_resolved_config(run_cli, demo_config_path):
    res = run_cli("config", "check", demo_config_path)
    assert res.returncode == 0, res.stderr
    assert "solana_dex" in res.stdout and '"gap_z": 2.0' in res.stdout


@pytest.mark.parametrize("what,edit,key,words", CASES[:5], ids=[c[0] for c in CASES[:5]])
def test_cli_bad_config_exit_2_one_line_no_traceback(run_cli, tmp_path, what, edit, key, words):
    path = _write(tmp_path, edit(DEMO_TEXT))
    res = run_cli("config", "check", path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {key}: "), res.stderr
    assert "Traceback" not in res.stderr


def test_cli_debug_flag_shows_traceback(run_cli, tmp_path):
    path = _write(tmp_path, CASES[0][1](DEMO_TEXT))
    res = run_cli("config", "check", path, "--debug")
    assert res.returncode == 2 and "Traceback" in res.stderr


# -- issue 8, items 5, 6, 8: config check runs what backtest runs; every problem shown; fee signs --


def test_empty_toml_lists_every_problem_one_a_line(run_cli, tmp_path):
    path = _write(tmp_path, "")
    res = run_cli("config", "check", path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == [f"error: {path}: instruments: required key is missing",
                     f"error: {path}: venues: required key is missing"], res.stderr
    assert "more problem" not in res.stderr


def test_toml_syntax_error_gives_file_line_and_column(run_cli, tmp_path):
    text = DEMO_TEXT.replace("tick_size = 0.01", "tick_size = = 0.01", 1)
    line = text.splitlines().index("tick_size = = 0.01") + 1
    path = _write(tmp_path, text)
    res = run_cli("config", "check", path)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {path}: line {line}, column 13: TOML syntax error: Invalid value", res.stderr


def test_toml_error_at_end_of_document_names_the_last_line(tmp_path):
    path = _write(tmp_path, 'a = 1\nb = "open')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 2, column 10 (end of file): TOML syntax error: Unterminated string"


BACKTEST_REJECTS = [
    # (what, edit, expected line start after "error: <path>: ")
    ("unknown strategy", lambda t: t.replace('name = "glft"', 'name = "glfx"'), "strategy.name: unknown strategy 'glfx'"),
    ("bad param value", lambda t: t + "\n[strategy.params]\ngamma = -1.0\n", "strategy.params.gamma: "),
    ("param typo", lambda t: t + "\n[strategy.params]\ngama = 0.1\n", "strategy.params.gama: unknown parameter of strategy 'glft'"),
    ("share as strategy instrument", lambda t: t.replace('instrument = "AAPLx"', 'instrument = "AAPL"'),
     "strategy.instrument: 'AAPL' is a share"),
    ("unknown calendar", lambda t: t.replace('calendar = "NYSE"', 'calendar = "MOON"'), "sessions.calendar: unknown market calendar"),
]


@pytest.mark.parametrize("what,edit,start", BACKTEST_REJECTS, ids=[c[0] for c in BACKTEST_REJECTS])
def test_config_check_rejects_what_backtest_rejects(run_cli, tmp_path, what, edit, start):
    path = _write(tmp_path, edit(DEMO_TEXT))
    checked = run_cli("config", "check", path)
    assert checked.returncode == 2, checked.stdout
    assert checked.stderr.strip().splitlines()[0].startswith(f"error: {path}: {start}"), checked.stderr
    out = tmp_path / "out"
    ran = run_cli("backtest", path, "--out", out)
    assert ran.returncode == 2 and ran.stderr.strip().splitlines()[0] == checked.stderr.strip().splitlines()[0]
    assert not out.exists()


def test_two_bad_params_are_both_listed(run_cli, tmp_path):
    path = _write(tmp_path, DEMO_TEXT + "\n[strategy.params]\ngamma = -1.0\ngama = 0.1\n")
    res = run_cli("config", "check", path)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {path}: strategy.params.gamma: ")
    assert lines[1].startswith(f"error: {path}: strategy.params.gama: unknown parameter")


def test_config_check_prints_strategy_params_with_defaults(run_cli, demo_config_path):
    import json

    from strategies.glft import SPEC

    res = run_cli("config", "check", demo_config_path)
    assert res.returncode == 0, res.stderr
    resolved = json.loads(res.stdout[res.stdout.index("\n{") + 1:])
    assert resolved["strategy"]["params"] == SPEC.params_model().model_dump()
    assert resolved["strategy"]["params"]["gamma"] == 0.05


def test_negative_taker_fee_warns_naming_venue_and_key(run_cli, tmp_path):
    path = _write(tmp_path, DEMO_TEXT.replace("maker_fee_bps = 2.0\ntaker_fee_bps = 26.0", "maker_fee_bps = 2.0\ntaker_fee_bps = -1.0"))
    res = run_cli("config", "check", path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: {path}: venues.kraken.taker_fee_bps: negative taker fee (-1 bps)")


def test_fees_that_pay_on_a_round_trip_are_rejected(run_cli, tmp_path):
    path = _write(tmp_path, DEMO_TEXT.replace("taker_fee_bps = 10.0", "taker_fee_bps = -2.0", 1))  # bybit maker -1
    res = run_cli("config", "check", path)
    assert res.returncode == 2
    assert res.stderr.strip().startswith(f"error: {path}: venues.bybit: maker_fee_bps + taker_fee_bps = -1 + -2 < 0"), res.stderr
