"""`stockbridge live` as a user runs it: what it refuses (one line, exit 2, nothing traded), and a
short run against the in-process sandbox whose every output is free of the venues' secrets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.toml"


def live_config(tmp_path: Path, live: str) -> Path:
    text = DEMO.read_text().replace("[live]\nsandbox = true\n", live)
    assert text != DEMO.read_text()
    p = tmp_path / "live.toml"
    p.write_text(text)
    return p


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockbridge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_real_venues_without_the_flag_are_refused(tmp_path):
    cfg = live_config(tmp_path, "[live]\nsandbox = false\n")
    line = one_error_line(run_cli("live", str(cfg), "--out", str(tmp_path / "out")))
    assert "--real-money" in line and "refused" in line
    assert not (tmp_path / "out" / "journal.sqlite").exists()


def test_the_flag_without_the_config_is_refused(tmp_path):
    line = one_error_line(run_cli("live", str(DEMO), "--real-money", "--out", str(tmp_path / "out")))
    assert "live.sandbox = false" in line


def test_real_money_refuses_a_venue_without_an_adapter_by_name(tmp_path):
    cfg = live_config(tmp_path, "[live]\nsandbox = false\n")
    line = one_error_line(run_cli("live", str(cfg), "--real-money", "--out", str(tmp_path / "out")))
    assert "solana_dex" in line and "--skip-venue solana_dex" in line


def test_missing_keys_are_named_never_shown(tmp_path):
    cfg = live_config(tmp_path, "[live]\nsandbox = \"testnet\"\n[live.venues.bybit]\napi_key_env = \"SB_TEST_BYBIT_KEY\"\n"
                                "api_secret_env = \"SB_TEST_BYBIT_SECRET\"\n")
    env = {"SB_TEST_BYBIT_KEY": "key-value-4711"}
    proc = run_cli("live", str(cfg), "--out", str(tmp_path / "out"), "--skip-venue", "kraken", "--skip-venue", "broker",
                   env=env)
    line = one_error_line(proc)
    assert "SB_TEST_BYBIT_SECRET" in line and "key-value-4711" not in proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """An 8 s run of the demo config against the in-process sandbox, on the sandbox tests' one-day store,
    with the emulators' credentials fixed so the test knows what must never be written."""
    from data.synth import synthesize
    from stockbridge.config import load_config

    root = tmp_path_factory.mktemp("live-cli")
    store = root / "store"
    synthesize(load_config(DEMO), store, days=1)
    out = root / "out"
    script = (
        "import base64, sys, execution.sandbox.sandbox as s\n"
        "s.credentials = lambda kind: (f'sbx-{kind}-KEY-0123456789', base64.b64encode(f'stockbridge-test-secret-{kind}-0123456789'.encode()).decode())\n"
        "from stockbridge.cli import main\n"
        "main(sys.argv[1:])\n")
    proc = subprocess.run([sys.executable, "-c", script, "live", str(DEMO), "--duration", "8s", "--speed", "20",
                           "--data", str(store), "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    return proc, out


def test_a_sandbox_run_trades_journals_and_reports(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("journal.sqlite", "live.log", "fills.parquet", "timeseries.parquet", "summary.json", "report.html"):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "sandbox" and s["stop_reason"] == "duration reached"
    assert s["skipped_venues"] == {"solana_dex": "no live adapter for a dex venue yet: not traded"}
    assert s["decisions"] > 0 and s["events"] > 0
    assert "solana_dex: no live adapter" in proc.stdout and "run ended: duration reached" in proc.stdout
    assert "metrics: http://127.0.0.1:" in proc.stdout
    assert abs(s["pnl_residual"]) < 1e-6, "the PnL decomposition must add up"


def test_no_secret_reaches_any_output(demo_run):
    proc, out = demo_run
    secrets = [f"sbx-{k}-KEY-0123456789" for k in ("bybit", "kraken", "alpaca")]
    secrets += [base64.b64encode(f"stockbridge-test-secret-{k}-0123456789".encode()).decode()
                for k in ("bybit", "kraken", "alpaca")]
    texts = {"stdout": proc.stdout, "stderr": proc.stderr}
    for f in out.iterdir():
        if f.is_file():
            texts[f.name] = f.read_bytes().decode("latin-1")
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret in {name}"
