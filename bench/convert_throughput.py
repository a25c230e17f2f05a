"""Throughput and peak memory of converting a Tardis incremental_book_L2 CSV into the Parquet store.

Run: ``python bench/convert_throughput.py [--rows 1000000] [--gzip]``

A book is simulated tick by tick (sizes, level adds and deletes, the best prices moving, a snapshot
first) and written as a Tardis CSV in a temporary directory. The conversion (parse, validate
including the crossed-book check, write Parquet) runs in a child process, timed inside the child;
peak memory is the child's own max RSS (``getrusage(RUSAGE_SELF)`` read in the child as it ends),
reported next to that of a child that only imports the same modules, so the conversion's own share
is visible.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.toml"
TICK = 0.01

CHILD = """
import sys, time, json, resource
from pathlib import Path
from stockbridge.config import load_config
from data.convert import tardis
from data.convert.source import Job
if sys.argv[1] == "import-only":
    print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    raise SystemExit
src, out = Path(sys.argv[2]), Path(sys.argv[3])
job = Job(load_config(sys.argv[1]), "bybit", out=out)
t0 = time.perf_counter()
report = tardis.convert(src, job)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "rows": report.source_rows, "written": sum(report.written.values()), "rss_kb": rss}))
"""


def simulate_book(n_rows: int, seed: int = 1) -> pl.DataFrame:
    """A valid (never crossed) incremental L2 stream of ``n_rows`` rows around 210 USDT."""
    rng = np.random.default_rng(seed)
    bid = 21_000  # best bid, ticks
    ask = 21_001
    bids = {bid - k: float(rng.integers(1, 50)) for k in range(50)}
    asks = {ask + k: float(rng.integers(1, 50)) for k in range(50)}
    snap_px = [p for p in sorted(asks)] + [p for p in sorted(bids, reverse=True)]
    snap_side = ["ask"] * len(asks) + ["bid"] * len(bids)
    snap_amt = [asks[p] for p in sorted(asks)] + [bids[p] for p in sorted(bids, reverse=True)]
    n = n_rows - len(snap_px)
    is_snap = [True] * len(snap_px)
    sides, prices, amounts = list(snap_side), list(snap_px), list(snap_amt)
    group_sizes = []
    choice = rng.random(n)
    depth = rng.geometric(0.25, n) - 1
    size = np.round(rng.lognormal(1.5, 1.0, n), 3) + 0.001
    on_bid = rng.random(n) < 0.5
    k = 0
    while k < n:
        g = min(int(rng.integers(1, 5)), n - k)
        for j in range(k, k + g):
            c = choice[j]
            book, best, sgn, side = (bids, bid, -1, "bid") if on_bid[j] else (asks, ask, 1, "ask")
            if c < 0.75 or len(book) < 5:  # change or add a level at some depth
                p = best + sgn * int(depth[j])
                book[p] = float(size[j])
                amt = float(size[j])
            elif c < 0.93:  # delete a level behind the best
                p = best + sgn * (1 + int(depth[j]))
                if p not in book:
                    p = best + sgn * int(depth[j])
                    book[p] = float(size[j])
                    amt = float(size[j])
                else:
                    del book[p]
                    amt = 0.0
            elif c < 0.965:  # the best level is consumed: the best price moves away
                p = best
                del book[p]
                amt = 0.0
            else:  # a new level inside the spread, if there is room
                p = best - sgn
                if bid < p < ask:
                    book[p] = float(size[j])
                    amt = float(size[j])
                else:
                    book[best] = float(size[j])
                    p, amt = best, float(size[j])
            if on_bid[j]:
                bid = max(bids) if bids else bid
            else:
                ask = min(asks) if asks else ask
            sides.append(side)
            prices.append(p)
            amounts.append(amt)
            is_snap.append(False)
        group_sizes.append(g)
        k += g
    n_groups = 1 + len(group_sizes)
    gap_us = rng.exponential(900.0, n_groups).astype(np.int64) + 1
    group_ts = 1_751_846_400_000_000 + np.cumsum(gap_us)
    latency = rng.integers(150, 400, n_groups)
    group_local = np.maximum.accumulate(group_ts + latency)
    reps = np.array([len(snap_px)] + group_sizes)
    return pl.DataFrame(
        {
            "exchange": "bybit-spot",
            "symbol": "AAPLXUSDT",
            "timestamp": np.repeat(group_ts, reps),
            "local_timestamp": np.repeat(group_local, reps),
            "is_snapshot": np.where(np.array(is_snap), "true", "false"),
            "side": sides,
            "price": np.round(np.array(prices, dtype=np.float64) * TICK, 2),
            "amount": amounts,
        }
    )


def run_child(args: list[str]) -> dict:
    import json

    got = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--gzip", action="store_true", help="compress the CSV as Tardis ships it")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    try:
        t0 = time.perf_counter()
        frame = simulate_book(opts.rows)
        src = tmp / "bybit_incremental_book_L2_2025-07-07_AAPLXUSDT.csv"
        frame.write_csv(src)
        if opts.gzip:
            with open(src, "rb") as fh, gzip.open(src.with_suffix(".csv.gz"), "wb", compresslevel=6) as gz:
                shutil.copyfileobj(fh, gz)
            src.unlink()
            src = src.with_suffix(".csv.gz")
        print(f"generated {frame.height:,} rows ({src.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        del frame
        run_child([str(CONFIG), str(src), str(tmp / "warmup")])  # fills numba's cache so timing excludes compilation
        shutil.rmtree(tmp / "warmup")
        base = run_child(["import-only"])
        got = run_child([str(CONFIG), str(src), str(tmp / "store")])
        if got["rows"] != opts.rows:
            raise SystemExit(f"converted {got['rows']} rows, expected {opts.rows}")
        print(f"converted {got['rows']:,} rows -> {got['written']:,} events in {got['seconds']:.2f} s: "
              f"{got['rows'] / got['seconds'] / 1e6:.2f} M rows/s")
        print(f"peak RSS of the converting process: {got['rss_kb'] / 1024:.0f} MB (a process that only imports: {base['rss_kb'] / 1024:.0f} MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
