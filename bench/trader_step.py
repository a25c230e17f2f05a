"""Latency of the trader core called from Python, as the live bot calls it (plain numpy arrays).

Builds the demo config's trader core (configs/demo.toml, its strategy and params), puts a market in
it, then times each Python call: a book update (two L1 rows and the end of the update), an order
report, and ``step`` on a book that moves every time (so every step decides and requotes). Prints
percentiles per call and peak memory.

    python bench/trader_step.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from stockbridge.config import load_config
    from stockbridge.core.order_codes import REP_ACK
    from stockbridge.instruments import to_ns
    from stockbridge.tables import build_tables
    from stockbridge.trader import TraderCore, build_trader, cid_prefix
    from strategies import registry

    cfg = load_config(CONFIG)
    spec, params = registry.from_config(cfg, str(CONFIG))
    start = to_ns(cfg.synth.start) + 14 * 3600 * 10**9 + 30 * 60 * 10**9  # 10:30 New York (summer): regular hours
    tables = build_tables(cfg, start - 86_400 * 10**9, start + 86_400 * 10**9)
    core = TraderCore(build_trader(cfg, tables, start, book_depth=64, prefix=cid_prefix(0)), params.to_array(), spec.kernel)
    vid, iid = cfg.venue_ids(), cfg.instrument_ids()
    share = iid[next(n for n, i in cfg.instruments.items() if i.kind == "share")]
    venues = [(vid[name], iid[next(iter(v.instruments))]) for name, v in cfg.venues.items()]
    hedge = next(v for v, i in venues if i == share)

    def put_book(now: int, mid: float) -> None:
        for v, ins in venues:
            half = 0.01 if v == hedge else 0.05
            core.book_level(v, ins, 1, round(mid - half, 2), 50.0, is_quote=True, now=now)
            core.book_level(v, ins, -1, round(mid + half, 2), 50.0, is_quote=True, now=now)
            core.book_end(v, ins, now)

    now = start
    put_book(now, 200.0)
    core.step(now)
    core.actions()
    timings = {"book update (2 rows + end)": [], "report (ack)": [], "step (decides, requotes)": []}
    clock = time.perf_counter_ns
    rng = np.random.default_rng(1)
    for k in range(args.calls):
        now += 1_000_000
        mid = 200.0 + 0.05 * float(rng.integers(-20, 21))
        v, ins = venues[k % len(venues)]
        t0 = clock()
        core.book_level(v, ins, 1, round(mid - 0.05, 2), 50.0, is_quote=True, now=now)
        core.book_level(v, ins, -1, round(mid + 0.05, 2), 50.0, is_quote=True, now=now)
        core.book_end(v, ins, now)
        t1 = clock()
        t2 = clock()
        core.step(now)
        t3 = clock()
        acts = core.actions()
        cid = next((int(a["cid"]) for a in acts if a["kind"] == 1), 0)
        t4 = clock()
        core.report(REP_ACK, cid, now=now)
        t5 = clock()
        timings["book update (2 rows + end)"].append(t1 - t0)
        timings["step (decides, requotes)"].append(t3 - t2)
        if cid:
            timings["report (ack)"].append(t5 - t4)
    table = Table(title=f"trader core from Python, {args.calls:,} rounds (demo config, {cfg.strategy.name})")
    for col in ("call", "calls", "p50 µs", "p90 µs", "p99 µs"):
        table.add_column(col, justify="right" if col != "call" else "left")
    for name, xs in timings.items():
        a = np.array(xs[len(xs) // 10:], dtype=np.float64) / 1e3  # the first tenth warms caches
        table.add_row(name, f"{len(a):,}", *(f"{np.percentile(a, q):.2f}" for q in (50, 90, 99)))
    console = Console()
    console.print(table)
    console.print(f"decisions: {int(core.tr.iv[3]):,}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
