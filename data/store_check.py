"""A fast whole-store check run before every replay: unreadable files, non-finite values, time order, duplicates, clock skew.

:func:`check_store` reads every part file of the store once (numpy over the decoded columns, polars
for the duplicate hash) and returns a :class:`StoreCheck`: the problems found, each naming the file,
the 1-based row within that file and the field, and per venue the feed latency
``local_ts + clock_offset - exch_ts``. It raises only for what stops it reading (a missing or empty
store, an unreadable Parquet file); everything else is returned, so a caller decides.
``StoreCheck.raise_first()`` turns the first problem into the one-line ``DataError``.

Problems
- ``non-finite``: a NaN or +-inf ``price`` or ``size`` (the matcher must never see one);
- ``time order``: ``local_ts`` decreasing within a part file, or a row outside its partition's UTC
  date (the reader's day-by-day merge relies on both);
- ``duplicate rows``: rows identical in every stored column to an earlier row of the same
  partition (typically the same source converted twice);
- ``negative feed latency``: rows whose corrected ``local_ts`` is before their ``exch_ts`` by more
  than ``latency_tolerance_ms`` (a capture clock behind the exchange). Rows with ``exch_ts <= 0``
  (no exchange time) are not counted. Fix with ``venues.<name>.clock_offset_ms`` in the config or
  ``data convert --clock-offset-ms``;
- ``unknown venue`` / ``unknown instrument``: a partition named outside the config.

Units: times ns UTC; latencies ns (``VenueLatency``), printed in ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data.store import FILE_COLUMNS, NS_PER_DAY, part_files, partition_dir, read_parquet_file, require_store
from stockbridge.config import StockbridgeConfig
from stockbridge.errors import DataError

MEDIAN_SAMPLE = 200_000  # latency rows per part file that enter a venue's median (evenly strided)


@dataclass(frozen=True)
class StoreProblem:
    """One kind of problem in one place: ``path`` (part file or partition directory), the first row (1-based in that file) and how many rows share it."""

    kind: str
    path: str
    row: int | None
    field: str | None
    message: str
    count: int = 1

    def error(self) -> DataError:
        return DataError(self.path, self.row, self.field, self.message)


@dataclass
class VenueLatency:
    """Feed latency ``local_ts + clock_offset - exch_ts`` of one venue's rows that have an exchange time (ns)."""

    venue: str
    clock_offset_ns: int = 0
    rows: int = 0
    negative: int = 0
    worst_ns: int | None = None      # the most negative (smallest) latency seen
    median_ns: float | None = None
    first: tuple[str, int] | None = None  # (file, row) of the first row below tolerance
    _sample: list = field(default_factory=list, repr=False)


@dataclass
class StoreCheck:
    """What :func:`check_store` found; ``ok`` when ``problems`` is empty."""

    root: str
    partitions: int = 0
    rows: int = 0
    seconds: float = 0.0
    problems: list[StoreProblem] = field(default_factory=list)
    latency: dict[str, VenueLatency] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_first(self) -> None:
        """Raise the first problem as a one-line ``DataError`` (file, row, field, what); no-op when ok."""
        if self.problems:
            raise self.problems[0].error()

    def counts(self) -> dict[str, int]:
        """Rows per problem kind."""
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + p.count
        return out


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def check_store(
    root: str | Path,
    cfg: StockbridgeConfig,
    venues: list[str] | tuple[str, ...] | None = None,
    latency_tolerance_ms: float = 0.0,
) -> StoreCheck:
    """Check every partition of the store at ``root`` (only ``venues`` if given) against ``cfg``.

    Returns a :class:`StoreCheck` (problems, rows, partitions, per-venue latency, seconds taken).
    Raises ``DataError`` naming ``root`` when it does not exist or holds no partition, and naming
    the file when a Parquet file is empty, truncated or lacks a column. Each venue's
    ``clock_offset_ms`` is added to ``local_ts`` before latencies are computed, as the reader does.
    """
    t0 = time.perf_counter()
    parts = require_store(root)
    out = StoreCheck(str(root))
    wanted = None if venues is None else set(venues)
    for venue, instrument, date in parts:
        if wanted is not None and venue not in wanted:
            continue
        where = str(partition_dir(root, venue, instrument, date))
        if venue not in cfg.venues:
            out.problems.append(StoreProblem("unknown venue", where, None, "venue", f"venue '{venue}' is not in the config (known: {', '.join(cfg.venues)})"))
            continue
        if instrument not in cfg.instruments:
            out.problems.append(
                StoreProblem("unknown instrument", where, None, "instrument", f"instrument '{instrument}' is not in the config (known: {', '.join(cfg.instruments)})")
            )
            continue
        lat = out.latency.setdefault(venue, VenueLatency(venue, int(round(cfg.venues[venue].clock_offset_ms * 1_000_000))))
        _check_partition(Path(where), date, lat, int(round(latency_tolerance_ms * 1_000_000)), out)
        out.partitions += 1
    for venue, lat in out.latency.items():
        if lat._sample:
            lat.median_ns = float(np.median(np.concatenate(lat._sample)))
            lat._sample = []
        if lat.negative:
            file, row = lat.first
            out.problems.append(
                StoreProblem(
                    "negative feed latency", file, row, "local_ts",
                    f"{lat.negative:,} of {lat.rows:,} rows of venue '{venue}' have local_ts before exch_ts "
                    f"(median latency {lat.median_ns / 1e6:.3f} ms, worst {lat.worst_ns / 1e6:.3f} ms): the capture clock ran behind the exchange; "
                    f"set venues.{venue}.clock_offset_ms in the config or convert with --clock-offset-ms",
                    lat.negative,
                )
            )
    out.seconds = time.perf_counter() - t0
    return out


def _check_partition(directory: Path, date: str, lat: VenueLatency, tol_ns: int, out: StoreCheck) -> None:
    day = int(np.datetime64(date, "D").astype(np.int64))
    frames = []
    for f in part_files(directory):
        frame = read_parquet_file(f, FILE_COLUMNS)
        frames.append((f, frame))
        out.rows += frame.height
        if frame.height == 0:
            continue
        name = str(f)
        for col in ("price", "size"):
            values = frame.get_column(col).to_numpy()
            bad = ~np.isfinite(values)
            if bad.any():
                i = _first(bad)
                out.problems.append(
                    StoreProblem("non-finite", name, i + 1, col, f"{float(values[i])!r} is not a finite number ({int(bad.sum()):,} such rows in this file)", int(bad.sum()))
                )
        lts = frame.get_column("local_ts").to_numpy()
        back = lts[1:] < lts[:-1]
        if back.any():
            i = _first(back) + 1
            out.problems.append(
                StoreProblem(
                    "time order", name, i + 1, "local_ts",
                    f"{int(lts[i])} ns is earlier than {int(lts[i - 1])} ns on the row before ({int(back.sum()):,} such rows in this file)", int(back.sum()),
                )
            )
        off_day = (lts // NS_PER_DAY) != day
        if off_day.any():
            i = _first(off_day)
            out.problems.append(
                StoreProblem(
                    "time order", name, i + 1, "local_ts",
                    f"{int(lts[i])} ns falls on {np.datetime64(int(lts[i]) // NS_PER_DAY, 'D')}, outside this partition's date {date} "
                    f"({int(off_day.sum()):,} such rows in this file)", int(off_day.sum()),
                )
            )
        exch = frame.get_column("exch_ts").to_numpy()
        has = exch > 0
        latency = (lts + lat.clock_offset_ns - exch)[has]
        if len(latency):
            lat.rows += len(latency)
            worst = int(latency.min())
            lat.worst_ns = worst if lat.worst_ns is None else min(lat.worst_ns, worst)
            lat._sample.append(latency[:: max(1, len(latency) // MEDIAN_SAMPLE)])
            below = latency < -tol_ns
            if below.any():
                lat.negative += int(below.sum())
                if lat.first is None:
                    lat.first = (name, int(np.flatnonzero(has)[_first(below)]) + 1)
    _duplicates(frames, out)


def _duplicates(frames: list[tuple[Path, pl.DataFrame]], out: StoreCheck) -> None:
    """Rows identical (every stored column) to an earlier row of the partition, in part order.

    Identical rows share ``local_ts``, so a 64-bit row hash is compared only within each run of
    equal ``local_ts`` (a compiled pass over the rows in time order); only when two hashes agree
    are the rows compared exactly.
    """
    if not frames:
        return
    whole = pl.concat([f for _, f in frames], how="vertical") if len(frames) > 1 else frames[0][1]
    if whole.height < 2:
        return
    lts = whole.get_column("local_ts").to_numpy()
    hashes = whole.hash_rows().to_numpy()
    order = np.arange(len(lts)) if len(frames) == 1 else np.argsort(lts, kind="stable")
    if not _same_hash_in_run(lts, hashes, order):
        return
    dup = ~whole.select(pl.struct(pl.all()).is_first_distinct()).to_series().to_numpy()
    n = int(dup.sum())
    if not n:
        return  # a hash collision, no real duplicate
    i = _first(dup)
    starts = np.cumsum([0] + [f.height for _, f in frames])
    k = int(np.searchsorted(starts, i, side="right")) - 1
    row = whole.row(i)
    j = int(np.flatnonzero(whole.select(pl.all_horizontal(pl.col(c) == v for c, v in zip(whole.columns, row))).to_series().to_numpy())[0])
    kj = int(np.searchsorted(starts, j, side="right")) - 1
    out.problems.append(
        StoreProblem(
            "duplicate rows", str(frames[k][0]), i - int(starts[k]) + 1, None,
            f"row is identical to row {j - int(starts[kj]) + 1} of {frames[kj][0].name}; {n:,} duplicated rows in this partition "
            "(converted twice? reconvert with `data convert --overwrite`)", n,
        )
    )


@njit(cache=True)
def _same_hash_in_run(lts, hashes, order):
    """True if two rows with equal ``local_ts`` (``order`` sorts by it) have equal hashes."""
    n = len(order)
    start = 0
    while start < n:
        t = lts[order[start]]
        end = start + 1
        while end < n and lts[order[end]] == t:
            end += 1
        m = end - start
        if m > 1:
            if m <= 64:
                for a in range(start, end):
                    for b in range(a + 1, end):
                        if hashes[order[a]] == hashes[order[b]]:
                            return True
            else:
                run = np.empty(m, dtype=hashes.dtype)
                for a in range(m):
                    run[a] = hashes[order[start + a]]
                run.sort()
                for a in range(m - 1):
                    if run[a] == run[a + 1]:
                        return True
        start = end
    return False
