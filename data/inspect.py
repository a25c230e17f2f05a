"""What an event store holds: rows by venue and kind, time range, and quoted spreads by session state.

Counts and time ranges come from a lazy polars scan of the Parquet partitions. Spreads need the top
of book, so the store is replayed in ``local_ts`` order (``data.reader.read_merged``) through a
compiled book per (venue, instrument) that applies snapshot, depth and L1 quote rows. A spread
sample is taken per book update: all rows of one book with the same ``local_ts`` count as one
update, and the sample is the book after the last of them, timed by its ``exch_ts``. Samples where
either side is empty are not spreads and are counted apart (``one_sided``). The median is over
updates, not over time. Each book tracks the ``BOOK_CAPACITY`` best levels per side, which is far
more than the top of book needs.

Units: spreads in basis points of the mid and in quote currency; times ns UTC (printed as ISO UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit
from rich.console import Console
from rich.table import Table

from data.reader import clock_offsets, dataset_ids, read_merged
from data.schema import F_CLEAR, KIND_DEPTH, KIND_NAMES, KIND_QUOTE, KIND_SNAPSHOT
from data.store import raise_unreadable, require_store
from stockbridge.config import StockbridgeConfig
from stockbridge.sessions import STATE_NAMES, SessionCalendar

BOOK_CAPACITY = 1024
STATE_ORDER = ("pre", "regular", "after", "overnight", "closed")


# ---------------------------------------------------------------------------------------------
# top of book
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _set_level(keys, sizes, cnt, book, side, key, size):
    """Set one level of a side kept ascending by key (bids: key = price, asks: key = -price), best last."""
    n = cnt[book, side]
    k = keys[book, side]
    q = sizes[book, side]
    pos = np.searchsorted(k[:n], key)
    if pos < n and k[pos] == key:
        if size > 0.0:
            q[pos] = size
        else:
            k[pos:n - 1] = k[pos + 1:n].copy()
            q[pos:n - 1] = q[pos + 1:n].copy()
            cnt[book, side] = n - 1
        return
    if size <= 0.0:
        return
    if n == k.shape[0]:
        if pos == 0:
            return  # worse than every tracked level
        # drop the worst level to make room
        k[0:pos - 1] = k[1:pos].copy()
        q[0:pos - 1] = q[1:pos].copy()
        k[pos - 1] = key
        q[pos - 1] = size
        return
    k[pos + 1:n + 1] = k[pos:n].copy()
    q[pos + 1:n + 1] = q[pos:n].copy()
    k[pos] = key
    q[pos] = size
    cnt[book, side] = n + 1


@njit(cache=True)
def _sample(book, keys, cnt, last_exch, out_book, out_ts, out_bid, out_ask, m):
    out_book[m] = book
    out_ts[m] = last_exch[book]
    nb = cnt[book, 0]
    na = cnt[book, 1]
    out_bid[m] = keys[book, 0, nb - 1] if nb > 0 else np.nan
    out_ask[m] = -keys[book, 1, na - 1] if na > 0 else np.nan
    return m + 1


@njit(cache=True)
def replay_books(events, book_of, keys, sizes, cnt, last_local, last_exch, pending,
                 out_book, out_ts, out_bid, out_ask):
    """Apply one chunk of EVENT_DTYPE rows (``local_ts`` order) to the books; write one sample per finished update.

    ``book_of[venue, instrument]`` -> book index. ``keys``/``sizes`` [books, 2, capacity], ``cnt``
    [books, 2], ``last_local``/``last_exch``/``pending`` [books] carry state between chunks. Outputs
    (book, exch_ts, best bid, best ask; NaN for an empty side) need ``len(events)`` room. Returns
    the number of samples written.
    """
    m = 0
    for i in range(events.shape[0]):
        e = events[i]
        kind = e.kind
        if kind != KIND_QUOTE and kind != KIND_DEPTH and kind != KIND_SNAPSHOT:
            continue
        book = book_of[e.venue, e.instrument]
        if pending[book] and e.local_ts != last_local[book]:
            m = _sample(book, keys, cnt, last_exch, out_book, out_ts, out_bid, out_ask, m)
            pending[book] = False
        side = 0 if e.side > 0 else 1
        key = e.price if side == 0 else -e.price
        if kind == KIND_QUOTE:
            cnt[book, side] = 0
        elif kind == KIND_SNAPSHOT and (e.flags & F_CLEAR):
            cnt[book, 0] = 0
            cnt[book, 1] = 0
        _set_level(keys, sizes, cnt, book, side, key, e.size)
        pending[book] = True
        last_local[book] = e.local_ts
        last_exch[book] = e.exch_ts
    return m


@njit(cache=True)
def flush_books(keys, cnt, last_exch, pending, out_book, out_ts, out_bid, out_ask):
    """Samples for every book with an unfinished update (the end of the replay)."""
    m = 0
    for book in range(pending.shape[0]):
        if pending[book]:
            m = _sample(book, keys, cnt, last_exch, out_book, out_ts, out_bid, out_ask, m)
            pending[book] = False
    return m


def top_of_book(root: str | Path, venue_ids: dict[str, int], instrument_ids: dict[str, int],
                chunk_size: int = 1_000_000, clock_offset_ms: dict[str, float] | None = None) -> pl.DataFrame:
    """Top of book after each book update: columns venue, instrument (names), exch_ts, bid, ask.

    ``clock_offset_ms`` ({venue: ms}) corrects ``local_ts`` as the reader does (it orders the replay).
    """
    nv, ni = max(venue_ids.values()) + 1, max(instrument_ids.values()) + 1
    nbooks = nv * ni
    book_of = np.arange(nbooks, dtype=np.int64).reshape(nv, ni)
    keys = np.zeros((nbooks, 2, BOOK_CAPACITY))
    sizes = np.zeros((nbooks, 2, BOOK_CAPACITY))
    cnt = np.zeros((nbooks, 2), dtype=np.int64)
    last_local = np.zeros(nbooks, dtype=np.int64)
    last_exch = np.zeros(nbooks, dtype=np.int64)
    pending = np.zeros(nbooks, dtype=np.bool_)
    parts = []

    def outputs(n):
        return np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n), np.empty(n)

    for chunk in read_merged(root, venue_ids, instrument_ids, chunk_size=chunk_size, clock_offset_ms=clock_offset_ms):
        out = outputs(len(chunk))
        m = replay_books(chunk, book_of, keys, sizes, cnt, last_local, last_exch, pending, *out)
        parts.append(tuple(a[:m] for a in out))
    out = outputs(nbooks)
    m = flush_books(keys, cnt, last_exch, pending, *out)
    parts.append(tuple(a[:m] for a in out))
    book, ts, bid, ask = (np.concatenate([p[k] for p in parts]) for k in range(4))
    venue_names = np.empty(nv, dtype=object)
    inst_names = np.empty(ni, dtype=object)
    for name, i in venue_ids.items():
        venue_names[i] = name
    for name, i in instrument_ids.items():
        inst_names[i] = name
    return pl.DataFrame(
        {"venue": venue_names[book // ni], "instrument": inst_names[book % ni], "exch_ts": ts, "bid": bid, "ask": ask},
        schema={"venue": pl.String, "instrument": pl.String, "exch_ts": pl.Int64, "bid": pl.Float64, "ask": pl.Float64},
    )


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

@dataclass
class InspectReport:
    """Tables of one store. ``counts``: venue, instrument, kind (name), rows. ``ranges``: venue,
    instrument, first/last exch_ts and local_ts (ns UTC). ``spreads``: venue, instrument, state
    (name), samples, one_sided, median_bps, median_abs (quote ccy)."""

    root: str
    counts: pl.DataFrame
    ranges: pl.DataFrame
    spreads: pl.DataFrame


def scan_store(root: str | Path) -> pl.LazyFrame:
    """Lazy frame over every event partition, with ``venue``/``instrument``/``date`` names from the paths."""
    require_store(root)
    pattern = str(Path(root) / "venue=*" / "instrument=*" / "date=*" / "part-*.parquet")
    return pl.scan_parquet(
        pattern,
        hive_partitioning=True,
        hive_schema={"venue": pl.String, "instrument": pl.String, "date": pl.String},
        try_parse_hive_dates=False,
    )


def inspect_store(root: str | Path, config: StockbridgeConfig | None = None) -> InspectReport:
    """Summarise the store at ``root``; ids, clock offsets and the session calendar come from ``config`` when given.

    A missing or empty store, or an unreadable Parquet file in it, is a one-line ``DataError``.
    """
    try:
        return _inspect(root, config)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError):
        raise_unreadable(root)  # names the offending file
        raise


def _inspect(root: str | Path, config: StockbridgeConfig | None) -> InspectReport:
    lf = scan_store(root)
    counts = (
        lf.group_by("venue", "instrument", "kind").agg(pl.len().alias("rows"))
        .sort("venue", "instrument", "kind").collect()
        .with_columns(pl.col("kind").replace_strict(KIND_NAMES, default="unknown", return_dtype=pl.String))
        .with_columns(pl.col("rows").cast(pl.Int64))
    )
    ranges = (
        lf.group_by("venue", "instrument")
        .agg(
            pl.col("exch_ts").min().alias("first_exch"), pl.col("exch_ts").max().alias("last_exch"),
            pl.col("local_ts").min().alias("first_local"), pl.col("local_ts").max().alias("last_local"),
        )
        .sort("venue", "instrument").collect()
    )
    if config is None:
        venues, instruments = dataset_ids(root)
        venue_ids = {n: i for i, n in enumerate(venues)}
        instrument_ids = {n: i for i, n in enumerate(instruments)}
        calendar = "NYSE"
        offsets = None
    else:
        venue_ids, instrument_ids = config.venue_ids(), config.instrument_ids()
        calendar = config.sessions.calendar
        offsets = clock_offsets(config)
    tob = top_of_book(root, venue_ids, instrument_ids, clock_offset_ms=offsets)
    return InspectReport(str(root), counts, ranges, spread_table(tob, calendar))


def spread_table(tob: pl.DataFrame, calendar: str = "NYSE") -> pl.DataFrame:
    """Median quoted spread per (venue, instrument, session state of the underlying) from top-of-book samples."""
    schema = {"venue": pl.String, "instrument": pl.String, "state": pl.String, "samples": pl.Int64,
              "one_sided": pl.Int64, "median_bps": pl.Float64, "median_abs": pl.Float64}
    if tob.height == 0:
        return pl.DataFrame(schema=schema)
    ts = tob.get_column("exch_ts").to_numpy()
    cal = SessionCalendar(int(ts.min()), int(ts.max()), calendar)
    states = np.asarray(STATE_NAMES, dtype=object)[cal.state_at(ts)]
    two_sided = pl.col("bid").is_not_nan() & pl.col("ask").is_not_nan()
    spread = pl.col("ask") - pl.col("bid")
    return (
        tob.with_columns(pl.Series("state", states, dtype=pl.String))
        .group_by("venue", "instrument", "state")
        .agg(
            two_sided.sum().cast(pl.Int64).alias("samples"),
            (~two_sided).sum().cast(pl.Int64).alias("one_sided"),
            (spread / ((pl.col("ask") + pl.col("bid")) / 2) * 1e4).filter(two_sided).median().alias("median_bps"),
            spread.filter(two_sided).median().alias("median_abs"),
        )
        .with_columns(pl.col("state").replace_strict({s: i for i, s in enumerate(STATE_ORDER)}, return_dtype=pl.Int64).alias("_o"))
        .sort("venue", "instrument", "_o").drop("_o")
        .select(list(schema))
    )


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 1_000_000_000 // 1_000_000:03d}"


def print_report(report: InspectReport, console: Console) -> None:
    """Three rich tables: events by venue and kind, time range (UTC), median spread by session state."""
    kinds = [k for k in KIND_NAMES.values() if k in set(report.counts.get_column("kind"))]
    wide = report.counts.pivot(on="kind", index=["venue", "instrument"], values="rows").fill_null(0)
    console.print(f"store: {report.root}")
    short = {"multiplier": "mult"}  # so that the table fits 100 columns
    t = Table(title="events by venue and kind", title_justify="left",
              caption="mult = multiplier changes" if "multiplier" in kinds else None, caption_justify="left")
    for col in ("venue", "instrument", *kinds, "total"):
        t.add_column(short.get(col, col), justify="left" if col in ("venue", "instrument") else "right")
    for row in wide.sort("venue", "instrument").iter_rows(named=True):
        vals = [row.get(k, 0) or 0 for k in kinds]
        t.add_row(row["venue"], row["instrument"], *(f"{v:,}" for v in vals), f"{sum(vals):,}")
    totals = [int(report.counts.filter(pl.col("kind") == k).get_column("rows").sum()) for k in kinds]
    t.add_row("all", "", *(f"{v:,}" for v in totals), f"{sum(totals):,}", style="bold")
    console.print(t)

    # one table per clock, and the spreads in two tables, so that every table fits 100 columns
    rg = report.ranges
    for clock in ("exch", "local"):
        r = Table(title=f"time range (UTC), {clock}_ts", title_justify="left")
        for col in ("venue", "instrument", "first", "last"):
            r.add_column(col)
        for row in rg.iter_rows(named=True):
            r.add_row(row["venue"], row["instrument"], _utc(row[f"first_{clock}"]), _utc(row[f"last_{clock}"]))
        r.add_row("all", "", _utc(rg[f"first_{clock}"].min()), _utc(rg[f"last_{clock}"].max()), style="bold")
        console.print(r)

    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in report.spreads.iter_rows(named=True):
        text = "-" if row["samples"] == 0 else f"{row['median_bps']:.2f} bps / {row['median_abs']:.4g}"
        extra = f"\n+{row['one_sided']:,} one-sided" if row["one_sided"] else ""
        cells.setdefault((row["venue"], row["instrument"]), {})[row["state"]] = f"{text}\nn={row['samples']:,}{extra}"
    for part, states in enumerate((STATE_ORDER[:3], STATE_ORDER[3:])):
        last = part == 1
        s = Table(title=f"median quoted spread by session state ({part + 1}/2)", title_justify="left",
                  caption="state of the underlying's US session; bps of mid / quote ccy; n = book updates" if last else None,
                  caption_justify="left")
        for col in ("venue", "instrument", *states):
            s.add_column(col, justify="left" if col in ("venue", "instrument") else "right")
        for (venue, inst), by_state in sorted(cells.items()):
            s.add_row(venue, inst, *(by_state.get(st, "-") for st in states))
        console.print(s)
