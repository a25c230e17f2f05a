"""stockbridge against hftbacktest on the same data, with the same market maker, side by side.

One synthetic L2 stream of one venue (``--rows`` rows: depth updates of 5 levels a side, trades at
the touch followed by the touch's new size, one-tick price moves as four depth rows; feed latency a
constant 2 ms) is written once as a stockbridge Parquet store and once, through
``data.convert.hftbacktest.to_hftbacktest`` (the converter behind ``stockbridge data
export-hftbacktest``), as an hftbacktest ``.npz``. Both systems then run the same market maker:

- quotes one tick outside the touch (bid = best bid - 1 tick, ask = best ask + 1 tick), both moved
  down by ``round(skew * position / qty)`` ticks (inventory skew), never crossing the touch;
- one order of ``qty`` a side; no bid once ``position + qty > max_position`` (no ask likewise);
- an order whose price is no longer the wanted one is cancelled and replaced (stockbridge:
  ``requote_ticks = 0``);
- the same constant order and response latency (10 ms each), fees (maker -1 bp, taker 10 bp), and
  the queue model that assumes cancels are behind us (stockbridge ``conservative``, hftbacktest
  ``risk_adverse_queue_model``), post-only (GTX) orders; hftbacktest's ``no_partial_fill_exchange``
  (its ``partial_fill_exchange`` stops with InvalidOrderStatus, nkaz001/hftbacktest#301), which is
  the same here: the order is one lot and every size in the stream is a whole number of lots;

deciding on every event (stockbridge: every same-time group of rows; hftbacktest: every
``wait_next_feed``) and on a 100 ms cadence (stockbridge ``decision_interval_ms = 100``;
hftbacktest ``elapse(100 ms)``). Each workload is run both "incl. reading" (stockbridge reads the
store chunk by chunk through its prefetching reader; hftbacktest is given the ``.npz`` path) and
"loop only" (the events already in memory). A fifth workload runs stockbridge with
``backtest.decide_when_changed`` (a due decision is skipped unless a top of book, a report, the
session or the multiplier changed, or a second passed) against hftbacktest deciding on every feed
as before: this market maker reads only the tops of book and its position, so it sends the same
orders either way, but it is an option with its own results in general, not the default. Each
system runs every workload in one fresh child process per round, after a warm-up on a few thousand rows (compile time is not counted); the two systems alternate
within every round, and the times are CPU seconds of the child (``time.process_time``, reader
thread included), so other load on a shared machine hurts less than with wall time. Printed per
round: events/s of each, decisions and fills of each; at the end the median stockbridge /
hftbacktest ratio per workload. Events are the stream's rows (the same count for both).

The two engines are not the same simulator (stockbridge's venues run on their own clocks with a
look-ahead cursor, keep a second book as the data reached us, and track liquidity we took), so the
fill counts differ a little; the decisions and orders are the same strategy's.

    pip install -e '.[bench]'                 # hftbacktest
    python bench/vs_hftbacktest.py            # 3 M rows, 3 rounds (about 5 minutes on 2 cores, warm cache)
    python bench/vs_hftbacktest.py --rows 10e6 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = 0.01
LOT = 1.0
QTY = 1.0
MAX_POS = 10.0
SKEW = 0.3            # ticks per order of inventory
LATENCY_MS = 10.0     # order and response, each way
FEED_NS = 2_000_000   # local_ts - exch_ts of every row
MAKER_BPS, TAKER_BPS = -1.0, 10.0
LEVELS = 5
T0 = 1_751_976_000 * 1_000_000_000  # 2025-07-08 12:00 UTC
VENUE, TOKEN = "x", "AAPLx"
# (label, decision cadence ms, mode): "read" includes reading the data, "loop" has it in memory;
# "+changed": stockbridge with backtest.decide_when_changed (hftbacktest as in "read")
WORKLOADS = [("every event", 0.0, "read"), ("every event", 0.0, "loop"), ("100 ms", 100.0, "read"), ("100 ms", 100.0, "loop"),
             ("every event", 0.0, "read+changed")]

CONFIG = f"""
[instruments.AAPL]
kind = "share"

[instruments.AAPLx]
kind = "token"
underlying = "AAPL"

[venues.{VENUE}]
kind = "cex_spot"
instruments = {{ AAPLx = "AAPLX/USDT" }}
maker_fee_bps = {MAKER_BPS}
taker_fee_bps = {TAKER_BPS}
tick_size = {TICK}
lot_size = {LOT}
min_notional = 0.0
hours = "24/7"
haircut = 0.0
exposure_cap = 1e12
order_latency_ms = {LATENCY_MS}
response_latency_ms = {LATENCY_MS}

[strategy]
name = "fixed_spread"
instrument = "AAPLx"

[risk]
max_position = {MAX_POS}
max_net_delta = 1e9
offhours_size_factor = 1.0
min_spread_z = 0.0

[backtest]
seed = 1
initial_cash = 1e9
decision_interval_ms = 0
requote_ticks = 0
requote_size_frac = 1e9
queue_model = "conservative"
sample_interval_s = 60
"""


# ---------------------------------------------------------------------------------------------
# the market maker: one rule, used by both systems


@njit(cache=True)
def mm_ticks(bid_tick, ask_tick, q, qty, max_pos, skew):
    """(bid tick, ask tick, bid on, ask on) for best bid/ask ticks and position ``q``."""
    s = np.int64(np.round(skew * q / qty))
    b = min(bid_tick - 1 - s, ask_tick - 1)
    a = max(ask_tick + 1 - s, bid_tick + 1)
    return b, a, q + qty <= max_pos + 1e-9, q - qty >= -max_pos - 1e-9


@njit(cache=True)
def sb_kernel(ctx, params, quotes, takes):
    """The market maker as a stockbridge strategy kernel (strategies/base.py signature)."""
    bid = ctx.bid[0]
    ask = ctx.ask[0]
    if not (bid > 0.0 and ask > 0.0):
        return 0
    tick = ctx.tick[0]
    qty = params[0]
    b, a, bon, aon = mm_ticks(np.int64(np.round(bid / tick)), np.int64(np.round(ask / tick)), ctx.position[0], qty,
                              params[1], params[2])
    if bon:
        quotes[0, 0, 0, 0] = b * tick
        quotes[0, 0, 0, 1] = qty
    if aon:
        quotes[0, 1, 0, 0] = a * tick
        quotes[0, 1, 0, 1] = qty
    return 0


# ---------------------------------------------------------------------------------------------
# the data


@njit(cache=True)
def _generate(n, seed, kind, side, flags, exch, price, size):
    """Fill the columns with an L2 stream of about n rows; returns the number of rows written."""
    np.random.seed(seed)
    L = LEVELS
    bsz = np.empty(L)
    asz = np.empty(L)
    bid = np.int64(10_000)  # best bid in ticks (100.00); best ask = bid + 1
    for j in range(L):
        bsz[j] = float(np.random.randint(1, 50))
        asz[j] = float(np.random.randint(1, 50))
    t = np.int64(T0)
    k = 0
    for j in range(L):  # the opening snapshot
        kind[k], side[k], exch[k], price[k], size[k] = 3, 1, t, (bid - j) / 100.0, bsz[j]
        k += 1
        kind[k], side[k], exch[k], price[k], size[k] = 3, -1, t, (bid + 1 + j) / 100.0, asz[j]
        k += 1
    flags[0] = 1  # F_CLEAR
    flags[k - 1] = 2  # F_BATCH_END
    while k < n - 4:
        t += 1 + np.int64(np.random.exponential(4_000_000.0))
        u = np.random.random()
        first = k
        if u < 0.08:  # one-tick move: the touch leaves one side and appears on the other
            new = float(np.random.randint(1, 50))
            far = float(np.random.randint(1, 50))
            if np.random.random() < 0.5:  # up
                kind[k], side[k], exch[k], price[k], size[k] = 2, -1, t, (bid + 1) / 100.0, 0.0
                kind[k + 1], side[k + 1], exch[k + 1], price[k + 1], size[k + 1] = 2, 1, t, (bid + 1 - L) / 100.0, 0.0
                kind[k + 2], side[k + 2], exch[k + 2], price[k + 2], size[k + 2] = 2, 1, t, (bid + 1) / 100.0, new
                kind[k + 3], side[k + 3], exch[k + 3], price[k + 3], size[k + 3] = 2, -1, t, (bid + 1 + L) / 100.0, far
                for j in range(L - 1, 0, -1):
                    bsz[j] = bsz[j - 1]
                bsz[0] = new
                for j in range(L - 1):
                    asz[j] = asz[j + 1]
                asz[L - 1] = far
                bid += 1
            else:  # down
                kind[k], side[k], exch[k], price[k], size[k] = 2, 1, t, bid / 100.0, 0.0
                kind[k + 1], side[k + 1], exch[k + 1], price[k + 1], size[k + 1] = 2, -1, t, (bid + L) / 100.0, 0.0
                kind[k + 2], side[k + 2], exch[k + 2], price[k + 2], size[k + 2] = 2, -1, t, bid / 100.0, new
                kind[k + 3], side[k + 3], exch[k + 3], price[k + 3], size[k + 3] = 2, 1, t, (bid - L) / 100.0, far
                for j in range(L - 1, 0, -1):
                    asz[j] = asz[j - 1]
                asz[0] = new
                for j in range(L - 1):
                    bsz[j] = bsz[j + 1]
                bsz[L - 1] = far
                bid -= 1
            k += 4
        elif u < 0.18:  # a trade at the touch, then the touch's new size
            buy = np.random.random() < 0.5
            touch = asz[0] if buy else bsz[0]
            q = float(np.random.randint(1, int(touch))) if touch > 1.0 else 0.0
            if q > 0.0:
                px = (bid + 1) / 100.0 if buy else bid / 100.0
                kind[k], side[k], exch[k], price[k], size[k] = 4, 1 if buy else -1, t, px, q
                kind[k + 1], side[k + 1], exch[k + 1], price[k + 1], size[k + 1] = 2, -1 if buy else 1, t, px, touch - q
                if buy:
                    asz[0] = touch - q
                else:
                    bsz[0] = touch - q
                k += 2
        else:  # one level's size changes
            j = np.random.randint(0, L)
            s = float(np.random.randint(1, 50))
            if np.random.random() < 0.5:
                bsz[j] = s
                kind[k], side[k], exch[k], price[k], size[k] = 2, 1, t, (bid - j) / 100.0, s
            else:
                asz[j] = s
                kind[k], side[k], exch[k], price[k], size[k] = 2, -1, t, (bid + 1 + j) / 100.0, s
            k += 1
        if k > first:
            flags[k - 1] = 2
    return k


def make_events(rows: int, seed: int = 7) -> np.ndarray:
    from data.schema import EVENT_DTYPE

    n = int(rows) + 16
    cols = dict(kind=np.zeros(n, np.uint8), side=np.zeros(n, np.int8), flags=np.zeros(n, np.uint16),
                exch=np.zeros(n, np.int64), price=np.zeros(n), size=np.zeros(n))
    k = _generate(n, seed, cols["kind"], cols["side"], cols["flags"], cols["exch"], cols["price"], cols["size"])
    ev = np.zeros(k, dtype=EVENT_DTYPE)
    for name in ("kind", "side", "flags", "price", "size"):
        ev[name] = cols[name][:k]
    ev["exch_ts"] = cols["exch"][:k]
    ev["local_ts"] = cols["exch"][:k] + FEED_NS
    return ev


def prepare(rows: float, work: Path) -> dict:
    from data.convert.hftbacktest import to_hftbacktest
    from data.store import write_events

    t0 = time.perf_counter()
    ev = make_events(int(rows))
    (work / "config.toml").write_text(CONFIG)
    write_events(work / "store", VENUE, TOKEN, ev)
    hft, _ = to_hftbacktest(ev)
    np.savez_compressed(work / "events.npz", data=hft)
    return {"rows": len(ev), "npz_rows": len(hft), "seconds": time.perf_counter() - t0,
            "days": len({int(t) // 86_400_000_000_000 for t in ev["local_ts"][[0, -1]]})}


# ---------------------------------------------------------------------------------------------
# stockbridge


def run_stockbridge(work: Path, runs: list[tuple[float, str]], events: int) -> list[dict]:
    """Each (cadence ms, mode) of ``runs`` in this process, after one warm-up replay."""
    from backtest import engine as E
    from backtest.runner import Replay, prefetched
    from data.reader import clock_offsets, read_merged, store_extent
    from stockbridge.config import load_config
    from stockbridge.core import trader as T

    base = load_config(work / "config.toml")
    store = work / "store"
    params = np.array([QTY, MAX_POS, SKEW], dtype=np.float64)
    lo, hi, _ = store_extent(store, base)

    def chunks():
        return read_merged(store, base.venue_ids(), base.instrument_ids(), lo, hi + 1, clock_offset_ms=clock_offsets(base))

    warm = Replay(base, store, lo, hi + 1, sb_kernel, params)
    warm.compile()
    warm.feed(next(chunks())[:5_000].copy())
    out = []
    for cadence_ms, mode in runs:
        changed = mode.endswith("+changed")
        cfg = base.model_copy(update={"backtest": base.backtest.model_copy(
            update={"decision_interval_ms": cadence_ms, "decide_when_changed": changed})})
        replay = Replay(cfg, store, lo, hi + 1, sb_kernel, params)
        if mode == "loop":
            data = list(chunks())
            t0, w0 = time.process_time(), time.perf_counter()
            for c in data:
                replay.feed(c)
        else:
            t0, w0 = time.process_time(), time.perf_counter()
            for c in prefetched(chunks()):
                replay.feed(c)
        replay.finish()
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        out.append({"events": int(replay.state.iv[E.I_EVENTS]), "cpu_s": cpu, "wall_s": wall,
                    "decisions": int(replay.trader.iv[T.T_DECISIONS]), "fills": int(sum(len(f) for f in replay.fills))})
        del replay
    return out


# ---------------------------------------------------------------------------------------------
# hftbacktest


def _hbt_loop():
    from hftbacktest import BUY, CANCELED, GTX, LIMIT, NEW, SELL
    from hftbacktest.order import PARTIALLY_FILLED

    @njit
    def loop(hbt, every_ns, qty, max_pos, skew):
        tick = hbt.depth(0).tick_size
        decisions = 0
        oid = np.uint64(1)
        while True:
            if every_ns > 0:
                rc = hbt.elapse(every_ns)
            else:
                rc = hbt.wait_next_feed(False, 3_600_000_000_000)
                if rc == 0:
                    continue
            if rc != 0 and rc != 2:
                break
            depth = hbt.depth(0)
            bb = depth.best_bid_tick
            ba = depth.best_ask_tick
            if depth.best_bid_qty <= 0.0 or depth.best_ask_qty <= 0.0 or ba <= bb:
                continue
            decisions += 1
            q = hbt.position(0)
            b, a, bon, aon = mm_ticks(bb, ba, q, qty, max_pos, skew)
            hbt.clear_inactive_orders(0)
            have_b = False
            have_a = False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.req == CANCELED or not (o.status == NEW or o.status == PARTIALLY_FILLED or o.req == NEW):
                    continue  # done, or being cancelled
                if o.side == BUY:
                    if bon and o.price_tick == b and not have_b:
                        have_b = True
                    elif o.cancellable:
                        hbt.cancel(0, o.order_id, False)
                elif o.side == SELL:
                    if aon and o.price_tick == a and not have_a:
                        have_a = True
                    elif o.cancellable:
                        hbt.cancel(0, o.order_id, False)
            if bon and not have_b:
                hbt.submit_buy_order(0, oid, b * tick, qty, GTX, LIMIT, False)
                oid += np.uint64(1)
            if aon and not have_a:
                hbt.submit_sell_order(0, oid, a * tick, qty, GTX, LIMIT, False)
                oid += np.uint64(1)
        return decisions, rc

    return loop


def _hbt(data):
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    lat = int(LATENCY_MS * 1e6)
    asset = (
        BacktestAsset()
        .data(data)
        .linear_asset(1.0)
        .constant_order_latency(lat, lat)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()  # partial_fill_exchange stops with InvalidOrderStatus (14): nkaz001/hftbacktest#301
        .trading_value_fee_model(MAKER_BPS * 1e-4, TAKER_BPS * 1e-4)
        .tick_size(TICK)
        .lot_size(LOT)
    )
    return HashMapMarketDepthBacktest([asset])


def run_hftbacktest(work: Path, runs: list[tuple[float, str]], events: int) -> list[dict]:
    """Each (cadence ms, mode) of ``runs`` in this process, after one warm-up run (compiles the loop)."""
    loop = _hbt_loop()
    npz = str(work / "events.npz")
    with np.load(npz) as f:
        head = f["data"][:5_000].copy()
    warm = _hbt(head)
    loop(warm, 0, QTY, MAX_POS, SKEW)
    warm.close()
    out = []
    for cadence_ms, mode in runs:
        every = int(cadence_ms * 1e6)
        if mode == "loop":
            with np.load(npz) as f:
                data = f["data"]
            t0, w0 = time.process_time(), time.perf_counter()
            hbt = _hbt(data)
        else:
            data = None
            t0, w0 = time.process_time(), time.perf_counter()
            hbt = _hbt([npz])
        decisions, rc = loop(hbt, every, QTY, MAX_POS, SKEW)
        if rc != 1:
            raise RuntimeError(f"hftbacktest stopped before the end of the data with code {rc}")
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        out.append({"events": events, "cpu_s": cpu, "wall_s": wall, "decisions": int(decisions),
                    "fills": int(hbt.state_values(0).num_trades)})
        hbt.close()
        del data
    return out


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=float, default=3e6, help="rows of the generated L2 stream")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, help="keep (or reuse) the generated data in this directory")
    ap.add_argument("--only", choices=["every", "100ms"], help="run one cadence only")
    ap.add_argument("--no-changed", action="store_true", help="leave out the decide_when_changed workload")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        system, work, runs, events = args.child
        fn = run_stockbridge if system == "stockbridge" else run_hftbacktest
        print(json.dumps(fn(Path(work), [(float(c), m) for c, m in json.loads(runs)], int(events))))
        return
    try:
        import hftbacktest
    except ImportError:
        sys.exit("hftbacktest is not installed: pip install -e '.[bench]'")
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="sb-vs-hbt-")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    meta_path = work / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text())["requested"] == int(args.rows):
        meta = json.loads(meta_path.read_text())
    else:
        meta = prepare(args.rows, work) | {"requested": int(args.rows)}
        meta_path.write_text(json.dumps(meta))
        print(f"generated {meta['rows']:,} rows ({meta['npz_rows']:,} hftbacktest rows) in {meta['seconds']:.1f} s")
    print(f"stockbridge vs hftbacktest {hftbacktest.__version__}: {meta['rows']:,} events, one venue, the same "
          f"market maker; CPU time per run (wall in brackets)")
    workloads = [w for w in WORKLOADS if (args.only is None or (w[1] == 0.0) == (args.only == "every"))
                 and not (args.no_changed and w[2].endswith("+changed"))]
    ratios: dict[str, list[float]] = {}
    runs = json.dumps([(cadence, mode) for _, cadence, mode in workloads])
    for r in range(args.rounds):
        got = {}
        order = ("stockbridge", "hftbacktest") if r % 2 == 0 else ("hftbacktest", "stockbridge")
        for system in order:  # one process per system and round: every workload, after one warm-up
            out = subprocess.run([sys.executable, __file__, "--child", system, str(work), runs, str(meta["rows"])],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                sys.exit(f"{system} failed:\n{out.stderr[-3000:]}")
            got[system] = json.loads(out.stdout.strip().splitlines()[-1])
        for (label, _, mode), s, h in zip(workloads, got["stockbridge"], got["hftbacktest"]):
            key = f"{label}, {'loop only' if mode == 'loop' else 'incl. reading'}" + (
                ", sb decide_when_changed" if mode.endswith("+changed") else "")
            ratio = (s["events"] / s["cpu_s"]) / (h["events"] / h["cpu_s"])
            ratios.setdefault(key, []).append(ratio)
            print(f"round {r + 1} | {key:<52} | stockbridge {s['events'] / s['cpu_s'] / 1e6:6.2f} M ev/s "
                  f"({s['events'] / s['wall_s'] / 1e6:.2f}), {s['decisions']:>9,} decisions, {s['fills']:>7,} fills | "
                  f"hftbacktest {h['events'] / h['cpu_s'] / 1e6:6.2f} M ev/s ({h['events'] / h['wall_s'] / 1e6:.2f}), "
                  f"{h['decisions']:>9,} decisions, {h['fills']:>7,} fills | ratio {ratio:.2f}", flush=True)
    print("\nmedian stockbridge / hftbacktest (events per CPU-second):")
    for key, rs in ratios.items():
        print(f"  {key:<52} {statistics.median(rs):.2f}   (rounds: {', '.join(f'{x:.2f}' for x in rs)})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
