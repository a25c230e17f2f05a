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


def _numbers_of(block: dict, digits: dict) -> list[str]:
    from stockbridge.commands.backtest import _fmt

    return [_fmt(v, digits.get(k, 2)) for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def test_summary_tables_fit_100_columns_with_every_number_whole(two_runs):
    # issue 8 item 14: rendered as the terminal shows them, at 100 columns
    from rich.console import Console

    from stockbridge.commands.backtest import SESSION_COLS, VENUE_COLS, print_summary

    res, out = two_runs[0]
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    console = Console(width=100, record=True)
    print_summary(summary, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    shown = {c.key for c in VENUE_COLS}
    mk = {f"markout_{h}s": 4 for h in (1, 10, 60)}
    for venue, block in summary["by_venue"].items():
        row = [line for line in text.splitlines() if line.startswith(f"│ {venue} ")]
        assert row, venue
        for cell in _numbers_of({k: v for k, v in block.items() if k in shown}, mk):
            assert any(f" {cell} " in line for line in row), (venue, cell)
    for session, block in summary["by_session"].items():
        row = [line for line in text.splitlines() if line.startswith(f"│ {session} ")]
        for cell in _numbers_of({k: v for k, v in block.items() if k in SESSION_COLS}, {}):
            assert any(f" {cell} " in line for line in row), (session, cell)
    for key in ("pnl_total", "equity_final_after_haircut", "haircut_charge"):
        assert f" {summary[key]:,.2f} " in text


def test_config_check_table_fits_100_columns(run_cli, demo_config_path):
    res = run_cli("config", "check", demo_config_path)
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout and max(len(line) for line in res.stdout.splitlines()) <= 100
    for cell in ("AAPLx=AAPLX/USDT", "AAPLx=AAPLx/USDC", "-1 / 10", "0.0001", "equity_broker", "60,000", "80,000", "10.0%"):
        assert cell in res.stdout, cell


@pytest.mark.cold
def test_progress_bar_events_per_second_leave_out_the_compile(tmp_path):
    # issue 8 item 15: from an empty numba cache the loop compiles for a minute or more; the bar's
    # rate must be the replay's own (as in summary.json), with the compile reported on its own line
    import re

    cfg = small_demo(tmp_path)
    cfg.write_text(cfg.read_text().replace("quote_interval_ms = 1000", "quote_interval_ms = 4000"))
    exe = Path(sys.executable).with_name("stockbridge")
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "160", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    res = subprocess.run([str(exe), "backtest", str(cfg), "--out", str(out), "--no-crosscheck"], capture_output=True,
                         text=True, timeout=1200, env=env)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    compiled = re.search(r"compiled the replay loop in ([\d.]+) s", res.stdout)
    assert compiled, res.stdout[:2000]
    assert summary["compile_seconds"] >= float(compiled[1]) > 10, (summary["compile_seconds"], compiled[0])
    rates = [float(r.replace(",", "")) for r in re.findall(r"([\d,]+) ev/s", res.stdout)]
    assert rates, res.stdout[:2000]
    # before the fix the bar divided by compile + replay time: a few % of the replay's own rate
    assert rates[-1] > 0.25 * summary["events_per_second"], (rates[-1], summary["events_per_second"], summary["compile_seconds"])


def test_backtrader_engine_runs_on_the_demo_and_writes_every_output(run_cli, tmp_path):
    # issue 8 item 12: the demo has ticks only; the bar engine derives one-minute bars from them
    cfg = small_demo(tmp_path)
    cfg.write_text(cfg.read_text().replace("quote_interval_ms = 1000", "quote_interval_ms = 4000"))
    out = tmp_path / "out"
    res = run_cli("backtest", cfg, "--out", out, "--engine", "backtrader")
    assert res.returncode == 0, res.stderr
    assert "derived 1,440 one-minute bars of AAPLx on bybit" in " ".join(res.stdout.split())
    for name in ("fills.parquet", "timeseries.parquet", "fair_track.parquet", "summary.json", "report.html"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "backtrader" and summary["limitations"] and summary["venues"] == ["bybit"]
    assert summary["fills"] == pl.read_parquet(out / "fills.parquet").height > 0
    assert summary["pnl_total"] == pytest.approx(summary["bar_engine"]["pnl_total"], abs=1e-9)
    assert abs(summary["pnl_residual"]) < 0.01
    assert pl.read_parquet(out / "timeseries.parquet").height == 1440


def test_bars_from_events_mid_of_snapshots_and_trades():
    from backtest.bt_bridge import bars_from_events
    from data.schema import KIND_SNAPSHOT, KIND_TRADE, POLARS_SCHEMA

    m = 60 * 10**9
    rows = [  # (local_ts, kind, side, price, size)
        (0, KIND_SNAPSHOT, 1, 99.0, 1.0), (0, KIND_SNAPSHOT, 1, 98.0, 1.0), (0, KIND_SNAPSHOT, -1, 101.0, 1.0),
        (10, KIND_TRADE, 1, 101.0, 2.0),
        (m + 5, KIND_SNAPSHOT, 1, 101.0, 1.0), (m + 5, KIND_SNAPSHOT, -1, 103.0, 1.0),
        (3 * m, KIND_TRADE, -1, 97.0, 0.5),
    ]
    frame = pl.DataFrame(
        {"local_ts": [r[0] for r in rows], "kind": [r[1] for r in rows], "side": [r[2] for r in rows],
         "price": [r[3] for r in rows], "size": [r[4] for r in rows]}
    ).with_columns(pl.col(c).cast(POLARS_SCHEMA[c]) for c in ("local_ts", "kind", "side", "price", "size"))
    bars = bars_from_events(frame, 60.0)
    assert bars.rows() == [
        (0, 100.0, 101.0, 100.0, 101.0, 2.0),
        (m, 102.0, 102.0, 102.0, 102.0, 0.0),
        (2 * m, 102.0, 102.0, 102.0, 102.0, 0.0),  # no price: the previous close, no volume
        (3 * m, 97.0, 97.0, 97.0, 97.0, 0.5),
    ]
