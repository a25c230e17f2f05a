"""hftbacktest ``.npz`` event files <-> our events: bring hftbacktest data in, export ours for hftbacktest.

Format: ``np.savez_compressed(path, data=rows)`` with 64-byte rows ``ev u8, exch_ts i8, local_ts i8,
px f8, qty f8, order_id u8, ival i8, fval f8`` (numpy codes: u8 = uint64, i8 = int64, f8 =
float64; times ns UTC, px quote currency, qty tokens). ``ev`` holds the event kind in its low byte
and flag bits above it. Constants as in hftbacktest's own source, ``py-hftbacktest/hftbacktest/types.py``
and ``hftbacktest/src/types.rs`` (github.com/nkaz001/hftbacktest; pinned by tests/test_hftbacktest.py)::

    DEPTH_EVENT = 1, TRADE_EVENT = 2, DEPTH_CLEAR_EVENT = 3, DEPTH_SNAPSHOT_EVENT = 4, DEPTH_BBO_EVENT = 5
    EXCH_EVENT = 1 << 31, LOCAL_EVENT = 1 << 30, BUY_EVENT = 1 << 29, SELL_EVENT = 1 << 28

A row flagged ``LOCAL_EVENT`` is seen by the strategy at ``local_ts``; ``EXCH_EVENT`` by the
exchange simulator at ``exch_ts``. BUY/SELL mean the bid/ask side for depth rows and the
initiator's side for trades.

Import (``data convert hftbacktest FILE.npz``): the rows flagged ``LOCAL_EVENT`` are our stream
(rows flagged only ``EXCH_EVENT`` repeat them in exchange order and are counted as skipped). Depth
-> ``KIND_DEPTH``, BBO -> ``KIND_QUOTE``, trade -> ``KIND_TRADE`` (``ival`` as trade id), snapshot ->
``KIND_SNAPSHOT``; a run of clear rows is folded into the next snapshot row's ``F_CLEAR`` (a clear
with no snapshot after it clears the book: it becomes ``F_CLEAR`` on the next depth row).
``F_BATCH_END`` goes on the last row of each run of book rows with equal times and kind. Order
events of L3 data (kinds 10-13) and unknown kinds are counted as skipped, never silently dropped.

Export (``data export-hftbacktest``): the inverse, one venue/instrument, in local order with
``EXCH_EVENT`` and ``LOCAL_EVENT`` both set where the two orders agree; where they differ a row
appears twice, once per flag, as hftbacktest's own converters do. A snapshot's ``F_CLEAR`` becomes
one ``DEPTH_CLEAR_EVENT`` without side (clear both sides) before its levels. Session and multiplier
rows have no hftbacktest kind and are counted as skipped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from data.convert.source import ConvertReport, EventSink, Job, event_frame
from data.schema import empty, F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_MULTIPLIER, KIND_QUOTE, KIND_SESSION, KIND_SNAPSHOT, KIND_TRADE
from stockbridge.errors import DataError

DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
DEPTH_BBO_EVENT = 5
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
KIND_MASK = 0xFF

HFT_DTYPE = np.dtype(
    [("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"), ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")],
    align=True,
)
assert HFT_DTYPE.itemsize == 64

_TO_OURS = {DEPTH_EVENT: KIND_DEPTH, TRADE_EVENT: KIND_TRADE, DEPTH_SNAPSHOT_EVENT: KIND_SNAPSHOT, DEPTH_BBO_EVENT: KIND_QUOTE}
_TO_HFT = {v: k for k, v in _TO_OURS.items()}


def load_npz(path: str | Path) -> np.ndarray:
    """The event rows of an hftbacktest ``.npz`` (array ``data``) or ``.npy`` file, as ``HFT_DTYPE``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as got:
            arr = got["data"] if isinstance(got, np.lib.npyio.NpzFile) else got
            arr = np.asarray(arr)
    except KeyError:
        raise DataError(str(path), None, "data", "no array named 'data' in this .npz (hftbacktest saves its events as data=...)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(str(path), None, None, f"not a readable .npz/.npy file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if arr.dtype.names is None or len(arr.dtype.names) != 8 or arr.dtype.itemsize != 64:
        raise DataError(str(path), None, "data", f"rows are {arr.dtype}, expected hftbacktest's 64-byte event rows {HFT_DTYPE.names}")
    out = np.empty(len(arr), dtype=HFT_DTYPE)
    for ours, theirs in zip(HFT_DTYPE.names, arr.dtype.names):
        out[ours] = arr[theirs]
    return out


def from_hftbacktest(rows: np.ndarray, path: str = "<hftbacktest>") -> tuple[pl.DataFrame, Counter]:
    """HFT_DTYPE rows -> (event frame without venue/instrument, skipped rows per reason). Row numbers in errors are 1-based array indices."""
    ev = rows["ev"]
    skipped: Counter = Counter()
    local = (ev & LOCAL_EVENT) != 0
    for why, mask in (("exchange-only rows (repeat local rows)", ~local & ((ev & EXCH_EVENT) != 0)),
                      ("rows with neither EXCH_EVENT nor LOCAL_EVENT", ~local & ((ev & EXCH_EVENT) == 0))):
        if mask.any():
            skipped[why] += int(np.count_nonzero(mask))
    index = np.flatnonzero(local)
    code = (ev[index] & KIND_MASK).astype(np.int64)
    known = np.isin(code, list(_TO_OURS) + [DEPTH_CLEAR_EVENT])
    if (~known).any():
        for c, n in zip(*np.unique(code[~known], return_counts=True)):
            skipped[f"event kind {int(c)} rows (L3 order events or unknown; not supported)"] += int(n)
        index, code = index[known], code[known]
    sel = rows[index]
    lts = sel["local_ts"]
    if len(lts) and (np.diff(lts) < 0).any():
        bad = int(index[int(np.argmax(np.diff(lts) < 0)) + 1])
        raise DataError(path, bad + 1, "local_ts", f"{int(rows['local_ts'][bad])} ns is earlier than the LOCAL_EVENT row before it")
    side = np.where((sel["ev"] & BUY_EVENT) != 0, 1, np.where((sel["ev"] & SELL_EVENT) != 0, -1, 0)).astype(np.int8)
    clear = code == DEPTH_CLEAR_EVENT
    keep = ~clear
    kind = np.zeros(len(code), dtype=np.uint8)
    for theirs, ours in _TO_OURS.items():
        kind[code == theirs] = ours
    flags = np.zeros(len(code), dtype=np.uint16)
    flags[_after_clear(clear)] |= F_CLEAR  # a run of clears: the next row starts a fresh book
    skipped_clear = int(np.count_nonzero(clear))
    kind, side, flags, sel = kind[keep], side[keep], flags[keep], sel[keep]
    book = (kind == KIND_DEPTH) | (kind == KIND_SNAPSHOT) | (kind == KIND_QUOTE)
    nxt_same = np.zeros(len(kind), dtype=bool)
    if len(kind) > 1:
        nxt_same[:-1] = (kind[1:] == kind[:-1]) & (sel["local_ts"][1:] == sel["local_ts"][:-1]) & (sel["exch_ts"][1:] == sel["exch_ts"][:-1]) & ((flags[1:] & F_CLEAR) == 0)
    flags[book & ~nxt_same] |= F_BATCH_END
    if skipped_clear:
        skipped["clear rows (folded into the next row's F_CLEAR)"] += skipped_clear
    ids = np.where(kind == KIND_TRADE, sel["ival"], 0)
    frame = event_frame(kind, side, flags, sel["exch_ts"], sel["local_ts"], sel["px"], sel["qty"], ids)
    return frame, skipped


@njit(cache=True)
def _after_clear(clear):
    """Mark the first non-clear row after each run of clear rows."""
    out = np.zeros(len(clear), dtype=np.bool_)
    on = False
    for i in range(len(clear)):
        if clear[i]:
            on = True
        elif on:
            out[i] = True
            on = False
    return out


def convert(path: str | Path, job: Job) -> ConvertReport:
    """Convert one hftbacktest ``.npz`` (one instrument: ``--instrument`` or the venue's only one) into ``job.out``."""
    path = Path(path)
    rows = load_npz(path)
    report = ConvertReport(str(path), "hftbacktest npz", source_rows=len(rows))
    frame, skipped = from_hftbacktest(rows, str(path))
    report.skipped.update(skipped)
    for col in ("price", "size"):
        values = frame.get_column(col).to_numpy()
        if not np.isfinite(values).all():
            i = int(np.argmax(~np.isfinite(values)))
            raise DataError(str(path), None, "px" if col == "price" else "qty", f"{float(values[i])!r} is not a finite number (LOCAL_EVENT row {i + 1})")
    EventSink(job.out, job.venue, report, job.clock_offset_ns()).write(job.single_instrument(), frame)
    return report


# -- export ----------------------------------------------------------------------------------------

def to_hftbacktest(events: np.ndarray) -> tuple[np.ndarray, Counter]:
    """``EVENT_DTYPE`` rows of one stream in ``local_ts`` order -> (HFT_DTYPE rows, skipped rows per reason)."""
    skipped: Counter = Counter()
    other = (events["kind"] == KIND_SESSION) | (events["kind"] == KIND_MULTIPLIER)
    if other.any():
        skipped["session/multiplier rows (no hftbacktest kind)"] += int(np.count_nonzero(other))
        events = events[~other]
    clear = (events["kind"] == KIND_SNAPSHOT) & ((events["flags"] & F_CLEAR) != 0)
    n = len(events) + int(np.count_nonzero(clear))
    flat = np.zeros(n, dtype=HFT_DTYPE)
    at = np.arange(len(events)) + np.cumsum(clear)  # each clear row makes room for one clear event before it
    cl = at[clear] - 1
    flat["ev"][cl] = DEPTH_CLEAR_EVENT
    flat["exch_ts"][cl] = events["exch_ts"][clear]
    flat["local_ts"][cl] = events["local_ts"][clear]
    code = np.zeros(len(events), dtype=np.uint64)
    for ours, theirs in _TO_HFT.items():
        code[events["kind"] == ours] = theirs
    code |= np.where(events["side"] > 0, np.uint64(BUY_EVENT), np.where(events["side"] < 0, np.uint64(SELL_EVENT), np.uint64(0)))
    flat["ev"][at] = code
    flat["exch_ts"][at] = events["exch_ts"]
    flat["local_ts"][at] = events["local_ts"]
    flat["px"][at] = events["price"]
    flat["qty"][at] = events["size"]
    flat["ival"][at] = np.where(events["kind"] == KIND_TRADE, events["id"], 0)
    by_exch = np.argsort(flat["exch_ts"], kind="stable")
    idx = np.empty(2 * n, dtype=np.int64)
    flag = np.empty(2 * n, dtype=np.uint64)
    m = _merge_orders(flat["exch_ts"], flat["local_ts"], by_exch, idx, flag, np.uint64(EXCH_EVENT), np.uint64(LOCAL_EVENT))
    out = flat[idx[:m]]
    out["ev"] |= flag[:m]
    return out, skipped


@njit(cache=True)
def _merge_orders(exch_ts, local_ts, by_exch, idx, flag, exch_bit, local_bit):
    """Interleave the local-order stream (rows 0..n-1) and the exchange-order stream (``by_exch``).

    A row next in both streams is written once with both bits; otherwise the stream whose next time
    is earlier (exchange on ties) writes its row with its own bit. Returns the number of rows.
    """
    n = len(exch_ts)
    i = 0
    j = 0
    m = 0
    while i < n or j < n:
        if i < n and j < n and by_exch[j] == i:
            idx[m] = i
            flag[m] = exch_bit | local_bit
            i += 1
            j += 1
        elif j < n and (i >= n or exch_ts[by_exch[j]] <= local_ts[i]):
            idx[m] = by_exch[j]
            flag[m] = exch_bit
            j += 1
        else:
            idx[m] = i
            flag[m] = local_bit
            i += 1
        m += 1
    return m


def export_store(root, cfg, venue: str, instrument: str, out: str | Path, start_ns: int | None = None, end_ns: int | None = None) -> dict:
    """Write one (venue, instrument) of the store as an hftbacktest ``.npz`` (clock offsets applied); returns {'rows', 'events', 'skipped'}."""
    from data.reader import clock_offsets, read_merged
    from data.store import require_store

    parts = require_store(root)
    if not any(v == venue and i == instrument for v, i, _ in parts):
        raise DataError(str(root), None, None, f"holds no partition of venue '{venue}' instrument '{instrument}'")
    inst_id = cfg.instrument_ids()[instrument]
    chunks = [
        c[c["instrument"] == inst_id]
        for c in read_merged(root, cfg.venue_ids(), cfg.instrument_ids(), start_ns, end_ns, venues=[venue], clock_offset_ms=clock_offsets(cfg))
    ]
    events = np.concatenate(chunks) if chunks else empty(0)
    rows, skipped = to_hftbacktest(events)
    np.savez_compressed(out, data=rows)
    return {"rows": len(rows), "events": len(events), "skipped": skipped}
