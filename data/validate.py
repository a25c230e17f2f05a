"""Checks on market data: each problem is either a one-line ``DataError`` or, with ``repair``, a dropped row that is counted.

Problems checked
- missing or unparseable fields, unknown symbols and unknown enum values (found by the converters
  while parsing, reported through :class:`Validator`);
- non-positive prices or sizes (size 0 is allowed only for ``KIND_DEPTH`` rows, where it deletes a
  level);
- ``local_ts`` going backwards (a row earlier than any row before it);
- crossed or locked books (best bid >= best ask): for L1 quotes per quote pair, for L2 books after
  each atomic update (a group of rows ending with ``F_BATCH_END``), applying updates in a numba
  kernel that keeps each side sorted with its best price at the end of the array, so the usual
  update near the top of the book costs a few element moves.

Repair drops whole source rows; an L2 update group that leaves the book crossed is dropped whole and
undone, so the book stays what the kept rows say it is. Counts go to ``Validator.counts`` (source
rows per problem kind, rendered by :func:`drop_summary`) and are printed by the CLI; nothing is
dropped without being counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data.schema import (
    F_BATCH_END,
    F_CLEAR,
    KIND_DEPTH,
    KIND_MULTIPLIER,
    KIND_NAMES,
    KIND_QUOTE,
    KIND_SESSION,
    KIND_SNAPSHOT,
)
from data.store import partition_dir, read_partition, require_store
from stockbridge.errors import DataError


@dataclass
class Problem:
    """Rows of one batch that share one kind of problem.

    ``mask`` marks the offending elements of the batch, ``message(i)`` explains element ``i``, ``at``
    is the element an error reports (default: the first marked one). :meth:`Validator.screen` maps
    elements to 1-based source rows.
    """

    kind: str
    field: str | None
    mask: np.ndarray
    message: Callable[[int], str]
    at: int | None = None

    def first(self) -> int:
        return int(np.argmax(self.mask)) if self.at is None else self.at


@dataclass
class Validator:
    """Turns problems into a ``DataError`` (default) or into dropped rows counted per kind (``repair``)."""

    path: str
    repair: bool = False
    counts: Counter = field(default_factory=Counter)

    def screen(self, rows: np.ndarray, problems: list[Problem]) -> np.ndarray:
        """Keep-mask over the batch; raises on the earliest problem row unless repairing."""
        problems = [p for p in problems if p.mask.any()]
        if not problems:
            return np.ones(len(rows), dtype=bool)
        if not self.repair:
            worst = min(problems, key=lambda p: int(rows[p.first()]))
            i = worst.first()
            raise DataError(self.path, int(rows[i]), worst.field, worst.message(i))
        bad = np.zeros(len(rows), dtype=bool)
        for p in problems:
            fresh = p.mask & ~bad
            self.counts[p.kind] += int(_count_rows(rows, fresh))
            bad |= p.mask
        return ~bad


def drop_summary(counts: Counter) -> str:
    """E.g. 'dropped 3 rows: 2 non-monotonic local_timestamp, 1 crossed book' ('' when nothing was dropped)."""
    total = sum(counts.values())
    if not total:
        return ""
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return f"dropped {total} row{'s' if total != 1 else ''}: {parts}"


def _count_rows(rows: np.ndarray, mask: np.ndarray) -> int:
    """Distinct source rows under ``mask`` (several events can come from one source row)."""
    picked = rows[mask]
    if len(picked) < 2:
        return len(picked)
    return int(np.count_nonzero(np.diff(np.sort(picked))) + 1)


# -- per-row checks --------------------------------------------------------------------------------

def missing(name: str, values: pl.Series | np.ndarray, raw: Callable[[int], object] | None = None) -> Problem:
    """Null (NaN for floats) values: a field that is empty or failed to parse."""
    mask = _null_mask(values)

    def message(i: int) -> str:
        got = raw(i) if raw is not None else None
        return "value is missing" if got is None or got == "" else f"cannot parse {got!r}"

    return Problem(f"missing/unparseable {name}", name, mask, message)


def _null_mask(values: pl.Series | np.ndarray) -> np.ndarray:
    if isinstance(values, pl.Series):
        mask = values.is_null().to_numpy()
        if values.dtype.is_float():
            mask |= values.is_nan().fill_null(False).to_numpy()
        return mask
    values = np.asarray(values)
    return np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)


def finite(name: str, values: np.ndarray) -> Problem:
    """NaN or +-inf values (a stored event must never carry one to the matcher)."""
    values = np.asarray(values)
    bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    return Problem(f"non-finite {name}", name, bad, lambda i: f"{float(values[i])!r} is not a finite number")


def positive(name: str, values: np.ndarray, allow_zero: np.ndarray | bool = False) -> Problem:
    """Values that must be > 0 (or >= 0 where ``allow_zero``); NaN values are left to :func:`missing`."""
    with np.errstate(invalid="ignore"):
        bad = np.where(allow_zero, values < 0, values <= 0)
    return Problem(f"non-positive {name}", name, bad, lambda i: f"{float(values[i])!r} is not positive")


def monotonic(name: str, local_ts: np.ndarray, carry: int) -> tuple[Problem, int]:
    """Rows earlier than the latest time before them (``carry``: latest time of earlier batches).

    Returns the problem and the new carry. Dropped rows never raise the running maximum, so a repair
    keeps exactly the rows that are not earlier than a kept row before them.
    """
    if len(local_ts) == 0:
        return Problem(f"non-monotonic {name}", name, np.zeros(0, dtype=bool), repr), carry
    running = np.maximum.accumulate(local_ts)
    before = np.empty_like(running)
    before[0] = carry
    np.maximum(running[:-1], carry, out=before[1:])
    bad = local_ts < before
    new_carry = max(int(running[-1]), carry)
    return (
        Problem(f"non-monotonic {name}", name, bad, lambda i: f"{int(local_ts[i])} ns is earlier than {int(before[i])} ns on an earlier row"),
        new_carry,
    )


def l1_crossed(bid: np.ndarray, ask: np.ndarray, field_name: str = "bid_price") -> Problem:
    """Quote rows whose bid is at or above their ask."""
    with np.errstate(invalid="ignore"):
        bad = bid >= ask
    return Problem(
        "crossed book", field_name, bad, lambda i: f"crossed or locked quote: bid {float(bid[i])!r} >= ask {float(ask[i])!r}"
    )


# -- L2 book state ---------------------------------------------------------------------------------

class BookState:
    """Bid and ask levels of one (venue, instrument), carried from batch to batch.

    Each side is a pair of arrays sorted so the best price is last: bids by price ascending, asks by
    negated price ascending. ``l1`` holds the last L1 quote (bid, ask), NaN when unseen.
    """

    def __init__(self) -> None:
        self.keys = np.zeros((2, 64), dtype=np.float64)
        self.sizes = np.zeros((2, 64), dtype=np.float64)
        self.n = np.zeros(2, dtype=np.int64)
        self.l1 = np.full(2, np.nan)

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more levels per side (a batch can add at most one level per row)."""
        need = int(self.n.max()) + extra
        if need > self.keys.shape[1]:
            cap = max(need, 2 * self.keys.shape[1])
            keys = np.zeros((2, cap))
            sizes = np.zeros((2, cap))
            keys[:, : self.keys.shape[1]] = self.keys
            sizes[:, : self.sizes.shape[1]] = self.sizes
            self.keys, self.sizes = keys, sizes


def book_crossed(
    state: BookState, kind: np.ndarray, side: np.ndarray, flags: np.ndarray, price: np.ndarray, size: np.ndarray, repair: bool
) -> tuple[np.ndarray, int, float, float]:
    """Apply a batch of events to ``state``; mark the rows of each update group that leaves the book crossed.

    Returns (bad mask, index of the first crossed group's last row or -1, its best bid, its best ask).
    Without ``repair`` the scan stops at the first crossed group. With ``repair`` crossed groups are
    undone, so later groups apply to the book without them.
    """
    state.reserve(len(kind))
    bad = np.zeros(len(kind), dtype=np.bool_)
    out = np.zeros(3)
    first = _book_kernel(
        state.keys, state.sizes, state.n, state.l1, kind, side, flags, price, size, repair, bad, out
    )
    return bad, first, out[0], out[1]


@njit(cache=True)
def _find(keys, n, key):
    """Index of the first element >= key in keys[:n] (ascending)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _set_level(keys, sizes, n, s, key, qty):
    """Set side s's level ``key`` to ``qty`` (0 deletes); returns the old size (0 if absent)."""
    m = n[s]
    k = _find(keys[s], m, key)
    if k < m and keys[s, k] == key:
        old = sizes[s, k]
        if qty > 0.0:
            sizes[s, k] = qty
        else:
            for j in range(k, m - 1):
                keys[s, j] = keys[s, j + 1]
                sizes[s, j] = sizes[s, j + 1]
            n[s] = m - 1
        return old
    if qty > 0.0:
        for j in range(m, k, -1):
            keys[s, j] = keys[s, j - 1]
            sizes[s, j] = sizes[s, j - 1]
        keys[s, k] = key
        sizes[s, k] = qty
        n[s] = m + 1
    return 0.0


@njit(cache=True)
def _book_kernel(keys, sizes, n, l1, kind, side, flags, price, size, repair, bad, out):
    total = len(kind)
    log_s = np.empty(total, dtype=np.int64)
    log_k = np.empty(total, dtype=np.float64)
    log_q = np.empty(total, dtype=np.float64)
    backup_keys = np.empty_like(keys)
    backup_sizes = np.empty_like(sizes)
    backup_n = np.zeros(2, dtype=np.int64)
    l1_before = np.empty(2)
    first = -1
    start = -1
    nlog = 0
    cleared = False
    for i in range(total):
        kd = kind[i]
        if kd != KIND_DEPTH and kd != KIND_SNAPSHOT and kd != KIND_QUOTE:
            continue
        if start < 0:
            start = i
            l1_before[:] = l1
        s = 0 if side[i] > 0 else 1
        if kd == KIND_QUOTE:
            l1[s] = price[i]
        else:
            key = price[i] if s == 0 else -price[i]
            if flags[i] & F_CLEAR:
                if not cleared:
                    # Back up the book as it was before this group, so an undo restores exactly that.
                    for j in range(nlog - 1, -1, -1):
                        _set_level(keys, sizes, n, log_s[j], log_k[j], log_q[j])
                    backup_keys[:, :] = keys
                    backup_sizes[:, :] = sizes
                    backup_n[:] = n
                    cleared = True
                n[0] = 0
                n[1] = 0
            log_s[nlog] = s
            log_k[nlog] = key
            log_q[nlog] = _set_level(keys, sizes, n, s, key, size[i])
            nlog += 1
        if (flags[i] & F_BATCH_END) or i == total - 1:
            if kd == KIND_QUOTE:
                bid, ask = l1[0], l1[1]
            else:
                bid = keys[0, n[0] - 1] if n[0] > 0 else np.nan
                ask = -keys[1, n[1] - 1] if n[1] > 0 else np.nan
            if bid >= ask:
                for j in range(start, i + 1):
                    bad[j] = True
                if first < 0:
                    first = i
                    out[0] = bid
                    out[1] = ask
                    if not repair:
                        return first
                l1[:] = l1_before
                if cleared:
                    keys[:, :] = backup_keys
                    sizes[:, :] = backup_sizes
                    n[:] = backup_n
                else:
                    for j in range(nlog - 1, -1, -1):
                        _set_level(keys, sizes, n, log_s[j], log_k[j], log_q[j])
            start = -1
            nlog = 0
            cleared = False
    return first


def crossed_problem(
    state: BookState, kind: np.ndarray, side: np.ndarray, flags: np.ndarray, price: np.ndarray, size: np.ndarray, repair: bool
) -> Problem:
    """The rows of update groups that leave the book crossed or locked, as a :class:`Problem`."""
    bad, first, bid, ask = book_crossed(state, kind, side, flags, price, size, repair)
    bid, ask = float(bid), float(ask)
    what = "quote" if first >= 0 and kind[first] == KIND_QUOTE else "book after this update"
    return Problem(
        "crossed book", "price", bad, lambda i: f"crossed or locked {what}: best bid {bid!r} >= best ask {ask!r}", at=first if first >= 0 else None
    )


# -- stored events ---------------------------------------------------------------------------------

def event_value_problems(kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray) -> list[Problem]:
    """Field checks of stored events by kind: known kind, side, finite and positive prices and sizes, session codes."""
    known = np.isin(kind, np.array(list(KIND_NAMES), dtype=kind.dtype))
    book = (kind == KIND_QUOTE) | (kind == KIND_DEPTH) | (kind == KIND_SNAPSHOT)
    priced = known & (kind != KIND_SESSION)
    sized = known & (kind != KIND_SESSION) & (kind != KIND_MULTIPLIER)
    p_price = positive("price", price)
    p_price.mask &= priced & np.isfinite(price)
    p_size = positive("size", size, allow_zero=kind == KIND_DEPTH)
    p_size.mask &= sized & np.isfinite(size)
    return [
        finite("price", price),
        finite("size", size),
        Problem("unknown kind", "kind", ~known, lambda i: f"unknown event kind {int(kind[i])}"),
        Problem("bad side", "side", (book & (side == 0)) | (np.abs(side) > 1), lambda i: f"side {int(side[i])} is not valid for a {KIND_NAMES.get(int(kind[i]), '?')} row"),
        p_price,
        p_size,
        Problem(
            "bad session state",
            "size",
            (kind == KIND_SESSION) & ~np.isin(size, np.arange(5.0)),
            lambda i: f"session state {float(size[i])!r} is not one of 0..4",
        ),
    ]


def validate_store(root: str | Path, venue_ids: dict[str, int], instrument_ids: dict[str, int]) -> dict[str, int]:
    """Check every partition of a converted store; raise ``DataError`` on the first problem.

    Rows are 1-based within a partition (``ROOT/venue=../instrument=../date=..``), in ``local_ts``
    order. Each stream's book is carried across its dates. Returns {'partitions': n, 'rows': n}.
    A missing or empty store is a ``DataError`` naming the directory (see ``data.store.require_store``).
    """
    parts = require_store(root)
    total = 0
    books: dict[tuple[str, str], BookState] = {}
    last_ts: dict[tuple[str, str], int] = {}
    for venue, instrument, date in parts:
        where = str(partition_dir(root, venue, instrument, date))
        if venue not in venue_ids:
            raise DataError(where, None, "venue", f"venue '{venue}' is not in the config (known: {', '.join(venue_ids)})")
        if instrument not in instrument_ids:
            raise DataError(where, None, "instrument", f"instrument '{instrument}' is not in the config (known: {', '.join(instrument_ids)})")
        frame = read_partition(root, venue, instrument, date)
        cols = {c: frame.get_column(c).to_numpy() for c in ("kind", "side", "flags", "local_ts", "price", "size")}
        rows = np.arange(1, frame.height + 1, dtype=np.int64)
        check = Validator(where)
        stream = (venue, instrument)
        mono, last_ts[stream] = monotonic("local_ts", cols["local_ts"], last_ts.get(stream, np.iinfo(np.int64).min))
        check.screen(rows, event_value_problems(cols["kind"], cols["side"], cols["price"], cols["size"]) + [mono])
        book = books.setdefault(stream, BookState())
        check.screen(rows, [crossed_problem(book, cols["kind"], cols["side"], cols["flags"], cols["price"], cols["size"], False)])
        total += frame.height
    return {"partitions": len(parts), "rows": total}
