"""`stockbridge backtest CONFIG`: replay tick data through a strategy and report the result.

Everything is checked before the replay starts (config, strategy params, the data store), so a bad
input stops the run with one line and no output. With no ``--data`` the config's synthetic market
is generated first into ``OUT/data`` (the README's demo).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockbridge.commands.preflight import check_backtest_config, fee_warnings
from stockbridge.commands.tables_fit import WIDTH, Col, fitted_tables, legend
from stockbridge.commands.tables_fit import fmt_value as _fmt
from stockbridge.config import load_config
from stockbridge.errors import DataError


def backtest(
    config: Path = typer.Argument(..., help="TOML config (instruments, venues, strategy, backtest)"),
    data: Path = typer.Option(None, "--data", help="Parquet event store; default: synthesize the config's market into OUT/data"),
    out: Path = typer.Option(Path("backtest-out"), "--out", help="directory for fills, time series, summary and report"),
    seed: int = typer.Option(None, "--seed", help="seed for latency draws and probabilistic fills (default: backtest.seed)"),
    engine: str = typer.Option("tick", "--engine", help="'tick' (L2 replay) or 'backtrader' (OHLCV bars: the store's bars table, else one-minute bars derived from the ticks)"),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="check the whole store before replaying (skip only for a store you have just validated)"),
    crosscheck: bool = typer.Option(True, "--crosscheck/--no-crosscheck", help="re-do the accounting in backtrader and compare"),
    chunk_size: int = typer.Option(1_000_000, "--chunk-size", min=1, help="events per replay chunk (bounds memory)"),
) -> None:
    """Backtest CONFIG's strategy on tick data; writes fills.parquet, orders.parquet, timeseries.parquet, summary.json, report.html."""
    cfg = load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"seed": seed})})
    spec, params = check_backtest_config(cfg, config)  # the same checks as `config check`
    for line in fee_warnings(cfg, config):
        print(f"warning: {line}", file=sys.stderr)
    if engine not in ("tick", "backtrader"):
        raise typer.BadParameter(f"expected 'tick' or 'backtrader', got {engine!r}", param_hint="--engine")
    console = Console(width=max(Console().width, WIDTH))
    data_dir = data if data is not None else out / "data"
    if data is None:
        _synthesize_if_empty(cfg, data_dir, console)
    if engine == "backtrader":
        _run_bars(cfg, config, data_dir, out, spec, params, console)
        return
    from backtest.runner import check_data, run_backtest, write_outputs
    from data.reader import store_extent

    if validate:
        with console.status("validating the data store"):
            check_data(cfg, data_dir)
    lo, hi, rows = store_extent(data_dir, cfg)
    compile_seconds = _compile_replay(cfg, data_dir, lo, hi, spec, params, console)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                  TextColumn("{task.fields[sim]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("replay", total=rows, sim="", rate="")

        def progress(done: int, ts: int) -> None:
            elapsed = bar.tasks[task].elapsed or 1e-9
            when = datetime.fromtimestamp(ts / 1e9, timezone.utc).strftime("%a %Y-%m-%d %H:%M UTC")
            bar.update(task, completed=done, sim=when, rate=f"{done / elapsed:,.0f} ev/s")

        summary, replay = run_backtest(cfg, str(config), data_dir, None, kernel=spec.kernel, params=params.to_array(),
                                       progress=progress, chunk_size=chunk_size, crosscheck=crosscheck, validate=False)
    # the loop was compiled above, before the bar: record that time, not run_backtest's (a lookup)
    summary["compile_seconds"] = compile_seconds + summary.get("compile_seconds", 0.0)
    write_outputs(out, summary, replay, replay.fills_frame(), replay.timeseries_frame(), config.name)
    print_summary(summary, console)
    for line in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}")
    console.print(f"outputs in {out}/: fills.parquet orders.parquet timeseries.parquet fair_track.parquet summary.json report.html")


def _compile_replay(cfg, data_dir: Path, lo: int, hi: int, spec, params, console: Console) -> float:
    """Compile (or load from numba's cache) the replay loop for this run's types before the progress
    bar starts, so its events/s measure the replay and the compile time is shown on its own line.
    ``run_backtest`` then finds the loop already compiled in this process."""
    import time

    from backtest.runner import Replay

    began = time.perf_counter()
    with console.status("compiling the replay loop (first run after an install or an upgrade; later runs load it from the cache)"):
        replay = Replay(cfg, data_dir, lo, hi + 1, spec.kernel, params.to_array())
        fn = replay.compile()
    seconds = time.perf_counter() - began
    misses = sum(getattr(fn, "stats", None).cache_misses.values()) if hasattr(fn, "stats") else 1
    verb = "compiled the replay loop" if misses else "loaded the compiled replay loop from the cache"
    console.print(f"{verb} in {seconds:.1f} s (not counted in the replay's events/s)")
    return seconds


def _synthesize_if_empty(cfg, data_dir: Path, console: Console) -> None:
    """Synthesize the config's market into ``data_dir``, unless it already holds one made from the same
    parameters (recorded by the generator in ``data_dir/synth-params.json``); regenerate, saying what
    changed, when they differ."""
    import shutil

    from data.store import BARS_DIR, list_partitions
    from data.synth import PARAMS_FILE, generator_params, params_diff, read_params, synthesize

    if list_partitions(data_dir):
        recorded, wanted = read_params(data_dir), generator_params(cfg)
        if recorded == wanted:
            console.print(f"using the synthetic market already in {data_dir} (same generator parameters)")
            return
        if recorded is None:
            console.print(f"{data_dir} has no record of the parameters it was generated with ({PARAMS_FILE}): regenerating")
        else:
            changes = params_diff(recorded, wanted)
            shown = "; ".join(changes[:4]) + (f"; +{len(changes) - 4} more" if len(changes) > 4 else "")
            console.print(f"the config's synthetic market differs from the one in {data_dir} ({shown}): regenerating", soft_wrap=True)
        for old in [*Path(data_dir).glob("venue=*"), Path(data_dir) / BARS_DIR]:
            if old.is_dir():
                shutil.rmtree(old)
    with console.status(f"synthesizing {cfg.synth.days} days of the config's market into {data_dir}"):
        s = synthesize(cfg, data_dir)
    console.print(f"synthesized {s['total']:,} events into {data_dir}")


def _run_bars(cfg, config: Path, data_dir: Path, out: Path, spec, params, console: Console) -> None:
    """``--engine backtrader``: the store's OHLCV bars of the quoted token, or, when it has none (the
    demo), one-minute bars derived from the first quoted venue's ticks; writes the tick engine's files."""
    import time

    import polars as pl

    from backtest.bt_bridge import bar_run_outputs, bars_from_events, run_backtrader_bars
    from backtest.report import write_report
    from data.store import list_bars, list_partitions, read_bars, read_partition

    token = cfg.quoted_token()
    quoted = list(cfg.strategy.quote_venues or cfg.token_venues())
    venues = [v for v, i in list_bars(data_dir) if i == token and v in cfg.venues]
    if venues:
        venue = venues[0]
        bars, source = read_bars(data_dir, venue, token), str(data_dir / "bars")
    else:
        ticked = {v for v, i, _ in list_partitions(data_dir) if i == token}
        venue = next((v for v in quoted if v in ticked), None)
        if venue is None:
            raise DataError(str(data_dir), None, None, f"no OHLCV bars and no tick data for {token} on a quoted venue "
                                                        "(convert bars with `stockbridge data convert ccxt-ohlcv`)")
        dates = sorted(d for v, i, d in list_partitions(data_dir) if v == venue and i == token)
        with console.status(f"deriving one-minute bars of {token} on {venue} from its ticks"):
            events = pl.concat([read_partition(data_dir, venue, token, d) for d in dates])
            bars = bars_from_events(events, 60.0)
        source = f"{data_dir} ({venue} ticks)"
        console.print(f"no OHLCV bars in {data_dir}: derived {bars.height:,} one-minute bars of {token} on {venue} "
                      "from its book snapshots and trades", soft_wrap=True)
    began = time.perf_counter()
    result = run_backtrader_bars(
        bars, spec.kernel, params.to_array(), cfg.venues[venue], cfg.risk,
        venue_name=venue, instrument=token, initial_cash=cfg.backtest.initial_cash, sessions=cfg.sessions,
        spread_z=cfg.risk.min_spread_z, source=source,
    )
    summary, fills, series, track = bar_run_outputs(result, venue=cfg.venues[venue], seed=cfg.backtest.seed,
                                                    config=str(config), wall_seconds=time.perf_counter() - began)
    out.mkdir(parents=True, exist_ok=True)
    fills.write_parquet(out / "fills.parquet")
    series.write_parquet(out / "timeseries.parquet")
    track.write_parquet(out / "fair_track.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_report(out / "report.html", summary, fills, series, track, config.name)
    console.print(f"backtrader bar engine on {venue}: {result['bars']:,} bars, {fills.height:,} fills")
    print_summary(summary, console)
    console.print("[bold]limitations of the bar engine:[/bold]")
    for line in result["limitations"]:
        console.print(f"  - {line}", soft_wrap=True)
    console.print(f"outputs in {out}/: fills.parquet timeseries.parquet fair_track.parquet summary.json report.html")


VENUE_COLS = (
    Col("fills", "fills"),
    Col("volume", "volume", "tokens traded"),
    Col("fees", "fees", "fees paid, quote ccy (negative: rebates earned)"),
    Col("spread_capture", "spread", "spread capture against fair, quote ccy"),
    Col("markout_1s", "mk 1s", "markout after 1 s / 10 s / 60 s, quote ccy per token"),
    Col("markout_10s", "mk 10s"),
    Col("markout_60s", "mk 60s"),
    Col("position_final", "pos end", "final position, tokens"),
    Col("exposure_max", "expo max", "largest balance value held, quote ccy"),
    Col("exposure_cap", "cap", "exposure cap, quote ccy"),
    Col("quote_uptime", "uptime", "share of the time we quoted"),
    Col("quoted_spread_bps_median", "ours bps", "median quoted spread, ours and the market's, bps"),
    Col("market_spread_bps_median", "mkt bps"),
)
SESSION_COLS = {
    "time_share": Col("time_share", "time", "share of the run's time in this session"),
    "fills": Col("fills", "fills"),
    "volume": Col("volume", "volume", "tokens traded"),
    "spread_capture": Col("spread_capture", "spread", "spread capture against fair, quote ccy"),
    "fees": Col("fees", "fees", "fees paid, quote ccy"),
    "quoted_spread_bps_median": Col("quoted_spread_bps_median", "ours bps", "median quoted spread, ours and the market's, bps"),
    "market_spread_bps_median": Col("market_spread_bps_median", "mkt bps"),
}


def print_summary(s: dict, console: Console) -> None:
    """The figures a trader looks at first: PnL and where it came from, risk, fills, venues, sessions."""
    pnl = Table(title="PnL (quote ccy)", title_justify="left")
    pnl.add_column("component")
    pnl.add_column("value", justify="right")
    for key in ("pnl_spread_capture", "pnl_arb", "pnl_hedge", "pnl_inventory", "fees_paid", "borrow_cost",
                "default_loss", "pnl_residual", "pnl_total", "haircut_charge", "equity_final_raw",
                "equity_final_after_haircut", "max_drawdown", "sharpe"):
        sign = "-" if key in ("fees_paid", "borrow_cost", "default_loss") else ""
        pnl.add_row(f"{sign}{key}", _fmt(s.get(key)))
    run = Table(title="run", title_justify="left")
    run.add_column("figure")
    run.add_column("value", justify="right")
    for key in ("events", "simulated_seconds", "compile_seconds", "wall_seconds", "events_per_second", "fills", "fills_maker",
                "fills_taker", "fills_hedge", "markout_1s", "markout_10s", "markout_60s"):
        run.add_row(key, _fmt(s.get(key), 4 if key.startswith("markout") else 1))
    check = s.get("backtrader_check")
    if check is not None:
        run.add_row("backtrader cross-check", "agrees" if check.get("agrees") else "DISAGREES")
    console.print(pnl, run)
    by_venue = s.get("by_venue", {})
    present = set(next(iter(by_venue.values()), {}))
    cols = [c for c in VENUE_COLS if c.key in present]
    rows = {name: {c.key: _fmt(block.get(c.key), 4 if c.key.startswith("markout") else 2) for c in cols}
            for name, block in by_venue.items()}
    console.print(*fitted_tables("by venue", "venue", rows, cols, width=min(console.width, WIDTH)))
    legend(cols, console)
    by_session = s.get("by_session", {})
    keys = [k for k, v in next(iter(by_session.values()), {}).items() if isinstance(v, (int, float)) or v is None]
    cols = [SESSION_COLS.get(k, Col(k, k)) for k in keys]
    rows = {name: {c.key: _fmt(block.get(c.key)) for c in cols} for name, block in by_session.items()}
    console.print(*fitted_tables("by session of the underlying", "session", rows, cols, width=min(console.width, WIDTH)))
    legend(cols, console)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
