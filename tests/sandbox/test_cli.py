"""`stockbridge sandbox up` and `stockbridge sandbox faults` as a user runs them (subprocesses, loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ccxt
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _exe() -> list[str]:
    exe = Path(sys.executable).with_name("stockbridge")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stockbridge.cli"]


@pytest.fixture
def one_day_config(tmp_path) -> Path:
    """The demo config with the store's one day, so `up` reuses the session's store instead of regenerating it."""
    p = tmp_path / "demo1.toml"
    p.write_text((ROOT / "configs" / "demo.toml").read_text().replace("days = 5", "days = 1"))
    return p


def test_up_prints_urls_and_keys_and_faults_reach_it(one_day_config, sb_store, tmp_path):
    state = tmp_path / "state.json"
    env = dict(os.environ, COLUMNS="120")
    proc = subprocess.Popen([*_exe(), "sandbox", "up", str(one_day_config), "--data", str(sb_store), "--step",
                             "--state", str(state), "--for", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not state.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.2)
        running = json.loads(state.read_text())["venues"]
        assert sorted(running) == ["broker", "bybit", "kraken"]
        assert all(v["control"].startswith("http://127.0.0.1:") for v in running.values())
        assert "secret" not in state.read_text() and "sbx-" not in state.read_text()  # URLs only, no keys

        def faults(*args):
            return subprocess.run([*_exe(), "sandbox", "faults", *args, "--state", str(state)], capture_output=True,
                                  text=True, timeout=60, env=env)

        r = faults("rate_limit", "count=1", "--venue", "bybit")
        assert r.returncode == 0 and "bybit: rate_limit {\"count\": 1} set at" in r.stdout, r.stdout + r.stderr
        # the fault reaches a client: one rate-limited answer, then normal service
        ex = ccxt.bybit({"options": {"fetchMarkets": {"types": ["spot"]}}})
        ex.urls["api"] = {k: running["bybit"]["urls"]["rest"] for k in ("public", "private", "spot", "futures", "v2")}
        with pytest.raises(ccxt.RateLimitExceeded):
            ex.publicGetV5MarketTime()
        assert ex.publicGetV5MarketTime()["retCode"] == 0
        r = faults("list", "--venue", "bybit")
        assert r.returncode == 0 and "rate_limit" in r.stdout
        r = faults("nonsense", "--venue", "bybit")
        assert r.returncode != 0 and "unknown fault kind 'nonsense'" in r.stderr
        r = faults("halt", "--venue", "nowhere")
        assert r.returncode != 0 and "no emulator for venue 'nowhere'" in r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "api key" in out and "sbx-bybit-" in out and "ws://127.0.0.1:" in out
    assert "sandbox stopped" in out
    assert not state.exists()
