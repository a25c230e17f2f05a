"""Sweeps that run backtests: local pool, Ray and this process agree; kill and resume; failures; walk-forward;
Optuna; the CLI as a user runs it.

Every backtest replays six hours (2025-07-03 12:00-18:00 UTC, the half day's regular session) of the
demo market cut to one synthetic day at a 4 s book-update interval, so a run takes well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest.report_page import read_figures
from backtest.sweep import load_sweep, run_sweep
from backtest.sweep.executors import InlineExecutor, LocalPool, RayExecutor
from backtest.sweep.store import ResultStore
from stockbridge.config import load_config
from stockbridge.instruments import to_ns

ROOT = Path(__file__).resolve().parents[1]
SMALL = ((ROOT / "configs" / "demo.toml").read_text().replace("days = 5", "days = 1")
         .replace("quote_interval_ms = 1000", "quote_interval_ms = 4000")
         .replace("[backtest]\n", '[backtest]\nstart = "2025-07-03T12:00:00Z"\nend = "2025-07-03T18:00:00Z"\n'))
# what differs between executors and reruns of the same run: when, where, how fast
NOT_RESULTS = {"started_at", "finished_at", "run_seconds", "replay_seconds", "compile_seconds", "worker", "worker_run",
               "loop", "loop_loads", "worker_peak_rss_mb"}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """(config path, data dir): the small demo and its synthetic market, made once for the module."""
    from data.synth import synthesize

    tmp = tmp_path_factory.mktemp("sweep")
    config = tmp / "small.toml"
    config.write_text(SMALL)
    assert "start = \"2025-07-03T12:00:00Z\"" in SMALL and "days = 1" in SMALL
    synthesize(load_config(config), tmp / "data")
    return config, tmp / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sweep_for(market, path: Path, text: str):
    config, _ = market
    return load_sweep(write(path, text), load_config(config), config)


GRID = '[sweep]\nseeds = [1, 2]\n[objective]\nmetric = "sharpe"\nwindow_s = 1800\n[grid]\n"strategy.params.gamma" = [0.01, 0.2]\n'


def results_only(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(sorted(c for c in frame.columns if c not in NOT_RESULTS)).sort("run_id")


def test_local_pool_ray_and_this_process_give_identical_results(market, tmp_path):
    _, data = market
    sweep = sweep_for(market, tmp_path / "grid.toml", GRID)
    inline = run_sweep(sweep, data, tmp_path / "inline", InlineExecutor())
    pool = LocalPool(2)
    try:
        local = run_sweep(sweep, data, tmp_path / "pool", pool)
    finally:
        pool.close()
    ray = RayExecutor("auto", 2)  # ray.init(num_cpus=2), stopped by close()
    try:
        on_ray = run_sweep(sweep, data, tmp_path / "ray", ray)
    finally:
        ray.close()
    for res in (inline, local, on_ray):
        assert res.rows.height == 4 and res.rows["status"].to_list() == ["ok"] * 4, res.rows["error"].to_list()
        assert res.progress.executed == 4 and res.rows["objective"].null_count() == 0
    assert results_only(local.rows).equals(results_only(inline.rows))
    assert results_only(on_ray.rows).equals(results_only(inline.rows))
    # and what was written to results.parquet is what was returned
    assert results_only(ResultStore(tmp_path / "ray").frame()).equals(results_only(on_ray.rows))
    assert len(set(inline.rows["pnl"].to_list())) > 1  # the grid's values reached the runs
    # each worker process compiled (or loaded) the replay loop once and kept it for all its runs
    for res in (local, on_ray):
        workers = res.rows.group_by("worker").agg(pl.col("loop").n_unique(), pl.col("loop_loads").max(), pl.len())
        assert workers.height == 2 and workers["len"].max() >= 2
        assert workers["loop"].to_list() == [1, 1] and workers["loop_loads"].to_list() == [1, 1]
        assert not any(w.endswith(f":{os.getpid()}") for w in res.rows["worker"].to_list())


def _cli(*args) -> list[str]:
    exe = Path(sys.executable).with_name("stockbridge")
    return [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "stockbridge.cli"]), *map(str, args)]


def test_a_killed_sweep_resumes_without_rerunning_finished_runs(market, tmp_path):
    config, data = market
    spec = write(tmp_path / "ten.toml", '[sweep]\nseeds = [1, 2, 3, 4]\n[grid]\n"strategy.params.gamma" = [0.01, 0.02, 0.05, 0.1, 0.2]\n')
    # 20 runs: room enough between the third finished run and the last for the kill to land mid-sweep,
    # even when the test process polling the results is slowed by a busy machine
    out = tmp_path / "out"
    cmd = _cli("sweep", config, spec, "--out", out, "--data", data, "--workers", "2", "--no-validate")
    env = {**os.environ, "COLUMNS": "120"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline:
                if ResultStore(out).frame().height >= 3 if out.exists() else False:
                    break
                assert proc.poll() is None, "the sweep ended before it could be killed:\n" + (tmp_path / "first.log").read_text()
                time.sleep(0.05)
            else:
                pytest.fail("no run finished within 300 s:\n" + (tmp_path / "first.log").read_text())
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-run
            proc.wait(timeout=60)
    killed_at = time.time()
    before = ResultStore(out).frame()
    assert proc.returncode == -signal.SIGKILL and 3 <= before.height < 20, before.height
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after = ResultStore(out).frame()
    assert after.height == 20 and after["run_id"].n_unique() == 20 and set(after["status"]) == {"ok"}
    assert pl.read_parquet(out / "results.parquet").height == 20 and not list((out / "parts").iterdir())
    old = dict(zip(before["run_id"], before["finished_at"]))
    kept = after.filter(pl.col("run_id").is_in(list(old)))
    assert dict(zip(kept["run_id"], kept["finished_at"])) == old  # finished runs were not run again
    new = after.filter(~pl.col("run_id").is_in(list(old)))
    assert new.height == 20 - before.height and all(t.timestamp() > killed_at for t in new["started_at"])
    assert f"{20 - before.height} run now, {before.height} done before, 0 failed" in res.stdout
    assert "best parameter sets" in res.stdout and (out / "sweep.html").stat().st_size > 0


def test_a_failed_run_is_recorded_and_the_sweep_carries_on(market, tmp_path):
    _, data = market
    # a sampling interval of 1 us asks for a time-series buffer of terabytes: that run fails, the other runs
    sweep = sweep_for(market, tmp_path / "f.toml", '[grid]\n"backtest.sample_interval_s" = [60.0, 1e-6]\n')
    res = run_sweep(sweep, data, tmp_path / "out", InlineExecutor())
    by = {r["backtest.sample_interval_s"]: r for r in res.rows.iter_rows(named=True)}
    assert by[60.0]["status"] == "ok" and by[60.0]["objective"] is not None
    assert by[1e-6]["status"] == "failed" and by[1e-6]["error"].startswith("MemoryError") and by[1e-6]["objective"] is None
    assert res.progress.unique_failed == 1 and res.ranked()["objective"].to_list()[-1] is None
    again = run_sweep(sweep, data, tmp_path / "out", InlineExecutor())
    assert again.progress.executed == 0 and again.progress.unique == 2  # a failure counts as done
    retried = run_sweep(sweep, data, tmp_path / "out", InlineExecutor(), retry_failed=True)
    assert retried.progress.executed == 1 and retried.progress.unique_failed == 1
    stored = ResultStore(tmp_path / "out").frame()
    assert stored.height == 2
    assert stored.filter(pl.col("status") == "ok")["finished_at"].to_list() == [by[60.0]["finished_at"]]


def test_walk_forward_picks_in_sample_and_tests_out_of_sample(market, tmp_path):
    from backtest.sweep.page import write_page

    _, data = market
    sweep = sweep_for(market, tmp_path / "wf.toml", '[sweep]\nseeds = [3]\n[objective]\nmetric = "pnl_per_drawdown"\n'
                      '[grid]\n"strategy.params.gamma" = [0.01, 0.2]\n"risk.hedge_band" = [5.0, 40.0]\n[walk_forward]\nwindows = 3\n')
    res = run_sweep(sweep, data, tmp_path / "out", InlineExecutor())
    assert res.windows == [("2025-07-03T12:00:00Z", "2025-07-03T14:00:00Z"), ("2025-07-03T14:00:00Z", "2025-07-03T16:00:00Z"),
                           ("2025-07-03T16:00:00Z", "2025-07-03T18:00:00Z")]
    assert set(res.rows["status"]) == {"ok"}
    assert len(res.folds) == 2 and res.progress.unique == 4 * 2 + 1  # fold 0's test is a fold-1 search run
    rows = res.rows
    for fold in res.folds:
        fit = rows.filter(pl.col("window") == fold["fit_window"]).filter(pl.col("run_id").is_in(list(res.search_ids)))
        best = fit.sort("objective", descending=True).row(0, named=True)
        assert fold["point"] == json.loads(best["params"]) and fold["in_sample"] == best["objective"]
        test = rows.filter((pl.col("window") == fold["test_window"]) & (pl.col("params") == best["params"]))
        assert test.height == 1 and fold["out_of_sample"] == test["objective"][0]
        assert fold["out_of_sample_runs"] == [test["run_id"][0]]
    page = write_page(tmp_path / "out" / "sweep.html", res)
    figs = read_figures(page.read_text())
    assert {"fig-vs-strategy.params.gamma", "fig-vs-risk.hedge_band", "fig-heatmap", "fig-top-equity",
            "fig-wf-objective", "fig-wf-equity"} <= set(figs)
    bars = figs["fig-wf-objective"]["data"]
    assert list(bars[0]["y"]) == [f["in_sample"] for f in res.folds] and list(bars[1]["y"]) == [f["out_of_sample"] for f in res.folds]
    z = np.asarray(figs["fig-heatmap"]["data"][0]["z"], dtype=float)
    search = res.search_sets()
    cell = search.filter((pl.col("strategy.params.gamma") == 0.2) & (pl.col("risk.hedge_band") == 40.0))["objective"].mean()
    assert z.shape == (2, 2) and z[1, 1] == pytest.approx(cell)
    # the out-of-sample curve of fold 1 is the replay of window 2 with the winner
    curve = res.store.curve(res.folds[1]["out_of_sample_runs"][0])
    assert curve["ts"].min() >= to_ns("2025-07-03T16:00:00Z") and curve.height > 100


def test_an_optuna_search_proposes_the_same_trials_when_resumed(market, tmp_path):
    _, data = market
    text = ('[sweep]\nmethod = "optuna"\ntrials = 4\nbatch = 2\nseeds = [1]\nsampler_seed = 5\n[objective]\nmetric = "markout"\n'
            'horizon_s = 10\n[ranges]\n"strategy.params.gamma" = { low = 0.005, high = 0.5, log = true }\n'
            '"strategy.params.levels" = { low = 1, high = 3, int = true }\n')
    sweep = sweep_for(market, tmp_path / "o.toml", text)
    first = run_sweep(sweep, data, tmp_path / "out", InlineExecutor())
    assert first.progress.executed == 4 and set(first.rows["status"]) == {"ok"}
    assert first.rows["objective"].to_list() == first.rows["markout_10s"].to_list()
    again = run_sweep(sweep_for(market, tmp_path / "o.toml", text), data, tmp_path / "out", InlineExecutor())
    assert again.progress.executed == 0 and again.progress.cached == 4
    assert sorted(again.rows["params"].to_list()) == sorted(first.rows["params"].to_list())


def test_the_cli_refuses_a_bad_sweep_file_before_running_anything(market, tmp_path):
    config, data = market
    bad = write(tmp_path / "bad.toml", '[grid]\n"risk.hedge_bnad" = [5.0, 10.0]\n')
    res = subprocess.run(_cli("sweep", config, bad, "--out", tmp_path / "out", "--data", data), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bad}: grid.risk.hedge_bnad: value 5.0: unknown key"
    assert not (tmp_path / "out").exists()
    res = subprocess.run(_cli("sweep", config, tmp_path / "missing.toml"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "missing.toml: cannot read file" in res.stderr


def _pool_workers(parent: int) -> list[int]:
    """Pids of the spawned pool workers of process ``parent`` (not multiprocessing's resource tracker)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(int(d.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the pool's workers through /proc")
def test_a_worker_killed_mid_sweep_costs_a_retry_not_the_sweep(market, tmp_path):
    config, data = market
    spec = write(tmp_path / "six.toml", '[sweep]\nseeds = [1, 2, 3]\n[grid]\n"strategy.params.gamma" = [0.01, 0.1]\n')
    out = tmp_path / "out"
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(_cli("sweep", config, spec, "--out", out, "--data", data, "--workers", "2", "--no-validate"),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (out.exists() and ResultStore(out).frame().height >= 1):
                assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "log").read_text()
                time.sleep(0.05)
            victims = _pool_workers(proc.pid)
            assert len(victims) == 2
            os.kill(victims[0], signal.SIGKILL)
            assert proc.wait(timeout=300) == 0, (tmp_path / "log").read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    rows = ResultStore(out).frame()
    assert rows.height == 6 and set(rows["status"]) == {"ok"}, rows.select("status", "error")
    pids = {int(w.rsplit(":", 1)[1]) for w in rows["worker"]}
    assert pids - set(victims)  # the runs after the kill went to a fresh pool
