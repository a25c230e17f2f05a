"""The market-data recorder (execution/recorder.py) and `stockbridge record`.

Against the sandbox emulators on loopback (stepped clock showing data time): what the recorder stored
replays to the books the venues showed and to their tape, with both timestamps, and passes the
backtester's checks. A recorder killed with SIGKILL leaves only whole part files. The CLI records the
in-process sandbox. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from sandbox.conftest import sb_cfg, sb_compiled, sb_store  # noqa: F401 - the sandbox fixtures
from sandbox.sandbox_helpers import subscribed, within

from data.reader import read_merged
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE
from data.store import NS_PER_DAY, list_partitions, part_files, partition_dir, read_parquet_file
from execution.market_data import Book
from execution.recorder import Recorder, trade_id

MS = 1_000_000
NS = 1_000_000_000
HOUR_NS = 3600 * NS
ROOT = Path(__file__).resolve().parents[2]


def _book(bids, asks, local, exch=None, venue=0, instrument=1, quote=False):
    arr = lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 2)  # noqa: E731
    return Book(venue, instrument, arr(bids), arr(asks), exch, local, quote, "stream")


def replay_books(events: np.ndarray, venue: int) -> list[tuple[int, int, dict, dict]]:
    """(exch_ts, local_ts, bids, asks) after each atomic L2 update of ``venue`` in the stored rows."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    out = []
    for r in events[(events["venue"] == venue) & np.isin(events["kind"], [KIND_DEPTH, KIND_SNAPSHOT])]:
        if r["flags"] & F_CLEAR:
            bids, asks = {}, {}
        side = bids if r["side"] > 0 else asks
        if r["size"] > 0:
            side[float(r["price"])] = float(r["size"])
        else:
            side.pop(float(r["price"]), None)
        if r["flags"] & F_BATCH_END:
            out.append((int(r["exch_ts"]), int(r["local_ts"]), dict(bids), dict(asks)))
    return out


# -- encoding, no venues ------------------------------------------------------------------------------

def test_deltas_between_snapshots_one_per_day_and_each_partition_replays_alone(tmp_path):
    rec = Recorder(tmp_path, ["bybit"], ["AAPL", "AAPLx"], start=False)
    day = 20_000 * NS_PER_DAY
    t = day + NS_PER_DAY - 2 * NS                                  # 2 s before midnight UTC
    rec.book(_book([[10.0, 1], [9.9, 2]], [[10.1, 3]], t, exch=t - 5 * MS))
    rec.book(_book([[10.0, 1], [9.9, 2]], [[10.1, 3]], t + 1))      # unchanged: nothing stored
    rec.book(_book([[10.0, 4]], [[10.1, 3], [10.2, 1]], t + 2))     # 10.0 -> 4, 9.9 gone, 10.2 new; no exch time
    rec.trades(0, 1, [{"timestamp": (t + 2) // MS, "price": 10.1, "amount": 0.5, "side": "buy", "id": "abc-1"},
                      {"timestamp": (t + 2) // MS, "price": 10.1, "amount": 0.5, "side": "buy", "id": "abc-1"},
                      {"timestamp": None, "price": 10.0, "amount": 1.0, "side": None, "id": "77"}], t + 3)
    rec.book(_book([[10.0, 4]], [[10.1, 2], [10.2, 1]], t + 3 * NS))  # after midnight: a snapshot again
    rec.book(_book([[10.0, 4]], [[10.1, 2], [10.2, 1]], t + 3 * NS - 5))  # clock stepped back: held
    rec.close()
    parts = list_partitions(tmp_path)
    assert [p[2] for p in parts] == ["2024-10-04", "2024-10-05"]
    ids = {"bybit": 0}, {"AAPL": 0, "AAPLx": 1}
    first = np.concatenate(list(read_merged(tmp_path, *ids, end_ns=day + NS_PER_DAY)))
    assert list(first["kind"]) == [KIND_SNAPSHOT] * 3 + [KIND_DEPTH] * 3 + [KIND_TRADE] * 2
    assert first["flags"][0] == F_CLEAR and first["flags"][2] == F_BATCH_END and first["flags"][5] == F_BATCH_END
    assert first["exch_ts"][0] == t - 5 * MS and first["exch_ts"][3] == t + 2  # no venue time: the local one
    depth = first[first["kind"] == KIND_DEPTH]
    assert sorted(zip(depth["side"], depth["price"], depth["size"])) == [(-1, 10.2, 1.0), (1, 9.9, 0.0), (1, 10.0, 4.0)]
    trades = first[first["kind"] == KIND_TRADE]                     # the repeated id is stored once
    assert list(trades["side"]) == [1, 0] and trades["id"][0] == trade_id("abc-1") > 0 and trades["id"][1] == 77
    assert trades["exch_ts"][1] == t + 3 and rec.dropped == {"repeated trade id": 1}
    second = np.concatenate(list(read_merged(tmp_path, *ids, start_ns=day + NS_PER_DAY)))
    assert list(second["kind"]) == [KIND_SNAPSHOT] * 3 and second["flags"][0] == F_CLEAR  # replays on its own
    assert replay_books(second, 0)[-1][2:] == ({10.0: 4.0}, {10.1: 2.0, 10.2: 1.0})
    assert rec.clamped == 1 and len(second) == 3                   # the held book was unchanged


def test_quotes_are_l1_rows_and_history_before_the_start_is_not_stored(tmp_path):
    rec = Recorder(tmp_path, ["broker"], ["AAPL"], start=False, since_ns=10 * NS)
    rec.book(_book([[200.0, 100]], [[200.1, 50]], 11 * NS, exch=11 * NS - MS, venue=0, instrument=0, quote=True))
    rec.book(_book([[200.0, 100]], [[200.1, 50]], 12 * NS, venue=0, instrument=0, quote=True))
    rec.trades(0, 0, [{"timestamp": 9_000, "price": 200.0, "amount": 1.0, "side": None, "id": "1"},
                      {"timestamp": 11_500, "timestamp_ns": 11_500_000_123, "price": 200.1, "amount": 2.0, "side": None,
                       "id": None}], 12 * NS)
    rec.close()
    ev = np.concatenate(list(read_merged(tmp_path, {"broker": 0}, {"AAPL": 0})))
    assert list(zip(ev["kind"], ev["side"], ev["flags"])) == [(KIND_QUOTE, 1, 0), (KIND_QUOTE, -1, F_BATCH_END),
                                                              (KIND_TRADE, 0, 0)]
    assert ev["exch_ts"][2] == 11_500_000_123 and ev["id"][2] == 0
    assert rec.dropped == {"printed before the recording started": 1}


def _same(got, want) -> bool:
    """Two (bids, asks) books equal up to the wire's decimal rendering of the emulator's floats."""
    return all(len(g) == len(w) and all(abs(gp - wp) <= 1e-9 * wp and abs(gq - wq) <= 1e-9 * max(wq, 1.0)
                                        for (gp, gq), (wp, wq) in zip(g, w)) for g, w in zip(got, want))


# -- against the emulators ------------------------------------------------------------------------------

class _History:
    """Every book an emulator showed, and when (its own history keeps only the last 256)."""

    def __init__(self, emu):
        self.books: dict[str, list] = {m.id: [(ts, list(b), list(a)) for _, ts, b, a in m.history]
                                       for m in emu.markets.values()}

    def on_book(self, m):
        self.books.setdefault(m.id, []).append((m.shown_ts, [tuple(x) for x in m.history[-1][2]],
                                                [tuple(x) for x in m.history[-1][3]]))

    def on_trades(self, m, trades): ...
    def on_order(self, acct, order): ...
    def on_fill(self, acct, fill, order): ...
    def on_balance(self, acct): ...
    def on_fault(self, rec): ...


async def test_recorded_books_and_trades_are_the_emulators_and_replay(sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    from execution.live import VenuePlan, close_adapters, open_adapters
    from execution.sandbox.sandbox import Sandbox
    from execution.sandbox.venue import data_start
    from stockbridge.commands.record import make_feeds

    venues = ["bybit", "kraken"]
    t0 = data_start(sb_store, sb_cfg, venues) + 14 * HOUR_NS       # 10:00 New York
    sb = Sandbox(sb_cfg, sb_store, stepped=True, start_ns=t0, venues=venues, show_data_time=True)
    await within(30, sb.start())
    hist = {n: _History(sb[n].emu) for n in venues}
    for n in venues:
        sb[n].emu.listeners.append(hist[n])
    adapters: dict = {}
    rec = Recorder.for_config(sb_cfg, tmp_path / "rec", flush_s=0.2, since_ns=sb.clock.data_now())
    tasks = []
    try:
        adapters = await within(20, open_adapters(sb_cfg, VenuePlan("sandbox", venues), sandbox=sb, call_timeout_s=5))
        feeds = make_feeds(sb_cfg, adapters, rec, sb.clock.data_now)
        tasks = [asyncio.create_task(f()) for feed in feeds for f in feed.tasks()]

        async def first_books():
            while not all(f.stats.books for f in feeds):
                await asyncio.sleep(0.01)
        await within(10, first_books())
        for n, topic in (("bybit", "publicTrade.{}"), ("kraken", "trade:{}")):   # the trade streams too
            await subscribed(sb[n].server, topic.format(next(iter(sb[n].emu.markets))))
        for _ in range(240):                                        # 4 minutes of market
            await sb.step(1.0)
            await asyncio.sleep(0.012)
        end_ns = sb.clock.data_now()
        await asyncio.sleep(0.3)                                    # the last messages arrive
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rec.close()
        await within(10, close_adapters(adapters))
        await within(10, sb.stop())
    assert rec.error is None and not rec.clamped
    root = tmp_path / "rec"
    vid, iid = sb_cfg.venue_ids(), sb_cfg.instrument_ids()
    ev = np.concatenate(list(read_merged(root, vid, iid)))
    assert (ev["exch_ts"] > 0).all() and (ev["local_ts"] >= ev["exch_ts"]).all()
    live = np.isin(ev["kind"], [KIND_DEPTH, KIND_TRADE])            # a snapshot's venue time is its last change
    lat = ev["local_ts"] - ev["exch_ts"]
    bad = ev[live & (lat >= 2 * NS)]
    assert not len(bad), (bad[:5], lat[live & (lat >= 2 * NS)][:5])
    for n in venues:
        m = next(iter(sb[n].emu.markets.values()))
        shown: dict[int, list] = {}
        for ts, b, a in hist[n].books[m.id]:
            shown.setdefault(ts // MS * MS, []).append((b[:25], a[:25]))
        books = replay_books(ev, vid[n])
        assert len(books) > 50, (n, len(books))
        for exch, _, bids, asks in books:
            got = (sorted(bids.items(), reverse=True), sorted(asks.items()))
            # the book as the venue showed it at that time (several changes can share one ms)
            assert any(_same(got, want) for want in shown.get(exch, [])), (n, exch, got[0][:1], got[1][:1])
        # the tape: every recorded trade was printed, and every print after the first one recorded was recorded
        tape = [(t.ts // MS * MS, t.price, t.size, t.side) for t in m.trades]
        mine = [(int(r["exch_ts"]), float(r["price"]), float(r["size"]), int(r["side"]))
                for r in ev[(ev["venue"] == vid[n]) & (ev["kind"] == KIND_TRADE)]]
        assert len(mine) >= 5, (n, len(mine))
        expected = [x for x in tape if mine[0][0] <= x[0] <= end_ns - NS]
        assert len(mine) >= len(expected) and all(a[0] == b[0] and abs(a[1] - b[1]) <= 1e-9 * b[1]
                                                  and abs(a[2] - b[2]) <= 1e-9 * b[2] and (b[3] == 0 or a[3] == b[3])
                                                  for a, b in zip(mine, expected)), (n, mine[:3], expected[:3])
        assert all(any(a[0] == b[0] and abs(a[1] - b[1]) <= 1e-9 * b[1] for b in tape) for a in mine)
    # the backtester's checks, and a replay of the recording
    from backtest.runner import check_data, run_backtest
    from stockbridge.commands.preflight import check_backtest_config

    check_data(sb_cfg, root)
    spec, params = check_backtest_config(sb_cfg, str(ROOT / "configs" / "demo.toml"))
    summary, _ = run_backtest(sb_cfg, ROOT / "configs" / "demo.toml", root, None, kernel=spec.kernel,
                              params=params.to_array(), validate=False)
    assert summary["events"] == len(ev) and summary["simulated_seconds"] >= 200 and summary["book_levels_dropped"] == 0


# -- crash safety -------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from execution.market_data import Book
    from execution.recorder import Recorder
    rec = Recorder(sys.argv[1], ["bybit"], ["AAPLx"], flush_s=0.2)
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        bids = np.column_stack([100.0 - 0.01 * np.arange(50), 1.0 + (k + np.arange(50)) % 7])
        asks = np.column_stack([100.01 + 0.01 * np.arange(50), 1.0 + (k + np.arange(50)) % 5])
        now = time.time_ns()
        rec.book(Book(0, 0, bids, asks, now - 1000, now, False, "stream"))
        rec.trades(0, 0, [{"timestamp": now // 1_000_000, "price": 100.0, "amount": 1.0, "side": "sell", "id": str(k)}], now)
        time.sleep(0.001)
""")


def test_a_recorder_killed_mid_run_leaves_only_whole_files_and_loses_at_most_a_second(tmp_path, sb_cfg):  # noqa: F811
    from data.validate import validate_store

    root = tmp_path / "crash"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.5)
        killed_at = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = [f for p in list_partitions(root) for f in part_files(partition_dir(root, *p))]
    assert len(files) >= 5
    for f in files:
        read_parquet_file(f)  # whole: never truncated
    last = max(int(read_parquet_file(f, ["local_ts"])["local_ts"].max()) for f in files)
    assert killed_at - last < 1.0 * NS, (killed_at - last) / NS
    assert validate_store(root, {"bybit": 0}, {"AAPLx": 0})["rows"] > 1000
    # a recorder writing there next cleans up a temporary file the killed one may have left
    leftovers = [p for d in {f.parent for f in files} for p in d.iterdir() if not p.name.startswith("part-")]
    nxt = Recorder(root, ["bybit"], ["AAPLx"], start=False)
    for d in {f.parent for f in files}:
        assert nxt.open_partition(d) == len(part_files(d))
    assert all(not p.exists() for p in leftovers)


# -- the command --------------------------------------------------------------------------------------

def test_stockbridge_record_in_process_sandbox(run_cli, sb_store, tmp_path, sb_cfg):  # noqa: F811
    out = tmp_path / "rec"
    res = run_cli("record", ROOT / "configs" / "demo.toml", "--duration", "6s", "--out", out, "--data", sb_store,
                  timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "recorded into" in res.stdout and "solana_dex: no live adapter" in res.stdout
    for venue in ("bybit", "kraken", "broker"):
        assert any(line.startswith(f"│ {venue} ") for line in res.stdout.splitlines()), res.stdout
    assert {p[0] for p in list_partitions(out)} == {"bybit", "kraken", "broker"}
    ev = np.concatenate(list(read_merged(out, sb_cfg.venue_ids(), sb_cfg.instrument_ids())))
    assert {KIND_SNAPSHOT, KIND_QUOTE, KIND_TRADE} <= set(ev["kind"].tolist())
    assert (ev["local_ts"] >= ev["exch_ts"]).all()
    from backtest.runner import check_data

    check_data(sb_cfg, out)


def test_a_failed_write_is_reported_and_the_next_book_is_a_snapshot(tmp_path):
    rec = Recorder(tmp_path, ["bybit"], ["AAPLx"], start=False)
    real, calls = rec._write, []

    def flaky(*a):
        calls.append(a)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(*a)
    rec._write = flaky
    rec.book(_book([[10.0, 1]], [[10.1, 1]], 5 * NS, instrument=0))
    rec.flush()
    assert isinstance(rec.error, OSError) and rec.lost_rows == 2
    rec.book(_book([[10.0, 2]], [[10.1, 1]], 6 * NS, instrument=0))
    rec.close()
    ev = np.concatenate(list(read_merged(tmp_path, {"bybit": 0}, {"AAPLx": 0})))
    assert list(ev["kind"]) == [KIND_SNAPSHOT] * 2 and ev["flags"][0] == F_CLEAR and ev["size"][0] == 2.0
