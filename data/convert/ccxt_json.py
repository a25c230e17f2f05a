"""JSON saved from ccxt -> trades (events) or OHLCV bars.

- ``fetch_trades``: a JSON list of ccxt trade dicts; used fields ``timestamp`` (ms since the epoch),
  ``price`` (quote currency), ``amount`` (tokens), ``side`` (the aggressor: 'buy', 'sell', or null
  when the venue does not say -> 0), ``id`` (numeric ids kept, others stored as 0) and ``symbol``
  (ccxt unified, mapped to an instrument through the venue's ``instruments`` table) ->
  ``KIND_TRADE``. One time, so ``exch_ts`` = ``local_ts`` = ``timestamp``.
- ``fetch_ohlcv``: a JSON list of ``[ms, open, high, low, close, volume]`` -> the bars table of the
  store for ``--instrument`` (or the venue's only one). Bar times must increase strictly (repeated
  bars from overlapping fetches are an error, or dropped with repair).

Rows are the 1-based positions in the JSON list. These files come from paginated REST fetches and
are small, so each is parsed whole with the standard ``json`` module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from data.convert.source import ConvertReport, EventSink, Job, event_frame, map_symbols
from data.schema import KIND_TRADE
from data.store import write_bars
from data.validate import Problem, Validator, missing, monotonic, positive
from stockbridge.errors import DataError

MS = 1_000_000  # ns per millisecond
SIDES = {"buy": 1, "sell": -1}
BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def _load_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(str(path), None, None, f"not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise DataError(str(path), None, None, f"expected a JSON list, got {type(data).__name__}")
    return data


def _column(values: list, dtype: pl.DataType) -> pl.Series:
    """A column from JSON values; anything of the wrong type becomes null (reported as unparseable)."""
    if dtype == pl.String:
        return pl.Series([v if isinstance(v, str) else None for v in values], dtype=pl.String)
    numbers = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else None for v in values]
    return pl.Series(numbers, dtype=pl.Float64).cast(dtype, strict=False)


def _missing(name: str, col: pl.Series, raw: list) -> Problem:
    return missing(name, col, lambda i: raw[i])


def convert_trades(path: str | Path, job: Job) -> ConvertReport:
    """Convert a ccxt ``fetch_trades`` JSON list."""
    path = Path(path)
    data = _load_list(path)
    report = ConvertReport(str(path), "ccxt-trades", source_rows=len(data))
    check = Validator(str(path), job.repair, report.dropped)
    sink = EventSink(job.out, job.venue, report, job.clock_offset_ns())
    symbols = job.symbol_map()
    raw = {k: [d.get(k) if isinstance(d, dict) else None for d in data] for k in ("timestamp", "price", "amount", "side", "id", "symbol")}
    rows = np.arange(1, len(data) + 1, dtype=np.int64)
    ts = _column(raw["timestamp"], pl.Int64)
    price, amount = _column(raw["price"], pl.Float64), _column(raw["amount"], pl.Float64)
    sym = _column(raw["symbol"], pl.String)
    inst = map_symbols(sym, symbols)
    side_raw = raw["side"]
    side_bad = np.array([not (s is None or s in SIDES) for s in side_raw], dtype=bool)
    sym_raw = raw["symbol"]
    problems = [
        _missing("timestamp", ts, raw["timestamp"]),
        _missing("price", price, raw["price"]),
        _missing("amount", amount, raw["amount"]),
        _missing("symbol", sym, sym_raw),
        Problem(
            "unknown symbol",
            "symbol",
            (inst.is_null() & sym.is_not_null()).to_numpy(),
            lambda i: f"symbol {sym_raw[i]!r} matches none of this venue's symbols in the config ({', '.join(symbols)}; case and '/', '-', '_' ignored)",
        ),
        Problem("missing/unparseable side", "side", side_bad, lambda i: f"{side_raw[i]!r} is not 'buy', 'sell' or null"),
        positive("price", price.to_numpy()),
        positive("amount", amount.to_numpy()),
    ]
    keep = check.screen(rows, problems)
    t = ts.filter(pl.Series(keep)).to_numpy() * MS
    mono, _ = monotonic("timestamp", t, np.iinfo(np.int64).min)
    keep2 = check.screen(rows[keep], [mono])
    keep[np.flatnonzero(keep)[~keep2]] = False
    side = np.array([SIDES.get(s, 0) if isinstance(s, str) else 0 for s in side_raw], dtype=np.int8)
    ids = pl.Series([str(v) if v is not None else None for v in raw["id"]], dtype=pl.String).cast(pl.Int64, strict=False).fill_null(0)
    t = t[keep2]
    events = event_frame(KIND_TRADE, side[keep], 0, t, t, price.to_numpy()[keep], amount.to_numpy()[keep], ids.to_numpy()[keep])
    sink.write_by_instrument(inst.filter(pl.Series(keep)), events)
    return report


def convert_ohlcv(path: str | Path, job: Job) -> ConvertReport:
    """Convert a ccxt ``fetch_ohlcv`` JSON list into the bars table."""
    path = Path(path)
    data = _load_list(path)
    instrument = job.single_instrument()
    report = ConvertReport(str(path), "ccxt-ohlcv", source_rows=len(data))
    check = Validator(str(path), job.repair, report.dropped)
    raw = {
        f: [r[k] if isinstance(r, list) and len(r) == len(BAR_FIELDS) else None for r in data] for k, f in enumerate(BAR_FIELDS)
    }
    rows = np.arange(1, len(data) + 1, dtype=np.int64)
    cols = {f: _column(raw[f], pl.Int64 if f == "ts" else pl.Float64) for f in BAR_FIELDS}
    shape_bad = np.array([not (isinstance(r, list) and len(r) == len(BAR_FIELDS)) for r in data], dtype=bool)
    o, h, lo, c, v = (cols[f].to_numpy() for f in BAR_FIELDS[1:])
    with np.errstate(invalid="ignore"):
        high_bad = h < np.fmax(np.fmax(o, c), lo)
        low_bad = lo > np.fmin(np.fmin(o, c), h)
    problems = [
        Problem("malformed bar", None, shape_bad, lambda i: f"expected [ms, open, high, low, close, volume], got {data[i]!r}"),
        *(_missing(f, cols[f], raw[f]) for f in BAR_FIELDS),
        *(positive(f, cols[f].to_numpy()) for f in ("open", "high", "low", "close")),
        positive("volume", v, allow_zero=True),
        Problem("inconsistent bar", "high", high_bad, lambda i: f"high {float(h[i])!r} is below open, close or low"),
        Problem("inconsistent bar", "low", low_bad, lambda i: f"low {float(lo[i])!r} is above open, close or high"),
    ]
    keep = check.screen(rows, problems)
    ts = cols["ts"].filter(pl.Series(keep)).to_numpy() * MS
    before = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(ts)[:-1]]) if len(ts) else ts
    order_bad = ts <= before
    keep2 = check.screen(
        rows[keep], [Problem("non-increasing ts", "ts", order_bad, lambda i: f"bar time {int(ts[i])} ns is not after {int(before[i])} ns on an earlier row")]
    )
    keep[np.flatnonzero(keep)[~keep2]] = False
    bars = pl.DataFrame({f: cols[f].filter(pl.Series(keep)) for f in BAR_FIELDS}).with_columns(pl.col("ts") * MS)
    if job.out is not None and bars.height:
        write_bars(getattr(job.out, "root", job.out), job.venue, instrument, bars)  # bars are not staged
    report.written[f"{instrument} (bars)"] += bars.height
    return report
