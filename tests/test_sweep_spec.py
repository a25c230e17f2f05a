"""The sweep file, swept keys applied to the config, objectives, planners and the results store (no backtests)."""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest.sweep.objective import SECONDS_PER_YEAR, run_metrics, windowed_sharpe
from backtest.sweep.plan import FixedPlanner, SetResult, WalkForwardPlanner
from backtest.sweep.spec import apply_point, iso, load_sweep
from backtest.sweep.store import ResultStore
from stockbridge.config import load_config
from stockbridge.errors import ConfigError
from stockbridge.instruments import to_ns

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"


@pytest.fixture(scope="module")
def base():
    return load_config(DEMO)


def sweep_of(tmp_path: Path, text: str, base, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_sweep(path, base, DEMO)


def error_of(tmp_path: Path, text: str, base) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        sweep_of(tmp_path, text, base)
    return err.value


def test_the_example_sweep_file_loads(base):
    sweep = load_sweep(ROOT / "configs" / "sweep_demo.toml", base, DEMO)
    assert sweep.method == "grid" and sweep.seeds == [1, 2]
    assert len(sweep.grid_points()) == 6
    assert sweep.spec.walk_forward.windows == 5


def test_a_grid_is_every_combination_first_key_slowest(tmp_path, base):
    s = sweep_of(tmp_path, '[grid]\n"strategy.params.gamma" = [0.01, 0.1]\n"risk.hedge_band" = [5.0, 10.0, 20.0]\n', base)
    points = s.grid_points()
    assert len(points) == 6
    assert points[0] == {"strategy.params.gamma": 0.01, "risk.hedge_band": 5.0}
    assert points[3] == {"strategy.params.gamma": 0.1, "risk.hedge_band": 5.0}
    assert s.seeds == [base.backtest.seed]  # no seeds given: the config's


def test_nested_tables_and_quoted_keys_are_the_same_sweep(tmp_path, base):
    quoted = sweep_of(tmp_path, '[grid]\n"risk.hedge_band" = [5.0, 10.0]\n', base, "a.toml")
    nested = sweep_of(tmp_path, '[grid]\nrisk.hedge_band = [5.0, 10.0]\n', base, "b.toml")
    assert quoted.grid_points() == nested.grid_points()
    ranged = sweep_of(tmp_path, '[sweep]\nmethod = "random"\ntrials = 3\n[ranges.strategy.params]\ngamma = { low = 0.01, high = 0.1 }\n',
                      base, "c.toml")
    assert ranged.keys == ["strategy.params.gamma"]


def test_swept_values_reach_the_validated_config(tmp_path, base):
    s = sweep_of(tmp_path, '[grid]\n"venues.solana_dex.order_latency_ms" = [200]\n"backtest.queue_model" = ["probabilistic"]\n'
                           '"backtest.scenarios" = [[{kind = "halt", venue = "kraken", at = "2025-07-07T15:00:00Z", '
                           'until = "2025-07-07T16:00:00Z"}]]\n"strategy.params.levels" = [2]\n', base)
    cfg = s.run_config(s.grid_points()[0], seed=5, window=("2025-07-07T00:00:00Z", "2025-07-08T00:00:00Z"))
    assert cfg.venues["solana_dex"].order_latency_ms == 200
    assert cfg.backtest.queue_model == "probabilistic"
    assert cfg.backtest.scenarios[0].kind == "halt" and cfg.backtest.scenarios[0].venue == "kraken"
    assert cfg.strategy.params == {"levels": 2}
    assert cfg.backtest.seed == 5 and cfg.backtest.start == "2025-07-07T00:00:00Z"
    assert base.backtest.scenarios == () and base.backtest.seed == 7  # the base config is left alone


def test_apply_point_indexes_lists_and_refuses_what_is_not_there():
    data = {"backtest": {"scenarios": [{"kind": "halt", "at": "x"}]}, "risk": {"hedge_band": 20.0}}
    out = apply_point(data, {"backtest.scenarios.0.at": "y"}, "s.toml")
    assert out["backtest"]["scenarios"][0]["at"] == "y" and data["backtest"]["scenarios"][0]["at"] == "x"
    with pytest.raises(ConfigError, match=r"s.toml: backtest.scenarios.1.at: .*1 item\(s\): address one by index 0..0"):
        apply_point(data, {"backtest.scenarios.1.at": "y"}, "s.toml")
    with pytest.raises(ConfigError, match=r"'risk.hedge_band' is a value \(20.0\), not a table"):
        apply_point(data, {"risk.hedge_band.x": 1}, "s.toml")


@pytest.mark.parametrize("text,where,what", [
    ('[grid]\n"risk.hedge_bnad" = [1.0]\n', "grid.risk.hedge_bnad", "unknown key"),
    ('[grid]\n"strategy.params.gamma" = [0.1, -1]\n', "grid.strategy.params.gamma", "greater than 0"),
    ('[grid]\n"strategy.params.gama" = [0.1]\n', "grid.strategy.params.gama", "unknown parameter of strategy 'glft'"),
    ('[grid]\n"venues.kraken.order_latency_ms" = ["fast"]\n', "grid.venues.kraken.order_latency_ms", "valid number"),
    ('[grid]\n"strategy.name" = ["nope"]\n', "grid.strategy.name", "unknown strategy 'nope'"),
    ('[grid]\n"backtest.scenarios" = [[{kind = "default", venue = "nowhere", at = "2025-07-07T15:00:00Z"}]]\n',
     "grid.backtest.scenarios", "unknown venue 'nowhere'"),
    ('[grid]\n"synth.days" = [1, 2]\n', "grid.synth.days", "made once and shared"),
    ('[grid]\n"backtest.seed" = [1, 2]\n', "grid.backtest.seed", "[sweep] seeds"),
    ('[grid]\n"risk.hedge_band" = 1.0\n', "grid.risk.hedge_band", "valid list"),
    ('[grid]\n"risk.hedge_band" = []\n', "grid.risk.hedge_band", "empty list"),
    ('[sweep]\nseed = [1]\n[grid]\n"risk.hedge_band" = [1.0]\n', "sweep.seed", "unknown key"),
    ('[sweep]\nmethod = "random"\n[ranges]\n"risk.hedge_band" = { low = 1.0, high = 2.0 }\n', "sweep.trials", "trial budget"),
    ('[sweep]\nmethod = "random"\ntrials = 2\n[ranges]\n"risk.hedge_band" = { low = 1.0 }\n', "ranges.risk.hedge_band", "low and high"),
    ('[sweep]\nmethod = "random"\ntrials = 2\n[ranges]\n"risk.offhours_size_factor" = { low = 0.5, high = 2.0 }\n',
     "ranges.risk.offhours_size_factor", "less than or equal to 1"),
    ('[objective]\nmetric = "sharpie"\n[grid]\n"risk.hedge_band" = [1.0]\n', "objective.metric", "unknown metric 'sharpie'"),
    ('[grid]\n"risk.hedge_band" = [1.0]\n[walk_forward]\nwindows = 3\nbounds = ["2025-07-03T00:00:00Z", "2025-07-04T00:00:00Z", "2025-07-05T00:00:00Z"]\n', "walk_forward", "either"),
    ('[grid]\n"risk.hedge_band" = [1.0]\n[ranges]\n"risk.max_position" = { low = 1.0, high = 2.0 }\n', "ranges", "method 'grid'"),
    ('[grid\n', "line 1", "TOML syntax error"),
])
def test_a_bad_sweep_file_is_one_line_naming_file_and_key(tmp_path, base, text, where, what):
    err = error_of(tmp_path, text, base)
    line = str(err).splitlines()[0]
    assert line.startswith(f"{tmp_path / 's.toml'}: ") and where in line and what in line, line


def test_random_points_depend_on_the_sampler_seed_only(tmp_path, base):
    text = ('[sweep]\nmethod = "random"\ntrials = 5\nsampler_seed = {seed}\n[ranges]\n'
            '"strategy.params.gamma" = {{ low = 0.001, high = 1.0, log = true }}\n'
            '"strategy.params.levels" = {{ low = 1, high = 3, int = true }}\n[grid]\n"backtest.queue_model" = ["conservative", "probabilistic"]\n')
    a = sweep_of(tmp_path, text.format(seed=3), base, "a.toml").random_points()
    b = sweep_of(tmp_path, text.format(seed=3), base, "b.toml").random_points()
    c = sweep_of(tmp_path, text.format(seed=4), base, "c.toml").random_points()
    assert a == b and a != c and len(a) == 5
    for p in a:
        assert 0.001 <= p["strategy.params.gamma"] <= 1.0
        assert p["strategy.params.levels"] in (1, 2, 3) and isinstance(p["strategy.params.levels"], int)
        assert p["backtest.queue_model"] in ("conservative", "probabilistic")


def test_walk_forward_windows_split_the_range_or_follow_the_bounds(tmp_path, base):
    s = sweep_of(tmp_path, '[grid]\n"risk.hedge_band" = [1.0]\n[walk_forward]\nwindows = 4\n', base, "a.toml")
    lo, hi = to_ns("2025-07-03T00:00:00Z"), to_ns("2025-07-04T00:00:00Z")
    w = s.windows(lo, hi)
    assert [a for a, _ in w] == ["2025-07-03T00:00:00Z", "2025-07-03T06:00:00Z", "2025-07-03T12:00:00Z", "2025-07-03T18:00:00Z"]
    assert w[-1][1] == "2025-07-04T00:00:00Z" and all(w[i][1] == w[i + 1][0] for i in range(3))
    b = sweep_of(tmp_path, '[grid]\n"risk.hedge_band" = [1.0]\n[walk_forward]\nbounds = ["2025-07-03T00:00:00Z", '
                           '"2025-07-05T00:00:00Z", "2025-07-06T00:00:00Z"]\n', base, "b.toml")
    assert b.windows(lo, hi) == [("2025-07-03T00:00:00Z", "2025-07-05T00:00:00Z"), ("2025-07-05T00:00:00Z", "2025-07-06T00:00:00Z")]
    assert to_ns(iso(to_ns("2025-07-03T01:02:03.456789Z"))) == to_ns("2025-07-03T01:02:03.456789Z")


def test_windowed_sharpe_is_the_formula():
    hour = 3600 * 10**9
    ts = np.arange(0, 10 * hour + 1, hour // 4, dtype=np.int64)  # 15 min samples over 10 h
    rng = np.random.default_rng(1)
    eq = 1000.0 + np.cumsum(rng.normal(0.1, 1.0, len(ts)))
    marks = eq[::4]  # the sample at each whole hour
    r = np.diff(marks) / marks[:-1]
    expect = r.mean() / r.std(ddof=1) * math.sqrt(SECONDS_PER_YEAR / 3600)
    assert windowed_sharpe(ts, eq, 3600.0) == pytest.approx(expect, rel=1e-12)
    assert windowed_sharpe(ts[:8], eq[:8], 3600.0) is None  # 2 hourly returns: too few
    assert windowed_sharpe(ts, np.full(len(ts), 5.0), 3600.0) is None  # no variation


def test_run_metrics_derive_the_objectives_from_the_summary():
    summary = {"equity_initial_raw": 100.0, "equity_final_after_haircut": 90.0, "pnl_total": 6.0, "max_drawdown": 2.0,
               "markout_1s": 0.1, "markout_10s": 0.2, "markout_60s": 0.3, "sharpe": float("nan")}
    m = run_metrics(summary, np.zeros(0, dtype=np.int64), np.zeros(0), window_s=3600, horizon_s=60)
    assert m["pnl_after_haircut"] == -10.0 and m["pnl"] == 6.0 and m["pnl_per_drawdown"] == 3.0
    assert m["markout"] == 0.3 and m["sharpe"] is None and m["sharpe_per_sample"] is None
    assert run_metrics({**summary, "max_drawdown": 0.0}, np.zeros(0, dtype=np.int64), np.zeros(0), window_s=3600,
                       horizon_s=1)["pnl_per_drawdown"] is None


def _row(objective, status="ok"):
    return {"status": status, "objective": objective, "run_id": f"r{objective}"}


def test_a_set_is_ranked_only_when_every_seed_has_a_value():
    s = SetResult({"a": 1}, None, {1: _row(2.0), 2: _row(4.0)})
    assert s.objective([1, 2]) == 3.0
    s.rows[2] = _row(None, "failed")
    assert s.objective([1, 2]) is None
    plan = FixedPlanner([{"a": 1}, {"a": 2}, {"a": 1}], [1, 2], None, "maximize")
    assert plan.total == 4  # the repeated point is one set
    runs = plan.take()
    assert plan.take() == [] and len(runs) == 4
    for run, value in zip(runs, [1.0, 3.0, 5.0, None]):
        plan.deliver(run, _row(value, "ok" if value is not None else "failed"))
    assert plan.done and plan.best().point == {"a": 1}  # {"a": 2} lost a seed
    low = FixedPlanner([{"a": 1}, {"a": 2}], [1], None, "minimize")
    for run, value in zip(low.take(), [2.0, 1.0]):
        low.deliver(run, _row(value))
    assert low.best().point == {"a": 2}


def test_walk_forward_tests_each_folds_winner_on_the_next_window():
    wf = WalkForwardPlanner(3, lambda w: FixedPlanner([{"a": 1}, {"a": 2}], [1], w, "maximize"), [1])
    assert wf.total == 2 * 2 + 2
    first = wf.take()
    assert sorted((r.window, r.point["a"]) for r in first) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    score = {(0, 1): 1.0, (0, 2): 2.0, (1, 1): 5.0, (1, 2): 3.0}
    for r in first:
        r.owner.deliver(r, _row(score[(r.window, r.point["a"])]))
    tests = wf.take()
    assert sorted((r.window, r.point["a"], r.role) for r in tests) == [(1, 2, "test 0"), (2, 1, "test 1")]
    assert not wf.done
    for r in tests:
        r.owner.deliver(r, _row(7.0))
    assert wf.done and [f.best.point for f in wf.folds] == [{"a": 2}, {"a": 1}]
    assert [f.test_set.objective([1]) for f in wf.folds] == [7.0, 7.0]


def _store_row(run_id: str, objective: float, when: int) -> dict:
    t = datetime.fromtimestamp(when, timezone.utc)
    return {"run_id": run_id, "status": "ok", "error": None, "objective": objective, "seed": 1, "window": None,
            "params": '{"a": 1}', "a.b": 1.5, "started_at": t, "finished_at": t, "pnl": objective}


def test_the_store_keeps_one_row_per_run_through_a_crash_during_compaction(tmp_path):
    store = ResultStore(tmp_path / "out")
    store.lock()
    store.record(_store_row("r1", 1.0, 100), {"ts": np.arange(3, dtype=np.int64), "equity_raw": np.ones(3), "equity_haircut": np.ones(3)})
    store.record(_store_row("r2", 2.0, 101), None)
    assert sorted(store.load()) == ["r1", "r2"] and not (tmp_path / "out" / "results.parquet").exists()
    frame = store.compact()
    assert frame.height == 2 and not list((tmp_path / "out" / "parts").iterdir())
    # a kill after results.parquet was replaced but before the parts were removed: a run in both places
    store.record(_store_row("r2", 2.5, 105), None)  # r2 run again (a retried failure), finished later
    store.record(_store_row("r3", 3.0, 106), None)
    store.frame().write_parquet(tmp_path / "out" / "results.parquet")  # compact()'s first step, then the kill
    assert len(list((tmp_path / "out" / "parts").iterdir())) == 2
    rows = store.load()
    assert sorted(rows) == ["r1", "r2", "r3"] and rows["r2"]["objective"] == 2.5
    assert store.curve("r1")["equity_raw"].to_list() == [1.0, 1.0, 1.0] and store.curve("r2") is None
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]  # every write went through a rename
    assert store.compact().height == 3 and store.frame()["run_id"].n_unique() == 3
    store.unlock()


def test_one_sweep_writes_a_directory_at_a_time(tmp_path):
    from backtest.sweep.store import SweepLocked

    a, b = ResultStore(tmp_path), ResultStore(tmp_path)
    a.lock()
    with pytest.raises(SweepLocked, match="another sweep is writing here"):
        b.lock()
    a.unlock()
    b.lock()
    b.unlock()
    assert (tmp_path / "sweep.lock").read_text().strip() == str(os.getpid())
