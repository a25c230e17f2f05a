"""Tardis.dev CSV files (plain or gzip) -> events. The data type is recognised from the header.

Layouts (https://docs.tardis.dev/downloadable-csv-files), timestamps in microseconds since the epoch:

- ``quotes``: ``exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount``
  -> two ``KIND_QUOTE`` rows per line, bid then ask; the ask row carries ``F_BATCH_END``.
- ``trades``: ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount`` (side buy / sell /
  unknown, the aggressor) -> ``KIND_TRADE``. Numeric trade ids are kept; other ids (e.g. UUIDs)
  are stored as 0.
- ``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``
  (side bid / ask; amount 0 removes the level). A run of ``is_snapshot=true`` rows with one timestamp
  replaces the book: ``KIND_SNAPSHOT`` rows, the first with ``F_CLEAR``. Other rows are
  ``KIND_DEPTH``. Rows with the same (timestamp, local_timestamp, is_snapshot) form one atomic
  update; its last row carries ``F_BATCH_END`` and the book is checked for crossing only there.
- ``book_snapshot_N``: ``exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,
  bids[0].price,bids[0].amount,...`` -> per line, ``KIND_SNAPSHOT`` rows for the bids (best first)
  then the asks; the first carries ``F_CLEAR``, the last ``F_BATCH_END``. Empty levels (thin book)
  are skipped; a line with no level at all is counted as skipped (an empty book is not an event).

``timestamp`` becomes ``exch_ts`` and ``local_timestamp`` becomes ``local_ts``. ``symbol`` must be
one of the venue's symbols in the config (compared case-insensitively without '/', '-', '_');
``exchange`` is not checked (Tardis ids such as 'bybit-spot' differ from config venue names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from data.convert.source import (
    ROW,
    ConvertReport,
    EventSink,
    Job,
    csv_batches,
    event_frame,
    map_symbols,
    quote_pairs,
    raw_value,
    read_header,
)
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_SNAPSHOT, KIND_TRADE
from data.validate import BookState, Problem, Validator, crossed_problem, l1_crossed, missing, monotonic, positive
from stockbridge.errors import DataError

BASE = ("exchange", "symbol", "timestamp", "local_timestamp")
QUOTES = BASE + ("ask_amount", "ask_price", "bid_price", "bid_amount")
TRADES = BASE + ("id", "side", "price", "amount")
INCREMENTAL = BASE + ("is_snapshot", "side", "price", "amount")
US = 1_000  # ns per microsecond

BASE_SCHEMA = {"exchange": pl.String, "symbol": pl.String, "timestamp": pl.Int64, "local_timestamp": pl.Int64}
TRADE_SIDES = {"buy": 1, "sell": -1, "unknown": 0}
BOOK_SIDES = {"bid": 1, "ask": -1}
FLAGS = {"true": 1, "false": 0}


def snapshot_depth(header: list[str] | tuple[str, ...]) -> int:
    """N for a ``book_snapshot_N`` header, else 0."""
    rest = list(header[len(BASE) :])
    if tuple(header[: len(BASE)]) != BASE or not rest or len(rest) % 4:
        return 0
    n = len(rest) // 4
    want = [f"{s}[{i}].{f}" for i in range(n) for s in ("asks", "bids") for f in ("price", "amount")]
    return n if rest == want else 0


def detect(header: list[str] | tuple[str, ...]) -> str | None:
    """'quotes', 'trades', 'incremental_book_L2', 'book_snapshot_<N>' or None."""
    header = tuple(header)
    for name, cols in (("quotes", QUOTES), ("trades", TRADES), ("incremental_book_L2", INCREMENTAL)):
        if header == cols:
            return name
    n = snapshot_depth(header)
    return f"book_snapshot_{n}" if n else None


def convert(path: str | Path, job: Job) -> ConvertReport:
    """Convert one Tardis CSV file into ``job.out`` (check only when ``job.out`` is None)."""
    path = Path(path)
    header = read_header(path)
    kind = detect(header)
    if kind is None:
        raise DataError(
            str(path), None, None, "header matches no Tardis CSV type (quotes, trades, incremental_book_L2, book_snapshot_N)"
        )
    report = ConvertReport(str(path), f"tardis {kind}")
    check = Validator(str(path), job.repair, report.dropped)
    sink = EventSink(job.out, job.venue, report, job.clock_offset_ns())
    symbols = job.symbol_map()
    if kind == "quotes":
        schema = BASE_SCHEMA | {c: pl.Float64 for c in QUOTES[4:]}
        step = _Quotes()
    elif kind == "trades":
        schema = BASE_SCHEMA | {"id": pl.String, "side": pl.String, "price": pl.Float64, "amount": pl.Float64}
        step = _Trades()
    elif kind == "incremental_book_L2":
        schema = BASE_SCHEMA | {"is_snapshot": pl.String, "side": pl.String, "price": pl.Float64, "amount": pl.Float64}
        step = _Incremental()
    else:
        schema = BASE_SCHEMA | {c: pl.Float64 for c in header[4:]}
        step = _Snapshots(snapshot_depth(header))
    carry = np.iinfo(np.int64).min
    for batch in csv_batches(path, schema):
        report.source_rows += batch.height
        batch, carry = _screen(path, batch, symbols, check, carry, step.prepare)
        step(batch, check, sink, report, final=False)
    step(None, check, sink, report, final=True)
    return report


def _enum(name: str, values: pl.Series, allowed: dict[str, int]) -> tuple[Problem, pl.Series]:
    """Int8 codes of a text field with a fixed set of values (as published: lower case), and the rows outside it."""
    expr = pl.lit(None, dtype=pl.Int8)
    for text, code in allowed.items():
        expr = pl.when(pl.col(name) == text).then(pl.lit(code, dtype=pl.Int8)).otherwise(expr)
    codes = values.to_frame(name).select(expr.alias(name)).to_series()
    choices = ", ".join(allowed)

    def message(i: int) -> str:
        return "value is missing" if values[i] is None else f"{values[i]!r} is not one of {choices}"

    return Problem(f"missing/unparseable {name}", name, codes.is_null().to_numpy(), message), codes


def _screen(path: Path, batch: pl.DataFrame, symbols: dict[str, str], check: Validator, carry: int, prepare) -> tuple[pl.DataFrame, int]:
    """Drop (or raise on) bad fields, unknown symbols and rows going back in local time.

    ``prepare(path, batch, rows)`` returns the batch with the step's decoded columns added and the
    step's own problems.
    """
    rows = batch.get_column(ROW).to_numpy()
    sym = batch.get_column("symbol")
    inst = map_symbols(sym, symbols)
    problems = [
        missing("symbol", sym),
        Problem(
            "unknown symbol",
            "symbol",
            (inst.is_null() & sym.is_not_null()).to_numpy(),
            lambda i: f"symbol {sym[i]!r} matches none of this venue's symbols in the config ({', '.join(symbols)}; case and '/', '-', '_' ignored)",
        ),
    ]
    for name in ("timestamp", "local_timestamp"):
        problems.append(_numeric_missing(path, batch, rows, name))
    batch, own = prepare(path, batch, rows)
    keep = check.screen(rows, problems + own)
    batch = batch.with_columns(inst.alias("_inst")).filter(keep)
    lts = batch.get_column("local_timestamp").to_numpy() * US
    mono, carry = monotonic("local_timestamp", lts, carry)
    keep = check.screen(batch.get_column(ROW).to_numpy(), [mono])
    return (batch if keep.all() else batch.filter(keep)), carry


def _numeric_missing(path: Path, batch: pl.DataFrame, rows: np.ndarray, name: str) -> Problem:
    return missing(name, batch.get_column(name), raw=lambda i: raw_value(path, int(rows[i]), name))


def _times(batch: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return batch.get_column("timestamp").to_numpy() * US, batch.get_column("local_timestamp").to_numpy() * US


# -- quotes ----------------------------------------------------------------------------------------

class _Quotes:
    @staticmethod
    def prepare(path, batch, rows):
        out = [_numeric_missing(path, batch, rows, c) for c in QUOTES[4:]]
        out += [positive(c, batch.get_column(c).to_numpy()) for c in QUOTES[4:]]
        out.append(l1_crossed(batch.get_column("bid_price").to_numpy(), batch.get_column("ask_price").to_numpy()))
        return batch, out

    def __call__(self, batch, check, sink, report, final):
        if batch is None or batch.height == 0:
            return
        exch, local = _times(batch)
        bid, bid_size, ask, ask_size = (batch.get_column(c).to_numpy() for c in ("bid_price", "bid_amount", "ask_price", "ask_amount"))
        sink.write_by_instrument(np.repeat(batch.get_column("_inst").to_numpy(), 2), quote_pairs(exch, local, bid, bid_size, ask, ask_size))


# -- trades ----------------------------------------------------------------------------------------

class _Trades:
    @staticmethod
    def prepare(path, batch, rows):
        side, codes = _enum("side", batch.get_column("side"), TRADE_SIDES)
        out = [side]
        for c in ("price", "amount"):
            out += [_numeric_missing(path, batch, rows, c), positive(c, batch.get_column(c).to_numpy())]
        return batch.with_columns(codes.alias("_side")), out

    def __call__(self, batch, check, sink, report, final):
        if batch is None or batch.height == 0:
            return
        exch, local = _times(batch)
        side = batch.get_column("_side").to_numpy()
        ids = batch.get_column("id").cast(pl.Int64, strict=False).fill_null(0).to_numpy()
        price, size = batch.get_column("price").to_numpy(), batch.get_column("amount").to_numpy()
        sink.write_by_instrument(batch.get_column("_inst"), event_frame(KIND_TRADE, side, 0, exch, local, price, size, ids))


# -- incremental_book_L2 -----------------------------------------------------------------------------

class _Incremental:
    """Per instrument: the last update group is held back until the next batch shows where it ends."""

    def __init__(self) -> None:
        self.pending: dict[str, pl.DataFrame] = {}
        self.prev: dict[str, tuple[int, int, bool]] = {}
        self.books: dict[str, BookState] = {}

    @staticmethod
    def prepare(path, batch, rows):
        snap, snap_codes = _enum("is_snapshot", batch.get_column("is_snapshot"), FLAGS)
        side, side_codes = _enum("side", batch.get_column("side"), BOOK_SIDES)
        out = [snap, side]
        for c in ("price", "amount"):
            out.append(_numeric_missing(path, batch, rows, c))
        out.append(positive("price", batch.get_column("price").to_numpy()))
        out.append(positive("amount", batch.get_column("amount").to_numpy(), allow_zero=(snap_codes == 0).to_numpy()))
        return batch.with_columns(snap_codes.alias("_snap"), side_codes.alias("_side")), out

    def __call__(self, batch, check, sink, report, final):
        if batch is not None:
            insts = batch.get_column("_inst")
            parts = [(insts[0], batch)] if insts.n_unique() == 1 else [(i, p) for (i,), p in batch.group_by("_inst", maintain_order=True)]
            for inst, part in parts:
                held = self.pending.pop(inst, None)
                self._emit(inst, part if held is None else pl.concat([held, part]), check, sink, final)
        if final:
            for inst in list(self.pending):
                self._emit(inst, self.pending.pop(inst), check, sink, final)

    def _emit(self, inst: str, frame: pl.DataFrame, check: Validator, sink: EventSink, final: bool) -> None:
        exch, local = _times(frame)
        snap = frame.get_column("_snap").to_numpy() == 1
        p_exch, p_local, p_snap = self.prev.get(inst, (-1, -1, None))
        new_group = np.empty(frame.height, dtype=bool)
        new_group[0] = exch[0] != p_exch or local[0] != p_local or snap[0] != p_snap
        new_group[1:] = (exch[1:] != exch[:-1]) | (local[1:] != local[:-1]) | (snap[1:] != snap[:-1])
        end = frame.height
        if not final:
            end = int(np.flatnonzero(new_group)[-1])
            if end == 0:
                self.pending[inst] = frame
                return
            self.pending[inst] = frame.slice(end)
        flags = np.zeros(end, dtype=np.uint16)
        flags[snap[:end] & new_group[:end]] |= F_CLEAR
        last = np.append(new_group[1:end], True)
        flags[last] |= F_BATCH_END
        kind = np.where(snap[:end], KIND_SNAPSHOT, KIND_DEPTH).astype(np.uint8)
        side = frame.get_column("_side").to_numpy()[:end]
        price = frame.get_column("price").to_numpy()[:end]
        size = frame.get_column("amount").to_numpy()[:end]
        rows = frame.get_column(ROW).to_numpy()[:end]
        book = self.books.setdefault(inst, BookState())
        keep = check.screen(rows, [crossed_problem(book, kind, side, flags, price, size, check.repair)])
        self.prev[inst] = (int(exch[end - 1]), int(local[end - 1]), bool(snap[end - 1]))
        events = event_frame(kind, side, flags, exch[:end], local[:end], price, size)
        sink.write(inst, events.filter(keep) if not keep.all() else events)


# -- book_snapshot_N -------------------------------------------------------------------------------

class _Snapshots:
    def __init__(self, depth: int) -> None:
        self.depth = depth

    def _cols(self, side: str, field: str) -> list[str]:
        return [f"{side}[{i}].{field}" for i in range(self.depth)]

    def prepare(self, path, batch, rows):
        out = []
        for side in ("bids", "asks"):
            for price_col, amount_col in zip(self._cols(side, "price"), self._cols(side, "amount")):
                p = batch.get_column(price_col)
                a = batch.get_column(amount_col)
                # An empty level (both fields empty) is a thin book; one field without the other is not.
                for name, col, other in ((price_col, p, a), (amount_col, a, p)):
                    prob = _numeric_missing(path, batch, rows, name)
                    prob.mask &= other.is_not_null().to_numpy()
                    out.append(prob)
                out += [positive(price_col, p.to_numpy()), positive(amount_col, a.to_numpy())]
        out.append(
            l1_crossed(batch.get_column("bids[0].price").to_numpy(), batch.get_column("asks[0].price").to_numpy(), "bids[0].price")
        )
        return batch, out

    def __call__(self, batch, check, sink, report, final):
        if batch is None or batch.height == 0:
            return
        exch, local = _times(batch)
        price = np.hstack([batch.select(self._cols(s, "price")).to_numpy() for s in ("bids", "asks")])
        size = np.hstack([batch.select(self._cols(s, "amount")).to_numpy() for s in ("bids", "asks")])
        valid = ~np.isnan(price) & ~np.isnan(size)
        levels = valid.sum(axis=1)
        if (levels == 0).any():
            report.skipped["snapshot lines with no levels"] += int(np.count_nonzero(levels == 0))
        side = np.broadcast_to(np.repeat(np.array([1, -1], dtype=np.int8), self.depth), price.shape)
        flat = valid.ravel()
        ends = np.cumsum(levels)
        flags = np.zeros(int(ends[-1]), dtype=np.uint16)
        has = levels > 0
        flags[(ends - levels)[has]] |= F_CLEAR
        flags[ends[has] - 1] |= F_BATCH_END
        events = event_frame(
            KIND_SNAPSHOT, side.ravel()[flat], flags, np.repeat(exch, levels), np.repeat(local, levels), price.ravel()[flat], size.ravel()[flat]
        )
        sink.write_by_instrument(np.repeat(batch.get_column("_inst").to_numpy(), levels), events)
