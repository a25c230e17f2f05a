"""`stockbridge sandbox up` (loopback venue emulators replaying a store), `stockbridge sandbox faults`
(send a fault to a running sandbox through its control API) and `stockbridge sandbox chaos` (the live
bot under random faults, checked against the emulators' ledgers)."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from stockbridge.config import load_config
from stockbridge.errors import ConfigError

sandbox_app = typer.Typer(help="Loopback emulators of Bybit, Kraken and Alpaca that the real clients talk to.",
                          no_args_is_help=True)

STATE_FILE = ".stockbridge-sandbox.json"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@sandbox_app.command("up")
def up(
    config: Path = typer.Argument(..., help="TOML config; every venue with ccxt_id bybit, kraken or alpaca gets an emulator"),
    data: Path = typer.Option(Path("sandbox-data"), "--data", help="Parquet event store to replay; an empty one gets the config's synthetic market"),
    speed: float = typer.Option(1.0, "--speed", min=0.001, help="market seconds per wall second (1 = real time, 60 = a minute per second)"),
    step: bool = typer.Option(False, "--step", help="the clock moves only through POST /sandbox/step (tests)"),
    data_time: bool = typer.Option(False, "--data-time", help="the venues show the replay's data time, not wall time: "
                                                              "what `stockbridge live --attach` needs"),
    start: str = typer.Option(None, "--start", help="replay from this time (ISO-8601 with zone); default: the store's first row"),
    state: Path = typer.Option(Path(STATE_FILE), "--state", help="where to write the running sandbox's URLs for `sandbox faults`"),
    for_seconds: float = typer.Option(0.0, "--for", min=0.0, help="stop after this many wall seconds (0 = until Ctrl-C)"),
) -> None:
    """Start one emulator per configured venue that has one; print its URLs and the API key and secret it
    accepts; run until Ctrl-C."""
    from execution.sandbox.sandbox import Sandbox, emulated_kind
    from execution.sandbox.state import write_state
    from stockbridge.commands.backtest import _synthesize_if_empty
    from stockbridge.instruments import to_ns

    cfg = load_config(config)
    venues = [n for n, v in cfg.venues.items() if emulated_kind(v)]
    if not venues:
        raise ConfigError(str(config), "venues", "no venue has a sandbox emulator (ccxt_id bybit, kraken or alpaca)")
    console = Console(width=max(Console().width, 120))
    _synthesize_if_empty(cfg, data, console)
    start_ns = to_ns(start) if start else None

    async def main() -> None:
        sb = Sandbox(cfg, data, speed=speed, stepped=step, start_ns=start_ns, venues=venues, show_data_time=data_time)
        with console.status("building the emulators (replaying the store up to the start)"):
            await sb.start()
        try:
            console.print(f"sandbox: replaying {data} from {_iso(sb.clock.data_start_ns)}"
                          + (" (stepped clock)" if step else f" at speed {speed:g}"))
            for v in sb.venues.values():
                console.print(f"\n[bold]{v.name}[/bold] ({v.kind}: {', '.join(m.id for m in v.emu.markets.values())})")
                for k, u in v.urls().items():
                    console.print(f"  {k:<11} {u}", soft_wrap=True)
                console.print(f"  {'api key':<11} {v.api_key}", soft_wrap=True)
                console.print(f"  {'secret':<11} {v.secret}", soft_wrap=True)
            console.print()
            write_state(sb, state)
            console.print(f"control API and URLs written to {state}; faults: stockbridge sandbox faults KIND --venue NAME")
            console.print("running; Ctrl-C to stop")
            if for_seconds > 0:
                await asyncio.sleep(for_seconds)
            else:
                await asyncio.Event().wait()
        finally:
            await sb.stop()
            state.unlink(missing_ok=True)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    console.print("sandbox stopped")


@sandbox_app.command("faults")
def faults(
    kind: str = typer.Argument(..., help="fault kind (drop_ws, delay, lose, http_error, timeout, rate_limit, partial_fill, halt, "
                                         "resume, default, freeze_feed, unfreeze_feed, skew_clock, clear), or 'list' for the log"),
    params: list[str] = typer.Argument(None, help="KEY=VALUE parameters, e.g. what=fill count=2, symbol=AAPLXUSDT, ms=5000"),
    venue: str = typer.Option(..., "--venue", help="config venue name of the running emulator"),
    state: Path = typer.Option(Path(STATE_FILE), "--state", help="state file written by `sandbox up`"),
) -> None:
    """Send a fault to a running sandbox venue (or list the faults it has logged)."""
    from execution.sandbox.state import read_state

    running = read_state(state)["venues"]
    if venue not in running:
        raise ConfigError(str(state), venue, f"no emulator for venue {venue!r} (running: {', '.join(running)})")
    base = running[venue]["control"]
    console = Console(width=max(Console().width, 100))
    if kind == "list":
        log = _call(urllib.request.Request(f"{base}/sandbox/faults"), kind, state)
        table = Table(title=f"faults set on {venue}", title_justify="left")
        for col in ("wall time", "data time", "kind", "params"):
            table.add_column(col)
        for rec in log:
            table.add_row(_iso(rec["wall_ns"]), _iso(rec["data_ns"]), rec["kind"], json.dumps(rec["params"]))
        console.print(table)
        return
    body: dict = {"kind": kind}
    for p in params or []:
        if "=" not in p:
            raise typer.BadParameter(f"parameters are KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        body[k] = json.loads(v) if v.replace(".", "", 1).lstrip("-").isdigit() else v
    req = urllib.request.Request(f"{base}/sandbox/faults", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    rec = _call(req, kind, state)
    console.print(f"{venue}: {rec['kind']} {json.dumps(rec['params'])} set at {_iso(rec['wall_ns'])} (data time {_iso(rec['data_ns'])})")


@sandbox_app.command("chaos")
def chaos(
    config: Path = typer.Argument(..., help="TOML config; the bot trades its venues that have an emulator"),
    minutes: float = typer.Option(10.0, "--minutes", min=0.5, help="how long the bot trades under faults (wall minutes)"),
    seed: int = typer.Option(0, "--seed", help="seed of the fault plan (the same seed, the same faults at the same times)"),
    speed: float = typer.Option(5.0, "--speed", min=0.1, help="market seconds per wall second"),
    data: Path = typer.Option(Path("sandbox-data"), "--data", help="Parquet event store to replay; an empty one gets the config's synthetic market"),
    start: str = typer.Option(None, "--start", help="replay from this time (ISO-8601 with zone); default 5 minutes before the store's first regular open"),
    out: Path = typer.Option(Path("chaos-out"), "--out", help="where the bot's run directory (journal, logs) and chaos.json go"),
) -> None:
    """Run the live bot (`stockbridge live --attach`, a child process) against the sandbox while random
    faults hit it, then check every fill, order and balance against the emulators' ledgers. Exits 1 if
    an invariant is violated (a fault the bot had not recovered from by the end is reported, not an
    error: the end may come too soon)."""
    from execution.sandbox.chaos import MENU, run_chaos
    from execution.sandbox.sandbox import emulated_kind
    from stockbridge.commands.backtest import _synthesize_if_empty
    from stockbridge.commands.live import default_start
    from stockbridge.instruments import to_ns

    cfg = load_config(config)
    if not any(emulated_kind(v) for v in cfg.venues.values()):
        raise ConfigError(str(config), "venues", "no venue has a sandbox emulator (ccxt_id bybit, kraken or alpaca)")
    console = Console(width=max(Console().width, 120))
    _synthesize_if_empty(cfg, data, console)
    start_ns = to_ns(start) if start else default_start(cfg, data)
    seconds = minutes * 60.0
    out.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("stockbridge.sandbox")  # every fault set is logged: to a file, not over the progress bar
    log.addHandler(logging.FileHandler(out / "sandbox.log", encoding="utf-8"))
    log.propagate = False
    console.print(f"chaos: {minutes:g} min at {speed:g}x from {_iso(start_ns)}, seed {seed}; faults from: "
                  + ", ".join(sorted(MENU)))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("trading under faults", total=seconds, note="")
        result = asyncio.run(run_chaos(cfg, config, data, out, seconds=seconds, seed=seed, speed=speed, start_ns=start_ns,
                                       progress=lambda done, total, note: bar.update(task, completed=done, note=note)))
    table = Table(title=f"faults injected (seed {seed}, {result.seconds:g} s, {result.restarts} restarts after kill -9)",
                  title_justify="left")
    for col in ("fault", "injected", "recovered", "recover p50 (s)", "recover max (s)"):
        table.add_column(col, justify="left" if col == "fault" else "right")
    fmt = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    rows = result.by_kind()
    for kind, n, rec, p50, worst in rows:
        table.add_row(kind, str(n), str(rec), fmt(p50), fmt(worst))
    every = sorted(f.recovered_s for f in result.faults if f.recovered_s is not None)
    table.add_row("[bold]all[/bold]", str(len(result.faults)), str(len(every)), fmt(every[(len(every) - 1) // 2] if every else None),
                  fmt(every[-1] if every else None))
    console.print(table)
    console.print("fills (each venue's ledger, all in the journal once): "
                  + ", ".join(f"{n} {c}" for n, c in result.fills.items()))
    late = result.unrecovered()
    console.print(f"not recovered by the end of the run: {len(late)}"
                  + "".join(f"\n  {f.kind}{' at ' + f.venue if f.venue else ''} at {f.at_s:.0f} s" for f in late))
    left = result.extra.get("unresolved_at_exit", {})
    if any(left.values()):
        console.print("orders whose create was never answered, left for the next start to look up: "
                      + ", ".join(f"{n} {c}" for n, c in left.items() if c))
    console.print(f"invariant violations: {len(result.problems)}")
    for p in result.problems:
        console.print(f"  {p}", soft_wrap=True)
    report = {"seed": seed, "minutes": minutes, "speed": speed, "start_ns": start_ns, "seconds": result.seconds,
              "restarts": result.restarts, "fills": result.fills, "problems": result.problems,
              "unresolved_at_exit": left,
              "by_kind": [dict(zip(("kind", "injected", "recovered", "p50_s", "max_s"), r)) for r in rows],
              "faults": [vars(f) for f in result.faults]}
    (out / "chaos.json").write_text(json.dumps(report, indent=2))
    console.print(f"bot run directory {result.run_dir}; every fault in {out / 'chaos.json'}")
    if result.problems:
        raise typer.Exit(1)


def _call(req: urllib.request.Request, kind: str, state: Path):
    """One control-API call; its refusal or a dead sandbox as a one-line error."""
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(req.full_url, kind, json.loads(exc.read()).get("error", str(exc))) from None
    except urllib.error.URLError as exc:
        raise ConfigError(str(state), None, f"the sandbox at {req.full_url} does not answer ({exc.reason}); "
                                            "is it still running? (a stale state file?)") from None


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
