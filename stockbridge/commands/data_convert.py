"""`stockbridge data convert` (source files -> Parquet store) and `stockbridge data validate` (stores or source files)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stockbridge.config import load_config
from stockbridge.errors import DataError



def _console() -> Console:
    return Console(width=max(Console().width, 140))


class Format(str, Enum):
    tardis = "tardis"
    lobster = "lobster"
    nbbo = "nbbo"
    trades_csv = "trades-csv"
    ccxt_trades = "ccxt-trades"
    ccxt_ohlcv = "ccxt-ohlcv"
    hftbacktest = "hftbacktest"
    binance = "binance"
    bybit = "bybit"


def _print_reports(title: str, reports, written_label: str) -> None:
    from data.validate import drop_summary

    console = _console()
    console.print(title, soft_wrap=True)
    table = Table()
    for col, just in (("file", "left"), ("format", "left"), ("source rows", "right"), (written_label, "right"), ("dropped", "left"), ("skipped", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in reports:
        written = ", ".join(f"{name}: {n:,}" for name, n in r.written.items()) or "0"
        dropped_text = drop_summary(r.dropped).removeprefix("dropped ") or "0"
        skipped = ", ".join(f"{n:,} {kind}" for kind, n in r.skipped.items()) or "0"
        table.add_row(r.path, r.format, f"{r.source_rows:,}", written, dropped_text, skipped)
    console.print(table)
    for r in reports:
        if r.dropped:
            console.print(f"{r.path}: {drop_summary(r.dropped)}", soft_wrap=True)
        if r.gaps:
            shown = ", ".join(str(n) for n in r.gaps[:20]) + (" ..." if len(r.gaps) > 20 else "")
            console.print(f"{r.path}: book lost sync at line{'s' if len(r.gaps) > 1 else ''} {shown}", soft_wrap=True)


def convert(
    fmt: Format = typer.Argument(..., metavar="FORMAT", help="tardis, lobster, nbbo, trades-csv, ccxt-trades, ccxt-ohlcv, hftbacktest, binance or bybit (raw websocket captures)"),
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...", help="source files (lobster: MESSAGE ORDERBOOK pairs)"),
    config: Path = typer.Option(..., "--config", help="TOML config naming the venue and its symbols"),
    venue: str = typer.Option(..., "--venue", help="venue (a [venues] table of the config) the data comes from"),
    instrument: str = typer.Option(None, "--instrument", help="instrument of files without a symbol column (default: the venue's only one)"),
    out: Path = typer.Option(..., "--out", help="directory of the Parquet store to add to"),
    date: str = typer.Option(None, "--date", help="trading day YYYY-MM-DD (lobster: times are seconds after New York midnight)"),
    repair: bool = typer.Option(False, "--repair", help="drop bad rows (counted per problem) instead of stopping at the first"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the rows of the kinds written in partitions that already hold them (atomically)"),
    append: bool = typer.Option(False, "--append", help="add to partitions that already hold rows of the kinds written (default: refuse)"),
    clock_offset_ms: float = typer.Option(0.0, "--clock-offset-ms", help="added to every local_ts written, ms (a capture clock 1.27 s behind: 1270)"),
) -> None:
    """Convert tick-data files into the Parquet store, validating every row.

    A partition that already holds rows of the kinds being written (the same data converted twice)
    is refused unless --overwrite or --append is given; nothing is written unless every file converts.
    """
    from data.convert import convert_files
    from data.convert.source import Job

    if overwrite and append:
        raise typer.BadParameter("--overwrite and --append exclude each other")
    cfg = load_config(config)
    mode = "overwrite" if overwrite else "append" if append else "refuse"
    job = Job(cfg, venue, instrument=instrument, out=out, repair=repair, date=date, config_path=str(config), mode=mode, clock_offset_ms=clock_offset_ms)
    reports = convert_files(fmt.value, list(inputs), job)
    total = sum(sum(r.written.values()) for r in reports)
    _print_reports(f"{out}: {total:,} rows written for venue {venue}", reports, "written")


def validate(
    paths: list[Path] = typer.Argument(..., metavar="PATH...", help="store directories or source files"),
    config: Path = typer.Option(..., "--config", help="TOML config naming venues, instruments and symbols"),
    fmt: Format = typer.Option(None, "--format", help="format of source files (default: detected from the content)"),
    venue: str = typer.Option(None, "--venue", help="venue of source files"),
    instrument: str = typer.Option(None, "--instrument", help="instrument of source files without a symbol column"),
    date: str = typer.Option(None, "--date", help="trading day YYYY-MM-DD (lobster)"),
) -> None:
    """Check stores or source files; stop with one line naming file, row and field at the first problem.

    A store is first checked whole (non-finite values, time order, duplicated rows, feed latency per
    venue, printed as tables), then replayed partition by partition (values, crossed books).
    """
    from data.convert import convert_files, detect_format
    from data.convert.source import Job
    from data.store_check import check_store
    from data.validate import validate_store

    cfg = load_config(config)
    sources: list[Path] = []
    for path in paths:
        if path.is_dir() or not path.exists() and not path.suffix:
            report = check_store(path, cfg)
            _print_store_check(report)
            report.raise_first()
            got = validate_store(path, cfg.venue_ids(), cfg.instrument_ids())
            _console().print(f"[green]OK[/green] {path}: {got['rows']:,} rows in {got['partitions']} partitions", soft_wrap=True)
        elif path.exists():
            sources.append(path)
        else:
            raise DataError(str(path), None, None, "no such file or directory")
    if not sources:
        return
    if venue is None:
        raise DataError(str(sources[0]), None, None, "checking a source file needs --venue (its symbols are looked up there)")
    job = Job(cfg, venue, instrument=instrument, out=None, date=date, config_path=str(config))
    if fmt is not None:
        reports = convert_files(fmt.value, sources, job)
    else:
        reports = []
        for path in sources:
            detected = detect_format(path)
            if detected is None:
                raise DataError(str(path), None, None, "format not recognised from the content; pass --format")
            reports += convert_files(detected, [path], job)
    _print_reports("source files: OK", reports, "events")


def _print_store_check(report) -> None:
    console = _console()
    table = Table(title=f"{report.root}: feed latency (local_ts + clock offset - exch_ts) per venue", title_justify="left")
    for col in ("venue", "clock offset ms", "rows", "negative", "median ms", "worst ms"):
        table.add_column(col, justify="left" if col == "venue" else "right")
    for v in report.latency.values():
        med = f"{v.median_ns / 1e6:,.3f}" if v.median_ns is not None else "-"
        worst = f"{v.worst_ns / 1e6:,.3f}" if v.worst_ns is not None else "-"
        table.add_row(v.venue, f"{v.clock_offset_ns / 1e6:g}", f"{v.rows:,}", f"{v.negative:,}", med, worst)
    console.print(table)
    if report.problems:
        problems = Table(title=f"{report.root}: problems", title_justify="left")
        for col in ("problem", "rows", "first at"):
            problems.add_column(col, justify="right" if col == "rows" else "left", overflow="fold")
        for p in report.problems:
            problems.add_row(p.kind, f"{p.count:,}", str(p.error()))
        console.print(problems)


def export_hftbacktest(
    store: Path = typer.Argument(..., help="directory of the Parquet event store"),
    config: Path = typer.Option(..., "--config", help="TOML config (venue/instrument ids, clock offsets)"),
    venue: str = typer.Option(..., "--venue", help="venue to export"),
    instrument: str = typer.Option(..., "--instrument", help="instrument to export"),
    out: Path = typer.Option(..., "--out", help="hftbacktest event file to write (.npz, array 'data')"),
) -> None:
    """Write one venue/instrument of a store as an hftbacktest .npz event file (local_ts with clock offsets applied)."""
    from data.convert.hftbacktest import export_store

    cfg = load_config(config)
    for key, name, known in (("venue", venue, cfg.venues), ("instrument", instrument, cfg.instruments)):
        if name not in known:
            raise DataError(str(config), None, key, f"unknown {key} '{name}' (known: {', '.join(known)})")
    got = export_store(store, cfg, venue, instrument, out)
    skipped = ", ".join(f"{n:,} {why}" for why, n in got["skipped"].items()) or "none"
    _console().print(f"{out}: {got['rows']:,} hftbacktest rows from {got['events']:,} events of {venue}/{instrument}; skipped: {skipped}", soft_wrap=True)


def register(data_app: typer.Typer) -> None:
    """Add `convert`, `validate` and `export-hftbacktest` to the `stockbridge data` group."""
    data_app.command("convert")(convert)
    data_app.command("validate")(validate)
    data_app.command("export-hftbacktest")(export_hftbacktest)
