"""`--help` shows what the user types: TOML table names in brackets survive, and --debug is listed."""


def test_square_brackets_survive_in_help(run_cli):
    res = run_cli("data", "synth", "--help")
    assert res.returncode == 0, res.stderr
    assert "its [synth] table sets the market's parameters" in " ".join(res.stdout.split())
    res = run_cli("data", "convert", "--help")
    assert "(a [venues] table of the config)" in " ".join(res.stdout.split())


def test_debug_is_listed_in_help(run_cli):
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    assert "--debug" in res.stdout and "traceback" in res.stdout
