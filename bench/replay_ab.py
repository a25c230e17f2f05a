"""A/B replay speed of two source trees on the same data, robust to a busy machine.

Each round replays the same in-memory events (the first ``--events`` of a store, the demo config
with the bench's 250 ms quotes) once per tree, in alternation, each in its own process with the
tree first on ``sys.path``; the time is the replay's CPU time (``time.process_time``), so other
load on the machine hurts less than with wall time. Prints each run, the per-round ratio B/A of
events per CPU-second, and their median. Compile time is excluded (a warm-up replay first).

    python bench/replay_ab.py A_TREE B_TREE --data DIR [--rounds 3] [--cadence-ms 0] [--events 3.5e6]

e.g. ``git worktree add --detach /tmp/base <rev>`` then ``python bench/replay_ab.py /tmp/base . --data
/tmp/bench10`` (the store from ``python bench/backtest_throughput.py --data /tmp/bench10``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def child(tree: str, data: str, cadence_ms: float, max_events: float) -> None:
    sys.path.insert(0, tree)
    import time

    from backtest.runner import Replay
    from data import reader
    from stockbridge.config import load_config
    from strategies import registry

    cfg = load_config(Path(tree) / "configs" / "demo.toml")
    cfg = cfg.model_copy(update={
        "synth": cfg.synth.model_copy(update={"quote_interval_ms": 250.0}),
        "backtest": cfg.backtest.model_copy(update={"decision_interval_ms": cadence_ms}),
    })
    spec, params = registry.from_config(cfg, "demo")
    root = Path(data)
    if hasattr(reader, "store_extent"):
        lo, hi = reader.store_extent(root, cfg)[:2]
    else:  # trees before data.reader.store_extent
        from backtest.runner import data_extent

        lo, hi = data_extent(root, cfg.venue_ids())[:2]
    # trees before the venues' clock offsets (issue 7) read the store without them
    extra = {"clock_offset_ms": reader.clock_offsets(cfg)} if hasattr(reader, "clock_offsets") else {}
    chunks, n = [], 0
    for c in reader.read_merged(root, cfg.venue_ids(), cfg.instrument_ids(), lo, hi + 1, **extra):
        chunks.append(c)
        n += len(c)
        if n >= max_events:
            break
    warm = Replay(cfg, root, lo, hi + 1, spec.kernel, params.to_array())
    warm.compile()
    warm.feed(chunks[0][:20_000].copy())
    replay = Replay(cfg, root, lo, hi + 1, spec.kernel, params.to_array())
    t0 = time.process_time()
    for c in chunks:
        replay.feed(c.copy())
    replay.finish()
    cpu = time.process_time() - t0
    print(json.dumps({"events": n, "cpu_s": cpu, "ev_per_cpu_s": n / cpu, "fills": sum(len(f) for f in replay.fills)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="source tree A (the base)")
    ap.add_argument("b", help="source tree B")
    ap.add_argument("--data", required=True, help="tick store (python bench/backtest_throughput.py --data DIR makes one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cadence-ms", type=float, default=0.0, help="decision interval; 0 = every event")
    ap.add_argument("--events", type=float, default=3.5e6)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]), float(args.child[3]))
        return
    ratios = []
    for r in range(args.rounds):
        got = {}
        for name, tree in (("A", args.a), ("B", args.b)):
            out = subprocess.run([sys.executable, __file__, args.a, args.b, "--data", args.data, "--child",
                                  str(Path(tree).resolve()), args.data, str(args.cadence_ms), str(args.events)],
                                 capture_output=True, text=True, check=True)
            got[name] = json.loads(out.stdout.strip().splitlines()[-1])
            g = got[name]
            print(f"round {r + 1} {name}: {g['events']:,} events, {g['cpu_s']:.2f} CPU s, "
                  f"{g['ev_per_cpu_s'] / 1e6:.3f} M ev/CPU-s, {g['fills']:,} fills")
        if got["A"]["fills"] != got["B"]["fills"]:
            print("note: the two trees give different fill counts")
        ratios.append(got["B"]["ev_per_cpu_s"] / got["A"]["ev_per_cpu_s"])
        print(f"round {r + 1} B/A: {ratios[-1]:.3f}")
    print(f"median B/A over {args.rounds} rounds: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
