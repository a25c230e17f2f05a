"""`stockbridge backtest` as a user runs it: outputs, reproducibility, bad input stops before any work."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest.report_page import read_figures
from backtest.runner import WALL_CLOCK_FIELDS
from data.schema import EVENT_DTYPE, F_BATCH_END, KIND_QUOTE
from data.store import write_events

ROOT = Path(__file__).resolve().parents[1]
DEMO = (ROOT / "configs" / "demo.toml").read_text()


def small_demo(tmp_path: Path, extra: str = "") -> Path:
    """The demo config cut to one synthetic day (Thursday 2025-07-03, a half day)."""
    text = DEMO.replace("days = 5", "days = 1") + extra
    assert text != DEMO + extra
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


def without_wall_clock(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK_FIELDS}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same backtest run twice, each synthesizing its own data into its --out from the same seed."""
    tmp = tmp_path_factory.mktemp("bt")
    cfg = small_demo(tmp)
    exe = Path(sys.executable).with_name("stockbridge")
    runs = []
    for name in ("a", "b"):
        out = tmp / name
        res = subprocess.run([str(exe), "backtest", str(cfg), "--out", str(out)], capture_output=True, text=True,
                             timeout=900, env={**os.environ, "COLUMNS": "160"})
        runs.append((res, out))
    return runs


def test_backtest_writes_every_output(two_runs):
    res, out = two_runs[0]
    assert res.returncode == 0, res.stderr
    for name in ("fills.parquet", "timeseries.parquet", "fair_track.parquet", "summary.json", "report.html"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    for key in ("events", "simulated_seconds", "wall_seconds", "events_per_second", "pnl_total",
                "pnl_spread_capture", "pnl_inventory", "pnl_hedge", "fees_paid", "haircut_charge",
                "equity_final_raw", "equity_final_after_haircut", "sharpe", "max_drawdown", "fills_maker",
                "fills_taker", "fills_hedge", "markout_1s", "markout_10s", "markout_60s", "by_venue", "by_session"):
        assert key in summary, key
    assert summary["events"] > 100_000 and summary["fills_maker"] > 0
    assert abs(summary["pnl_residual"]) < 0.01
    assert summary["pnl_total"] == pytest.approx(summary["equity_final_raw"] - summary["equity_initial_raw"], abs=1e-6)
    assert summary["backtrader_check"]["agrees"] is True
    fills = pl.read_parquet(out / "fills.parquet")
    assert set(fills["tag"].unique()) <= {"quote", "hedge", "arb"}
    assert fills.height == summary["fills"]
    # the progress bar and the tables reach the user
    assert "replay" in res.stdout and "pnl_total" in res.stdout and "by venue" in res.stdout
    html = (out / "report.html").read_text()
    assert read_figures(html) and not re.search(r"<script[^>]*\ssrc\s*=", html)  # drawn by the inlined plotly.js


def test_two_runs_give_identical_summaries_apart_from_wall_clock(two_runs):
    (ra, a), (rb, b) = two_runs
    assert ra.returncode == 0 and rb.returncode == 0
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert json.dumps(without_wall_clock(sa), sort_keys=True) == json.dumps(without_wall_clock(sb), sort_keys=True)
    assert pl.read_parquet(a / "fills.parquet").equals(pl.read_parquet(b / "fills.parquet"))


def test_bad_strategy_param_stops_before_any_work(run_cli, tmp_path):
    cfg = small_demo(tmp_path, '\n[strategy.params]\ngamma = -1.0\n')
    out = tmp_path / "out"
    res = run_cli("backtest", cfg, "--out", out)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cfg}: strategy.params.gamma: "), res.stderr
    assert not out.exists()


def test_bad_data_stops_before_any_work(run_cli, tmp_path, demo_config_path):
    data = tmp_path / "store"
    ev = np.zeros(4, dtype=EVENT_DTYPE)
    t0 = 1_751_545_800 * 10**9  # 2025-07-03 12:30 UTC
    ev["kind"] = KIND_QUOTE
    ev["exch_ts"] = ev["local_ts"] = [t0, t0, t0 + 10**9, t0 + 10**9]
    ev["side"] = [1, -1, 1, -1]
    # the second update (rows 3-4, one timestamp) leaves the book crossed: bid 210.2 > ask 210.1; the
    # book is judged when its same-time group is complete, so the error names the group's last row
    ev["price"] = [210.0, 210.1, 210.2, 210.1]
    ev["size"] = 5.0
    ev["flags"] = [0, F_BATCH_END, 0, F_BATCH_END]
    write_events(data, "broker", "AAPL", ev)
    out = tmp_path / "out"
    res = run_cli("backtest", demo_config_path, "--data", data, "--out", out)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "venue=broker" in lines[0] and "row 4" in lines[0] and "crossed" in lines[0], res.stderr
    assert not (out / "summary.json").exists()


def test_backtrader_engine_on_ccxt_ohlcv_bars(run_cli, tmp_path, demo_config_path):
    t0 = 1_751_896_800_000  # 2025-07-07 14:00 UTC, ms (ccxt's unit)
    rows, price = [], 210.0
    for k in range(120):
        o = price
        price = 210.0 + 0.4 * math.sin(k / 7.0)
        rows.append([t0 + 60_000 * k, o, max(o, price) + 0.15, min(o, price) - 0.15, price, 3.0])
    src = tmp_path / "ohlcv.json"
    src.write_text(json.dumps(rows))
    data = tmp_path / "store"
    conv = run_cli("data", "convert", "ccxt-ohlcv", src, "--config", demo_config_path, "--venue", "bybit",
                   "--instrument", "AAPLx", "--out", data)
    assert conv.returncode == 0, conv.stderr
    out = tmp_path / "out"
    res = run_cli("backtest", demo_config_path, "--data", data, "--out", out, "--engine", "backtrader")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["limitations"] and "limitations of the bar engine" in res.stdout
    assert pl.read_parquet(out / "fills.parquet").height > 0


def test_markouts_from_the_streamed_fair_track_equal_those_from_the_whole_track(two_runs):
    # the runner keeps only the track rows markouts read; the whole 1 s track is in fair_track.parquet
    from backtest.metrics import summarize

    res, out = two_runs[0]
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    keys = ("events", "simulated_seconds", "wall_seconds", "equity_initial_raw", "equity_final_raw",
            "equity_final_after_haircut", "pnl_inventory", "borrow_cost", "default_loss", "venues", "seed", "config")
    whole = summarize(pl.read_parquet(out / "fills.parquet"), pl.read_parquet(out / "timeseries.parquet"),
                      pl.read_parquet(out / "fair_track.parquet"), {k: summary[k] for k in keys})
    for h in (1, 10, 60):
        assert summary[f"markout_{h}s"] is not None
        assert whole[f"markout_{h}s"] == summary[f"markout_{h}s"]
        for venue, block in summary["by_venue"].items():
            assert whole["by_venue"][venue][f"markout_{h}s"] == block[f"markout_{h}s"]
