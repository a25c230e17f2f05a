"""`stockbridge sandbox chaos`: the fault plan (seeded, every kind met), and the command as a user runs
it: the real bot in a child process under faults, a kill -9 among them, then the ledger invariants
against the emulators' ledgers (execution.sandbox.invariants)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from execution.sandbox.chaos import MENU, plan

ROOT = Path(__file__).resolve().parents[2]
VENUES = {"bybit": "bybit", "kraken": "kraken", "broker": "alpaca"}


def test_the_plan_is_seeded_meets_every_kind_and_keeps_to_each_venues_kinds():
    a, b = plan(7, 600.0, VENUES), plan(7, 600.0, VENUES)
    assert [vars(f) for f in a] == [vars(f) for f in b]
    assert [vars(f) for f in plan(8, 600.0, VENUES)] != [vars(f) for f in a]
    assert {f.kind for f in a[:len(MENU)]} == set(MENU)  # each kind once before any twice
    assert all(20.0 <= f.at_s < 570.0 for f in a)
    for f in a:
        assert (f.venue is None) == (f.kind == "kill")
        if f.venue is not None:
            assert VENUES[f.venue] in MENU[f.kind][0], f"{f.kind} planned at {f.venue}"
    assert all(f.for_s > 0 for f in a if MENU[f.kind][1])
    # a config without the broker never plans the broker's kinds
    crypto = plan(7, 600.0, {"bybit": "bybit"})
    assert "hedge_half_fill" not in {f.kind for f in crypto} and {f.venue for f in crypto} <= {"bybit", None}


def test_chaos_runs_the_bot_through_a_kill_and_faults_with_every_fill_accounted(sb_store, sb_compiled, tmp_path):
    # seed 42's plan: NaN trade messages at bybit, kill -9 of the bot, bybit halted for a while, a
    # hedge the broker half fills
    out = tmp_path / "chaos"
    p = subprocess.run([sys.executable, "-m", "stockbridge.cli", "sandbox", "chaos", "configs/demo.toml", "--minutes", "1.5",
                        "--seed", "42", "--data", str(sb_store), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "120"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:] + (out / "run" / "bot.log").read_text()[-3000:]
    assert "invariant violations: 0" in p.stdout
    report = json.loads((out / "chaos.json").read_text())
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds[:2] == ["hostile_data", "kill"] and report["restarts"] == 1
    kill = report["faults"][1]
    assert kill["recovered_s"] is not None, "the restarted bot never caught up with the venues"
    assert report["fills"]["bybit"] > 0 and report["fills"]["kraken"] > 0
    table = p.stdout[p.stdout.index("faults injected"):]
    for kind in set(kinds):
        assert kind in table
