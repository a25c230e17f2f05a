"""One sweep run, as a worker process (a local pool's or a Ray worker's) carries it out.

A task is a small dict: the run's validated config as a dict, the path of the shared data store,
the objective's settings. The store itself is never sent: each worker reads it from the path, as
the single-run backtest does. A worker process lives for the whole sweep and runs many tasks; the
compiled replay loop is looked up once per process (:func:`backtest.engine.compiled_run_chunk`
keeps it; the first lookup loads it from numba's disk cache), so no run after a worker's first
compiles anything. ``compile_seconds`` and ``worker_run`` in each row show it.

:func:`run_task` never raises: a run that fails returns its row with ``status = "failed"`` and the
error, and the sweep carries on.
"""

from __future__ import annotations

import os
import resource
import socket
import time
import traceback
from datetime import datetime, timezone
from typing import Any

import numpy as np

MAX_CURVE_POINTS = 20_000

_runs_here = 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one backtest; returns ``{"row": {...}, "curve": {...} | None}`` (see backtest.sweep.store)."""
    global _runs_here
    _runs_here += 1
    started, began = _now(), time.perf_counter()
    row: dict[str, Any] = {
        "run_id": task["run_id"], "seed": task["seed"], "window": task.get("window"),
        "window_start": (task.get("window_bounds") or (None, None))[0],
        "window_end": (task.get("window_bounds") or (None, None))[1],
        "params": task["params_json"], **task["point_columns"],
        "started_at": started, "worker": f"{socket.gethostname()}:{os.getpid()}", "worker_run": _runs_here,
        "sharpe_window_s": float(task["objective"]["window_s"]),
    }
    curve = None
    try:
        metrics, curve, summary, loop = _backtest(task)
        row.update(status="ok", error=None, replay_seconds=summary["wall_seconds"],
                   compile_seconds=summary.get("compile_seconds"), **_loop_identity(loop), **metrics)
        row["objective"] = objective_value(metrics, task["objective"])
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, the sweep goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
        where = f" ({os.path.basename(last[0].filename)}:{last[0].lineno})" if last[0] else ""
        text = str(exc).strip().splitlines()
        row.update(status="failed", error=f"{type(exc).__name__}: {text[0] if text else ''}{where}"[:500], objective=None)
    row["finished_at"] = _now()
    row["run_seconds"] = time.perf_counter() - began
    row["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"row": row, "curve": curve}


def objective_value(metrics: dict[str, Any], objective: dict[str, Any]) -> float | None:
    metric = objective["metric"]
    if metric == "markout":
        return metrics.get(f"markout_{objective['horizon_s']}s")
    return metrics.get(metric)


def _loop_identity(fn) -> dict[str, Any]:
    """Which compiled replay loop this run used: ``loop`` names the dispatcher object (the same for
    every run of a worker that compiled once) and ``loop_loads`` how many times it was compiled or
    loaded from numba's disk cache (1)."""
    stats = getattr(fn, "stats", None)
    loads = sum(stats.cache_hits.values()) + sum(stats.cache_misses.values()) if stats is not None else None
    return {"loop": f"{os.getpid()}:{id(fn):x}" if fn is not None else None, "loop_loads": loads}


def _backtest(task: dict[str, Any]):
    from backtest import runner
    from backtest.metrics import column
    from backtest.sweep.objective import run_metrics
    from stockbridge.config import parse_config
    from strategies import registry

    cfg = parse_config(task["config"], task["config_path"])
    spec, params = registry.from_config(cfg, task["config_path"])
    summary, replay = runner.run_backtest(cfg, task["config_path"], task["data_dir"], None, kernel=spec.kernel,
                                          params=params.to_array(), crosscheck=False, validate=False)
    loop = replay.compile()  # the loop this run used (already compiled: a dictionary lookup)
    series = replay.timeseries_frame()
    ts, raw, cut = column(series, "ts"), column(series, "equity_raw"), column(series, "equity_haircut")
    obj = task["objective"]
    metrics = run_metrics(summary, ts, raw, window_s=obj["window_s"], horizon_s=obj["horizon_s"])
    if len(ts) > MAX_CURVE_POINTS:
        keep = np.unique(np.r_[np.arange(0, len(ts), -(-len(ts) // MAX_CURVE_POINTS)), len(ts) - 1])
        ts, raw, cut = ts[keep], raw[keep], cut[keep]
    curve = {"ts": np.asarray(ts, dtype=np.int64), "equity_raw": raw, "equity_haircut": cut}
    return metrics, curve, summary, loop
