"""Parquet store of market events, partitioned by venue, instrument and UTC date of ``local_ts``.

Layout::

    ROOT/venue=<venue>/instrument=<instrument>/date=YYYY-MM-DD/part-NNNNN.parquet
    ROOT/bars/venue=<venue>/instrument=<instrument>/part-NNNNN.parquet

Event files hold the ``POLARS_SCHEMA`` columns except ``venue`` and ``instrument``: the partition
names are the only record of those, so a dataset replays under any config whose tables list the
names in another order (the reader maps names to ids). Each part file is sorted by ``local_ts``
(stable, so rows with equal times keep their source order). Writing only ever adds new part files;
a date partition with several parts reads as the parts concatenated in part order, then stably
sorted by ``local_ts``.

Bars (OHLCV candles, e.g. from ccxt ``fetch_ohlcv``) live in their own table with ``BAR_SCHEMA``:
``ts`` (bar open time, ns UTC), ``open``/``high``/``low``/``close`` (quote currency), ``volume``
(tokens or shares).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from data.schema import BAR_SCHEMA, POLARS_SCHEMA, to_polars

NS_PER_DAY = 86_400 * 1_000_000_000
BARS_DIR = "bars"
FILE_COLUMNS = tuple(c for c in POLARS_SCHEMA.names() if c not in ("venue", "instrument"))
FILE_SCHEMA = pl.Schema({c: POLARS_SCHEMA[c] for c in FILE_COLUMNS})

_PART = re.compile(r"^part-(\d{5,})\.parquet$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or "=" in name or name in (".", ".."):
        raise ValueError(f"{kind} name {name!r} cannot be used as a partition directory name")


def partition_dir(root: str | Path, venue: str, instrument: str, date: str) -> Path:
    """Directory of one (venue, instrument, date) partition."""
    return Path(root) / f"venue={venue}" / f"instrument={instrument}" / f"date={date}"


def part_files(directory: Path) -> list[Path]:
    """The part files of one partition directory, in part-number order."""
    if not directory.is_dir():
        return []
    parts = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _PART.match(p.name))]
    return [p for _, p in sorted(parts)]


def _write_new_part(directory: Path, frame: pl.DataFrame) -> Path:
    """Write ``frame`` as the next part file; exclusive create, so concurrent writers never clobber."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = part_files(directory)
    n = int(_PART.match(existing[-1].name).group(1)) + 1 if existing else 0
    while True:
        path = directory / f"part-{n:05d}.parquet"
        try:
            fh = open(path, "xb")
        except FileExistsError:
            n += 1
            continue
        with fh:
            frame.write_parquet(fh, compression="zstd", statistics=True)
        return path


def _as_frame(events: np.ndarray | pl.DataFrame) -> pl.DataFrame:
    if isinstance(events, np.ndarray):
        return to_polars(events)
    missing = [c for c in FILE_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing}")
    return events.select([pl.col(c).cast(FILE_SCHEMA[c]) for c in FILE_COLUMNS])


def _day_name(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def write_events(root: str | Path, venue: str, instrument: str, events: np.ndarray | pl.DataFrame) -> int:
    """Append events for one (venue, instrument) to the store; returns the number of rows written.

    ``events`` is an ``EVENT_DTYPE`` array or a frame with the ``POLARS_SCHEMA`` columns (its
    ``venue``/``instrument`` columns are ignored: the names given here are what is stored). Rows are
    split by UTC date of ``local_ts``; each date gets one new part file, sorted stably by
    ``local_ts``.
    """
    _check_name("venue", venue)
    _check_name("instrument", instrument)
    frame = _as_frame(events).select(FILE_COLUMNS)
    if frame.height == 0:
        return 0
    days = frame.get_column("local_ts") // NS_PER_DAY
    if days.min() == days.max():
        parts = [(days[0], frame)]
    else:
        parts = [(day, group.drop("_day")) for (day,), group in frame.with_columns(days.alias("_day")).group_by("_day", maintain_order=True)]
    for day, part in parts:
        if not part.get_column("local_ts").is_sorted():
            part = part.sort("local_ts", maintain_order=True)
        _write_new_part(partition_dir(root, venue, instrument, _day_name(day)), part)
    return frame.height


def list_partitions(root: str | Path) -> list[tuple[str, str, str]]:
    """Every (venue, instrument, date) partition holding at least one part file, sorted."""
    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for vdir in root.glob("venue=*"):
        for idir in vdir.glob("instrument=*"):
            for ddir in idir.glob("date=*"):
                date = ddir.name.removeprefix("date=")
                if _DATE.match(date) and part_files(ddir):
                    out.append((vdir.name.removeprefix("venue="), idir.name.removeprefix("instrument="), date))
    return sorted(out)


def read_partition(
    root: str | Path, venue: str, instrument: str, date: str, venue_id: int = 0, instrument_id: int = 0
) -> pl.DataFrame:
    """One partition as a ``POLARS_SCHEMA`` frame sorted by ``local_ts`` (ties: part order, then row order).

    ``venue_id``/``instrument_id`` fill the id columns (the files do not store them).
    """
    files = part_files(partition_dir(root, venue, instrument, date))
    if not files:
        return pl.DataFrame(schema=POLARS_SCHEMA)
    frame = pl.concat([pl.read_parquet(f, columns=list(FILE_COLUMNS)) for f in files], how="vertical")
    if len(files) > 1:
        frame = frame.sort("local_ts", maintain_order=True)
    return frame.with_columns(
        pl.lit(venue_id, dtype=pl.UInt16).alias("venue"), pl.lit(instrument_id, dtype=pl.UInt16).alias("instrument")
    ).select(POLARS_SCHEMA.names())


# -- bars ------------------------------------------------------------------------------------------

def bars_dir(root: str | Path, venue: str, instrument: str) -> Path:
    return Path(root) / BARS_DIR / f"venue={venue}" / f"instrument={instrument}"


def write_bars(root: str | Path, venue: str, instrument: str, bars: pl.DataFrame) -> int:
    """Append OHLCV bars (``BAR_SCHEMA`` columns) as a new part file sorted by ``ts``; returns rows written."""
    _check_name("venue", venue)
    _check_name("instrument", instrument)
    frame = bars.select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()])
    if frame.height == 0:
        return 0
    _write_new_part(bars_dir(root, venue, instrument), frame.sort("ts", maintain_order=True))
    return frame.height


def list_bars(root: str | Path) -> list[tuple[str, str]]:
    """Every (venue, instrument) with stored bars, sorted."""
    base = Path(root) / BARS_DIR
    return sorted(
        (v.name.removeprefix("venue="), i.name.removeprefix("instrument="))
        for v in base.glob("venue=*")
        for i in v.glob("instrument=*")
        if part_files(i)
    )


def read_bars(root: str | Path, venue: str, instrument: str) -> pl.DataFrame:
    """All bars of one (venue, instrument), sorted by ``ts`` (ties: part order)."""
    files = part_files(bars_dir(root, venue, instrument))
    if not files:
        return pl.DataFrame(schema=BAR_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ts", maintain_order=True)
