"""The market-data recorder: what the venues' streams delivered, into the Parquet store the backtester reads.

:class:`Recorder` is the sink the live runner (``LiveRunner(recorder=...)``) and ``stockbridge
record`` hand every received book and public trade to. Its two inputs run on the event loop and only
append to an in-memory list; a background thread takes that list every ``flush_s`` seconds (0.5 by
default), encodes it as rows of the store's event dtype and writes one new Parquet part file per
(venue, instrument, UTC day of ``local_ts``) partition touched:

    ROOT/venue=<venue>/instrument=<instrument>/date=YYYY-MM-DD/part-NNNNN.parquet

Crash safety: each part file is written whole to a hidden temporary name in its partition
(``.tmp-part-NNNNN-<pid>.parquet``, which :func:`data.store.part_files` ignores), fsynced, and then
linked to its final name in one atomic step (``os.link``: exclusive, so an existing part is never
overwritten). A kill -9 therefore loses what was buffered since the last flush (at most ``flush_s``
plus one write) and never leaves a truncated ``part-*.parquet``; at worst a hidden temporary file,
which :meth:`Recorder.open_partition` cleans up the next time a recorder writes that partition.
Part numbers continue after the partition's highest, so a restarted recorder appends to the day.

Encoding (see ``data/schema.py``):

- an L2 book (ccxt hands over the full book each time) is stored as **depth deltas**: only the
  levels that changed since the previous book of that stream (``KIND_DEPTH``, the level's new size;
  size 0 for a level that is gone), the last row of each book carrying ``F_BATCH_END``. The first
  book of a stream in each day partition, and the first after the recorder starts, is a full
  ``KIND_SNAPSHOT`` (``F_CLEAR`` on its first row, ``F_BATCH_END`` on its last), so every partition
  replays on its own. Deltas rather than a snapshot per book: a 25-level book that changed one
  level is one row instead of 50, the backtester's matching sees exactly which level moved (queue
  positions at the other levels are kept, as a snapshot's clear-and-rebuild would not), and the
  replay cost stays that of the venue's update rate. A book that did not change is not stored.
  Levels with size 0 in a received book are treated as absent.
- an L1 book (``Book.is_quote``, the broker's quotes): ``KIND_QUOTE`` rows, bid then ask (the ask
  carrying ``F_BATCH_END``), only when the quote changed.
- public trades: ``KIND_TRADE``, side the aggressor's (+1 buy, -1 sell, 0 unknown), ``exch_ts`` the
  trade's timestamp, ``id`` the venue's trade id when numeric, else a stable 63-bit hash of it (so
  two prints with the same time, price and size are not duplicate rows), 0 when there is none.
  Trades are deduplicated by id per stream (the last 10,000 ids: a stream that re-sends its recent
  trades on (re)subscribing, as Kraken's does, is stored once), and trades printed before
  ``since_ns`` (the recording's start; the subscription's snapshot of history) are not stored; both
  counted in ``dropped``.

Times: ``exch_ts`` is the venue's timestamp (ms from ccxt, converted to ns), or the local time when
the venue sent none; ``local_ts`` is when the book or trade reached us, on the caller's clock
(the replay's data time in the in-process sandbox). ``local_ts`` is kept nondecreasing in arrival
order (a wall clock stepped backwards is held at the last time; counted in ``clamped``), so the
store replays books in the order they arrived.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.schema import (
    EVENT_DTYPE,
    F_BATCH_END,
    F_CLEAR,
    KIND_DEPTH,
    KIND_QUOTE,
    KIND_SNAPSHOT,
    KIND_TRADE,
    to_polars,
)
from data.store import FILE_COLUMNS, NS_PER_DAY, PART_COMPRESSION, part_files, partition_dir

log = logging.getLogger("stockbridge.live")
MS = 1_000_000
TMP_PREFIX = ".tmp-part-"
SEEN_TRADES = 10_000   # trade ids remembered per stream (a reconnect's re-sent snapshot is not stored twice)


@dataclass
class StreamStats:
    """What the recorder wrote for one (venue, instrument)."""

    venue: str
    instrument: str
    books: int = 0            # books received
    trades: int = 0           # trades received
    rows: int = 0             # rows written (all kinds)
    book_rows: int = 0
    trade_rows: int = 0
    snapshots: int = 0
    files: int = 0
    first_local_ns: int | None = None
    last_local_ns: int | None = None
    days: set = field(default_factory=set)


@dataclass
class _BookState:
    day: int = -1                          # UTC day of the last stored book (-1: none yet: next is a snapshot)
    bids: dict = field(default_factory=dict)   # last stored levels: price -> size
    asks: dict = field(default_factory=dict)
    quote: tuple | None = None             # last ((bid px, size), (ask px, size)) for L1 streams


def trade_id(raw: Any) -> int:
    """A venue trade id as the store's int64: numeric ids as they are, others a stable 63-bit hash, None 0."""
    if raw is None or raw == "":
        return 0
    text = str(raw)
    if text.isdigit() and len(text) < 19:
        return int(text)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def _ms_ns(ms: Any) -> int | None:
    return None if ms is None else int(ms) * MS


def _side(raw: Any) -> int:
    return 1 if raw == "buy" else -1 if raw == "sell" else 0


class Recorder:
    """Buffers books and trades from the event loop; a thread writes them to the store at ``root``.

    ``venue_names`` / ``instrument_names``: partition names by the core's venue / instrument ids
    (``list(cfg.venues)``, ``list(cfg.instruments)``). ``flush_s``: the most a crash can lose.
    Call :meth:`close` at the end (it flushes everything); usable as a context manager."""

    def __init__(self, root: str | Path, venue_names: list[str], instrument_names: list[str], *,
                 flush_s: float = 0.5, since_ns: int | None = None, start: bool = True):
        if not 0 < flush_s <= 1.0:
            raise ValueError(f"flush_s must be in (0, 1] s (a crash loses at most that), got {flush_s}")
        self.root = Path(root)
        self.venue_names, self.instrument_names = list(venue_names), list(instrument_names)
        self.flush_s = flush_s
        self.since_ns = since_ns               # trades the venue printed before this are history, not recorded
        self._seen: dict[tuple[int, int], tuple[set, deque]] = {}   # recent trade ids per stream
        self.dropped: dict[str, int] = defaultdict(int)            # trades not stored, by why
        self._buf: deque = deque()             # appended on the event loop, drained by the thread (both thread-safe)
        self._lock = threading.Lock()          # one flush at a time (the thread, or close)
        self._stop = threading.Event()
        self._books: dict[tuple[int, int], _BookState] = {}
        self._next_part: dict[Path, int] = {}
        self._last_local = np.iinfo(np.int64).min
        self.stats: dict[tuple[int, int], StreamStats] = {}
        self.clamped = 0                       # rows whose local time was held (clock went backwards)
        self.flushes = 0
        self.last_flush_ms = 0.0
        self.error: BaseException | None = None
        self.lost_rows = 0                     # rows of flushes that failed to write
        self.closed = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="stockbridge-recorder", daemon=True)
            self._thread.start()

    @classmethod
    def for_config(cls, cfg, root: str | Path, **kw: Any) -> "Recorder":
        return cls(root, list(cfg.venues), list(cfg.instruments), **kw)

    # -- the two inputs (event loop: append only) ----------------------------------------------------

    def book(self, book: Any) -> None:
        """One received book (``execution.market_data.Book``; its arrays are not modified later)."""
        self._buf.append(("b", book))

    def trades(self, venue: int, instrument: int, trades: list[dict[str, Any]], now: int) -> None:
        """Public trades received at ``now`` (ns): ccxt unified trade dicts."""
        self._buf.append(("t", venue, instrument, [(t.get("timestamp_ns") or _ms_ns(t.get("timestamp")), float(t["price"]), float(t["amount"]),
                                                    _side(t.get("side")), t.get("id")) for t in trades], int(now)))

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def totals(self) -> dict[str, int]:
        """Rows written per venue name (the progress line)."""
        out: dict[str, int] = defaultdict(int)
        for s in self.stats.values():
            out[s.venue] += s.rows
        return dict(out)

    # -- writing -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - never let the thread die with the buffer growing
                log.exception("recorder: a flush failed")
                self.error = exc

    def flush(self) -> int:
        """Write everything buffered so far; returns the rows written. Errors are kept in ``error``."""
        with self._lock:
            items = [self._buf.popleft() for _ in range(len(self._buf))]
            if not items:
                return 0
            t0 = time.perf_counter()
            rows = self._encode(items)
            written = 0
            for (v, i, day), events in rows.items():
                try:
                    self._write(v, i, day, events)
                    written += len(events)
                except Exception as exc:  # noqa: BLE001 - disk full, permissions: keep recording, say so
                    self.lost_rows += len(events)
                    if (v, i) in self._books:
                        self._books[(v, i)].day = -1  # the stored deltas have a hole: the next book is a snapshot
                    if self.error is None:
                        log.error("recorder: writing %s failed: %s", partition_dir(self.root, self.venue_names[v],
                                  self.instrument_names[i], _day_name(day)), exc)
                    self.error = exc
            self.flushes += 1
            self.last_flush_ms = (time.perf_counter() - t0) * 1e3
            return written

    def close(self) -> None:
        """Stop the thread and write everything still buffered."""
        if self.closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        self.closed = True

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- encoding ------------------------------------------------------------------------------------

    def _local(self, ns: int) -> int:
        if ns < self._last_local:
            self.clamped += 1
            return self._last_local
        self._last_local = ns
        return ns

    def _stream(self, v: int, i: int) -> StreamStats:
        s = self.stats.get((v, i))
        if s is None:
            s = self.stats[(v, i)] = StreamStats(self.venue_names[v], self.instrument_names[i])
        return s

    def _encode(self, items: list[tuple]) -> dict[tuple[int, int, int], np.ndarray]:
        """Buffered items -> {(venue, instrument, day): EVENT_DTYPE rows in arrival order}."""
        out: dict[tuple[int, int, int], list[tuple]] = defaultdict(list)
        for item in items:
            if item[0] == "b":
                b = item[1]
                v, i = int(b.venue), int(b.instrument)
                local = self._local(int(b.local_ns))
                exch = int(b.exch_ns) if b.exch_ns is not None else local
                day = local // NS_PER_DAY
                st = self._stream(v, i)
                st.books += 1
                rows = self._book_rows(v, i, b, exch, local, day, st)
                if rows:
                    out[(v, i, day)].extend(rows)
                    st.book_rows += len(rows)
            else:
                _, v, i, trades, now = item
                local = self._local(now)
                day = local // NS_PER_DAY
                st = self._stream(v, i)
                st.trades += len(trades)
                seen, order = self._seen.setdefault((v, i), (set(), deque()))
                kept = out[(v, i, day)]
                n0 = len(kept)
                for ts, px, qty, side, ident in trades:
                    exch = int(ts) if ts is not None else local
                    if self.since_ns is not None and exch < self.since_ns:
                        self.dropped["printed before the recording started"] += 1
                        continue
                    tid = trade_id(ident)
                    if tid:
                        if tid in seen:
                            self.dropped["repeated trade id"] += 1
                            continue
                        seen.add(tid)
                        order.append(tid)
                        if len(order) > SEEN_TRADES:
                            seen.discard(order.popleft())
                    kept.append((KIND_TRADE, side, v, i, 0, exch, local, px, qty, tid))
                st.trade_rows += len(kept) - n0
        return {k: np.array(rows, dtype=EVENT_DTYPE) for k, rows in out.items() if rows}

    def _book_rows(self, v: int, i: int, b: Any, exch: int, local: int, day: int, st: StreamStats) -> list[tuple]:
        """The rows one book adds to the store (plain tuples of EVENT_DTYPE's fields; [] if none).

        Python dicts over ``tolist()`` levels: for books of tens of levels this is several times
        faster than numpy's set operations, whose per-call overhead dominates at that size."""
        state = self._books.setdefault((v, i), _BookState())
        bids = {p: q for p, q in b.bids.tolist() if q > 0}
        asks = {p: q for p, q in b.asks.tolist() if q > 0}
        if b.is_quote:
            quote = (next(iter(bids.items()), None), next(iter(asks.items()), None))
            if quote == state.quote:
                return []
            state.quote = quote
            rows = [(KIND_QUOTE, s, v, i, 0, exch, local, lv[0], lv[1], 0)
                    for s, lv in ((1, quote[0]), (-1, quote[1])) if lv is not None]
        elif state.day != day:
            # a snapshot: the first book of this stream in this run and in each day partition
            rows = [(KIND_SNAPSHOT, 1, v, i, 0, exch, local, p, q, 0) for p, q in bids.items()]
            rows += [(KIND_SNAPSHOT, -1, v, i, 0, exch, local, p, q, 0) for p, q in asks.items()]
            if rows:
                rows[0] = rows[0][:4] + (F_CLEAR,) + rows[0][5:]
                state.day = day
                st.snapshots += 1
            state.bids, state.asks = bids, asks
        else:
            rows = []
            for s, old, new in ((1, state.bids, bids), (-1, state.asks, asks)):
                rows += [(KIND_DEPTH, s, v, i, 0, exch, local, p, q, 0) for p, q in new.items() if old.get(p) != q]
                rows += [(KIND_DEPTH, s, v, i, 0, exch, local, p, 0.0, 0) for p in old if p not in new]
            state.bids, state.asks = bids, asks
        if rows:
            last = rows[-1]
            rows[-1] = last[:4] + (last[4] | F_BATCH_END,) + last[5:]
        return rows

    # -- files ---------------------------------------------------------------------------------------

    def open_partition(self, directory: Path) -> int:
        """The next part number of ``directory`` (created if needed); leftovers of a crashed writer removed."""
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob(f"{TMP_PREFIX}*"):
            try:
                pid = int(tmp.name.rsplit("-", 1)[1].split(".")[0])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and not _alive(pid):
                tmp.unlink(missing_ok=True)
        parts = part_files(directory)
        return int(parts[-1].name[5:-8]) + 1 if parts else 0

    def _write(self, v: int, i: int, day: int, events: np.ndarray) -> None:
        venue, inst = self.venue_names[v], self.instrument_names[i]
        directory = partition_dir(self.root, venue, inst, _day_name(day))
        if directory not in self._next_part:
            self._next_part[directory] = self.open_partition(directory)
        frame = to_polars(events).select(FILE_COLUMNS)
        n = self._next_part[directory]
        tmp = directory / f"{TMP_PREFIX}{n:05d}-{os.getpid()}.parquet"
        with open(tmp, "wb") as fh:
            frame.write_parquet(fh, compression=PART_COMPRESSION, statistics=True)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            while True:
                try:
                    os.link(tmp, directory / f"part-{n:05d}.parquet")  # atomic and exclusive
                    break
                except FileExistsError:
                    n += 1
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(directory)
        self._next_part[directory] = n + 1
        st = self._stream(v, i)
        st.rows += len(events)
        st.files += 1
        st.days.add(_day_name(day))
        lo, hi = int(events["local_ts"][0]), int(events["local_ts"][-1])
        st.first_local_ns = lo if st.first_local_ns is None else min(st.first_local_ns, lo)
        st.last_local_ns = hi if st.last_local_ns is None else max(st.last_local_ns, hi)


def _day_name(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not on every platform (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["Recorder", "StreamStats", "trade_id"]
