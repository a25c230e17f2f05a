"""What every converter shares: batched CSV reading with source row numbers, symbol mapping, the sink into the store.

CSV files (plain or gzip) are read in batches of ``BATCH_ROWS`` rows with polars' streaming engine,
so a file of any size converts in bounded memory. Numeric fields are parsed leniently (a bad value
becomes null) and the converter reports nulls as missing or unparseable fields; only on that error
path is the file read again to quote the raw text of the offending field.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from data.schema import F_BATCH_END, KIND_QUOTE
from data.store import StagedStore, write_events
from stockbridge.config import StockbridgeConfig
from stockbridge.errors import ConfigError, DataError

BATCH_ROWS = 500_000
ROW = "row"  # 1-based data row in the source file, header excluded


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_header(path: str | Path) -> list[str]:
    """Column names on the first line of a CSV file (plain or gzip)."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            line = fh.readline()
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "not UTF-8 text") from None
    if not line.strip():
        raise DataError(str(path), None, None, "file is empty (expected a header line)")
    return next(csv.reader([line]))


def _scan(path: Path, schema: dict[str, pl.DataType], has_header: bool) -> pl.LazyFrame:
    return pl.scan_csv(path, has_header=has_header, schema=schema, ignore_errors=True)


def csv_batches(
    path: str | Path,
    schema: dict[str, pl.DataType],
    has_header: bool = True,
    batch_rows: int | None = None,
    beside: tuple[str | Path, dict[str, pl.DataType]] | None = None,
) -> Iterator[pl.DataFrame]:
    """Batches of a CSV file as frames with the columns of ``schema`` plus ``row`` (Int64, 1-based).

    ``schema`` lists every column of the file in order. Fields that fail to parse become null.
    ``beside`` = (path, schema) of a second file read in step, its columns appended (both files
    must have the same number of rows; the caller checks). A line with more fields than the
    header is a ``DataError`` naming its file and row.
    """
    sources = [(Path(path), schema)] + ([(Path(beside[0]), beside[1])] if beside else [])
    lf = pl.concat([_scan(p, s, has_header) for p, s in sources], how="horizontal")
    lf = lf.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    try:
        for batch in lf.collect_batches(chunk_size=batch_rows or BATCH_ROWS):
            if batch.height:
                yield batch
    except pl.exceptions.PolarsError as exc:
        for p, s in sources:
            row = _first_long_row(p, len(s), has_header)
            if row is not None:
                raise DataError(str(p), row, None, f"more fields than the {len(s)} expected") from None
        raise DataError(str(sources[0][0]), None, None, f"malformed CSV ({str(exc).splitlines()[0]})") from None


def _first_long_row(path: Path, ncols: int, has_header: bool) -> int | None:
    """1-based data row of the first line with more than ``ncols`` fields (error path only)."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        if has_header:
            next(reader, None)
        for i, fields in enumerate(reader, start=1):
            if len(fields) > ncols:
                return i
    return None


def raw_value(path: str | Path, row: int, column: str, has_header: bool = True, names: list[str] | None = None) -> str | None:
    """The raw text of one field (error path only: reads the file again)."""
    lf = pl.scan_csv(Path(path), has_header=has_header, infer_schema=False, new_columns=names, truncate_ragged_lines=True)
    got = lf.slice(row - 1, 1).select(column).collect()
    return got.item() if got.height else None


def count_rows(path: str | Path, has_header: bool = True) -> int:
    """Data rows in a CSV file (header excluded), streaming."""
    return pl.scan_csv(Path(path), has_header=has_header, infer_schema=False).select(pl.len()).collect().item()


# -- the job -------------------------------------------------------------------------------------

@dataclass
class Job:
    """Where converted events go and how strictly: shared by every converter.

    ``out`` None means check only (nothing is written); :func:`data.convert.convert_files` swaps a
    path for a :class:`~data.store.StagedStore` so a run lands whole or not at all. ``instrument``
    None means: from the file's symbol column where it has one, else the venue's only instrument.
    ``date`` (YYYY-MM-DD) is the trading day of formats whose times are relative to a day (LOBSTER).
    ``mode`` is what to do with partitions that already hold rows of the kinds written (``refuse``,
    ``append``, ``overwrite``; see ``StagedStore``). ``clock_offset_ms`` (milliseconds, may be
    negative) is added to every ``local_ts`` written, to correct a capture clock that ran behind
    (positive) or ahead (negative) of the exchange.
    """

    cfg: StockbridgeConfig
    venue: str
    instrument: str | None = None
    out: Path | None = None
    repair: bool = False
    date: str | None = None
    config_path: str = "<config>"
    mode: str = "refuse"
    clock_offset_ms: float = 0.0

    def clock_offset_ns(self) -> int:
        return int(round(self.clock_offset_ms * 1_000_000))

    def venue_config(self):
        if self.venue not in self.cfg.venues:
            raise ConfigError(self.config_path, "venues", f"unknown venue '{self.venue}' (known: {', '.join(self.cfg.venues)})")
        return self.cfg.venues[self.venue]

    def symbol_map(self) -> dict[str, str]:
        """Normalized venue symbol -> instrument name, for the venue (only ``instrument`` if given)."""
        v = self.venue_config()
        if self.instrument is not None and self.instrument not in v.instruments:
            raise ConfigError(
                self.config_path,
                f"venues.{self.venue}.instruments",
                f"venue '{self.venue}' does not list instrument '{self.instrument}' (lists: {', '.join(v.instruments)})",
            )
        return {normalize_symbol(sym): name for name, sym in v.instruments.items() if self.instrument in (None, name)}

    def single_instrument(self) -> str:
        """The instrument a file without a symbol column holds: ``instrument`` or the venue's only one."""
        v = self.venue_config()
        if self.instrument is None:
            if len(v.instruments) != 1:
                raise ConfigError(
                    self.config_path, f"venues.{self.venue}.instruments", f"venue '{self.venue}' lists several instruments; pass --instrument"
                )
            return next(iter(v.instruments))
        self.symbol_map()
        return self.instrument


# -- symbols ---------------------------------------------------------------------------------------

def normalize_symbol(symbol: str) -> str:
    """Venue symbols compare case-insensitively with '/', '-', '_' removed: 'AAPLXUSDT' ~ 'AAPLx/USDT'."""
    return symbol.upper().replace("/", "").replace("-", "").replace("_", "")


def map_symbols(symbols: pl.Series, mapping: dict[str, str]) -> pl.Series:
    """Instrument name per row (null where the symbol is unknown or missing); normalizes only the distinct symbols."""
    distinct = symbols.drop_nulls().unique().to_list()
    known = {s: mapping[normalize_symbol(s)] for s in distinct if normalize_symbol(s) in mapping}
    return symbols.replace_strict(known, default=None, return_dtype=pl.String)


# -- output ----------------------------------------------------------------------------------------

@dataclass
class ConvertReport:
    """What one source file became: source rows read, events written per instrument, rows dropped and skipped."""

    path: str
    format: str
    source_rows: int = 0
    written: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    gaps: list = field(default_factory=list)  # source lines where a book lost sync (raw captures)


class EventSink:
    """Writes event frames of one venue into the store (or only counts them when ``out`` is None).

    ``out`` is a store directory or a :class:`~data.store.StagedStore`; ``offset_ns`` is added to
    ``local_ts`` of every row written (a capture clock correction, ns).
    """

    def __init__(self, out: str | Path | StagedStore | None, venue: str, report: ConvertReport, offset_ns: int = 0):
        self.out, self.venue, self.report, self.offset_ns = out, venue, report, int(offset_ns)

    def write(self, instrument: str, events: pl.DataFrame) -> None:
        if events.height == 0:
            return
        if self.offset_ns:
            events = events.with_columns(pl.col("local_ts") + self.offset_ns)
        if isinstance(self.out, StagedStore):
            self.out.write_events(self.venue, instrument, events)
        elif self.out is not None:
            write_events(self.out, self.venue, instrument, events)
        self.report.written[instrument] += events.height

    def write_by_instrument(self, instruments: np.ndarray | pl.Series, events: pl.DataFrame) -> None:
        """Split ``events`` by the instrument name of each row (same length) and write each part."""
        if events.height == 0:
            return
        instruments = pl.Series("_inst", instruments, dtype=pl.String)
        if instruments.n_unique() == 1:
            self.write(instruments[0], events)
            return
        tagged = events.with_columns(instruments)
        for (name,), part in tagged.group_by("_inst", maintain_order=True):
            self.write(name, part.drop("_inst"))


def event_frame(
    kind: np.ndarray | int,
    side: np.ndarray | int,
    flags: np.ndarray | int,
    exch_ts: np.ndarray,
    local_ts: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    ids: np.ndarray | int = 0,
) -> pl.DataFrame:
    """Event columns (all but venue/instrument, which the store takes from partition names) as a frame."""
    n = len(local_ts)

    def col(v, dtype):
        return np.broadcast_to(np.asarray(v, dtype=dtype), (n,))

    return pl.DataFrame(
        {
            "kind": col(kind, np.uint8),
            "side": col(side, np.int8),
            "flags": col(flags, np.uint16),
            "exch_ts": col(exch_ts, np.int64),
            "local_ts": col(local_ts, np.int64),
            "price": col(price, np.float64),
            "size": col(size, np.float64),
            "id": col(ids, np.int64),
        }
    )


def quote_pairs(
    exch_ts: np.ndarray, local_ts: np.ndarray, bid: np.ndarray, bid_size: np.ndarray, ask: np.ndarray, ask_size: np.ndarray
) -> pl.DataFrame:
    """L1 lines -> two ``KIND_QUOTE`` rows each, bid then ask; the ask row ends the pair (``F_BATCH_END``)."""
    n = len(local_ts)
    price = np.empty(2 * n)
    size = np.empty(2 * n)
    price[0::2], price[1::2] = bid, ask
    size[0::2], size[1::2] = bid_size, ask_size
    side = np.tile(np.array([1, -1], dtype=np.int8), n)
    flags = np.tile(np.array([0, F_BATCH_END], dtype=np.uint16), n)
    return event_frame(KIND_QUOTE, side, flags, np.repeat(exch_ts, 2), np.repeat(local_ts, 2), price, size)
