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


def test_strategies_list_fits_100_columns_with_every_name_and_default(run_cli):
    # issue 8 item 14: names are typed back into configs, defaults are numbers: none may be cut
    from strategies import registry

    res = run_cli("strategies", "list")  # run_cli's terminal is 160 wide; the table keeps to 100
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout and max(map(len, lines)) <= 100
    assert "[strategy] name = ..." in lines[0]
    for name, reg in registry.available().items():
        assert any(line.startswith(f"│ {name} ") for line in lines), name
        for p in reg.spec.params_model.describe():
            default = str(p.default).lower() if p.type == "bool" else f"{p.default:g}"
            assert any(f"│   {p.name} " in line and f" {default} │" in line for line in lines), (name, p.name)
