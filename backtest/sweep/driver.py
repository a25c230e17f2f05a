"""Carry out a sweep: plan its runs, skip the finished ones, keep the executor busy, record every result.

:func:`run_sweep` is the library entry point behind ``stockbridge sweep``. A run's identity
(``run_id``) is a digest of its whole validated config (base config + swept values + seed + window)
and of the data store's file list and sizes: the same parameters and seed on the same data are the
same run, whatever the order or the executor, and a rerun of the sweep finds it in the results and
does not run it again (a failed run neither, unless ``retry_failed``). The executor gets exactly
``capacity`` runs at a time; each result is made durable (:class:`backtest.sweep.store.ResultStore`)
as soon as it arrives, and the part files are compacted into ``results.parquet`` every few seconds
and at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from backtest.sweep.objective import windowed_sharpe
from backtest.sweep.plan import Fold, Run, WalkForwardPlanner, make_search, point_key
from backtest.sweep.spec import Sweep
from backtest.sweep.store import ResultStore
from backtest.sweep.worker import objective_value
from stockbridge.errors import ConfigError

COMPACT_EVERY_S = 5.0


@dataclass
class Progress:
    total: int = 0
    done: int = 0  # finished in this sweep, ok or failed (cached included)
    cached: int = 0  # found finished in the results: not run again
    running: int = 0
    failed: int = 0
    executed: int = 0  # backtests carried out by the executor in this sweep
    unique: int = 0  # distinct runs settled (a walk-forward test can be a fit run of the next fold)
    unique_failed: int = 0


@dataclass
class SweepResult:
    sweep: Sweep
    store: ResultStore
    rows: pl.DataFrame  # one row per run of this sweep (objective from the sweep's current [objective])
    sets: pl.DataFrame  # one row per (window, parameter set): mean objective over the seeds and mean figures
    folds: list[dict[str, Any]] | None  # walk-forward: fit/test windows, best point, in/out-of-sample objective
    windows: list[tuple[str, str]] | None
    progress: Progress
    executor: str
    seconds: float
    search_ids: set[str] = field(default_factory=set)  # the runs a search asked for (not only a fold's test)

    def fit_windows(self) -> list[int]:
        return sorted({f["fit_window"] for f in self.folds}) if self.folds else []

    def search_sets(self) -> pl.DataFrame:
        """The sets the search ranked: with walk-forward, the fitting windows' searches only."""
        if not self.folds or self.rows.height == 0:
            return self.sets
        return set_table(self.rows.filter(pl.col("run_id").is_in(list(self.search_ids))), self.sweep)

    def ranked(self) -> pl.DataFrame:
        """One row per parameter set over the (fitting) windows it ran on, best first: the mean of its
        per-window objectives (null if any window's is), runs and failures summed, figures averaged."""
        sets = self.search_sets()
        if sets.height == 0:
            return sets
        keys = [k for k in self.sweep.keys if k in sets.columns]
        figures = [c for c in ("pnl_after_haircut", "sharpe", "pnl_per_drawdown", "max_drawdown", "fills") if c in sets.columns]
        agg = (sets.group_by("params", maintain_order=True)
               .agg(*(pl.col(k).first() for k in keys), pl.col("runs").sum(), pl.col("failed").sum(),
                    pl.col("objective").mean().alias("_m"), pl.col("objective").null_count().alias("_nulls"),
                    *(pl.col(f).mean() for f in figures), pl.col("first_run").first(), pl.len().alias("windows"))
               .with_columns(pl.when(pl.col("_nulls") == 0).then(pl.col("_m")).alias("objective")).drop("_m", "_nulls"))
        return agg.sort("objective", descending=self.sweep.spec.objective.direction == "maximize", nulls_last=True,
                        maintain_order=True)


def data_fingerprint(data_dir: str | Path) -> str:
    """A digest of the store's Parquet files (relative path and size): the data a run saw."""
    root = Path(data_dir)
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(root.rglob("*.parquet")):
        h.update(f"{f.relative_to(root)}:{f.stat().st_size};".encode())
    return h.hexdigest()


def run_id_of(config: dict[str, Any], fingerprint: str) -> str:
    text = json.dumps({"config": config, "data": fingerprint}, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def replay_range(sweep: Sweep, data_dir: Path) -> tuple[int, int]:
    """The replay range of the base config: backtest.start/end, else the store's extent (as run_backtest)."""
    from data.reader import store_extent
    from stockbridge.instruments import to_ns

    bt = sweep.base.backtest
    lo, hi, _ = store_extent(data_dir, sweep.base)
    return (to_ns(bt.start) if bt.start else lo), (to_ns(bt.end) if bt.end else hi + 1)


def run_sweep(
    sweep: Sweep,
    data_dir: str | Path,
    out: str | Path,
    executor,
    *,
    progress: Callable[[Progress], None] | None = None,
    retry_failed: bool = False,
) -> SweepResult:
    began = time.perf_counter()
    data_dir = Path(data_dir).resolve()
    store = ResultStore(out)
    store.lock()
    try:
        return _run(sweep, data_dir, store, executor, progress, retry_failed, began)
    finally:
        store.unlock()


def _run(sweep, data_dir, store, executor, progress_cb, retry_failed, began) -> SweepResult:
    from data.reader import store_extent
    from stockbridge.instruments import to_ns

    start, end = replay_range(sweep, data_dir)
    windows = sweep.windows(start, end)
    if windows is not None:
        lo, hi, _ = store_extent(data_dir, sweep.base)
        for i, (a, b) in enumerate(windows):
            if to_ns(b) <= lo or to_ns(a) > hi:
                raise ConfigError(sweep.path, "walk_forward", f"window {i} ({a} to {b}) holds no data "
                                                              f"(the store runs from {_iso(lo)} to {_iso(hi)})")
        planner = WalkForwardPlanner(len(windows), lambda w: make_search(sweep, w), sweep.seeds)
    else:
        planner = make_search(sweep, None)
    fingerprint = data_fingerprint(data_dir)
    known = store.load()
    prog = Progress(total=planner.total)
    objective = sweep.spec.objective.model_dump()
    rows_of_sweep: dict[str, dict[str, Any]] = {}
    search_ids: set[str] = set()
    queue: deque[dict[str, Any]] = deque()
    waiting: dict[str, list[Run]] = {}  # run_id -> runs (of any planner) waiting for its result
    in_flight: dict[Any, dict[str, Any]] = {}  # executor handle -> task
    attempts: dict[str, int] = {}
    last_compact = time.monotonic()

    def report(running: int | None = None) -> None:
        prog.total = planner.total
        prog.running = len(in_flight) if running is None else running
        if progress_cb:
            progress_cb(prog)

    def settle(run_id: str, row: dict[str, Any], cached: bool) -> None:
        row = dict(row)
        row["objective"] = _objective(row, objective, store)
        if run_id not in rows_of_sweep:
            prog.unique += 1
            prog.unique_failed += row.get("status") != "ok"
        rows_of_sweep[run_id] = row
        for run in waiting.pop(run_id, []):  # each run a planner asked for counts once in the progress
            prog.done += 1
            prog.cached += cached
            prog.failed += row.get("status") != "ok"
            run.owner.deliver(run, row)

    def plan_more() -> int:
        runs = planner.take()
        for run in runs:
            refused = None
            try:
                task = _task(sweep, run, windows, data_dir, fingerprint, objective)
            except ConfigError as exc:  # a value drawn inside a range that the config refuses
                task, refused = _refused_task(sweep, run, windows, fingerprint, objective), f"ConfigError: {exc}"
            run_id = task["run_id"]
            if not run.role.startswith("test"):
                search_ids.add(run_id)
            if run_id in waiting:  # asked for twice (a walk-forward test can be the next fold's search run)
                waiting[run_id].append(run)
                continue
            waiting[run_id] = [run]
            if run_id in rows_of_sweep:
                settle(run_id, rows_of_sweep[run_id], cached=True)
            elif refused is not None:
                row = _failed_row(task, refused)
                store.record(row, None)
                settle(run_id, row, cached=False)
            elif run_id in known and (known[run_id]["status"] == "ok" or not retry_failed):
                settle(run_id, known[run_id], cached=True)
            else:
                queue.append(task)
        return len(runs)

    try:
        while True:
            plan_more()
            while queue and len(in_flight) < executor.capacity:
                task = queue.popleft()
                report(running=len(in_flight) + 1)  # an inline executor runs the task inside submit()
                in_flight[executor.submit(task)] = task
            report()
            if not in_flight:
                if queue or plan_more():  # results settled from earlier runs can unlock more (a fold's test)
                    continue
                if planner.done:
                    break
                raise RuntimeError("the sweep's planner waits for runs it never asked for")
            for handle, result in executor.wait(list(in_flight), timeout=1.0):
                task = in_flight.pop(handle)
                run_id = task["run_id"]
                if isinstance(result, Exception):  # the worker died: run it once more, then record it failed
                    attempts[run_id] = attempts.get(run_id, 0) + 1
                    if attempts[run_id] < 2:
                        queue.appendleft(task)
                        continue
                    result = {"row": _failed_row(task, str(result)), "curve": None}
                store.record(result["row"], result["curve"])
                prog.executed += 1
                settle(run_id, result["row"], cached=False)
            if time.monotonic() - last_compact > COMPACT_EVERY_S:
                store.compact()
                last_compact = time.monotonic()
    finally:
        store.compact()
    report()
    rows = _frame(list(rows_of_sweep.values()))
    folds = _folds(planner, windows) if isinstance(planner, WalkForwardPlanner) else None
    return SweepResult(sweep=sweep, store=store, rows=rows, sets=set_table(rows, sweep), folds=folds, windows=windows,
                       progress=prog, executor=getattr(executor, "name", type(executor).__name__),
                       seconds=time.perf_counter() - began, search_ids=search_ids)


def _iso(ns: int) -> str:
    from backtest.sweep.spec import iso

    return iso(ns)


def _point_columns(point: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in point.items()}


def _task(sweep: Sweep, run: Run, windows, data_dir: Path, fingerprint: str, objective: dict) -> dict[str, Any]:
    bounds = windows[run.window] if run.window is not None else None
    cfg = sweep.run_config(run.point, run.seed, bounds, full=False)
    config = cfg.model_dump(mode="json")
    return {
        "run_id": run_id_of(config, fingerprint), "config": config, "config_path": sweep.config_path,
        "data_dir": str(data_dir), "seed": run.seed, "window": run.window, "window_bounds": bounds,
        "params_json": point_key(run.point), "point_columns": _point_columns(run.point), "objective": objective,
    }


def _refused_task(sweep: Sweep, run: Run, windows, fingerprint: str, objective: dict) -> dict[str, Any]:
    """What a refused run is recorded under: its point, seed and window (it has no config)."""
    bounds = windows[run.window] if run.window is not None else None
    ident = run_id_of({"refused": point_key(run.point), "seed": run.seed, "window": bounds}, fingerprint)
    return {"run_id": ident, "seed": run.seed, "window": run.window, "window_bounds": bounds,
            "params_json": point_key(run.point), "point_columns": _point_columns(run.point), "objective": objective}


def _failed_row(task: dict[str, Any], error: str) -> dict[str, Any]:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    bounds = task.get("window_bounds") or (None, None)
    return {"run_id": task["run_id"], "status": "failed", "error": error[:500], "objective": None, "seed": task["seed"],
            "window": task["window"], "window_start": bounds[0], "window_end": bounds[1], "params": task["params_json"],
            **task["point_columns"], "started_at": now, "finished_at": now, "run_seconds": 0.0,
            "sharpe_window_s": float(task["objective"]["window_s"])}


def _objective(row: dict[str, Any], objective: dict[str, Any], store: ResultStore) -> float | None:
    """The row's objective under the sweep's current [objective] (a cached row may have been run under
    another): Sharpe at another return window is recomputed from the run's equity curve."""
    if row.get("status") != "ok":
        return None
    if objective["metric"] == "sharpe" and row.get("sharpe_window_s") != objective["window_s"]:
        curve = store.curve(row["run_id"])
        if curve is None:
            return None
        return windowed_sharpe(curve["ts"].to_numpy(), curve["equity_raw"].to_numpy(), objective["window_s"])
    return objective_value(row, objective)


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    from backtest.sweep.store import BASE_SCHEMA, row_frame

    if not rows:
        return pl.DataFrame(schema=BASE_SCHEMA)
    return pl.concat([row_frame(r) for r in rows], how="diagonal_relaxed")


FIGURES = ("pnl_after_haircut", "pnl", "sharpe", "pnl_per_drawdown", "max_drawdown", "markout_10s", "fills")


def set_table(rows: pl.DataFrame, sweep: Sweep) -> pl.DataFrame:
    """Per (window, parameter set): the mean objective over the seeds (null unless every seed ran ok
    with a value), the seeds run and failed, and the mean of the main figures; best first."""
    if rows.height == 0:
        return pl.DataFrame()
    n_seeds = len(sweep.seeds)
    figures = [f for f in FIGURES if f in rows.columns]
    keys = [k for k in sweep.keys if k in rows.columns]
    agg = (
        rows.group_by("window", "params", maintain_order=True)
        .agg(
            *(pl.col(k).first() for k in keys),
            pl.len().alias("runs"),
            (pl.col("status") != "ok").sum().alias("failed"),
            pl.col("objective").mean().alias("_mean"),
            pl.col("objective").is_not_null().sum().alias("_valued"),
            *(pl.col(f).mean() for f in figures),
            pl.col("run_id").sort_by("seed").first().alias("first_run"),
        )
        .with_columns(pl.when(pl.col("_valued") >= n_seeds).then(pl.col("_mean")).alias("objective"))
        .drop("_mean", "_valued")
    )
    descending = sweep.spec.objective.direction == "maximize"
    return agg.sort(["window", "objective"], descending=[False, descending], nulls_last=True, maintain_order=True)


def _folds(planner: WalkForwardPlanner, windows) -> list[dict[str, Any]]:
    out = []
    for f in planner.folds:
        f: Fold
        out.append({
            "fold": f.index, "fit_window": f.fit, "test_window": f.test,
            "fit": windows[f.fit], "test": windows[f.test],
            "point": f.best.point if f.best else None,
            "in_sample": f.best.objective(planner.seeds) if f.best else None,
            "out_of_sample": f.test_set.objective(planner.seeds) if f.test_set else None,
            "in_sample_runs": [f.best.rows[s]["run_id"] for s in planner.seeds] if f.best else [],
            "out_of_sample_runs": [f.test_set.rows[s]["run_id"] for s in planner.seeds if s in f.test_set.rows] if f.test_set else [],
        })
    return out
