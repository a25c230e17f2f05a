"""Issue 12 #1: ``kill -9`` of the bot process mid-session, at 20 random moments, each followed by a
restart from the same journal; then a clean exit. The bot is the real `stockbridge live` attached
to a sandbox in this process (``--attach``), which outlives each kill; the emulators' ledgers are
the truth: every fill journalled once, nothing of ours left resting, the journal's position the
venue's, no client id twice, every venue order a journalled intent."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest
from live.live_sandbox import CONFIG, HOUR_NS, REGULAR_H, data_start

from execution.journal import Journal
from execution.sandbox.sandbox import Sandbox
from execution.sandbox.invariants import ledger_problems, ours, venue_secrets
from execution.sandbox.state import write_state
from faults.invariants import bounded

VENUES = ("bybit", "kraken")
KILLS = 20
SPEED = 5.0
ROOT = Path(__file__).resolve().parents[2]


def attach_config(tmp_path: Path) -> Path:
    """The demo config with the sandbox venues' keys from environment variables and short timeouts."""
    live = ("[live]\nsandbox = true\ncall_timeout_ms = 2000\nunknown_order_grace_ms = 1000\nlookup_interval_ms = 200\n"
            + "".join(f'[live.venues.{v}]\napi_key_env = "SB_KILL_{v.upper()}_KEY"\n'
                      f'api_secret_env = "SB_KILL_{v.upper()}_SECRET"\n' for v in VENUES))
    text = CONFIG.read_text().replace("[live]\nsandbox = true\n", live)
    assert text != CONFIG.read_text()
    p = tmp_path / "attach.toml"
    p.write_text(text)
    return p


async def bot(cfg: Path, state: Path, out: Path, env: dict, duration: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockbridge.cli", "live", str(cfg), "--attach", str(state), "--out", str(out),
        "--duration", duration, "--skip-venue", "broker", "--metrics-port", "-1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=ROOT)


@bounded(420)
async def test_kill_9_at_20_random_moments_then_a_clean_exit_loses_nothing(sb_cfg, busy_store, sb_compiled,  # noqa: F811
                                                                            tmp_path):
    rng = random.Random(12)
    t0 = data_start(busy_store, sb_cfg, list(VENUES))
    sb = Sandbox(sb_cfg, busy_store, speed=SPEED, start_ns=t0 + int(REGULAR_H * HOUR_NS), venues=list(VENUES),
                 show_data_time=True)
    await sb.start()
    state, out, cfg = tmp_path / "sandbox.json", tmp_path / "run", attach_config(tmp_path)
    write_state(sb, state)
    env = {**os.environ, "COLUMNS": "120",
           **{f"SB_KILL_{v.upper()}_KEY": sb[v].api_key for v in VENUES},
           **{f"SB_KILL_{v.upper()}_SECRET": sb[v].secret for v in VENUES}}
    killed_with_orders = 0
    try:
        for k in range(KILLS):
            before = {v: len(ours(sb[v])) for v in VENUES}
            proc = await bot(cfg, state, out, env, "10m")
            # kill once this incarnation trades on both venues: orders on their way, fills arriving
            for _ in range(600):
                if proc.returncode is not None or all(len(ours(sb[v])) > before[v] for v in VENUES):
                    break
                await asyncio.sleep(0.05)
            if proc.returncode is not None or not all(len(ours(sb[v])) > before[v] for v in VENUES):
                proc.kill()
                await proc.wait()
                pytest.fail(f"restart {k} did not quote on both venues within 30 s:\n"
                            + (await proc.stdout.read()).decode()[-3000:] + "\nlive.log:\n"
                            + (out / "live.log").read_text()[-3000:])
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            killed_with_orders += any(not o.is_final for v in VENUES for o in ours(sb[v]))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

            assert proc.returncode == -signal.SIGKILL
        assert killed_with_orders >= KILLS // 2, "most kills found no order of ours resting"
        proc = await bot(cfg, state, out, env, "6s")
        text = (await asyncio.wait_for(proc.stdout.read(), 120)).decode()
        assert await proc.wait() == 0, text[-3000:]
        assert "run ended" in text
        journal = Journal(out / "journal.sqlite")
        try:
            for v in VENUES:
                assert sb[v].account.fills, f"{v}: no fill in {KILLS + 1} runs"
            problems = ledger_problems([sb[v] for v in VENUES], journal, out, venue_secrets(sb.venues.values()))
            assert not problems, "\n".join(problems)
        finally:
            journal.close()
    finally:
        await asyncio.wait_for(sb.stop(), 10)
