"""Backtest / live parity: one market segment through the backtest's replay and through the live bot
against the emulators, with zero latency on both and the same seed, gives the same order actions and
the same fills.

The segment is its own store (:func:`parity_store`): each venue's book as it stood at the start,
written as a snapshot, then the recorded rows up to the end, with ``local_ts = exch_ts`` (no feed
latency). The emulators replay that store and the backtest replays it, so both start from the same
books, with no history, flat, with the same cash.

The live bot runs with a stepped clock and a stepped runner (``LiveRunner.stepped``): the test moves
the clock to each event time of the segment in turn, waits until the bot has taken in what that step
brought (the venue's book as the emulator shows it, every public trade, every fill, every order
report), then calls ``decide()``, and waits for the orders to be answered. That is when the backtest
decides: after each (time, venue) group of events, with every report of a zero-latency venue in.
No two venues print at the same nanosecond in the segment (checked), so a step is one group.

What is compared: every new order (its decision time, venue, side, price, size, time in force,
post-only, tag), how it ended (filled, cancelled, rejected; tokens filled) and when a cancel was
decided; every fill (time, venue, side, price, size, maker or taker, tag; the fee to 1e-9).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from faults.invariants import bounded
from sandbox.conftest import sb_cfg, sb_compiled, sb_store  # noqa: F401 - the sandbox fixtures

from backtest.runner import run_backtest
from data.schema import (
    EVENT_DTYPE,
    F_BATCH_END,
    F_CLEAR,
    KIND_QUOTE,
    KIND_SNAPSHOT,
    KIND_TRADE,
)
from data.store import write_events
from execution.sandbox.market import MarketSim
from execution.sandbox.sandbox import Sandbox
from execution.sandbox.venue import data_start, market_chunks
from live.live_sandbox import HOUR_NS, close_live, start_live, with_live
from stockbridge.commands.preflight import check_backtest_config
from stockbridge.core import order_codes as oc

NS = 10**9
VENUES = (("broker", "AAPL"), ("bybit", "AAPLx"), ("kraken", "AAPLx"))
START_H = 13.6          # Thu 2025-07-03 13:36 UTC: the regular session (opened 13:30)
SEGMENT_S = 90          # seconds of market
TIF = {oc.GTC: "GTC", oc.IOC: "IOC"}


def _px(x):
    """A limit price, or None for a market order (the core's +inf / 0; the journal stores none)."""
    return x if x is not None and np.isfinite(x) and x > 0 else None


def parity_config(cfg):
    """The demo without the DEX (the live bot has no adapter for it), every latency 0, a narrow hedge
    band (the segment's first fills call for a hedge), and guards that never bind (the backtest
    has none: a refused order would be a difference of the test's making)."""
    venues = {n: v.model_copy(update={"order_latency_ms": 0.0, "response_latency_ms": 0.0, "latency_jitter_ms": 0.0})
              for n, v in cfg.venues.items() if n != "solana_dex"}
    cfg = cfg.model_copy(update={
        "venues": venues,
        "strategy": cfg.strategy.model_copy(update={"quote_venues": ["bybit", "kraken"]}),
        "risk": cfg.risk.model_copy(update={"hedge_band": 1.0}),
    })
    return with_live(cfg, guards={"stale_book_ms": 1e9, "max_orders_per_second": 1e6, "order_burst": 10**6})


def parity_store(src: Path, cfg, out: Path, t0: int, t_end: int, feed_ns: dict[str, int] | None = None) -> np.ndarray:
    """Write the segment store; returns its event times (ns, sorted) with the venue of each.

    Each venue's opening book is written a microsecond apart (broker, bybit, kraken) so that no two
    venues share an event time. ``feed_ns``: a feed latency per venue (``local_ts = exch_ts + it``;
    default none)."""
    times = []
    for k, (venue, inst) in enumerate(VENUES):
        v = cfg.venues[venue]
        ms = MarketSim(market_chunks(src, cfg, venue, inst), v.maker_fee_bps, v.taker_fee_bps)
        ms.advance(t0)
        bids, asks = ms.book()
        ts = t0 + k * 1_000
        kind = KIND_QUOTE if venue == "broker" else KIND_SNAPSHOT
        if kind == KIND_QUOTE:
            bids, asks = bids[:1], asks[:1]
        head = np.zeros(len(bids) + len(asks), dtype=EVENT_DTYPE)
        for i, (side, (px, sz)) in enumerate([(1, b) for b in bids] + [(-1, a) for a in asks]):
            head[i] = (kind, side, 0, 0, 0, ts, ts, px, sz, 0)
        if kind == KIND_SNAPSHOT:
            head["flags"][0] |= F_CLEAR
        head["flags"][-1] |= F_BATCH_END
        rows = np.concatenate(list(market_chunks(src, cfg, venue, inst)))
        rows = rows[(rows["exch_ts"] > ts) & (rows["exch_ts"] <= t_end)].copy()
        rows["local_ts"] = rows["exch_ts"]
        events = np.concatenate([head, rows])
        events["local_ts"] += (feed_ns or {}).get(venue, 0)
        write_events(out, venue, inst, events)
        times.append(np.stack([np.unique(events["exch_ts"]), np.full(len(np.unique(events["exch_ts"])), k)], axis=1))
    t = np.concatenate(times)
    t = t[np.argsort(t[:, 0], kind="stable")]
    assert len(np.unique(t[:, 0])) == len(t), "two venues print at the same ns: a step would not be one group"
    return t


def trade_times(store: Path, cfg) -> dict[str, np.ndarray]:
    """Each venue's public trade times in the segment store (ns, sorted)."""
    out = {}
    for venue, inst in VENUES:
        rows = np.concatenate(list(market_chunks(store, cfg, venue, inst)))
        out[venue] = np.sort(rows["exch_ts"][rows["kind"] == KIND_TRADE])
    return out


class Tap:
    """The runner's recorder hook: the last book (as the core got it) and the trades it handed on."""

    def __init__(self) -> None:
        self.books: dict[int, object] = {}
        self.n_trades: dict[int, int] = {}

    def book(self, book) -> None:
        self.books[book.venue] = book

    def trades(self, venue, instrument, trades, now) -> None:
        self.n_trades[venue] = self.n_trades.get(venue, 0) + len(trades)


def same_levels(got: np.ndarray, want: list[tuple[float, float]], n: int) -> bool:
    want = want[:n]
    got = got[:n]
    if len(got) != len(want):
        return False
    return all(abs(g[0] - w[0]) <= 1e-9 * w[0] and abs(g[1] - w[1]) <= 1e-9 * max(1.0, w[1]) for g, w in zip(got, want))


async def caught_up(run, tap, counts: dict[str, int], wall_s: float = 10.0) -> None:
    """Until the bot holds what the emulators show: per venue its book's top levels (less ours), every
    public trade, every fill of ours, and an answer to every call it made."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wall_s
    runner = run.runner
    lvs = {lv.name: lv for lv in runner.venues.values()}
    while True:
        missing = []
        for name, lv in lvs.items():
            emu = run.sb[name].emu
            m = next(iter(emu.markets.values()))
            bids, asks = m.sim.book()
            depth = 1 if name == "broker" else 5
            b = tap.books.get(lv.id)
            if bids or asks:
                if b is None or not (same_levels(b.bids, bids, depth) and same_levels(b.asks, asks, depth)):
                    missing.append(f"{name} book")
            ours = sum(1 for f in run.sb[name].account.fills if not f.maker)  # our takes print on the tape too
            if tap.n_trades.get(lv.id, 0) != counts[name] + ours:
                missing.append(f"{name} trades {tap.n_trades.get(lv.id, 0)} of {counts[name] + ours}")
            booked = runner.journal.db.execute("SELECT COUNT(*) FROM fills WHERE venue = ?", (name,)).fetchone()[0]
            if booked != len(run.sb[name].account.fills):
                missing.append(f"{name} fills")
        pending = [o.client_id for o in runner.om.orders.values()
                   if o.state.value in ("pending_new", "pending_cancel", "unknown")]
        if not missing and not pending and not runner.submits:
            # every order the venue holds open, the bot holds open (its acks are in)
            open_venue = {o.client_id for v in ("bybit", "kraken", "broker")
                          for o in run.sb[v].account.orders.values() if not o.is_final}
            open_bot = {o.client_id for o in runner.om.orders.values() if not o.final}
            if open_venue == open_bot:
                return
            missing.append(f"open orders differ: venue {sorted(open_venue - open_bot)} bot {sorted(open_bot - open_venue)}")
        if loop.time() > until:
            raise AssertionError(f"the bot did not catch up with the venues: {missing or pending}")
        await asyncio.sleep(0.002)


def backtest_side(cfg, store: Path):
    """(every order, the fills) of the backtest over the segment store, run as the CLI runs it."""
    spec, params = check_backtest_config(cfg, "parity")
    _, replay = run_backtest(cfg, "parity.toml", store, None, kernel=spec.kernel, params=params.to_array(),
                                   crosscheck=False)
    names = replay.tables.venue_names
    orders = {}
    for r in replay.orders_frame().iter_rows(named=True):  # orders.parquet: the orders that ended
        orders[r["order_id"]] = dict(ts=r["submit_ts"], venue=r["venue"], side=r["side"], price=_px(r["price"]),
                                     qty=r["qty"], tif=r["tif"].upper(), post_only=int(r["post_only"]), tag=r["tag"],
                                     state=r["state"], filled=r["filled"], final_ts=r["final_ts"])
    live = replay.sim.orders[(replay.sim.orders["id"] > 0) & np.isin(replay.sim.orders["state"], (oc.PENDING_NEW, oc.OPEN, oc.PENDING_CANCEL))]
    for o in live:
        orders[int(o["id"])] = dict(ts=int(o["ts_submit"]), venue=names[int(o["venue"])], side=int(o["side"]),
                                    price=_px(float(o["price"])), qty=float(o["qty"]), tif=TIF[int(o["tif"])],
                                    post_only=int(o["post_only"]), tag=oc.TAG_NAMES[int(o["tag"])], state="open",
                                    filled=float(o["qty"] - o["leaves"]), final_ts=None)
    fills = replay.fills_frame().select("ts", "venue", "side", "price", "qty", "fee", "liquidity", "tag").sort("ts", "venue")
    return list(orders.values()), fills


@bounded(240)
async def test_backtest_and_live_take_the_same_actions_and_get_the_same_fills(sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = parity_config(sb_cfg)
    t0 = data_start(sb_store, cfg, ["broker", "bybit", "kraken"]) + int(START_H * HOUR_NS)
    t_end = t0 + SEGMENT_S * NS
    store = tmp_path / "segment"
    times = parity_store(sb_store, cfg, store, t0, t_end)
    trades = trade_times(store, cfg)

    # the live side
    sb = Sandbox(cfg, store, stepped=True, start_ns=t0 - NS, venues=["bybit", "kraken", "broker"], show_data_time=True)
    await sb.start()
    run = await start_live(cfg, store, tmp_path / "run", sandbox=sb)
    tap = Tap()
    run.runner.recorder = tap
    run.runner.stepped = True
    try:
        run.start()
        now = sb.clock.data_now()
        counts = {name: 0 for name, _ in VENUES}
        for ts, _ in times:
            await sb.step((int(ts) - now) / NS)
            now = sb.clock.data_now()
            assert now == ts
            for name in counts:
                counts[name] = int(np.searchsorted(trades[name], now, side="right"))
            await caught_up(run, tap, counts)
            run.runner.decide()
            await caught_up(run, tap, counts)
            if run.task.done():
                run.task.result()
        journal = run.session.journal
        intents = journal.intents()
        jfills = journal.fills()
        jorders = {r[0]: r for r in journal.db.execute("SELECT client_id, state, filled FROM orders").fetchall()}
        await run.stop()
    finally:
        await close_live(run)

    # the backtest side
    bt_orders, bt_fills = backtest_side(cfg, store)

    live_new = [i for i in intents if i["action"] == "new"]
    cancels = {i["client_id"]: i["decided_ns"] for i in intents if i["action"] == "cancel" and i["decided_ns"] <= t_end}

    def key(o):
        return (o["ts"], o["venue"], o["side"], o["price"] or 0.0, o["tag"])

    live_orders = sorted(
        (dict(ts=i["decided_ns"], venue=i["venue"], side=i["side"], price=i["price"], qty=i["qty"], tif=i["tif"],
              post_only=int(i["post_only"]), tag=i["tag"], state=jorders[i["client_id"]][1], filled=jorders[i["client_id"]][2],
              cancel=cancels.get(i["client_id"]))
         for i in live_new), key=key)
    bt = sorted(bt_orders, key=key)
    assert len(live_orders) > 20 and len(bt) > 20
    assert [(o["ts"], o["venue"], o["side"], o["price"], o["qty"], o["tif"], o["post_only"], o["tag"]) for o in live_orders] == \
           [(o["ts"], o["venue"], o["side"], o["price"], o["qty"], o["tif"], o["post_only"], o["tag"]) for o in bt]
    for lo, bo in zip(live_orders, bt):
        # how each order ended by the segment's end (the live bot's stop cancelled what was still open)
        if bo["state"] == "open":
            continue  # still open at the end of the segment: the live bot's stop cancelled it later
        assert lo["state"] == bo["state"], (lo, bo)
        assert lo["filled"] == pytest.approx(bo["filled"], abs=1e-9), (lo, bo)
        if bo["state"] == "cancelled" and bo["tif"] == "GTC":
            assert lo["cancel"] == bo["final_ts"], (lo, bo)

    live_fills = pl.DataFrame([dict(ts=f["venue_ns"], venue=f["venue"], side=f["side"], price=f["price"], qty=f["qty"],
                                    fee=f["fee"], liquidity=f["liquidity"], tag=f["tag"]) for f in jfills
                               if f["venue_ns"] <= t_end]).sort("ts", "venue")
    assert len(bt_fills) >= 5 and {"quote", "hedge"} <= set(bt_fills["tag"])
    assert len(live_fills) == len(bt_fills)
    # the venues' timestamps are milliseconds: the backtest's fill time truncated to the ms
    assert (live_fills["ts"] // 1_000_000).to_list() == (bt_fills["ts"] // 1_000_000).to_list()
    for col in ("venue", "side", "price", "qty", "liquidity", "tag"):
        assert live_fills[col].to_list() == bt_fills[col].to_list(), col
    assert np.allclose(live_fills["fee"].to_numpy(), bt_fills["fee"].to_numpy(), rtol=1e-9, atol=1e-12)


def pnl_at(fills: pl.DataFrame, marks: dict[str, float]) -> float:
    """Cash from the fills (less fees) plus each venue's position at ``marks`` (quote ccy): the same
    arithmetic for both sides, independent of either engine's books."""
    cash = float((-(fills["side"].cast(pl.Float64)) * fills["price"] * fills["qty"] - fills["fee"]).sum())
    pos = fills.group_by("venue").agg((pl.col("side").cast(pl.Float64) * pl.col("qty")).sum().alias("pos"))
    return cash + sum(float(r["pos"]) * marks[r["venue"]] for r in pos.iter_rows(named=True))


def mids_at(store: Path, cfg, t: int) -> dict[str, float]:
    out = {}
    for venue, inst in VENUES:
        v = cfg.venues[venue]
        ms = MarketSim(market_chunks(store, cfg, venue, inst), v.maker_fee_bps, v.taker_fee_bps)
        ms.advance(t)
        bids, asks = ms.book()
        out[venue] = (bids[0][0] + asks[0][0]) / 2
    return out


LIVE_SPEED = 5.0        # the live run's replay speed: a ms of loopback latency is 5 ms of market time (at 10x
                        # a test worker sharing the cores jittered the fills beyond the tolerance)


@bounded(240)
async def test_with_latency_the_backtest_at_the_live_runs_measured_latency_gets_its_fills_and_pnl(
        sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    """The live bot on a running clock (LIVE_SPEED) has real latency: the loopback, its own work, the
    emulators' (which share its loop). The backtest of the same segment with the latencies the live run
    measured (per venue: book feed, order to venue, report back; medians) must get about as many
    fills and about the same PnL. They cannot agree exactly: live latency varies from one message to
    the next (the backtest's is a constant), and the live bot decides when a book arrives and every
    50 ms, where the backtest decides after every event."""
    cfg = parity_config(sb_cfg)
    t0 = data_start(sb_store, cfg, ["broker", "bybit", "kraken"]) + int(START_H * HOUR_NS)
    t_end = t0 + SEGMENT_S * NS
    store = tmp_path / "segment"
    parity_store(sb_store, cfg, store, t0, t_end)

    sb = Sandbox(cfg, store, stepped=True, start_ns=t0 - NS, venues=["bybit", "kraken", "broker"], show_data_time=True)
    await sb.start()
    run = await start_live(cfg, store, tmp_path / "run", sandbox=sb)
    feed_lat: dict[str, list[int]] = {}
    names = {lv.id: lv.name for lv in run.runner.venues.values()}

    class FeedTap:
        def book(self, book):
            if book.exch_ns is not None:
                feed_lat.setdefault(names[book.venue], []).append(book.local_ns - book.exch_ns)

        def trades(self, *a):
            pass

    run.runner.recorder = FeedTap()
    try:
        run.start()
        await asyncio.sleep(0.5)  # the streams are up before the market moves
        sb.release(LIVE_SPEED)
        while sb.clock.data_now() < t_end:
            await asyncio.sleep(0.05)
            if run.task.done():
                run.task.result()
        journal = run.session.journal
        orders = journal.db.execute("SELECT o.venue, o.venue_created_ns - i.decided_ns FROM orders o JOIN intents i"
                                    " ON i.client_id = o.client_id AND i.action = 'new'"
                                    " WHERE o.venue_created_ns IS NOT NULL AND i.decided_ns <= ?", (t_end,)).fetchall()
        jfills = [f for f in journal.fills() if f["venue_ns"] <= t_end]
        await run.stop()
    finally:
        await close_live(run)

    def median_ms(xs):
        return max(float(np.median(xs)) / 1e6, 0.0) if len(xs) else 0.0

    order_ms = {v: median_ms([d for n, d in orders if n == v]) for v in ("bybit", "kraken", "broker")}
    report_ms = {v: median_ms([f["local_ns"] - f["venue_ns"] for f in jfills if f["venue"] == v]) for v in order_ms}
    feed_ms = {v: median_ms(feed_lat.get(v, [])) for v in order_ms}
    measured = cfg.model_copy(update={"venues": {
        n: v.model_copy(update={"order_latency_ms": order_ms[n], "response_latency_ms": report_ms[n] or order_ms[n]})
        for n, v in cfg.venues.items()}})
    bt_store = tmp_path / "segment-feed"
    parity_store(sb_store, cfg, bt_store, t0, t_end, feed_ns={v: int(ms * 1e6) for v, ms in feed_ms.items()})
    _, bt_fills = backtest_side(measured, bt_store)
    live_fills = pl.DataFrame([dict(ts=f["venue_ns"], venue=f["venue"], side=f["side"], price=f["price"], qty=f["qty"],
                                    fee=f["fee"], liquidity=f["liquidity"], tag=f["tag"]) for f in jfills])
    marks = mids_at(store, cfg, t_end)
    n_bt, n_live = len(bt_fills), len(live_fills)
    pnl_bt, pnl_live = pnl_at(bt_fills, marks), pnl_at(live_fills, marks)
    traded = float((bt_fills["price"] * bt_fills["qty"]).sum())
    print(f"latency ms order {order_ms} report {report_ms} feed {feed_ms}; fills backtest {n_bt} live {n_live};"
          f" pnl backtest {pnl_bt:.2f} live {pnl_live:.2f}; traded {traded:.0f}")
    assert n_bt >= 5
    assert abs(n_live - n_bt) <= max(3, 0.35 * n_bt)
    assert abs(pnl_live - pnl_bt) <= 2e-4 * traded + 1.0  # 2 bp of what was traded, plus a dollar
