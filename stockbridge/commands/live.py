"""`stockbridge live CONFIG`: the strategy of CONFIG trading venues, against the in-process sandbox by default.

With ``[live] sandbox = true`` (the default) the loopback emulators of the configured venues start
in this process and replay a store (the config's synthetic market when ``--data`` is empty), from
``--start`` (default: a few minutes before the store's first regular-session open, so a short run
crosses an open session and hedges) at ``--speed`` market seconds per wall second; with ``--attach``
the bot trades a sandbox running in another process instead (``stockbridge sandbox up --data-time``),
which outlives the bot: kill it, start it again, and it reconciles from its journal. Venues without
a live adapter are skipped with a notice. ``sandbox = "testnet"`` uses the venues' own test
environments and ``sandbox = false`` real venues; that needs ``--real-money`` as well. Keys come
from the environment variables named in ``[live.venues.NAME]``.

The run directory (``--out``) gets the journal, a log, summary.json, fills/timeseries Parquet and
report.html: the same summary tables and report as a backtest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live

from stockbridge.config import load_config

NS = 1_000_000_000
log = logging.getLogger("stockbridge.live")


def _duration(text: str) -> float:
    """'90s', '10m', '2h' or plain seconds -> seconds."""
    t = text.strip().lower()
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:]) if t else None
    try:
        value = float(t[:-1] if unit else t) * (unit or 1.0)
    except ValueError:
        raise typer.BadParameter(f"expected a duration such as 90s, 10m or 2h, got {text!r}", param_hint="--duration")
    if not value > 0:
        raise typer.BadParameter(f"must be > 0, got {text!r}", param_hint="--duration")
    return value


def default_start(cfg, data_dir: Path, lead_s: float = 300.0) -> int:
    """``lead_s`` before the first regular-session open inside the store (its first row if none)."""
    from data.reader import store_extent
    from stockbridge.sessions import REGULAR, SessionCalendar

    lo, hi, _ = store_extent(data_dir, cfg)
    cal = SessionCalendar(lo, hi, cfg.sessions.calendar)
    opens = cal.boundaries[(cal.states == REGULAR) & (cal.boundaries > lo + int(lead_s * NS)) & (cal.boundaries < hi)]
    return int(opens[0]) - int(lead_s * NS) if len(opens) else lo


def live(
    config: Path = typer.Argument(..., help="TOML config; [live] says sandbox, testnet or real venues"),
    duration: str = typer.Option("10m", "--duration", help="how long to trade (wall time): 90s, 10m, 2h"),
    out: Path = typer.Option(Path("live-out"), "--out", help="run directory: journal, log, summary.json, report.html"),
    data: Path = typer.Option(None, "--data", help="in-process sandbox: the store to replay (default: OUT/data with the config's synthetic market)"),
    speed: float = typer.Option(10.0, "--speed", min=0.01, help="in-process sandbox: market seconds per wall second"),
    start: str = typer.Option(None, "--start", help="in-process sandbox: replay from this time (ISO-8601 with zone); default 5 minutes before the store's first regular open"),
    real_money: bool = typer.Option(False, "--real-money", help="trade real venues (needs live.sandbox = false as well)"),
    skip_venue: list[str] = typer.Option([], "--skip-venue", help="do not trade this venue (repeatable)"),
    leftover: str = typer.Option("cancel", "--leftover", help="orders of an earlier run found resting at start-up: cancel or keep"),
    metrics_port: int = typer.Option(0, "--metrics-port", min=-1, max=65535, help="Prometheus endpoint on 127.0.0.1 (0: a free port, -1: none)"),
    record: bool = typer.Option(False, "--record", help="record the market data received into OUT/data-recorded (a Parquet store the backtester reads)"),
    record_dir: Path = typer.Option(None, "--record-dir", help="record the market data into this store instead (implies --record)"),
    attach: Path = typer.Option(None, "--attach", help="trade the sandbox running in another process (its state file, from "
                                                       "`stockbridge sandbox up --data-time`) instead of starting one; its "
                                                       "API keys from [live.venues.NAME]'s environment variables"),
) -> None:
    """Trade CONFIG's strategy live; the sandbox unless the config and --real-money both say otherwise."""
    from execution.live import plan_venues

    cfg = load_config(config)
    seconds = _duration(duration)
    if leftover not in ("cancel", "keep"):
        raise typer.BadParameter(f"expected cancel or keep, got {leftover!r}", param_hint="--leftover")
    plan = plan_venues(cfg, str(config), real_money=real_money, skip=list(skip_venue))
    if attach is not None and plan.mode != "sandbox":
        raise typer.BadParameter(f"attaches to a sandbox, but the config trades {plan.mode} venues (live.sandbox)",
                                 param_hint="--attach")
    console = Console(width=max(Console().width, 120))
    for name, why in plan.skipped.items():
        console.print(f"{name}: {why}")
    out.mkdir(parents=True, exist_ok=True)
    _logging(out / "live.log")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # Windows: the standard loop
        runner = asyncio.run
    rec_dir = record_dir if record_dir is not None else (out / "data-recorded" if record else None)
    runner(_main(cfg, config, plan, out, data, speed, start, seconds, leftover, metrics_port, console, rec_dir, attach))


def _logging(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("stockbridge")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    root.propagate = False


async def _main(cfg, config: Path, plan, out: Path, data: Path | None, speed: float, start: str | None,
                seconds: float, leftover: str, metrics_port: int, console: Console, rec_dir: Path | None = None,
                attach: Path | None = None) -> None:
    from execution.live import build_session, check_grids, close_adapters, open_adapters
    from execution.live_report import write_live_outputs
    from execution.view import render
    from stockbridge.commands.backtest import print_summary

    sandbox = None
    secrets: list[str] = []
    if attach is not None:
        sandbox, secrets = attach_sandbox(cfg, config, plan, attach)
        console.print(f"sandbox: {', '.join(plan.traded)} of the sandbox in {attach}, at {sandbox.clock.speed:g}x")
        clock = sandbox.clock.data_now
    elif plan.mode == "sandbox":
        sandbox = await start_sandbox(cfg, plan, data if data is not None else out / "data", data is None, speed,
                                      start, console)
        clock = sandbox.clock.data_now
        secrets = [s for v in sandbox.venues.values() for s in (v.api_key, v.secret)]
    else:
        clock = time.time_ns
        for name in plan.traded:
            lv = cfg.live.venues.get(name)
            if lv is not None:
                secrets += lv.credentials(name).secrets()
        console.print(f"{plan.mode}: {', '.join(plan.traded)}")
    adapters: dict = {}
    metrics = None
    recorder = None
    try:
        if rec_dir is not None:
            from execution.recorder import Recorder

            recorder = Recorder.for_config(cfg, rec_dir)
        with console.status("connecting: loading markets"):
            adapters = await open_adapters(cfg, plan, sandbox=sandbox, call_timeout_s=cfg.live.call_timeout_ms / 1000)
        check_grids(cfg, adapters, str(config))
        log.info("markets loaded: %s", ", ".join(adapters))
        with console.status("compiling the trader core (first run after an install; later runs load it from the cache)"):
            session = await build_session(cfg, str(config), out, plan, adapters, clock=clock, start_ns=clock(),
                                          horizon_ns=int(seconds * sandbox.clock.speed * NS) if sandbox else int(seconds * NS),
                                          secrets=secrets, policy=leftover, recorder=recorder)
        log.info("session built and reconciled; trading")
        for rec in session.reconciliation:
            for line in rec.lines():
                console.print(line)
        runner = session.runner
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop, f"signal {signal.Signals(sig).name}")
        if metrics_port >= 0:
            from execution.metrics import LiveMetrics

            metrics = LiveMetrics()
            console.print(f"metrics: http://127.0.0.1:{metrics.serve(metrics_port)}/metrics")
        began = time.perf_counter()

        async def refresh(live_view: Live) -> None:
            while True:
                snap = runner.snapshot()
                live_view.update(render(snap, runner.core), refresh=True)
                if metrics is not None:
                    metrics.update(snap)
                await asyncio.sleep(0.5)

        with Live(render(runner.snapshot(), runner.core), console=console, auto_refresh=False,
                  transient=not console.is_terminal) as view:
            painter = asyncio.create_task(refresh(view))
            try:
                if recorder is not None:
                    recorder.since_ns = clock()  # the streams start now: trades printed before are history
                reason = await runner.run(seconds)
            finally:
                painter.cancel()
                await asyncio.gather(painter, return_exceptions=True)
        console.print(render(runner.snapshot(), runner.core))
        console.print(f"run ended: {reason}")
        for line in runner.notices:
            console.print(f"[yellow]notice:[/yellow] {line}")
        extra = {"mode": plan.mode, "stop_reason": reason, "decisions": runner.decisions,
                 "events": runner.events, "orders": runner.om.snapshot(),
                 "skipped_venues": plan.skipped, "notices": runner.notices,
                 "feeds": {f.name: {"books": f.stats.books, "trades": f.stats.trades, "rest_books": f.stats.rest_books,
                                    "stream_errors": f.stats.stream_errors, "rejected": dict(f.stats.rejected),
                                    "resyncs": f.stats.resyncs, "wire_rejected": dict(f.stats.wire)}
                           for f in runner.feeds}}
        summary = write_live_outputs(out, journal=session.journal, sampler=runner.sampler, venues=runner.venue_names,
                                     config_path=str(config), seed=cfg.backtest.seed,
                                     wall_seconds=time.perf_counter() - began, extra=extra)
        session.journal.close()
        print_summary(summary, console)
        if recorder is not None:
            from stockbridge.commands.record import written_table

            recorder.close()
            console.print(written_table(recorder, rec_dir))
        console.print(f"outputs in {out}/: {cfg.live.journal} live.log fills.parquet timeseries.parquet "
                      "fair_track.parquet summary.json report.html")
    finally:
        if metrics is not None:
            metrics.close()
        if recorder is not None:
            recorder.close()
        await close_adapters(adapters)
        if sandbox is not None and attach is None:
            await sandbox.stop()


def attach_sandbox(cfg, config: Path, plan, state: Path):
    """The sandbox of another process (execution.sandbox.state) with the keys of ``plan``'s venues
    from the environment variables ``[live.venues.NAME]`` names (by default
    ``STOCKBRIDGE_SANDBOX_<NAME>_KEY`` / ``_SECRET``); returns it and the secrets to redact."""
    from execution.sandbox.state import AttachedSandbox
    from stockbridge.live_config import LiveVenueConfig

    keys, secrets = {}, []
    for name in plan.traded:
        lv = cfg.live.venues.get(name) or LiveVenueConfig.attached_sandbox(name)
        creds = lv.credentials(name)
        opts = creds.ccxt_options()
        keys[name] = (opts["apiKey"], opts["secret"])
        secrets += creds.secrets()
    sandbox = AttachedSandbox(state, keys)
    for name in plan.traded:
        sandbox[name]  # each traded venue runs there (or a one-line error naming it)
    return sandbox, secrets


async def start_sandbox(cfg, plan, data_dir: Path, synthesize: bool, speed: float, start: str | None,
                        console: Console):
    """The in-process emulators of ``plan``'s venues, started, replaying ``data_dir`` (the config's
    synthetic market written there first when ``synthesize``) from ``start`` (default
    :func:`default_start`) on a clock whose time the venues show."""
    from execution.sandbox.sandbox import Sandbox
    from stockbridge.commands.backtest import _synthesize_if_empty
    from stockbridge.instruments import to_ns

    if synthesize:
        _synthesize_if_empty(cfg, data_dir, console)
    start_ns = to_ns(start) if start else default_start(cfg, data_dir)
    sandbox = Sandbox(cfg, data_dir, speed=speed, start_ns=start_ns, venues=plan.traded, show_data_time=True)
    with console.status("starting the sandbox venues (replaying the store up to the start)"):
        await sandbox.start()
    console.print(f"sandbox: {', '.join(plan.traded)} on 127.0.0.1, replaying {data_dir} from "
                  f"{_iso(start_ns)} at {speed:g}x")
    return sandbox


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def register(app: typer.Typer) -> None:
    app.command("live")(live)


__all__ = ["default_start", "live", "register"]
