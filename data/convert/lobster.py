"""LOBSTER message + orderbook file pairs (NASDAQ equities, https://lobsterdata.com) -> events.

Message file (no header): ``time,type,order_id,size,price,direction``
- ``time``: seconds after midnight, New York wall-clock time, of the trading day given as
  ``Job.date`` (``--date YYYY-MM-DD``); converted to UTC with America/New_York, DST included.
  The file has one time, so ``exch_ts`` and ``local_ts`` both get it.
- ``type``: 1 new limit order, 2 partial cancel, 3 delete, 4 execution of a visible order,
  5 execution of a hidden order, 6 cross trade (auction), 7 trading halt.
- ``price``: dollars x 10,000. ``direction``: 1 buy, -1 sell; for executions the resting order's
  side, so the aggressor is the opposite side.

Orderbook file (no header, one row per message row, the book *after* the message):
``ask_px_1,ask_sz_1,bid_px_1,bid_sz_1,...`` up to N levels; empty levels carry the dummy prices
9999999999 (ask) and -9999999999 (bid).

Events
- Book: the first row becomes a ``KIND_SNAPSHOT`` of all its levels (``F_CLEAR`` on the first,
  ``F_BATCH_END`` on the last). Every later row becomes ``KIND_DEPTH`` rows for the price levels
  that differ from the previous row (size 0: the level left the visible N levels), the last with
  ``F_BATCH_END``. A numba kernel diffs consecutive rows in one pass.
- Trades: types 4 and 5 become ``KIND_TRADE`` with side = -direction (the aggressor), id = order
  id; type 6 (an auction cross has no aggressor) becomes a trade with side 0. A trade comes before
  the book change of the same message.
- Type 7 (halt) has no event in the schema: such rows are counted as skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data.convert.source import ROW, ConvertReport, EventSink, Job, count_rows, csv_batches, event_frame, raw_value, read_header
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_SNAPSHOT, KIND_TRADE
from data.validate import Problem, Validator, l1_crossed, missing, monotonic, positive
from stockbridge.errors import DataError

MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
PRICE_SCALE = 10_000.0
EMPTY_ASK = 9_999_999_999.0
EMPTY_BID = -9_999_999_999.0
NEW_YORK = "America/New_York"
TRADE_TYPES = (4, 5, 6)
HALT = 7


def book_columns(levels: int) -> list[str]:
    return [f"{f}_{k}" for k in range(1, levels + 1) for f in ("ask_px", "ask_sz", "bid_px", "bid_sz")]


def convert(message_path: str | Path, orderbook_path: str | Path, job: Job) -> ConvertReport:
    """Convert one LOBSTER pair for ``job.instrument`` (or the venue's only instrument)."""
    message_path, orderbook_path = Path(message_path), Path(orderbook_path)
    if job.date is None:
        raise DataError(str(message_path), None, "time", "LOBSTER times are seconds after New York midnight: pass --date YYYY-MM-DD")
    try:
        midnight = np.datetime64(job.date, "D")
    except ValueError:
        raise DataError(str(message_path), None, "time", f"--date {job.date!r} is not YYYY-MM-DD") from None
    instrument = job.single_instrument()
    n_msg, n_book = count_rows(message_path, has_header=False), count_rows(orderbook_path, has_header=False)
    if n_msg != n_book:
        raise DataError(
            str(message_path), None, None, f"has {n_msg} rows but orderbook file {orderbook_path} has {n_book}; a LOBSTER pair has one orderbook row per message"
        )
    ncols = len(read_header(orderbook_path))
    if ncols % 4:
        raise DataError(str(orderbook_path), 1, None, f"{ncols} fields: an orderbook row has 4 fields per level")
    levels = ncols // 4
    report = ConvertReport(f"{message_path} + {orderbook_path}", f"lobster ({levels} levels)")
    check = Validator(str(message_path), job.repair, report.dropped)
    book_check = Validator(str(orderbook_path), job.repair, report.dropped)
    sink = EventSink(job.out, job.venue, report, job.clock_offset_ns())
    msg_schema = {"time": pl.Float64, "type": pl.Int64, "order_id": pl.Int64, "size": pl.Float64, "price": pl.Float64, "direction": pl.Int64}
    book_schema = {c: pl.Float64 for c in book_columns(levels)}
    carry = np.iinfo(np.int64).min
    prev = None
    for batch in csv_batches(message_path, msg_schema, has_header=False, beside=(orderbook_path, book_schema)):
        report.source_rows += batch.height
        batch = batch.with_columns(_utc_ns(midnight).alias("_ts"))
        rows = batch.get_column(ROW).to_numpy()
        keep = check.screen(rows, _message_problems(message_path, batch, rows))
        keep &= book_check.screen(rows, _book_problems(orderbook_path, batch, rows, levels))
        batch = batch.filter(keep)
        ts = batch.get_column("_ts").to_numpy()
        mono, carry = monotonic("time", ts, carry)
        batch = batch.filter(check.screen(batch.get_column(ROW).to_numpy(), [mono]))
        halts = int((batch.get_column("type") == HALT).sum())
        if halts:
            report.skipped["halt messages (type 7)"] += halts
        events, prev = _events(batch, levels, prev)
        sink.write(instrument, events)
    return report


def _utc_ns(midnight: np.datetime64) -> pl.Expr:
    """UTC ns of New York wall-clock ``midnight + time`` (null where the wall time does not exist)."""
    wall = pl.lit(midnight.astype("datetime64[ns]")).cast(pl.Datetime("ns")) + pl.duration(nanoseconds=(pl.col("time") * 1e9).round().cast(pl.Int64))
    return wall.dt.replace_time_zone(NEW_YORK, ambiguous="earliest", non_existent="null").dt.epoch("ns")


def _message_problems(path: Path, batch: pl.DataFrame, rows: np.ndarray) -> list[Problem]:
    def raw(name):
        return lambda i: raw_value(path, int(rows[i]), name, has_header=False, names=list(MESSAGE_COLUMNS))

    out = [missing(c, batch.get_column(c), raw(c)) for c in MESSAGE_COLUMNS]
    time = batch.get_column("time").to_numpy()
    ts_null = batch.get_column("_ts").is_null().to_numpy() & ~np.isnan(time)
    out.append(Problem("missing/unparseable time", "time", ts_null, lambda i: f"{float(time[i])!r} s after midnight does not exist in New York on that date (DST)"))
    typ = batch.get_column("type").fill_null(1).to_numpy()
    out.append(Problem("bad type", "type", (typ < 1) | (typ > 7), lambda i: f"message type {int(typ[i])} is not 1..7"))
    priced = typ != HALT  # a halt row carries a halt code in 'price' and no size or side
    direction = batch.get_column("direction").fill_null(1).to_numpy()
    out.append(Problem("bad direction", "direction", priced & (np.abs(direction) != 1), lambda i: f"direction {int(direction[i])} is not 1 or -1"))
    for c in ("price", "size"):
        p = positive(c, batch.get_column(c).to_numpy())
        p.mask &= priced
        out.append(p)
    return out


def _book_arrays(batch: pl.DataFrame, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ask px, ask size, bid px, bid size), each (rows, levels); dummy prices -> NaN, prices in dollars."""
    def grab(field):
        return batch.select([f"{field}_{k}" for k in range(1, levels + 1)]).to_numpy().astype(np.float64, copy=False)

    ask_px, ask_sz, bid_px, bid_sz = grab("ask_px"), grab("ask_sz"), grab("bid_px"), grab("bid_sz")
    ask_px = np.where(ask_px >= EMPTY_ASK, np.nan, ask_px / PRICE_SCALE)
    bid_px = np.where(bid_px <= EMPTY_BID, np.nan, bid_px / PRICE_SCALE)
    return ask_px, ask_sz, bid_px, bid_sz


def _book_problems(path: Path, batch: pl.DataFrame, rows: np.ndarray, levels: int) -> list[Problem]:
    names = book_columns(levels)
    out = [missing(c, batch.get_column(c), lambda i, c=c: raw_value(path, int(rows[i]), c, has_header=False, names=names)) for c in names]
    ask_px, ask_sz, bid_px, bid_sz = _book_arrays(batch, levels)
    for k in range(levels):
        for side, px, sz in (("ask", ask_px, ask_sz), ("bid", bid_px, bid_sz)):
            real = ~np.isnan(px[:, k])
            p = positive(f"{side}_px_{k + 1}", px[:, k] * PRICE_SCALE)
            q = positive(f"{side}_sz_{k + 1}", sz[:, k])
            q.mask &= real
            out += [p, q]
    out.append(l1_crossed(bid_px[:, 0], ask_px[:, 0], "bid_px_1"))
    return out


def _events(batch: pl.DataFrame, levels: int, prev: tuple | None) -> tuple[pl.DataFrame, tuple | None]:
    """Trades and book changes of one screened batch, in message order; returns the last book for the next batch."""
    if batch.height == 0:
        return event_frame(0, 0, 0, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)), prev
    ts = batch.get_column("_ts").to_numpy()
    ask_px, ask_sz, bid_px, bid_sz = _book_arrays(batch, levels)
    first_snapshot = prev is None
    if first_snapshot:
        prev = (np.full(levels, np.nan), np.zeros(levels), np.full(levels, np.nan), np.zeros(levels))
    args = (ask_px, ask_sz, bid_px, bid_sz) + prev
    n = _book_changes(*args, np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0), np.zeros(0), False)
    b_row, b_side, b_px, b_sz = np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n), np.empty(n)
    _book_changes(*args, b_row, b_side, b_px, b_sz, True)
    b_flags = np.zeros(n, dtype=np.uint16)
    b_flags[np.append(b_row[1:] != b_row[:-1], n > 0)] |= F_BATCH_END
    b_kind = np.full(n, KIND_DEPTH, dtype=np.uint8)
    if first_snapshot and n:
        first = b_row == 0
        b_kind[first] = KIND_SNAPSHOT
        b_flags[0] |= F_CLEAR

    typ = batch.get_column("type").to_numpy()
    is_trade = np.isin(typ, TRADE_TYPES)
    t_row = np.flatnonzero(is_trade)
    t_side = np.where(typ[t_row] == 6, 0, -batch.get_column("direction").to_numpy()[t_row]).astype(np.int8)
    t_px = batch.get_column("price").to_numpy()[t_row] / PRICE_SCALE
    t_sz = batch.get_column("size").to_numpy()[t_row]
    t_id = batch.get_column("order_id").to_numpy()[t_row]

    # Trade first, then the book change it caused: order by (message row, trade before book).
    order = np.argsort(np.concatenate([2 * t_row, 2 * b_row + 1]), kind="stable")
    rows = np.concatenate([t_row, b_row])[order]

    def cat(a, b):
        return np.concatenate([a, b])[order]

    events = event_frame(
        cat(np.full(len(t_row), KIND_TRADE, np.uint8), b_kind),
        cat(t_side, b_side),
        cat(np.zeros(len(t_row), np.uint16), b_flags),
        ts[rows],
        ts[rows],
        cat(t_px, b_px),
        cat(t_sz, b_sz),
        cat(t_id, np.zeros(n, np.int64)),
    )
    last = (ask_px[-1].copy(), ask_sz[-1].copy(), bid_px[-1].copy(), bid_sz[-1].copy())
    return events, last


@njit(cache=True)
def _side_diff(px, sz, prev_px, prev_sz, sign, r, side, out_row, out_side, out_px, out_sz, k, write):
    """Append the changes from (prev_px, prev_sz) to (px, sz) of one side; keys sign*px ascend, NaN = empty."""
    i = 0
    j = 0
    m = len(px)
    while True:
        a = i < m and not np.isnan(prev_px[i])
        b = j < m and not np.isnan(px[j])
        if not a and not b:
            return k
        if a and b and prev_px[i] == px[j]:
            if prev_sz[i] != sz[j]:
                if write:
                    out_row[k], out_side[k], out_px[k], out_sz[k] = r, side, px[j], sz[j]
                k += 1
            i += 1
            j += 1
        elif a and (not b or sign * prev_px[i] < sign * px[j]):
            if write:
                out_row[k], out_side[k], out_px[k], out_sz[k] = r, side, prev_px[i], 0.0
            k += 1
            i += 1
        else:
            if write:
                out_row[k], out_side[k], out_px[k], out_sz[k] = r, side, px[j], sz[j]
            k += 1
            j += 1


@njit(cache=True)
def _book_changes(ask_px, ask_sz, bid_px, bid_sz, p_ask_px, p_ask_sz, p_bid_px, p_bid_sz, out_row, out_side, out_px, out_sz, write):
    """Level changes of each row against the row before (the first against p_*); returns how many."""
    k = 0
    for r in range(ask_px.shape[0]):
        if r == 0:
            pa, pas, pb, pbs = p_ask_px, p_ask_sz, p_bid_px, p_bid_sz
        else:
            pa, pas, pb, pbs = ask_px[r - 1], ask_sz[r - 1], bid_px[r - 1], bid_sz[r - 1]
        k = _side_diff(bid_px[r], bid_sz[r], pb, pbs, -1.0, r, 1, out_row, out_side, out_px, out_sz, k, write)
        k = _side_diff(ask_px[r], ask_sz[r], pa, pas, 1.0, r, -1, out_row, out_side, out_px, out_sz, k, write)
    return k
