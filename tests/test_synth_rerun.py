"""Issue 8 item 9: the demo's synthetic market is regenerated when ``[synth]`` changes, and says so."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = (ROOT / "configs" / "demo.toml").read_text().replace("days = 5", "days = 1").replace("quote_interval_ms = 1000", "quote_interval_ms = 4000")


def test_changed_synth_table_regenerates_the_demo_market(run_cli, tmp_path):
    cfg = tmp_path / "fast.toml"
    cfg.write_text(FAST)
    out = tmp_path / "out"
    made = run_cli("data", "synth", cfg, "--out", out / "data")
    assert made.returncode == 0, made.stderr
    recorded = json.loads((out / "data" / "synth-params.json").read_text())
    assert recorded["synth"]["days"] == 1 and recorded["synth"]["informed_fraction"] == 0.3 and recorded["seed"] == 7

    same = run_cli("backtest", cfg, "--out", out, "--no-crosscheck", "--no-validate")
    assert same.returncode == 0, same.stderr
    assert f"using the synthetic market already in {out / 'data'} (same generator parameters)" in same.stdout

    cfg.write_text(FAST.replace("informed_fraction = 0.3", "informed_fraction = 0.5"))
    changed = run_cli("backtest", cfg, "--out", out, "--no-crosscheck", "--no-validate")
    assert changed.returncode == 0, changed.stderr
    text = " ".join(changed.stdout.split())
    assert "synth.informed_fraction: 0.3 -> 0.5" in text and "regenerating" in text, changed.stdout
    assert "synthesized" in text
    assert json.loads((out / "data" / "synth-params.json").read_text())["synth"]["informed_fraction"] == 0.5
