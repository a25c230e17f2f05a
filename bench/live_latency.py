"""Tick-to-order latency of the live bot on loopback: from a book reaching the bot (ccxt.pro has parsed
the venue's websocket message and handed over its book) to the ``create_order`` call of the order
that book caused leaving the bot for the venue's client, and the trader core's share of it
(``book_snapshot`` per book, ``step`` per decision).

The demo config's CEX venues (Bybit and Kraken emulators replaying the config's synthetic market at
``--speed``) are traded by the real bot: runner, guards, journal (SQLite WAL, fsynced by the journal in
a thread: the intents are on disk before the order leaves; ``--journal-sync normal``: in the
write-ahead log), order manager. The emulators run in a process of
their own (``--emulators process``, the default: a venue is not inside the bot's event loop) or on
the bot's own loop (``--emulators loop``, as ``stockbridge live`` runs its in-process sandbox). The
bench wraps each venue client's ``create_order``, the journal's commit of the intents, a send's wait
for their fsync and the core's
two calls to take the times; nothing else changes. It runs until ``--decisions`` core decisions have
been made, then prints p50 / p90 / p99 / max per stage and peak memory.

    python bench/live_latency.py [--decisions 10000] [--speed 10] [--emulators process|loop] [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.toml"


def percentiles(us: list[float]) -> list[str]:
    if not us:
        return ["-"] * 5
    a = np.asarray(us)
    return [f"{len(a):,}"] + [f"{np.percentile(a, q):,.1f}" for q in (50, 90, 99)] + [f"{a.max():,.1f}"]


async def run(args) -> dict:
    from rich.console import Console

    from execution.live import VenuePlan, build_session, close_adapters, open_adapters
    from execution.sandbox.sandbox import Sandbox
    from stockbridge.commands.backtest import _synthesize_if_empty
    from stockbridge.commands.live import default_start
    from stockbridge.config import load_config
    from stockbridge.core.order_codes import ACT_NEW
    from stockbridge.trader import cid_text

    cfg = load_config(CONFIG)
    cfg = cfg.model_copy(update={"live": cfg.live.model_copy(update={"journal_sync": args.journal_sync})})
    work = Path(tempfile.mkdtemp(prefix="live-latency-"))
    data = args.data or work / "data"
    _synthesize_if_empty(cfg, data, Console(stderr=True))
    venues = ["bybit", "kraken"]
    if args.emulators == "process":
        sb = RemoteSandbox(data, args.speed, default_start(cfg, data), venues)
    else:
        sb = Sandbox(cfg, data, speed=args.speed, start_ns=default_start(cfg, data), venues=venues, show_data_time=True)
        await sb.start()
    plan = VenuePlan("sandbox", venues, {n: "not in this bench" for n in cfg.venues if n not in venues})
    adapters = await open_adapters(cfg, plan, sandbox=sb)
    book_at: dict[str, int] = {}
    tick_to_order: list[float] = []
    snap_us: list[float] = []
    step_us: list[float] = []

    stages: dict[str, list[float]] = {"wake": [], "spawn": [], "send": [], "first": [], "ccxt": [], "request": []}
    decide_at = [0]
    submit_at: dict[str, int] = {}
    first_of_decision: set[str] = set()
    in_ccxt: dict[asyncio.Task, int] = {}  # a create's task -> the book's time, until its request is built

    def on_decision(book_perf_ns: int, actions) -> None:
        stages["wake"].append((decide_at[0] - book_perf_ns) / 1e3)
        for a in actions:
            book_at[cid_text(int(a["cid"]))] = book_perf_ns
        news = [a for a in actions if int(a["kind"]) == ACT_NEW]
        if news:
            first_of_decision.add(cid_text(int(news[0]["cid"])))

    for venue_name, ad in adapters.items():
        create = ad.create_order
        stages[f"ccxt {venue_name}"] = []

        async def timed(symbol, type, side, amount, price=None, params={}, _create=create):
            t = time.perf_counter_ns()
            cid = params.get("clientOrderId")
            b = book_at.pop(cid, None)
            if b:
                tick_to_order.append((t - b) / 1e3)
                stages["send"].append((t - submit_at.pop(cid, t)) / 1e3)
                if cid in first_of_decision:
                    stages["first"].append((t - b) / 1e3)
                in_ccxt[asyncio.current_task()] = (t, b)
            first_of_decision.discard(cid)
            try:
                return await _create(symbol, type, side, amount, price, params)
            finally:
                in_ccxt.pop(asyncio.current_task(), None)

        async def timed_fetch(url, method="GET", headers=None, body=None, _fetch=ad.fetch, _venue=venue_name):
            # ccxt's create_order has built, rate-limited and signed the request: the HTTP client gets it
            t = in_ccxt.pop(asyncio.current_task(), None)
            if t is not None:
                now = time.perf_counter_ns()
                stages["ccxt"].append((now - t[0]) / 1e3)
                stages[f"ccxt {_venue}"].append((now - t[0]) / 1e3)
                stages["request"].append((now - t[1]) / 1e3)
            return await _fetch(url, method, headers, body)

        ad.create_order = timed
        ad.fetch = timed_fetch  # set on the ccxt exchange under the wrappers: its fetch2 calls self.fetch
    session = await build_session(cfg, str(CONFIG), work / "run", plan, adapters, clock=sb.clock.data_now,
                                  start_ns=sb.clock.data_now(), horizon_ns=6 * 3600 * 10**9, on_decision=on_decision)
    runner = session.runner
    core = runner.core
    journal = session.journal
    record = journal.record_intents
    commit_us: list[float] = []
    disk_us: list[float] = []

    def timed_record(intents, local_ns, **kw):
        t = time.perf_counter_ns()
        record(intents, local_ns, **kw)
        commit_us.append((time.perf_counter_ns() - t) / 1e3)

    journal.record_intents = timed_record
    durable = journal.durable

    async def timed_durable(upto=None):
        t = time.perf_counter_ns()
        await durable(upto)
        disk_us.append((time.perf_counter_ns() - t) / 1e3)

    journal.durable = timed_durable
    decide, dispatch = runner.decide, runner.om.dispatch

    def timed_decide():
        decide_at[0] = time.perf_counter_ns()
        decide()

    def timed_dispatch(actions):
        t = time.perf_counter_ns()
        for a in actions:
            text = cid_text(int(a["cid"]))
            if text in book_at:
                submit_at[text] = t
        stages["spawn"].append((t - decide_at[0]) / 1e3)
        return dispatch(actions)

    runner.decide, runner.om.dispatch = timed_decide, timed_dispatch
    snap, step = core.book_snapshot, core.step

    def timed_snapshot(*a, **k):
        t = time.perf_counter_ns()
        snap(*a, **k)
        snap_us.append((time.perf_counter_ns() - t) / 1e3)

    def timed_step(now):
        t = time.perf_counter_ns()
        rc = step(now)
        if rc != 0:  # cycle.STEP_IDLE: not due, nothing decided
            step_us.append((time.perf_counter_ns() - t) / 1e3)
        return rc

    core.book_snapshot, core.step = timed_snapshot, timed_step
    task = asyncio.create_task(runner.run(None))
    began = time.perf_counter()
    while runner.decisions < args.decisions and time.perf_counter() - began < args.max_seconds and not task.done():
        await asyncio.sleep(0.5)
    runner.stop("bench done")
    await task
    counts = runner.om.snapshot()["counts"]
    wall = time.perf_counter() - began
    await close_adapters(adapters)
    session.journal.close()
    await sb.stop()
    return {"tick_to_order": tick_to_order, "snapshot": snap_us, "step": step_us, "commit": commit_us, "disk": disk_us, **stages,
            "decisions": runner.decisions, "books": runner.events, "wall": wall, "speed": args.speed,
            "counts": counts}


def _serve(data: str, speed: float, start_ns: int, venues: list[str], conn) -> None:
    """The emulators in a child process, on their own loop, until the parent says stop."""
    import uvloop

    from execution.sandbox.sandbox import Sandbox
    from stockbridge.config import load_config

    async def main() -> None:
        sb = Sandbox(load_config(CONFIG), data, speed=speed, start_ns=start_ns, venues=venues, show_data_time=True)
        await sb.start()
        conn.send({"clock": (sb.clock.data_start_ns, sb.clock._mono_start),
                   "venues": {n: (v.kind, v.api_key, v.secret, v.urls()) for n, v in sb.venues.items()}})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await sb.stop()

    uvloop.run(main())


@dataclass
class RemoteVenue:
    name: str
    kind: str
    api_key: str
    secret: str
    _urls: dict

    def urls(self) -> dict:
        return self._urls


class RemoteSandbox:
    """The emulators of ``venues`` in a child process (execution.sandbox.Sandbox there, replaying
    ``data`` at ``speed`` from ``start_ns``); ``clock.data_now`` is the child's replay clock (the
    two processes share CLOCK_MONOTONIC)."""

    def __init__(self, data, speed: float, start_ns: int, venues: list[str]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(str(data), speed, start_ns, venues, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(300):
            raise RuntimeError("the emulators' process did not start in 300 s")
        info = self._conn.recv()
        data0, mono0 = info["clock"]
        self.venues = {n: RemoteVenue(n, *v) for n, v in info["venues"].items()}
        self.clock = SimpleNamespace(speed=speed, data_now=lambda: data0 + int((time.monotonic_ns() - mono0) * speed))

    def __getitem__(self, name: str) -> RemoteVenue:
        return self.venues[name]

    async def stop(self) -> None:
        self._conn.send("stop")
        await asyncio.to_thread(self._proc.join, 30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=10_000)
    ap.add_argument("--speed", type=float, default=10.0, help="market seconds per wall second")
    ap.add_argument("--journal-sync", choices=("full", "normal"), default="full",
                    help="the journal's durability (live.journal_sync): fsync every commit, or leave it to the OS")
    ap.add_argument("--emulators", choices=("process", "loop"), default="process",
                    help="the venue emulators in a process of their own, or on the bot's event loop")
    ap.add_argument("--data", type=Path, default=None, help="store to replay (default: synthesize the demo's market)")
    ap.add_argument("--max-seconds", type=float, default=900.0)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    try:
        import uvloop

        r = uvloop.run(run(args))
    except ImportError:
        r = asyncio.run(run(args))
    t = Table(title=f"live bot on loopback: {r['decisions']:,} decisions, {r['books']:,} market events in "
                    f"{r['wall']:.0f} s at {r['speed']:g}x, emulators {args.emulators}, journal {args.journal_sync}", show_edge=False)
    for col in ("stage", "n", "p50 µs", "p90 µs", "p99 µs", "max µs"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    t.add_row("book in -> create_order out", *percentiles(r["tick_to_order"]))
    t.add_row("  the first new order of a decision", *percentiles(r["first"]))
    t.add_row("  book in -> the decision starts", *percentiles(r["wake"]))
    t.add_row("  decision -> the order manager runs", *percentiles(r["spawn"]))
    t.add_row("  order manager -> create_order (incl. journal)", *percentiles(r["send"]))
    t.add_row("  journal: the intents' commit", *percentiles(r["commit"]))
    t.add_row("  journal: a send waiting for its intents' fsync", *percentiles(r["disk"]))
    t.add_row("  trader core: book_snapshot (one book in)", *percentiles(r["snapshot"]))
    t.add_row("  trader core: step (one decision)", *percentiles(r["step"]))
    t.add_row("create_order -> its request to the HTTP client (ccxt: build, rate limiter, sign)", *percentiles(r["ccxt"]))
    for k in sorted(k for k in r if k.startswith("ccxt ")):
        t.add_row(f"  at {k[5:]}", *percentiles(r[k]))
    t.add_row("book in -> the request to the HTTP client", *percentiles(r["request"]))
    Console().print(t)
    print("order manager:", ", ".join(f"{k} {v:,}" for k, v in sorted(r["counts"].items())))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
