"""Run a backtest: config + tick store in, fills / time series / summary / report out.

Everything that can be checked is checked before the replay starts (config, strategy params, the
data store), so a bad input stops the run with one line and no partial output. The replay itself
is :func:`backtest.engine.run_chunk`, fed one reader chunk at a time, so memory stays bounded.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from backtest import engine as E
from backtest.matching import FILL_DTYPE, VENUE_DEFAULTED, venues_keep_from, venues_rebase
from backtest.metrics import MARKOUT_HORIZONS_S, summarize
from backtest.orders import REASON_NAMES, STATE_NAMES, TAG_NAMES
from backtest.simvenue import flush_fills, flush_orders, grow_queues, sim_from_config
from data.reader import clock_offsets, feed_latency_max, read_merged, store_extent
from data.schema import EVENT_DTYPE
from data.store import list_partitions
from stockbridge.config import StockbridgeConfig
from stockbridge.core.context import MAX_VENUES
from stockbridge.core.trader import T_CANCEL_RETRIES, T_DECISIONS, equity
from stockbridge.core.working import MAX_WORKING
from stockbridge.instruments import to_ns
from stockbridge.tables import MarketTables, build_tables
from stockbridge.trader import build_trader, cid_prefix

NS = 1_000_000_000
TRACK_INTERVAL_S = 1.0
TRACK_THIN_NS = 60 * NS  # the report's fair chart keeps one track row a minute
WALL_CLOCK_FIELDS = ("wall_seconds", "events_per_second", "compile_seconds")

Progress = Callable[[int, int], None]  # (events done, last local_ts)


def check_data(cfg: StockbridgeConfig, data_dir: Path) -> None:
    """Everything the replay needs of the store, checked before it starts: the book checks of
    data.validate (crossed books, bad values) and the store checks of data.store_check (NaN/inf,
    time order, duplicated rows, negative feed latency after the venues' clock offsets). Raises the
    first problem as a one-line DataError naming the file, row and field."""
    from data.store_check import check_store
    from data.validate import validate_store

    check_store(data_dir, cfg).raise_first()
    validate_store(data_dir, cfg.venue_ids(), cfg.instrument_ids())


def feed_latencies(root: Path, cfg: StockbridgeConfig) -> np.ndarray:
    """Per venue id, the largest feed latency of its rows in the store (ns, data.reader.feed_latency_max; 0 without rows)."""
    out = np.zeros(len(cfg.venues), dtype=np.int64)
    for name, worst in feed_latency_max(root, cfg).items():
        out[cfg.venue_ids()[name]] = max(worst, 0)
    return out


def build_static(cfg: StockbridgeConfig) -> E.Static:
    """What the backtest adds to the trader core's config: the recording cadence and the scenarios."""
    bt = cfg.backtest
    cf = np.zeros(E.N_C, dtype=np.float64)
    cf[E.C_SAMPLE_NS] = bt.sample_interval_s * NS
    cf[E.C_TRACK_NS] = TRACK_INTERVAL_S * NS
    cf[E.C_INITIAL_CASH] = bt.initial_cash
    cf[E.C_ON_CHANGE] = 1.0 if bt.decide_when_changed else 0.0
    cf[E.C_IDLE_NS] = bt.decide_max_idle_ms * 1e6
    vid = cfg.venue_ids()
    sc = [s for s in bt.scenarios if s.kind != "depeg"]  # a depeg rewrites prices as chunks are read
    kinds = {"default": E.SC_DEFAULT, "halt": E.SC_HALT}
    return E.Static(
        cf=cf,
        sc_kind=np.array([kinds[s.kind] for s in sc], dtype=np.int64),
        sc_venue=np.array([vid[s.venue] for s in sc], dtype=np.int64),
        sc_start=np.array([to_ns(s.at) for s in sc], dtype=np.int64),
        sc_end=np.array([to_ns(s.until) if s.until else np.iinfo(np.int64).max for s in sc], dtype=np.int64),
        sc_recovery=np.array([s.recovery_rate for s in sc], dtype=np.float64),
    )


def new_state(cfg: StockbridgeConfig, tables: MarketTables, st: E.Static, start_ns: int, sim) -> E.State:
    """The true books of account at ``start_ns`` and the recording buffers, sized for ``sim``'s fills
    and orders (what we *know* is the trader core's: stockbridge.trader.build_trader)."""
    ni = len(tables.instrument_names)
    f = np.full(E.N_F, np.nan)
    for k in (E.F_INV_PNL, E.F_BORROW, E.F_DEFAULT_LOSS):
        f[k] = 0.0
    iv = np.zeros(E.N_I, dtype=np.int64)
    iv[E.I_DIRTY] = 1  # the first due decision always runs
    iv[E.I_SEEN_SEG] = iv[E.I_SEEN_MULT] = -1
    sample_ns = int(st.cf[E.C_SAMPLE_NS])
    iv[E.I_NEXT_SAMPLE] = (start_ns // sample_ns) * sample_ns
    iv[E.I_NEXT_TRACK] = (start_ns // NS) * NS
    cash = np.zeros(MAX_VENUES)
    cash[:tables.n_venues] = cfg.backtest.initial_cash
    zeros = lambda *shape: np.zeros(shape, dtype=np.float64)  # noqa: E731
    return E.State(
        f=f, iv=iv, pos=zeros(MAX_VENUES, ni), cash=cash, avg=zeros(MAX_VENUES, ni), realized=zeros(MAX_VENUES, ni),
        fees=zeros(MAX_VENUES), sc_done=np.zeros(st.sc_kind.shape[0], dtype=np.int64),
        fill_mark=zeros(sim.fills.shape[0], 2),
        ts_buf=zeros(1, E.TS_FIXED_COLS + E.TS_VENUE_COLS * tables.n_venues), track_buf=zeros(1, 3),
        rep_i=np.zeros(6, dtype=np.int64), rep_f=np.zeros(3, dtype=np.float64),
        sim_cid=np.zeros(sim.orders.shape[0], dtype=np.int64), sim_slot=np.zeros(MAX_WORKING, dtype=np.int64),
        seen=np.full((MAX_VENUES, 4), np.nan),
    )


def _apply_depegs(events: np.ndarray, cfg: StockbridgeConfig) -> None:
    vid = cfg.venue_ids()
    for s in cfg.backtest.scenarios:
        if s.kind != "depeg":
            continue
        until = to_ns(s.until) if s.until else np.iinfo(np.int64).max
        m = (events["venue"] == vid[s.venue]) & (events["local_ts"] >= to_ns(s.at)) & (events["local_ts"] < until)
        events["price"][m] *= 1.0 + s.depeg_bps * 1e-4


class Replay:
    """One backtest run's mutable pieces and its collected output."""

    def __init__(self, cfg: StockbridgeConfig, data_dir: Path, start_ns: int, end_ns: int, kernel, params: np.ndarray,
                 feed_latency_max: np.ndarray | None = None):
        """``feed_latency_max``: per venue, the largest ``local_ts - exch_ts`` of its data (ns): how far the
        simulated venues must look ahead in the stream (:func:`backtest.matching.venue_advance`);
        by default read from the store."""
        if feed_latency_max is None:
            feed_latency_max = feed_latencies(data_dir, cfg)
        self.cfg = cfg
        self.data_dir = data_dir
        self.start_ns, self.end_ns = start_ns, end_ns
        self.tables = build_tables(cfg, start_ns, end_ns)
        self.static = build_static(cfg)
        self.sim = sim_from_config(cfg, fill_capacity=1 << 16, queue_capacity=1 << 14, order_capacity=MAX_WORKING)
        self.sim.lmax[:] = feed_latency_max
        self.trader = build_trader(cfg, self.tables, start_ns, book_depth=self.sim.px.shape[2],
                                   prefix=cid_prefix(cfg.backtest.seed))
        self.state = new_state(cfg, self.tables, self.static, start_ns, self.sim)
        self.kernel, self.params = kernel, params
        self.fills: list[np.ndarray] = []
        self.marks: list[np.ndarray] = []
        self.series: list[np.ndarray] = []
        # The 1 s fair track (for markouts) grows with the run: it goes to a Parquet file as it is
        # produced; memory keeps one row a minute for the report's chart.
        self._track_dir = tempfile.TemporaryDirectory(prefix="stockbridge-track-")
        self.track_path = Path(self._track_dir.name) / "fair_track.parquet"
        self._track_file = Spool(self.track_path)
        self.track_thin: list[np.ndarray] = []
        self.orders_path = Path(self._track_dir.name) / "orders.parquet"
        self._orders_file = Spool(self.orders_path)
        self._held = np.zeros(0, dtype=EVENT_DTYPE)  # rows the replay still needs when the next chunk comes
        self._joined = np.zeros(0, dtype=EVENT_DTYPE)  # held rows + the next chunk (reused: see feed)
        self._resume = 0  # where in ``_held`` the local replay goes on

    def compile(self):
        """Compile (or load from numba's disk cache) the replay loop for this run's types, so the
        replay's timing measures the replay; returns it (a numba dispatcher)."""
        return E.compiled_run_chunk(np.zeros(0, dtype=EVENT_DTYPE), self.sim, self.static, self.trader, self.state, self.params)

    def _flush_fills(self) -> None:
        s = self.state
        n = int(self.sim.fill_n[0])
        if n:
            self.marks.append(s.fill_mark[:n].copy())
            self.fills.append(flush_fills(self.sim))
        s.iv[E.I_FILLS_SEEN] = 0
        if self.sim.olog_n[0]:
            self._write_orders(flush_orders(self.sim))

    def _write_orders(self, rows: np.ndarray) -> None:
        """Order-log rows go to a Parquet file as they come (there are many more orders than fills).

        Name columns are taken from their codes by Arrow: through numpy strings they cost 0.4 s
        of CPU per 1.5 M orders (the bench deciding on every event)."""
        t = self.tables
        table = pa.table({
            "order_id": rows["order_id"], "submit_ts": rows["ts_submit"], "arrival_ts": rows["arrival_ts"],
            "final_ts": rows["final_ts"], "done_ts": rows["done_ts"],
            "venue": _named(t.venue_names, rows["venue"]), "instrument": _named(t.instrument_names, rows["instrument"]),
            "side": rows["side"], "price": rows["price"], "qty": rows["qty"], "filled": rows["filled"],
            "tif": _named(("gtc", "ioc"), rows["tif"]), "post_only": rows["post_only"].astype(bool),
            "tag": _named(TAG_NAMES, rows["tag"]), "state": _named(STATE_NAMES, rows["state"]),
            "reason": _named(REASON_NAMES, rows["reason"]),
        })
        self._orders_file.write(table)

    def orders_frame(self) -> pl.DataFrame:
        """Every order that reached a final state (after :meth:`finish`): orders.parquet."""
        return pl.read_parquet(self.orders_path)

    def _flush_series(self) -> None:
        s = self.state
        n = int(s.iv[E.I_TS_N])
        if n:
            self.series.append(s.ts_buf[:n].copy())
        s.iv[E.I_TS_N] = 0
        n = int(s.iv[E.I_TRACK_N])
        if n:
            self._write_track(s.track_buf[:n])
        s.iv[E.I_TRACK_N] = 0

    def _write_track(self, rows: np.ndarray) -> None:
        ts = rows[:, 0].astype(np.int64)
        # copies: the rows are the replay's buffer, reused while the spool's thread writes them
        table = pa.table({"ts": ts, "fair": rows[:, 1].copy(), "fair_share": rows[:, 2].copy()})
        self._track_file.write(table)
        self.track_thin.append(rows[ts % TRACK_THIN_NS == 0].copy())

    def _close_track(self) -> None:
        if not self._track_file.started:
            self._write_track(np.zeros((0, 3)))
        if not self._orders_file.started:
            self._write_orders(self.sim.olog[:0])
        self._track_file.close()
        self._orders_file.close()

    def _size_series(self, last_ts: int) -> None:
        """Make the sample buffers big enough for every row up to ``last_ts``."""
        s = self.state
        need_ts = int(max(0, last_ts - s.iv[E.I_NEXT_SAMPLE]) // int(self.static.cf[E.C_SAMPLE_NS])) + 2
        need_tr = int(max(0, last_ts - s.iv[E.I_NEXT_TRACK]) // NS) + 2
        ts_buf = s.ts_buf if s.ts_buf.shape[0] >= need_ts else np.zeros((need_ts, s.ts_buf.shape[1]))
        track_buf = s.track_buf if s.track_buf.shape[0] >= need_tr else np.zeros((need_tr, 3))
        self.state = s._replace(ts_buf=ts_buf, track_buf=track_buf)

    def feed(self, events: np.ndarray) -> None:
        """Replay the next chunk of the merged stream.

        The replay stops short of a chunk's end: the chunk's last same-time group may continue in the
        next chunk (deciding on a half-applied update would make the results depend on the chunk
        size), and each simulated venue looks ahead by its feed latency for the rows that happened
        at the venue before what we have received. What it still needs waits in ``_held`` for the
        next chunk or :meth:`finish`.
        """
        # Everything made so far (modules, numba's dispatchers, the config) is moved out of the
        # collector's reach: a full collection during the replay would walk it all again and again
        # for nothing (the reader thread's frames trigger them). Undone by finish().
        gc.freeze()
        _apply_depegs(events, self.cfg)
        if not len(self._held):
            self._replay(events)
            return
        # the held rows and the chunk, one after the other in a buffer kept for the next chunk (a new
        # array per chunk costs the page faults of touching fresh memory, more than the copy)
        h, n = len(self._held), len(self._held) + len(events)
        if self._joined.shape[0] < n:
            self._joined = np.empty(n + n // 4, dtype=EVENT_DTYPE)
        joined = self._joined[:n]
        joined[:h] = self._held
        joined[h:] = events
        self._replay(joined)

    def _replay(self, events: np.ndarray) -> None:
        if len(events):
            self._size_series(int(events["local_ts"][-1]))
        i = self._resume
        while True:
            run = E.compiled_run_chunk(events, self.sim, self.static, self.trader, self.state, self.params)
            i, status = run(events, i, self.sim, self.static, self.trader, self.state, self.params, self.kernel)
            if status == E.DONE:
                self._held, self._resume = events[:0], 0
                break
            if status == E.NEED_MORE:
                keep = venues_keep_from(self.sim, i)
                venues_rebase(self.sim, keep)
                self._held, self._resume = events[keep:].copy(), i - keep
                break
            self._handle(status)
        self._flush_fills()
        self._flush_series()

    def _handle(self, status: int) -> None:
        if status == E.FILLS_FULL:
            self._flush_fills()
        elif status == E.QUEUE_FULL_:
            self.sim = grow_queues(self.sim, 2 * self.sim.pq_i.shape[1])
        elif status == E.SERIES_FULL:
            self._flush_series()
        elif status == E.NO_ORDER_SLOT:
            raise RuntimeError(f"more than {self.sim.orders.shape[0]} live orders: raise the engine's order capacity")
        else:
            raise RuntimeError(f"unexpected engine status {status}")

    def finish(self) -> None:
        """End of the data: replay what is held, let what reached the venues happen, take the last samples."""
        self.sim.final[0] = 1
        self._replay(self._held)
        self._flush_fills()
        self._flush_series()
        self._close_track()
        gc.unfreeze()

    # -- output frames --
    def fills_frame(self) -> pl.DataFrame:
        fills = np.concatenate(self.fills) if self.fills else np.zeros(0, dtype=FILL_DTYPE)
        marks = np.concatenate(self.marks) if self.marks else np.zeros((0, 2))
        venues = np.array(self.tables.venue_names, dtype=object)
        insts = np.array(self.tables.instrument_names, dtype=object)
        return pl.DataFrame({
            "ts": fills["ts_venue"], "arrival_ts": fills["ts_arrival"], "local_ts": fills["ts_local"],
            "venue": pl.Series(venues[fills["venue"].astype(np.int64)], dtype=pl.String),
            "instrument": pl.Series(insts[fills["instrument"].astype(np.int64)], dtype=pl.String),
            "side": fills["side"].astype(np.int8), "price": fills["price"], "qty": fills["qty"], "fee": fills["fee"],
            "liquidity": pl.Series(np.where(fills["maker"] == 1, "maker", "taker"), dtype=pl.String),
            "order_id": fills["order_id"],
            "tag": pl.Series(np.array(TAG_NAMES, dtype=object)[fills["tag"].astype(np.int64)], dtype=pl.String),
            "fair": marks[:, 0], "multiplier": marks[:, 1],
        })

    def timeseries_frame(self) -> pl.DataFrame:
        rows = np.concatenate(self.series) if self.series else np.zeros((0, self.state.ts_buf.shape[1]))
        cols = {"ts": rows[:, 0].astype(np.int64), "session": rows[:, 1].astype(np.int8)}
        for k, name in enumerate(("fair", "fair_share", "equity_raw", "equity_haircut", "net_delta", "pnl_inventory_cum"), 2):
            cols[name] = rows[:, k]
        for v, venue in enumerate(self.tables.venue_names):
            base = E.TS_FIXED_COLS + v * E.TS_VENUE_COLS
            for k, name in enumerate(("pos", "cash", "exposure", "cap", "bid", "ask", "mkt_bid", "mkt_ask")):
                cols[f"{name}_{venue}"] = rows[:, base + k]
        return pl.DataFrame(cols)

    def track_frame(self) -> pl.DataFrame:
        """The whole 1 s fair track, read back from its file (after :meth:`finish`)."""
        return pl.read_parquet(self.track_path)

    def thin_track_frame(self) -> pl.DataFrame:
        """The fair track at one row a minute: enough for a chart."""
        rows = np.concatenate(self.track_thin) if self.track_thin else np.zeros((0, 3))
        return pl.DataFrame({"ts": rows[:, 0].astype(np.int64), "fair": rows[:, 1], "fair_share": rows[:, 2]})

    def markout_track(self, fills: pl.DataFrame) -> pl.DataFrame:
        """The rows of the fair track that markouts read, one batch of the file at a time.

        For every fill time t and horizon h the metrics take the last track row at or before t + h.
        Keeping exactly those rows, plus the last row of each batch (the answer for a target between
        two batches, and the track's end), gives the same markouts as the whole track."""
        targets = np.sort(np.concatenate([fills["ts"].to_numpy() + h * NS for h in MARKOUT_HORIZONS_S]))
        keep = []
        for batch in pq.ParquetFile(self.track_path).iter_batches():
            ts = batch.column("ts").to_numpy()
            if len(ts) == 0:
                continue
            inside = targets[(targets >= ts[0]) & (targets <= ts[-1])]
            idx = np.unique(np.append(np.searchsorted(ts, inside, side="right") - 1, len(ts) - 1))
            keep.append(pl.from_arrow(batch.take(pa.array(idx))))
        if not keep:
            return pl.DataFrame(schema={"ts": pl.Int64, "fair": pl.Float64, "fair_share": pl.Float64})
        return pl.concat(keep).unique("ts", keep="first", maintain_order=True)

    def final_books(self) -> dict[str, dict[str, Any]]:
        """Per venue: final cash and positions by instrument from the engine's true books, as a fill log
        alone would leave them: borrow charges (not fills) are added back; a defaulted venue, whose
        balance became a recovery claim, is left out."""
        s = self.state
        out = {}
        for v, venue in enumerate(self.tables.venue_names):
            if self.sim.status[v] == VENUE_DEFAULTED:
                continue
            positions = {name: float(s.pos[v, i]) for i, name in enumerate(self.tables.instrument_names) if s.pos[v, i] != 0.0}
            cash = float(s.cash[v]) + (float(s.f[E.F_BORROW]) if v == self.tables.hedge_venue else 0.0)
            out[venue] = {"cash": cash, "positions": positions}
        return out

    def totals(self, wall: float, config_path: str) -> dict[str, Any]:
        s, tr = self.state, self.trader
        raw, cut = equity(tr, s.pos, s.cash)
        return {
            "events": int(s.iv[E.I_EVENTS]),
            "decisions": int(tr.iv[T_DECISIONS]),
            "simulated_seconds": (int(s.iv[E.I_LAST_TS]) - int(s.iv[E.I_FIRST_TS])) / NS,
            "wall_seconds": wall,
            "equity_initial_raw": float(self.cfg.backtest.initial_cash * self.tables.n_venues),
            "equity_final_raw": float(raw),
            "equity_final_after_haircut": float(cut),
            "pnl_inventory": float(s.f[E.F_INV_PNL]),
            "borrow_cost": float(s.f[E.F_BORROW]),
            "default_loss": float(s.f[E.F_DEFAULT_LOSS]),
            "venues": list(self.tables.venue_names),
            "seed": self.cfg.backtest.seed,
            "config": config_path,
            "book_levels_dropped": int(tr.ldropped.sum()),
            "cancels_retried": int(tr.iv[T_CANCEL_RETRIES]),
        }

    def warnings(self, fills: pl.DataFrame, series: pl.DataFrame) -> list[str]:
        """Why this run may have done less than meant (backtest.diagnostics)."""
        from backtest.diagnostics import run_warnings

        t = self.tables
        quotable = [v for k, v in enumerate(t.venue_names) if t.quotable[k] == 1]
        have = {(v, i) for v, i, _ in list_partitions(self.data_dir)}
        inst = t.instrument_names
        missing = [v for k, v in enumerate(t.venue_names)
                   if t.quotable[k] == 1 and (v, inst[int(t.venue_instrument[k])]) not in have]
        return run_warnings(venues_without_data=missing, fills=fills.height, series=series, quotable=quotable,
                            levels_dropped=int(self.trader.ldropped.sum()), consumed_forgotten=int(self.sim.cevict[0]),
                            cancels_retried=int(self.trader.iv[T_CANCEL_RETRIES]))

    def final_marks(self) -> dict[str, float]:
        s = self.state
        names = self.tables.instrument_names
        return {names[self.tables.token]: float(s.f[E.F_TOKEN_MARK]), names[self.tables.share]: float(s.f[E.F_SHARE_MARK])}


class Spool:
    """A Parquet file a replay writes as it goes (zstd, no dictionary pages: ids, times and prices
    hardly repeat; with them the order log was 1.6x larger and took 1.8x as long to write).

    The writing is done by a thread of its own, in the order given: Arrow releases the GIL while it
    encodes, so it overlaps the compiled replay (which releases it too) instead of stopping it. The
    tables handed over must not be changed afterwards. An error in a write is raised by the next
    :meth:`write` or by :meth:`close`, never lost."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._pending: list = []

    @property
    def started(self) -> bool:
        return self._writer is not None

    def write(self, table: pa.Table) -> None:
        self._raise_done()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd", use_dictionary=False)
        self._pending.append(self._pool.submit(self._writer.write_table, table))

    def _raise_done(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()

    def close(self) -> None:
        """Every write carried out (the first error raised), the file closed."""
        try:
            for fut in self._pending:
                fut.result()
            self._pending.clear()
        finally:
            if self._writer is not None:
                self._writer.close()
            self._pool.shutdown(wait=True)


def _named(names, codes: np.ndarray) -> pa.Array:
    """The string column of ``names[code]`` for each code (Arrow's take: no Python strings per row)."""
    return pa.array(list(names), type=pa.string()).take(codes.astype(np.int64))


def prefetched(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The same chunks in the same order, the next one read by a background thread while the
    caller replays the current one (Parquet decoding and the compiled replay both release the GIL)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reader") as pool:
        pending = pool.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield chunk


def run_backtest(
    cfg: StockbridgeConfig,
    config_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path | None,
    *,
    kernel,
    params: np.ndarray,
    progress: Progress | None = None,
    chunk_size: int = 1_000_000,
    crosscheck: bool = True,
    validate: bool = True,
) -> tuple[dict[str, Any], Replay]:
    """Replay the store at ``data_dir``; write outputs to ``out_dir`` (if given); return (summary, replay).

    The store is checked first (:func:`check_data`: a DataError names the file, row and field of the
    first problem), so nothing the checks refuse - a NaN price, a crossed book, time going
    backwards, a clock running behind the venue's - reaches the simulated venues. ``validate=False`` only for a store the
    caller has just validated itself."""
    data_dir = Path(data_dir)
    venue_ids, inst_ids = cfg.venue_ids(), cfg.instrument_ids()
    if validate:
        check_data(cfg, data_dir)
    lo, hi, _ = store_extent(data_dir, cfg)
    start = to_ns(cfg.backtest.start) if cfg.backtest.start else lo
    end = to_ns(cfg.backtest.end) if cfg.backtest.end else hi + 1
    replay = Replay(cfg, data_dir, start, end, kernel, params)
    t_compile = time.perf_counter()
    replay.compile()
    t0 = time.perf_counter()
    done = 0
    for chunk in prefetched(read_merged(data_dir, venue_ids, inst_ids, start, end, chunk_size=chunk_size,
                                              clock_offset_ms=clock_offsets(cfg))):
        replay.feed(chunk)
        done += len(chunk)
        if progress:
            progress(done, int(chunk["local_ts"][-1]))
    replay.finish()
    wall = time.perf_counter() - t0
    fills, series = replay.fills_frame(), replay.timeseries_frame()
    summary = summarize(fills, series, replay.markout_track(fills), replay.totals(wall, str(config_path)))
    summary["strategy"] = cfg.strategy.name if cfg.strategy else None
    summary["compile_seconds"] = t0 - t_compile
    summary["book_levels_dropped"] = int(replay.trader.ldropped.sum())
    summary["warnings"] = replay.warnings(fills, series)
    if crosscheck:
        from backtest.bt_bridge import crosscheck_with_backtrader

        initial = {v: cfg.backtest.initial_cash for v in replay.tables.venue_names}
        summary["backtrader_check"] = crosscheck_with_backtrader(
            fills, initial, replay.final_marks(), reported=replay.final_books())
    if out_dir is not None:
        write_outputs(Path(out_dir), summary, replay, fills, series, Path(config_path).name)
    return summary, replay


def write_outputs(out: Path, summary: dict, replay: Replay, fills: pl.DataFrame, series: pl.DataFrame, name: str) -> None:
    from backtest.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    fills.write_parquet(out / "fills.parquet")
    series.write_parquet(out / "timeseries.parquet")
    shutil.copyfile(replay.track_path, out / "fair_track.parquet")
    shutil.copyfile(replay.orders_path, out / "orders.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n")
    write_report(out / "report.html", summary, fills, series, replay.thin_track_frame(), name)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
