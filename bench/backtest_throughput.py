"""Backtest throughput: events/s and peak RSS of the tick replay with the built-in GLFT strategy.

Builds a synthetic three-venue AAPLx market (plus AAPL at the broker) of at least ``--events``
events from configs/demo.toml with a 250 ms book-update interval, then replays it twice, each in a
fresh child process (so peak RSS is the replay's own): (a) deciding on every event, (b) on a 100 ms
cadence. The replay is measured from the first chunk read to the last fill booked; numba's compiled
code comes from the disk cache after a warm-up run on the first chunk.

    python bench/backtest_throughput.py                  # 10 M events
    python bench/backtest_throughput.py --events 100e6   # the memory check at 100 M events
    python bench/backtest_throughput.py --data DIR --reader   # the reader alone (read_merged), 3 passes
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree, not whichever one is installed
CONFIG = ROOT / "configs" / "demo.toml"
EVENTS_PER_DAY_250MS = 1_250_000  # measured: 6.26 M events in 5 days at 250 ms


def bench_config(days: int, cadence_ms: float):
    from stockbridge.config import load_config

    cfg = load_config(CONFIG)
    return cfg.model_copy(update={
        "synth": cfg.synth.model_copy(update={"days": days, "quote_interval_ms": 250.0}),
        "backtest": cfg.backtest.model_copy(update={"decision_interval_ms": cadence_ms}),
    })


def child(data_dir: str, days: int, cadence_ms: float) -> None:
    """Replay once and print a JSON line: events, wall seconds, events/s, decisions, peak RSS (MB)."""
    from backtest import engine as E
    from stockbridge.core import trader as T
    from backtest.runner import Replay, prefetched
    from data.reader import clock_offsets, read_merged, store_extent
    from strategies import registry

    cfg = bench_config(days, cadence_ms)
    spec, params = registry.from_config(cfg, str(CONFIG))
    lo, hi, _ = store_extent(Path(data_dir), cfg)
    # warm-up on a throwaway replay: loads (or compiles) the cached machine code
    warm = Replay(cfg, Path(data_dir), lo, hi + 1, spec.kernel, params.to_array())
    warm.feed(next(read_merged(data_dir, cfg.venue_ids(), cfg.instrument_ids(), lo, hi + 1, clock_offset_ms=clock_offsets(cfg)))[:10_000].copy())
    replay = Replay(cfg, Path(data_dir), lo, hi + 1, spec.kernel, params.to_array())
    t0 = time.perf_counter()  # from here on, reading the store counts
    for chunk in prefetched(read_merged(data_dir, cfg.venue_ids(), cfg.instrument_ids(), lo, hi + 1, clock_offset_ms=clock_offsets(cfg))):
        replay.feed(chunk)
    replay.finish()
    wall = time.perf_counter() - t0
    events = int(replay.state.iv[E.I_EVENTS])
    print(json.dumps({
        "events": events, "wall_s": wall, "events_per_s": events / wall,
        "decisions": int(replay.trader.iv[T.T_DECISIONS]),
        "fills": int(sum(len(f) for f in replay.fills)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def reader_only(data_dir: Path, days: int) -> None:
    """events/s of data.reader.read_merged alone over the whole store: CPU time and wall, 3 passes."""
    from data.reader import clock_offsets, read_merged

    cfg = bench_config(days, 0.0)
    for k in range(3):
        t0, w0, n = time.process_time(), time.perf_counter(), 0
        for chunk in read_merged(data_dir, cfg.venue_ids(), cfg.instrument_ids(), clock_offset_ms=clock_offsets(cfg)):
            n += len(chunk)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        print(f"reader pass {k + 1}: {n:,} events, {n / cpu / 1e6:.2f} M events per CPU-second, {n / wall / 1e6:.2f} M events/s wall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=10e6, help="minimum number of events in the dataset")
    ap.add_argument("--data", type=Path, help="reuse (or keep) the dataset in this directory")
    ap.add_argument("--reader", action="store_true", help="time the reader alone on --data (which must hold a store)")
    ap.add_argument("--child", nargs=3, metavar=("DATA", "DAYS", "CADENCE_MS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), float(args.child[2]))
        return
    from rich.console import Console
    from rich.table import Table

    from data.store import list_partitions
    from data.synth import synthesize

    console = Console(width=max(Console().width, 120))
    days = max(1, math.ceil(args.events / EVENTS_PER_DAY_250MS))
    tmp = None
    data_dir = args.data
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sb-bench-")
        data_dir = Path(tmp.name)
    if args.reader:
        reader_only(data_dir, days)
        return
    if not list_partitions(data_dir):
        with console.status(f"synthesizing {days} days at 250 ms into {data_dir}"):
            t0 = time.perf_counter()
            s = synthesize(bench_config(days, 0.0), data_dir)
        console.print(f"dataset: {s['total']:,} events, {days} days, {time.perf_counter() - t0:.1f} s to synthesize")
    table = Table(title="backtest throughput, GLFT, 3 token venues + broker", title_justify="left")
    for col in ("mode", "events", "decisions", "fills", "wall s", "events/s", "peak RSS MB"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    for label, cadence in (("(a) decide on every event", 0.0), ("(b) decide every 100 ms", 100.0)):
        out = subprocess.run([sys.executable, __file__, "--child", str(data_dir), str(days), str(cadence)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        table.add_row(label, f"{r['events']:,}", f"{r['decisions']:,}", f"{r['fills']:,}", f"{r['wall_s']:.1f}",
                      f"{r['events_per_s']:,.0f}", f"{r['peak_rss_mb']:,.0f}")
    console.print(table)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
