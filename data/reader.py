"""Merge the stored streams of many (venue, instrument) pairs into one ``local_ts``-ordered event sequence.

Partitions are UTC days, so the merge goes one day at a time: every stream's partition for that day
is loaded (and nothing else), the day's streams (each already in ``local_ts`` order) are merged by
``local_ts`` and handed out chunk by chunk as the merge goes. A stream's next partition starts at a
later day, so everything before the end of the day is final: the watermark is the day boundary.
Peak memory is one day of all selected streams as decoded plus a chunk, however long the replay.

Ties in ``local_ts`` break by venue id, then instrument id, then the stream's own row order, so the
sequence is the same on every run and for every ``chunk_size``.

Clock offsets: a venue's ``clock_offset_ms`` (config ``venues.<name>.clock_offset_ms``) is added to
the ``local_ts`` of its rows as they are read, so the replay sees corrected receive times. Shifted
rows can cross a day boundary, so with offsets the watermark moves to the next partition day's
start plus the smallest offset: rows at or after it are held back and merged with the next day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import groupby
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data.schema import COLUMNS, EVENT_DTYPE
from data.store import NS_PER_DAY, list_partitions, part_files, partition_dir, raise_unreadable, read_partition_parts, require_store
from stockbridge.errors import DataError


def dataset_ids(root: str | Path) -> tuple[list[str], list[str]]:
    """(venue names, instrument names) present in the store at ``root``, each sorted."""
    parts = list_partitions(root)
    return sorted({p[0] for p in parts}), sorted({p[1] for p in parts})


def clock_offsets(cfg) -> dict[str, float]:
    """{venue: clock_offset_ms} of a ``StockbridgeConfig``: pass as ``read_merged(..., clock_offset_ms=...)``."""
    return {name: float(v.clock_offset_ms) for name, v in cfg.venues.items()}


def store_extent(root: str | Path, cfg) -> tuple[int, int, int]:
    """(first corrected local_ts, last corrected local_ts, rows) over the partitions of the config's venues, ns UTC.

    Each venue's ``clock_offset_ms`` is applied, as :func:`read_merged` applies it. Raises
    ``DataError`` naming ``root`` when it is missing, empty or holds none of the config's venues, and
    naming the file when a Parquet file does not read.
    """
    offsets = {v: _offset_ns(ms) for v, ms in clock_offsets(cfg).items()}
    parts = [p for p in require_store(root) if p[0] in offsets]
    if not parts:
        raise DataError(str(root), None, None, f"holds no data for the configured venues ({', '.join(offsets)})")
    try:
        frames = pl.concat([
            pl.scan_parquet([str(f) for f in part_files(partition_dir(root, v, i, d))])
            .select((pl.col("local_ts").min() + offsets[v]).alias("lo"), (pl.col("local_ts").max() + offsets[v]).alias("hi"), pl.len().alias("n"))
            for v, i, d in parts
        ]).collect()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError):
        raise_unreadable(root)
        raise
    return int(frames["lo"].min()), int(frames["hi"].max()), int(frames["n"].sum())


def feed_latency_max(root: str | Path, cfg) -> dict[str, int]:
    """{venue: the largest ``local_ts + clock offset - exch_ts`` of its rows (ns)}, over the config's
    venues that have rows: how far a simulated venue must look ahead in the local-time stream to see
    everything that happened there before a given venue time."""
    offsets = {v: _offset_ns(ms) for v, ms in clock_offsets(cfg).items()}
    out: dict[str, int] = {}
    for v, i, d in require_store(root):
        if v not in offsets:
            continue
        try:
            worst = (pl.scan_parquet([str(f) for f in part_files(partition_dir(root, v, i, d))])
                     .select((pl.col("local_ts") - pl.col("exch_ts")).max()).collect().item())
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError):
            raise_unreadable(root)
            raise
        if worst is not None:
            out[v] = max(out.get(v, int(worst) + offsets[v]), int(worst) + offsets[v])
    return out


def _offset_ns(ms: float) -> int:
    return int(round(ms * 1_000_000))


def _day_bounds(date: str) -> tuple[int, int]:
    day = int(np.datetime64(date, "D").astype(np.int64))
    return day * NS_PER_DAY, (day + 1) * NS_PER_DAY


def _selected_partitions(
    root: str | Path,
    venue_ids: Mapping[str, int],
    instrument_ids: Mapping[str, int],
    venues: list[str] | tuple[str, ...] | None,
    start_ns: int | None,
    end_ns: int | None,
    offsets: Mapping[str, int] | None = None,
) -> list[tuple[str, int, int, str, str]]:
    """(date, venue id, instrument id, venue, instrument) of each partition to read, in merge order."""
    wanted = None if venues is None else set(venues)
    out = []
    for venue, instrument, date in list_partitions(root):
        if wanted is not None and venue not in wanted:
            continue
        where = partition_dir(root, venue, instrument, date)
        if venue not in venue_ids:
            raise DataError(str(where), None, "venue", f"venue '{venue}' is not in the config (known: {', '.join(venue_ids)})")
        if instrument not in instrument_ids:
            raise DataError(
                str(where), None, "instrument", f"instrument '{instrument}' is not in the config (known: {', '.join(instrument_ids)})"
            )
        lo, hi = _day_bounds(date)
        shift = (offsets or {}).get(venue, 0)
        lo, hi = lo + shift, hi + shift
        if (end_ns is not None and lo >= end_ns) or (start_ns is not None and hi <= start_ns):
            continue
        out.append((date, venue_ids[venue], instrument_ids[instrument], venue, instrument))
    out.sort()
    return out


def read_merged(
    root: str | Path,
    venue_ids: Mapping[str, int],
    instrument_ids: Mapping[str, int],
    start_ns: int | None = None,
    end_ns: int | None = None,
    venues: list[str] | tuple[str, ...] | None = None,
    chunk_size: int = 1_000_000,
    clock_offset_ms: Mapping[str, float] | None = None,
) -> Iterator[np.ndarray]:
    """Yield ``EVENT_DTYPE`` chunks (1..chunk_size rows) in nondecreasing ``local_ts`` over all streams.

    ``venue_ids``/``instrument_ids`` map partition names to the ids written into each row (usually
    ``cfg.venue_ids()``/``cfg.instrument_ids()``); a partition named outside them is a ``DataError``.
    ``start_ns`` (inclusive) and ``end_ns`` (exclusive) bound ``local_ts`` in ns UTC; ``venues``
    restricts the venues read. ``clock_offset_ms`` ({venue: ms}, e.g. :func:`clock_offsets` of the
    config) is added to each venue's ``local_ts`` before bounding and merging.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    offsets = {v: _offset_ns(ms) for v, ms in (clock_offset_ms or {}).items() if _offset_ns(ms)}
    selected = _selected_partitions(root, venue_ids, instrument_ids, venues, start_ns, end_ns, offsets)
    lo = start_ns if start_ns is not None else np.iinfo(np.int64).min
    hi = end_ns if end_ns is not None else np.iinfo(np.int64).max
    lowest = min(0, min(offsets.values(), default=0))
    days = [(date, list(group)) for date, group in groupby(selected, key=lambda p: p[0])]
    held: list[tuple[pl.DataFrame, int, int]] = []
    for k, (date, group) in enumerate(days):
        # Partitions come in (venue id, instrument id) order, parts in part order, each in local_ts
        # order, and a stream's rows held back from earlier days before its rows of this one:
        # merging these runs, ties to the earlier run, is the stable sort of their concatenation
        # (local_ts ties break by venue, then instrument, then day, part and row order).
        runs = [(run, vid, iid, 0) for run, vid, iid in held]
        for _, vid, iid, v, i in group:
            parts = read_partition_parts(root, v, i, date)
            if offsets.get(v):
                parts = [p.with_columns(pl.col("local_ts") + offsets[v]) for p in parts]
            runs += [(run, vid, iid, 1) for run in _runs(parts, lo, hi)]
        runs.sort(key=lambda r: (r[1], r[2], r[3]))  # stable: the order within a stream is kept
        held = []
        if k + 1 < len(days):
            # with offsets a later day's partition can hold rows before this day's last ones: what is
            # at or after the next day's start plus the smallest offset waits and is merged with it
            watermark = _day_bounds(days[k + 1][0])[0] + lowest
            now = []
            for run, vid, iid, _ in runs:
                cut = int(run.get_column("local_ts").search_sorted(watermark, side="left"))
                now.append((run.slice(0, cut), vid, iid))
                if cut < run.height:
                    held.append((run.slice(cut), vid, iid))
        else:
            now = [(run, vid, iid) for run, vid, iid, _ in runs]
        yield from _merged_chunks(now, chunk_size)
        del runs, now


MAX_RUNS_PER_PARTITION = 16


def _runs(parts: list[pl.DataFrame], lo: int, hi: int) -> list[pl.DataFrame]:
    """A partition's parts (each in local_ts order) cut to lo <= local_ts < hi, consecutive parts that
    follow on in time joined into one run (a recorder's many small parts are one run); more than
    ``MAX_RUNS_PER_PARTITION`` interleaved runs are sorted into one, as the merge looks at every run
    for every row."""
    runs: list[list[pl.DataFrame]] = []
    for part in parts:
        ts = part.get_column("local_ts")
        a = int(ts.search_sorted(lo, side="left"))
        part = part.slice(a, int(ts.search_sorted(hi, side="left")) - a)
        if not part.height:
            continue
        if runs and runs[-1][-1].get_column("local_ts")[-1] <= part.get_column("local_ts")[0]:
            runs[-1].append(part)
        else:
            runs.append([part])
    joined = [r[0] if len(r) == 1 else pl.concat(r, how="vertical") for r in runs]
    if len(joined) > MAX_RUNS_PER_PARTITION:
        return [pl.concat(joined, how="vertical").sort("local_ts", maintain_order=True)]
    return joined


_RUN_COLUMNS = tuple(c for c in COLUMNS if c not in ("venue", "instrument"))


def _merged_chunks(runs: list[tuple[pl.DataFrame, int, int]], chunk_size: int) -> Iterator[np.ndarray]:
    """The rows of the ``(frame, venue id, instrument id)`` runs (each frame in local_ts order) as
    EVENT_DTYPE chunks of ``chunk_size`` rows (the last shorter) in local_ts order, ties to the
    earlier run: the stable sort of their concatenation, made by merging in one compiled pass that
    also writes the event rows (instead of a sort, then a column-by-column conversion: measured ~80
    ns a row against ~25 for four venues). The columns are read where polars decoded them (a copy into one array per
    column had cost ~20 ns a row), and a chunk is handed out as soon as it is merged, so a
    prefetching caller replays it while the next is made."""
    runs = [r for r in runs if r[0].height]
    if not runs:
        return
    # one tuple of k arrays per column: compiled once per number of runs, whatever the frames
    cols = [tuple(_column(f, name) for f, _, _ in runs) for name in _RUN_COLUMNS]
    ids = np.array([[vid, iid] for _, vid, iid in runs], dtype=np.uint16)
    pos = np.zeros(len(runs), dtype=np.int64)
    total = sum(f.height for f, _, _ in runs)
    for at in range(0, total, chunk_size):
        out = np.empty(min(chunk_size, total - at), dtype=EVENT_DTYPE)
        _merge_into(out, pos, ids, *cols)
        yield out


def _column(frame: pl.DataFrame, name: str) -> np.ndarray:
    """A column as a contiguous read-only array (polars' own buffer when it is one chunk), so every
    run's array has one numba type."""
    a = np.ascontiguousarray(frame.get_column(name).to_numpy())
    a.flags.writeable = False
    return a


@njit(cache=True, nogil=True)
def _merge_into(out, pos, ids, kind, side, flags, exch_ts, local_ts, price, size, id_):
    """The next ``len(out)`` rows of runs k = 0.. (column ``c``'s rows of run k are ``c[k]``, each
    run in local_ts order) into ``out`` in local_ts order, ties to the lower k; ``pos[k]`` is run
    k's next row (advanced here), ``ids[k]`` its (venue id, instrument id)."""
    runs = len(local_ts)
    for m in range(out.shape[0]):
        best = -1
        best_t = 0
        for k in range(runs):
            if pos[k] < local_ts[k].shape[0]:
                t = local_ts[k][pos[k]]
                if best < 0 or t < best_t:
                    best = k
                    best_t = t
        j = pos[best]
        pos[best] = j + 1
        r = out[m]
        r.kind = kind[best][j]
        r.side = side[best][j]
        r.venue = ids[best, 0]
        r.instrument = ids[best, 1]
        r.flags = flags[best][j]
        r.exch_ts = exch_ts[best][j]
        r.local_ts = local_ts[best][j]
        r.price = price[best][j]
        r.size = size[best][j]
        r.id = id_[best][j]
