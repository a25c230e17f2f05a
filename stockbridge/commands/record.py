"""`stockbridge record CONFIG --out DIR`: the venues' public market data into a Parquet store, no trading.

The venues are CONFIG's, opened as ``stockbridge live`` opens them (``[live] sandbox``): the
in-process loopback emulators by default (replaying ``--data``, or the config's synthetic market
generated into ``OUT/.sandbox-market``, from ``--start`` at ``--speed``), the venues' test
environments (``"testnet"``) or the real venues (``false``). Recording never trades, so real venues
need no ``--real-money`` and no keys: the crypto venues' public streams are read without any (the
broker's market data needs its keys: without them in the environment it is skipped with a notice).

One feed per venue and instrument (every instrument the venue lists in the config) runs for
``--duration``; what arrives goes to :class:`execution.recorder.Recorder` (depth deltas with a
snapshot per day partition, L1 quotes, trades; exchange and local times; a part file per second at
most, so a crash loses at most ``--flush-s``). At the end a table says what was written where;
``stockbridge backtest CONFIG --data OUT`` replays it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stockbridge.config import load_config

NS = 1_000_000_000
log = logging.getLogger("stockbridge.live")


def record(
    config: Path = typer.Argument(..., help="TOML config: its venues and instruments are recorded; [live] says sandbox, testnet or real"),
    out: Path = typer.Option(..., "--out", help="the Parquet store to write (venue=/instrument=/date=/part-*.parquet); appended to if it exists"),
    duration: str = typer.Option("10m", "--duration", help="how long to record (wall time): 90s, 10m, 2h"),
    data: Path = typer.Option(None, "--data", help="in-process sandbox: the store to replay (default: OUT/.sandbox-market with the config's synthetic market)"),
    speed: float = typer.Option(10.0, "--speed", min=0.01, help="in-process sandbox: market seconds per wall second"),
    start: str = typer.Option(None, "--start", help="in-process sandbox: replay from this time (ISO-8601 with zone); default 5 minutes before the store's first regular open"),
    skip_venue: list[str] = typer.Option([], "--skip-venue", help="do not record this venue (repeatable)"),
    flush_s: float = typer.Option(0.5, "--flush-s", min=0.05, max=1.0, help="seconds between writes: the most a crash loses"),
) -> None:
    """Record CONFIG's venues' books and trades into the store OUT (the sandbox unless [live] says otherwise)."""
    from execution.live import plan_venues
    from stockbridge.commands.live import _duration, _logging

    cfg = load_config(config)
    seconds = _duration(duration)
    sandbox = cfg.live.sandbox
    real = sandbox is not True and sandbox != "testnet"
    plan = plan_venues(cfg, str(config), real_money=real, skip=list(skip_venue))  # recording never trades
    console = Console(width=max(Console().width, 120))
    for name, why in plan.skipped.items():
        console.print(f"{name}: {why.replace('traded', 'recorded')}")
    out.mkdir(parents=True, exist_ok=True)
    _logging(out / ".record.log")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_main(cfg, config, plan, out, data, speed, start, seconds, flush_s, console))


async def open_public_adapters(cfg, plan, environ=None) -> tuple[dict[str, Any], dict[str, str]]:
    """Testnet / real venues for market data only: ccxt.pro clients without keys; the broker with its
    keys when the environment has them. Returns (adapters, skipped venue -> why)."""
    import ccxt.pro as ccxtpro

    from execution.live import live_adapter_kind

    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in plan.traded:
        v = cfg.venues[name]
        if live_adapter_kind(v) == "ccxt":
            options: dict[str, Any] = {"defaultType": "spot"}
            if v.ccxt_id == "bybit":
                options["fetchMarkets"] = {"types": ["spot"]}
            ad = getattr(ccxtpro, v.ccxt_id)({"enableRateLimit": True, "options": options})
            if plan.mode == "testnet":
                ad.set_sandbox_mode(True)
        else:
            from execution.alpaca_venue import AlpacaVenue

            lv = cfg.live.venues.get(name)
            try:
                creds = lv.credentials(name, environ) if lv is not None else None
            except Exception as exc:  # noqa: BLE001 - a missing variable: say which, record the others
                creds, why = None, str(exc)
            else:
                why = "no [live.venues.%s] keys in the config" % name
            if creds is None:
                skipped[name] = f"its market data needs API keys ({why}): not recorded"
                continue
            opts = creds.ccxt_options()
            ad = AlpacaVenue.from_keys(opts["apiKey"], opts["secret"], paper=plan.mode == "testnet",
                                       symbols=list(v.instruments.values()))
        await ad.load_markets()
        out[name] = ad
    return out, skipped


def make_feeds(cfg, adapters: dict[str, Any], recorder, clock) -> list:
    """One BookFeed per (venue, instrument of the venue) into ``recorder``."""
    from execution.market_data import BookFeed

    vid, iid = cfg.venue_ids(), cfg.instrument_ids()
    feeds = []
    for name, ad in adapters.items():
        for inst, symbol in cfg.venues[name].instruments.items():
            feeds.append(BookFeed(f"{name}:{inst}", vid[name], iid[inst], ad, symbol, clock=clock,
                                  on_book=recorder.book, on_trades=recorder.trades,
                                  call_timeout_s=cfg.live.call_timeout_ms / 1000))
    return feeds


def status_line(recorder, elapsed: float, seconds: float, feeds: list) -> str:
    per = recorder.totals()
    venues = " · ".join(f"{v} {n:,} rows" for v, n in sorted(per.items())) or "waiting for the first books"
    errors = sum(f.stats.stream_errors for f in feeds)
    extra = f" · stream errors {errors}" if errors else ""
    if recorder.error is not None:
        extra += f" · [red]write failed: {type(recorder.error).__name__}[/red]"
    return (f"recording {elapsed:5.1f}/{seconds:g} s · {venues} · buffered {recorder.buffered} · "
            f"{recorder.flushes} flushes (last {recorder.last_flush_ms:.1f} ms){extra}")


def written_table(recorder, root: Path) -> Table:
    """What a recorder wrote, per venue and instrument: books and trades received, rows and part files
    written, the first and last local time (UTC)."""
    from datetime import datetime, timezone

    def t(ns):
        return "-" if ns is None else datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%H:%M:%S")

    days = sorted({d for s in recorder.stats.values() for d in s.days})
    when = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}" if days else "nothing written"
    table = Table(title=f"recorded into {root} ({when}, local times UTC)", title_justify="left")
    for col in ("venue", "instrument", "books", "trades", "book rows", "trade rows", "snapshots", "files", "first", "last"):
        table.add_column(col, justify="left" if col in ("venue", "instrument") else "right", no_wrap=True)
    tot = [0, 0, 0, 0, 0, 0]
    for (_, _), s in sorted(recorder.stats.items()):
        row = (s.books, s.trades, s.book_rows, s.trade_rows, s.snapshots, s.files)
        table.add_row(s.venue, s.instrument, *(f"{x:,}" for x in row), t(s.first_local_ns), t(s.last_local_ns))
        tot = [a + x for a, x in zip(tot, row)]
    table.add_row("total", "", *(f"{x:,}" for x in tot), "", "", end_section=True)
    return table


async def _main(cfg, config: Path, plan, out: Path, data: Path | None, speed: float, start: str | None,
                seconds: float, flush_s: float, console: Console) -> None:
    from execution.live import check_grids, close_adapters, open_adapters
    from execution.recorder import Recorder

    sandbox = None
    adapters: dict[str, Any] = {}
    recorder = None
    try:
        if plan.mode == "sandbox":
            from stockbridge.commands.live import start_sandbox

            sandbox = await start_sandbox(cfg, plan, data if data is not None else out / ".sandbox-market", data is None,
                                          speed, start, console)
            clock = sandbox.clock.data_now
            with console.status("connecting: loading markets"):
                adapters = await open_adapters(cfg, plan, sandbox=sandbox, call_timeout_s=cfg.live.call_timeout_ms / 1000)
            check_grids(cfg, adapters, str(config))
        else:
            clock = time.time_ns
            with console.status("connecting: loading markets"):
                adapters, skipped = await open_public_adapters(cfg, plan)
            for name, why in skipped.items():
                console.print(f"{name}: {why}")
            console.print(f"{plan.mode}: recording {', '.join(adapters) or 'nothing'} (public market data, no keys)")
        if not adapters:
            raise typer.Exit(1)
        recorder = Recorder.for_config(cfg, out, flush_s=flush_s, since_ns=clock())
        feeds = make_feeds(cfg, adapters, recorder, clock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(f()) for feed in feeds for f in feed.tasks()]
        began = time.perf_counter()
        with Live(status_line(recorder, 0.0, seconds, feeds), console=console, auto_refresh=False,
                  transient=not console.is_terminal) as view:
            try:
                while not stop.is_set() and (elapsed := time.perf_counter() - began) < seconds:
                    view.update(status_line(recorder, elapsed, seconds, feeds), refresh=True)
                    try:
                        await asyncio.wait_for(stop.wait(), min(0.5, max(seconds - elapsed, 0.01)))
                    except TimeoutError:
                        pass
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        recorder.close()
        console.print(status_line(recorder, time.perf_counter() - began, seconds, feeds))
        console.print(written_table(recorder, out))
        for f in feeds:
            if f.stats.rejected or f.stats.stream_errors:
                console.print(f"[yellow]notice:[/yellow] {f.name}: {f.stats.stream_errors} stream errors, "
                              f"{f.stats.rest_books} REST books, rejected {dict(f.stats.rejected) or 'none'}")
        if recorder.dropped:
            console.print("trades not stored: " + ", ".join(f"{n:,} {why}" for why, n in recorder.dropped.items()))
        if recorder.clamped:
            console.print(f"[yellow]notice:[/yellow] {recorder.clamped} rows arrived with a local time earlier than "
                          "the row before (the clock stepped back); they were stored at the earlier row's time")
        if recorder.error is not None:
            console.print(f"[red]error:[/red] {recorder.lost_rows:,} rows could not be written: {recorder.error}")
            raise typer.Exit(1)
        console.print(f"replay it: stockbridge backtest {config} --data {out}")
    finally:
        if recorder is not None:
            recorder.close()
        await close_adapters(adapters)
        if sandbox is not None:
            await sandbox.stop()


def register(app: typer.Typer) -> None:
    app.command("record")(record)


__all__ = ["make_feeds", "open_public_adapters", "record", "register", "status_line", "written_table"]
