"""`stockbridge sweep CONFIG SWEEP.toml`: many backtests over a grid or a search, optionally walking forward.

The config and the sweep file are checked whole before anything runs (every swept value applied to
the config and validated: a bad key is one line naming the sweep file and the key, exit 2). With no
``--data`` the config's synthetic market is generated into ``OUT/data``, once, as `backtest` does; every run
reads that store from its path. Results go to ``OUT/results.parquet`` (one row per run), the page to
``OUT/sweep.html``; rerunning the same command skips the runs already done.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stockbridge.commands.tables_fit import WIDTH, Col, fitted_tables
from stockbridge.commands.tables_fit import fmt_value as _fmt
from stockbridge.config import load_config


def sweep(
    config: Path = typer.Argument(..., help="TOML config every run starts from"),
    sweep_file: Path = typer.Argument(..., metavar="SWEEP", help="sweep file: [grid] or [ranges] of dotted config keys, [sweep] seeds and method, [objective], [walk_forward]"),
    out: Path = typer.Option(Path("sweep-out"), "--out", help="directory for results.parquet, the per-run equity curves and sweep.html"),
    data: Path = typer.Option(None, "--data", help="Parquet event store; default: synthesize the config's market into OUT/data"),
    workers: int = typer.Option(None, "--workers", min=1, help="runs at once: local worker processes (default: one per core; 1 = in this process), or with --ray auto the CPUs of the local Ray"),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS|auto", help="run on Ray: 'auto' starts a local Ray for the sweep, else the address of a running cluster (the data path must be the same on every node)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the runs that failed last time (finished runs are always skipped)"),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="check the whole store once before the sweep"),
) -> None:
    """Run CONFIG over the parameter sets of SWEEP (grid, random or Optuna search, seeds, walk-forward); resumable."""
    from backtest.sweep import load_sweep, make_executor, run_sweep
    from backtest.sweep.page import write_page
    from stockbridge.commands.backtest import _synthesize_if_empty

    cfg = load_config(config)
    spec = load_sweep(sweep_file, cfg, config)
    console = Console(width=max(Console().width, WIDTH))
    data_dir = data if data is not None else out / "data"
    if data is None:
        _synthesize_if_empty(cfg, data_dir, console)
    if validate:
        from backtest.runner import check_data

        with console.status("validating the data store"):
            check_data(cfg, data_dir)
    n = workers or os.cpu_count() or 1
    console.print(_plan_line(spec), soft_wrap=True)
    with console.status("starting Ray" if ray else "starting the workers"):
        executor = make_executor(n, ray)
    console.print(f"running on {executor.name}")
    began = time.monotonic()
    try:
        with Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
                      TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=console) as bar:
            task = bar.add_task("runs", total=None, state="", eta="-")
            first_run_at: list[float] = []

            def progress(p) -> None:
                ran = p.done - p.cached
                if p.running and not first_run_at:
                    first_run_at.append(time.monotonic())
                eta = "-"
                if ran and first_run_at:
                    rate = ran / max(time.monotonic() - first_run_at[0], 1e-9)
                    eta = _clock((p.total - p.done) / rate) if p.total > p.done else "0:00:00"
                bar.update(task, total=p.total, completed=p.done, eta=eta,
                           state=f"done · {p.running} running · {p.failed} failed · {p.cached} done before")

            result = run_sweep(spec, data_dir, out, executor, progress=progress, retry_failed=retry_failed)
    finally:
        executor.close()
    p = result.progress
    console.print(f"{p.unique} runs in {time.monotonic() - began:,.1f} s: {p.executed} run now, {p.unique - p.executed} "
                  f"done before, {p.unique_failed} failed")
    _print_best(result, console)
    if result.folds:
        _print_folds(result, console)
    failed = result.rows.filter(result.rows["status"] != "ok") if result.rows.height else result.rows
    for row in failed.head(3).iter_rows(named=True):
        console.print(f"[yellow]failed:[/yellow] seed {row['seed']} {row['params']}: {row['error']}", soft_wrap=True, markup=True,
                      highlight=False)
    page = write_page(out / "sweep.html", result)
    console.print(f"results: {out / 'results.parquet'} ({result.rows.height} runs of this sweep); page: {page}")
    if result.rows.height and failed.height == result.rows.height:
        print(f"error: every run failed (first: {failed['error'][0]})", file=sys.stderr)
        raise typer.Exit(1)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _plan_line(spec) -> str:
    from backtest.sweep.page import describe_objective

    s = spec.spec
    if spec.method == "grid":
        what = f"grid of {len(spec.grid_points())} parameter sets"
    else:
        what = f"{spec.method} search, {s.sweep.trials} trials"
        if spec.method == "optuna":
            what += f" in batches of {s.sweep.batch}"
    seeds = f"x {len(spec.seeds)} seed{'s' if len(spec.seeds) != 1 else ''}"
    wf = ""
    if s.walk_forward is not None:
        n = s.walk_forward.windows or len(s.walk_forward.bounds) - 1
        wf = f", walk-forward over {n} windows ({n - 1} folds: fit on window i, test on i+1)"
    return f"sweep {spec.name}: {what} {seeds}{wf}; objective: {describe_objective(s)}"


def _cells(result):
    """A terminal cell per swept value: the value, or '#N' (its place in the sweep file) for a table or list."""
    from backtest.sweep.page import choice_label, value_text

    return lambda key, v: choice_label(result.sweep, key, v) or value_text(v)


def _legend(result, console: Console, rows, keys, labels) -> None:
    from backtest.sweep.page import choice_label

    seen = {}
    for r in rows:
        for k in keys:
            label = choice_label(result.sweep, k, r.get(k))
            if label:
                seen[(k, label)] = r[k]
    for (k, label), v in seen.items():
        console.print(f"  {labels[k]} {label} = {v}", soft_wrap=True, highlight=False, markup=False)


def _print_best(result, console: Console) -> None:
    from backtest.sweep.page import label_of

    sweep = result.sweep
    keys = [k for k in sweep.keys if k in result.rows.columns]
    labels = label_of(keys)
    ranked = result.ranked()
    cell = _cells(result)
    if ranked.height == 0:
        return
    top = ranked.head(sweep.spec.report.top)
    cols = [Col(k, labels[k], justify="right" if result.rows[k].dtype.is_numeric() else "left") for k in keys] + [
        Col("objective", "objective"), Col("pnl_after_haircut", "pnl after hc"), Col("sharpe", "sharpe"),
        Col("max_drawdown", "max dd"), Col("fills", "fills")]
    rows = {}
    for i, r in enumerate(top.iter_rows(named=True), 1):
        row = {k: cell(k, r[k]) for k in keys}
        for c in ("objective", "pnl_after_haircut", "sharpe", "max_drawdown"):
            row[c] = _fmt(r.get(c))
        row["fills"] = _fmt(r.get("fills"), 0)
        rows[f"#{i}"] = row
    title = "best parameter sets" + (" (in-sample, mean over the fit windows)" if result.folds else "")
    console.print(*fitted_tables(title, "rank", rows, cols, width=min(console.width, WIDTH)))
    _legend(result, console, [r for r in top.iter_rows(named=True)], keys, labels)


def _print_folds(result, console: Console) -> None:
    from backtest.sweep.page import label_of

    cell = _cells(result)
    keys = [k for k in result.sweep.keys if k in result.rows.columns]
    labels = label_of(keys)
    cols = [Col("fit", "fit window (UTC)", justify="left"), *(Col(k, labels[k]) for k in keys),
            Col("is", "in-sample"), Col("oos", "out-of-sample")]
    rows = {}
    for f in result.folds:
        point = f["point"] or {}
        rows[str(f["fold"])] = {"fit": _short_span(f["fit"]), **{k: cell(k, _json(point[k])) if k in point else "-" for k in keys},
                                "is": _fmt(f["in_sample"]), "oos": _fmt(f["out_of_sample"])}
    console.print(*fitted_tables("walk-forward: best set of window i, tested on window i+1", "fold", rows, cols,
                                 width=min(console.width, WIDTH)))
    _legend(result, console, [{k: _json(v) for k, v in (f["point"] or {}).items()} for f in result.folds], keys, labels)


def _json(v):
    """A fold's point holds values as given; the results' columns hold tables and lists as JSON text."""
    import json

    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _short_span(window) -> str:
    """'07-03 00:00 to 06:00' (the end's date only when it differs)."""
    a, b = (w[5:16].replace("T", " ") for w in window)
    return f"{a} to {b[6:] if b[:5] == a[:5] else b}"


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
