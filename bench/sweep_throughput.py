"""Sweep throughput: backtests per minute on the demo market, by executor, and peak memory.

The demo market of configs/demo.toml (5 days, 1.7 M events) is synthesized once; every backtest
replays a shortened window of it, Monday 2025-07-07 12:00-18:00 UTC (regular hours; ``--start`` /
``--end`` change it), with the GLFT strategy. The same grid (``--runs`` runs: gamma values x seeds)
runs with each executor, each in a fresh child process and a fresh output directory (nothing is
resumed):

- single process: every backtest in one process, one after the other (``--workers 1``);
- local pool, 1 worker and 2 workers (``--workers N``): spawned worker processes that stay up;
- local Ray, 2 CPUs (``--ray auto``).

"incl. start-up" is runs / wall time of the whole sweep, from the first task handed out to the last
result written (worker start-up, imports and loading the compiled loop from numba's disk cache
included; the Ray row also includes starting Ray). "steady" counts only the runs that finished after
every worker had finished its first run, over the time since then. "cores busy": CPU seconds of the
sweep's process and its workers per second of wall time (not measured for Ray). Peak RSS: the sweep's own process
and the largest worker (``ru_maxrss``); Ray's own daemons are not counted.

    python bench/sweep_throughput.py              # 24 runs per executor
    python bench/sweep_throughput.py --runs 48
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.toml"
# id -> (label, workers, executor kind)
MODES = {"single": ("single process", 1, None), "pool1": ("local pool, 1 worker", 1, "pool"),
         "pool2": ("local pool, 2 workers", 2, "pool"), "ray2": ("local Ray, 2 CPUs", 2, "auto")}


def bench_config(start: str, end: str):
    from stockbridge.config import load_config

    cfg = load_config(CONFIG)
    return cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"start": start, "end": end})})


def sweep_file(path: Path, runs: int) -> Path:
    seeds = 4 if runs >= 8 else 1
    gammas = [round(0.01 * (i + 1), 4) for i in range(max(1, runs // seeds))]
    path.write_text(f'[sweep]\nseeds = {list(range(1, seeds + 1))}\n\n[grid]\n"strategy.params.gamma" = {gammas}\n')
    return path


def child(mode: str, data: str, out: str, sweep_path: str, start: str, end: str) -> None:
    from backtest.sweep import load_sweep, run_sweep
    from backtest.sweep.executors import InlineExecutor, LocalPool, RayExecutor

    cfg = bench_config(start, end)
    sweep = load_sweep(sweep_path, cfg, str(CONFIG))
    label, workers, kind = MODES[mode]
    began = time.perf_counter()
    executor = InlineExecutor() if kind is None else LocalPool(workers) if kind == "pool" else RayExecutor("auto", workers)
    t0 = time.perf_counter()
    result = run_sweep(sweep, data, out, executor)
    wall = time.perf_counter() - t0
    executor.close()  # pool workers exit and are waited for: their CPU time is in RUSAGE_CHILDREN
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    rows = result.rows
    ok = rows.filter(rows["status"] == "ok")
    import polars as pl

    firsts = ok.group_by("worker").agg(pl.col("finished_at").min().alias("first"))
    settled = firsts["first"].max()
    later = ok.filter(ok["finished_at"] > settled)
    span = (later["finished_at"].max() - settled).total_seconds() if later.height else 0.0
    print(json.dumps({
        "mode": label, "runs": rows.height, "ok": ok.height, "workers": firsts.height, "wall_s": wall,
        "startup_s": t0 - began, "per_min": rows.height / wall * 60,
        "steady_per_min": later.height / span * 60 if span > 0 else None,
        "events_per_run": float(ok["events"].mean()), "replay_s_per_run": float(ok["replay_seconds"].median()),
        "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": float(ok["worker_peak_rss_mb"].max()),
        "cores_busy": None if kind == "auto" else cpu / (time.perf_counter() - began),
        "objectives": {r["run_id"]: r["objective"] for r in ok.iter_rows(named=True)},
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=24, help="backtests per executor")
    ap.add_argument("--start", default="2025-07-07T12:00:00Z")
    ap.add_argument("--end", default="2025-07-07T18:00:00Z")
    ap.add_argument("--data", type=Path, help="reuse (or keep) the demo market in this directory")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(
        f"{k} ({v[0]})" for k, v in MODES.items()))
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from rich.console import Console
    from rich.table import Table

    from data.store import list_partitions
    from data.synth import synthesize
    from stockbridge.config import load_config

    console = Console(width=max(Console().width, 120))
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    data = args.data or tmp / "data"
    if not data.exists() or not list_partitions(data):
        with console.status("synthesizing the demo market"):
            synthesize(load_config(CONFIG), data)
    spath = sweep_file(tmp / "bench_sweep.toml", args.runs)
    load = os.getloadavg()
    console.print(f"demo market in {data}; window {args.start} to {args.end}; load average before: "
                  f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    results = []
    for mode in [m.strip() for m in args.modes.split(",")]:
        with console.status(f"{MODES[mode][0]}: {args.runs} backtests"):
            res = subprocess.run([sys.executable, __file__, "--child", mode, str(data), str(tmp / mode),
                                  str(spath), args.start, args.end], capture_output=True, text=True)
        if res.returncode != 0:
            console.print(f"[red]{MODES[mode][0]} failed[/red]\n{res.stderr[-3000:]}")
            continue
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = results[-1]
        console.print(f"{r['mode']}: {r['runs']} runs in {r['wall_s']:.1f} s")
    table = Table(title=f"sweep throughput: {args.runs} backtests of "
                        f"{results[0]['events_per_run']:,.0f} events each (GLFT, demo market)" if results else "sweep throughput")
    for col in ("executor", "runs", "wall s", "per min incl. start-up", "per min steady", "replay s/run (median)",
                "cores busy", "peak RSS MB: sweep", "largest worker"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for r in results:
        steady = "-" if r["steady_per_min"] is None else f"{r['steady_per_min']:.1f}"
        table.add_row(r["mode"], str(r["runs"]), f"{r['wall_s']:.1f}", f"{r['per_min']:.1f}", steady,
                      f"{r['replay_s_per_run']:.2f}", "-" if r["cores_busy"] is None else f"{r['cores_busy']:.2f}",
                      f"{r['driver_rss_mb']:,.0f}", f"{r['worker_rss_mb']:,.0f}")
    console.print(table)
    by = {r["mode"]: r for r in results}
    one, two = by.get("local pool, 1 worker"), by.get("local pool, 2 workers")
    if one and two:
        s = two["per_min"] / one["per_min"]
        steady = (two["steady_per_min"] / one["steady_per_min"]) if one["steady_per_min"] and two["steady_per_min"] else None
        console.print(f"scaling 1 -> 2 workers: x{s:.2f} incl. start-up" + (f", x{steady:.2f} steady" if steady else ""))
    objectives = [r["objectives"] for r in results]
    same = all(o == objectives[0] for o in objectives)
    console.print(f"identical objectives for identical runs across executors: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
