"""`stockbridge data synth` (write a synthetic market to a store) and `stockbridge data inspect` (summarise a store)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockbridge.config import load_config
from stockbridge.errors import ConfigError, DataError


def synth(
    config: Path = typer.Argument(..., help="TOML config; its [synth] table sets the market's parameters"),
    out: Path = typer.Option(..., "--out", help="directory of the Parquet event store to write"),
    days: int = typer.Option(None, "--days", min=1, help="calendar days to generate (default: synth.days)"),
    seed: int = typer.Option(None, "--seed", help="random seed (default: backtest.seed)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete the store's existing venue partitions first"),
) -> None:
    """Generate a synthetic multi-venue market (token books and trades, the share's quotes) into OUT."""
    from data.store import list_partitions
    from data.schema import KIND_NAMES
    from data.synth import synth_pair, synthesize

    cfg = load_config(config)
    try:
        synth_pair(cfg)
    except ConfigError as exc:
        raise ConfigError(str(config), exc.key, exc.message) from None
    existing = list_partitions(out)
    if existing and not overwrite:
        raise DataError(str(out), None, None, f"already holds {len(existing)} event partitions; pick an empty directory or pass --overwrite")
    if existing:
        for vdir in sorted(Path(out).glob("venue=*")):
            shutil.rmtree(vdir)
    n_days = cfg.synth.days if days is None else days
    console = Console(width=max(Console().width, 120))
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
                  TextColumn("{task.fields[rows]:>12,} rows"), TimeElapsedColumn(), console=console) as bar:
        tasks: dict[str, int] = {}

        def progress(venue: str, day: int, rows: int) -> None:
            if venue not in tasks:
                tasks[venue] = bar.add_task(venue, total=n_days, rows=0)
            task = tasks[venue]
            bar.update(task, advance=1, rows=bar.tasks[task].fields["rows"] + rows)

        summary = synthesize(cfg, out, days=n_days, seed=seed, progress=progress)

    console.print(f"{out}: {summary['total']:,} events, {summary['days']} days, seed {summary['seed']}, "
                  f"{summary['seconds']:.1f} s")
    table = Table(title="events by venue and kind", title_justify="left")
    present = {k for per in summary["events"].values() for k in per}
    kinds = [k for k in KIND_NAMES.values() if k in present]
    for col in ("venue", *kinds, "total"):
        table.add_column(col, justify="left" if col == "venue" else "right")
    for venue, per in summary["events"].items():
        table.add_row(venue, *(f"{per.get(k, 0):,}" for k in kinds), f"{sum(per.values()):,}")
    console.print(table)


def inspect(
    path: Path = typer.Argument(..., help="directory of a Parquet event store"),
    config: Path = typer.Option(None, "--config", help="config whose venue/instrument ids and calendar to use"),
) -> None:
    """Events by venue and kind, time range, and median quoted spread by session state of the underlying."""
    from data.inspect import inspect_store, print_report

    cfg = load_config(config) if config is not None else None
    print_report(inspect_store(path, cfg), Console(width=max(Console().width, 140)))


def register(data_app: typer.Typer) -> None:
    data_app.command("synth")(synth)
    data_app.command("inspect")(inspect)
