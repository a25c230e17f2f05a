"""Plain CSV quotes (NBBO) and trades for one instrument -> events.

Layouts (a header line, then one row per record):

- NBBO: ``ts,bid,bid_size,ask,ask_size`` -> two ``KIND_QUOTE`` rows per line, bid then ask, the ask
  row with ``F_BATCH_END``. Prices in quote currency, sizes in shares or tokens.
- trades: ``ts,price,size,side`` -> ``KIND_TRADE``; ``side`` is the aggressor: ``buy``, ``sell`` or
  ``unknown`` (any case).

``ts`` is either ISO-8601 with a zone (``2025-07-07T13:30:00.000123Z``,
``2025-07-07 09:30:00-04:00``) or an integer of ns since the epoch, UTC. A time without a zone is an
error. The file has one time, so ``exch_ts`` and ``local_ts`` both get it. The instrument is
``--instrument`` (or the venue's only one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from data.convert.source import ROW, ConvertReport, EventSink, Job, csv_batches, event_frame, quote_pairs, raw_value, read_header
from data.schema import KIND_TRADE
from data.validate import Problem, Validator, l1_crossed, missing, monotonic, positive
from stockbridge.errors import DataError

NBBO = ("ts", "bid", "bid_size", "ask", "ask_size")
TRADES = ("ts", "price", "size", "side")
SIDES = {"buy": 1, "sell": -1, "unknown": 0}
ISO = "%Y-%m-%dT%H:%M:%S%.f%z"


def parse_ts(ts: pl.Series) -> pl.Series:
    """Text times -> int64 ns UTC (null where neither integer ns nor ISO-8601 with a zone)."""
    as_int = ts.str.strip_chars().cast(pl.Int64, strict=False)
    iso = ts.str.strip_chars().str.replace(r"[zZ]$", "+00:00").str.replace(" ", "T", literal=True)
    as_iso = iso.str.to_datetime(format=ISO, time_unit="ns", time_zone="UTC", strict=False).dt.epoch("ns")
    return as_int.fill_null(as_iso)


def convert_nbbo(path: str | Path, job: Job) -> ConvertReport:
    """Convert an NBBO CSV (layout in the module docstring)."""
    return _convert(Path(path), job, NBBO, "nbbo")


def convert_trades(path: str | Path, job: Job) -> ConvertReport:
    """Convert a trades CSV (layout in the module docstring)."""
    return _convert(Path(path), job, TRADES, "trades-csv")


def _convert(path: Path, job: Job, columns: tuple[str, ...], fmt: str) -> ConvertReport:
    header = tuple(read_header(path))
    if header != columns:
        raise DataError(str(path), None, None, f"expected header '{','.join(columns)}', got '{','.join(header)}'")
    instrument = job.single_instrument()
    report = ConvertReport(str(path), fmt)
    check = Validator(str(path), job.repair, report.dropped)
    sink = EventSink(job.out, job.venue, report, job.clock_offset_ns())
    schema = {c: (pl.String if c in ("ts", "side") else pl.Float64) for c in columns}
    carry = np.iinfo(np.int64).min
    for batch in csv_batches(path, schema):
        report.source_rows += batch.height
        rows = batch.get_column(ROW).to_numpy()
        ts = parse_ts(batch.get_column("ts"))
        raw_ts = batch.get_column("ts").to_numpy()
        problems = [
            Problem(
                "missing/unparseable ts",
                "ts",
                ts.is_null().to_numpy(),
                lambda i: "value is missing" if raw_ts[i] is None else f"cannot parse {raw_ts[i]!r} (expected ISO-8601 with a zone or integer ns)",
            )
        ]
        for c in columns:
            if c not in ("ts", "side"):
                problems.append(missing(c, batch.get_column(c), lambda i, c=c: raw_value(path, int(rows[i]), c)))
                problems.append(positive(c, batch.get_column(c).to_numpy()))
        if fmt == "nbbo":
            problems.append(l1_crossed(batch.get_column("bid").to_numpy(), batch.get_column("ask").to_numpy(), "bid"))
            side = None
        else:
            side = batch.get_column("side").str.to_lowercase().str.strip_chars().replace_strict(SIDES, default=None, return_dtype=pl.Int8)
            raw_side = batch.get_column("side").to_numpy()
            problems.append(
                Problem(
                    "missing/unparseable side",
                    "side",
                    side.is_null().to_numpy(),
                    lambda i: "value is missing" if raw_side[i] is None else f"{raw_side[i]!r} is not one of buy, sell, unknown",
                )
            )
        keep = check.screen(rows, problems)
        ts = ts.to_numpy()[keep]
        batch = batch.filter(keep)
        side = None if side is None else side.to_numpy()[keep]
        mono, carry = monotonic("ts", ts, carry)
        keep = check.screen(batch.get_column(ROW).to_numpy(), [mono])
        batch, ts = batch.filter(keep), ts[keep]
        if fmt == "nbbo":
            bid, bid_size, ask, ask_size = (batch.get_column(c).to_numpy() for c in NBBO[1:])
            events = quote_pairs(ts, ts, bid, bid_size, ask, ask_size)
        else:
            events = event_frame(KIND_TRADE, side[keep], 0, ts, ts, batch.get_column("price").to_numpy(), batch.get_column("size").to_numpy())
        sink.write(instrument, events)
    return report
