"""Raw websocket captures from Binance (spot, USD-M futures) and Bybit v5 -> events, with each venue's documented book sync.

Capture layout (hftbacktest's collector): one message per line, optionally prefixed by the local
receive time in ns and a space; gzip or plain. Combined-stream wrappers ``{"stream": ..., "data":
{...}}`` are unwrapped. A line without a receive time gets ``local_ts = exch_ts`` (counted). One
capture holds one instrument (``--instrument`` or the venue's only one); a message for another
symbol is an error. Errors name the file and the 1-based line ("row").

Binance (``format binance``; spot or USD-M told apart by ``pu`` in the diffs):
- REST snapshot lines ``{"lastUpdateId": L, "bids": [[p, q]...], "asks": ...}`` replace the book
  (``KIND_SNAPSHOT``, ``F_CLEAR`` first, ``F_BATCH_END`` last; ``exch_ts`` = its ``E``/``T`` if
  present, else the receive time). A snapshot older than the synced book (``L`` < last applied
  ``u``) is ignored and counted.
- ``depthUpdate`` diffs: before the first snapshot, counted; ``u <= L`` (spot) or ``u < L``
  (USD-M) dropped as stale (counted);
  the first applied one must have ``U <= L + 1 <= u`` (spot) or ``U <= L <= u`` (USD-M); then
  ``U == previous u + 1`` (spot) or ``pu == previous u`` (USD-M). Anything else is a gap: counted,
  its line numbers kept in ``report.gaps``, and diffs are skipped (counted) until the next snapshot
  re-syncs. Levels become ``KIND_DEPTH`` rows (quantities absolute, 0 removes), ``F_BATCH_END`` on
  the last of each diff.
- ``trade`` / ``aggTrade`` -> ``KIND_TRADE`` (``m`` = buyer is maker, so the aggressor sold),
  ``exch_ts`` = trade time ``T``, id ``t`` / ``a``.
- ``bookTicker`` lines are not stored: each is compared with the rebuilt book at the same update id
  ``u`` (best bid/ask price and quantity must agree exactly; a mismatch is an error). Tickers whose
  ``u`` no applied diff ends on cannot be compared and are counted.

Bybit (``format bybit``), topics ``orderbook.N.SYMBOL`` (N > 1), ``orderbook.1.SYMBOL``, ``publicTrade.SYMBOL``:
- ``snapshot`` replaces the book; a message with ``u == 1`` is a fresh snapshot after a service
  restart (replaces, counted); ``delta`` must have ``u == previous u + 1``, else a gap as above
  until the next snapshot. ``exch_ts`` = message ``ts``.
- ``orderbook.1`` (L1) is kept as its own book and compared with the rebuilt book at the same
  cross sequence ``seq`` (exact price and size).
- ``publicTrade`` -> ``KIND_TRADE`` (``S`` = taker side), ``exch_ts`` = ``T``, numeric ids kept.

Units: ns UTC (venue milliseconds x 1e6), prices quote currency, sizes tokens.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path

import numpy as np

from data.convert.source import ConvertReport, EventSink, Job, event_frame
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_SNAPSHOT, KIND_TRADE
from stockbridge.errors import DataError

MS = 1_000_000
FLUSH_ROWS = 200_000


def _open(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


class _Capture:
    """Shared state: the rebuilt book, the event buffer, the L1 verification and the report."""

    def __init__(self, path: Path, job: Job, fmt: str):
        self.path, self.job = path, job
        self.report = ConvertReport(str(path), fmt)
        self.sink = EventSink(job.out, job.venue, self.report, job.clock_offset_ns())
        self.instrument = job.single_instrument()
        self.symbol = job.venue_config().instruments[self.instrument].upper().replace("/", "").replace("-", "").replace("_", "")
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.rows: list[tuple] = []
        self.line = 0
        self.last_local = None
        self.pending_l1: dict[int, tuple] = {}  # update id -> (bid, bid qty, ask, ask qty, line)
        self.last_id = None  # update id (Binance u, Bybit seq) the rebuilt book is at

    # -- helpers -----------------------------------------------------------------------------
    def error(self, field: str | None, message: str) -> DataError:
        return DataError(str(self.path), self.line, field, message)

    def num(self, value, field: str) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise self.error(field, f"cannot parse {value!r}") from None
        if not math.isfinite(x):
            raise self.error(field, f"{x!r} is not a finite number")
        return x

    def get(self, msg: dict, key: str):
        if key not in msg:
            raise self.error(key, "field is missing")
        return msg[key]

    def check_symbol(self, sym) -> None:
        if sym is not None and str(sym).upper() != self.symbol:
            raise self.error("s", f"symbol {sym!r} is not this capture's instrument {self.instrument!r} ({self.symbol})")

    def levels(self, side: int, levels, exch: int, local: int, kind: int) -> None:
        book = self.bids if side > 0 else self.asks
        rows = self.rows
        for lv in levels:
            try:
                p, q = float(lv[0]), float(lv[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise self.error("b" if side > 0 else "a", f"level {lv!r} is not [price, quantity] (numbers)") from None
            if not (p > 0 and math.isfinite(p) and q >= 0 and math.isfinite(q)) or (kind == KIND_SNAPSHOT and q == 0):
                raise self.error("b" if side > 0 else "a", f"level {lv!r} has a non-finite or non-positive price or a bad quantity")
            if q == 0:
                book.pop(p, None)
            else:
                book[p] = q
            rows.append((kind, side, 0, exch, local, p, q, 0))

    def replace_book(self, bids, asks, exch: int, local: int) -> None:
        self.bids.clear()
        self.asks.clear()
        start = len(self.rows)
        self.levels(1, bids, exch, local, KIND_SNAPSHOT)
        self.levels(-1, asks, exch, local, KIND_SNAPSHOT)
        if len(self.rows) > start:
            self._flag(start, F_CLEAR)
            self._flag(len(self.rows) - 1, F_BATCH_END)
        else:
            self.report.skipped["empty snapshots"] += 1

    def update(self, bids, asks, exch: int, local: int) -> None:
        start = len(self.rows)
        self.levels(1, bids, exch, local, KIND_DEPTH)
        self.levels(-1, asks, exch, local, KIND_DEPTH)
        if len(self.rows) > start:
            self._flag(len(self.rows) - 1, F_BATCH_END)
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            raise self.error("b", f"crossed or locked book after this update: best bid {max(self.bids)!r} >= best ask {min(self.asks)!r}")

    def _flag(self, i: int, flag: int) -> None:
        r = self.rows[i]
        self.rows[i] = r[:2] + (r[2] | flag,) + r[3:]

    def trade(self, side: int, exch: int, local: int, price, qty, tid) -> None:
        p, q = self.num(price, "p"), self.num(qty, "q")
        if p <= 0 or q <= 0:
            raise self.error("p", f"trade price {p!r} or quantity {q!r} is not positive")
        try:
            tid = int(tid)
        except (TypeError, ValueError):
            tid = 0
        self.rows.append((KIND_TRADE, side, 0, exch, local, p, q, tid))

    def best(self) -> tuple:
        b = max(self.bids) if self.bids else None
        a = min(self.asks) if self.asks else None
        return b, self.bids.get(b), a, self.asks.get(a)

    def verify_at(self, uid: int) -> None:
        """The book was just rebuilt up to update id ``uid``: compare a buffered L1 line with the same id."""
        for old in [k for k in self.pending_l1 if k < uid]:
            del self.pending_l1[old]
            self.report.skipped["L1 lines with no matching book update id (not comparable)"] += 1
        got = self.pending_l1.pop(uid, None)
        if got is not None:
            self._compare(got, self.best())

    def l1(self, uid: int, bid, bid_q, ask, ask_q, synced: bool) -> None:
        """An L1 line at update id ``uid``: compared now if the book is there, later if it is ahead of the book."""
        if bid is None or ask is None:
            self.report.skipped["L1 lines with an empty side (not comparable)"] += 1
            return
        want = (self.num(bid, "b"), self.num(bid_q, "B"), self.num(ask, "a"), self.num(ask_q, "A"), self.line)
        if synced and uid == self.last_id:
            self._compare(want, self.best())
        elif synced and self.last_id is not None and uid < self.last_id or not synced:
            self.report.skipped["L1 lines with no matching book update id (not comparable)"] += 1
        else:
            self.pending_l1[uid] = want

    def _compare(self, want: tuple, have: tuple) -> None:
        bid, bq, ask, aq, line = want
        if (bid, bq, ask, aq) != tuple(have):
            raise DataError(
                str(self.path), line, "b",
                f"L1 line says best bid {bid!r} x {bq!r} / ask {ask!r} x {aq!r}, the rebuilt book has {have[0]!r} x {have[1]!r} / {have[2]!r} x {have[3]!r} at the same update id",
            )
        self.report.skipped["L1 lines verified against the rebuilt book (match)"] += 1

    def gap(self, what: str) -> None:
        """The book lost sync at this line: remember the line, count it, forget L1 lines waiting for it."""
        self.report.gaps.append(self.line)
        self.pending_l1.clear()
        self.report.skipped["book gaps (re-synced at the next snapshot)"] += 1

    def flush(self, final: bool = False) -> None:
        if self.rows and (final or len(self.rows) >= FLUSH_ROWS):
            cols = list(zip(*self.rows))
            frame = event_frame(*(np.asarray(c) for c in cols))
            self.sink.write(self.instrument, frame)
            self.rows = []
        if final and self.pending_l1:
            self.report.skipped["L1 lines with no matching book update id (not comparable)"] += len(self.pending_l1)

    def lines(self):
        """(local_ts or None, message dict) per line, checking receive times never go back."""
        with _open(self.path) as fh:
            for self.line, text in enumerate(fh, start=1):
                text = text.strip()
                if not text:
                    continue
                local = None
                if text[0] != "{":
                    head, _, text = text.partition(" ")
                    try:
                        local = int(head)
                    except ValueError:
                        raise self.error("local_ts", f"line starts with {head[:30]!r}, not a receive time in ns or a JSON message") from None
                    if self.last_local is not None and local < self.last_local:
                        raise self.error("local_ts", f"{local} ns is earlier than {self.last_local} ns on an earlier line")
                    self.last_local = local
                try:
                    msg = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise self.error(None, f"not a JSON message ({exc.msg} at column {exc.colno})") from None
                if not isinstance(msg, dict):
                    raise self.error(None, "JSON message is not an object")
                self.report.source_rows += 1
                yield local, msg
                if not self.line & 4095:
                    self.flush()


# -- Binance ---------------------------------------------------------------------------------------

def convert_binance(path: str | Path, job: Job) -> ConvertReport:
    """Convert one Binance spot or USD-M futures capture (depth diffs, REST snapshots, trades, bookTicker)."""
    c = _Capture(Path(path), job, "binance capture")
    snapshot_id = None   # lastUpdateId of the snapshot waiting for its first diff
    synced = False
    c.last_id = None     # final update id of the last applied diff (or the snapshot)
    futures = None
    for local, msg in c.lines():
        if "data" in msg and isinstance(msg["data"], dict):
            msg = msg["data"]
        if "lastUpdateId" in msg and "bids" in msg:
            lid = int(msg["lastUpdateId"])
            if synced and c.last_id is not None and lid < c.last_id:
                c.report.skipped["REST snapshots older than the synced book (ignored)"] += 1
                continue
            exch = int(msg.get("E", msg.get("T", 0))) * MS
            t = local if local is not None else exch
            c.replace_book(msg["bids"], msg["asks"], exch or t, t)
            snapshot_id, synced, c.last_id = lid, False, lid
            c.verify_at(lid)
            continue
        event = msg.get("e")
        if event is None and {"u", "b", "a", "B", "A"} <= msg.keys():
            event = "bookTicker"
        exch = int(c.get(msg, "E")) * MS if "E" in msg else None
        if event == "depthUpdate":
            c.check_symbol(msg.get("s"))
            first, last = int(c.get(msg, "U")), int(c.get(msg, "u"))
            if futures is None:
                futures = "pu" in msg
                c.report.format = "binance usd-m capture" if futures else "binance spot capture"
            if snapshot_id is None and not synced:
                c.report.skipped["depth diffs while out of sync" if c.report.gaps else "depth diffs before the first snapshot"] += 1
                continue
            if not synced:
                if last < snapshot_id or (last == snapshot_id and not futures):  # USD-M: u == lastUpdateId can be the first
                    c.report.skipped["stale depth diffs (u <= lastUpdateId)" if not futures else "stale depth diffs (u < lastUpdateId)"] += 1
                    continue
                ok = first <= snapshot_id <= last if futures else first <= snapshot_id + 1 <= last
                if not ok:
                    c.gap(f"first diff does not straddle lastUpdateId {snapshot_id}")
                    snapshot_id = None
                    c.report.skipped["depth diffs while out of sync"] += 1
                    continue
                synced = True
            else:
                ok = int(c.get(msg, "pu")) == c.last_id if futures else first == c.last_id + 1
                if not ok:
                    c.gap(f"U/pu does not follow u {c.last_id}")
                    synced, snapshot_id = False, None
                    c.report.skipped["depth diffs while out of sync"] += 1
                    continue
            t = local if local is not None else exch
            c.update(msg.get("b", []), msg.get("a", []), exch, t)
            c.last_id = last
            c.verify_at(last)
        elif event in ("trade", "aggTrade"):
            c.check_symbol(msg.get("s"))
            texch = int(c.get(msg, "T")) * MS
            t = local if local is not None else texch
            side = -1 if c.get(msg, "m") else 1
            c.trade(side, texch, t, c.get(msg, "p"), c.get(msg, "q"), msg.get("t" if event == "trade" else "a"))
        elif event == "bookTicker":
            c.check_symbol(msg.get("s"))
            c.l1(int(c.get(msg, "u")), msg["b"], msg["B"], msg["a"], msg["A"], synced or snapshot_id is not None)
        else:
            c.report.skipped[f"other messages ({event or 'no event type'})"] += 1
        if local is None:
            c.report.skipped["lines without a receive time (local_ts = exchange time)"] += 1
    c.flush(final=True)
    return c.report


# -- Bybit v5 ----------------------------------------------------------------------------------------

def convert_bybit(path: str | Path, job: Job) -> ConvertReport:
    """Convert one Bybit v5 public capture (orderbook.N, orderbook.1 for verification, publicTrade)."""
    c = _Capture(Path(path), job, "bybit capture")
    synced = False
    c.last_id = None        # seq of the last applied book message
    last_u = None
    l1_bids: dict[float, float] = {}
    l1_asks: dict[float, float] = {}
    for local, msg in c.lines():
        topic = msg.get("topic")
        if topic is None:
            c.report.skipped["messages without a topic (acks, pongs)"] += 1
            continue
        parts = str(topic).split(".")
        data = c.get(msg, "data")
        exch = int(c.get(msg, "ts")) * MS
        t = local if local is not None else exch
        if local is None:
            c.report.skipped["lines without a receive time (local_ts = exchange time)"] += 1
        if parts[0] == "orderbook" and len(parts) == 3:
            c.check_symbol(parts[2])
            kind, u, seq = c.get(msg, "type"), int(c.get(data, "u")), int(data.get("seq", -1))
            if parts[1] == "1":
                if kind == "snapshot" or u == 1:
                    l1_bids.clear()
                    l1_asks.clear()
                for book, key in ((l1_bids, "b"), (l1_asks, "a")):
                    for p, q in data.get(key, []):
                        p, q = c.num(p, key), c.num(q, key)
                        book.pop(p, None) if q == 0 else book.__setitem__(p, q)
                b = max(l1_bids) if l1_bids else None
                a = min(l1_asks) if l1_asks else None
                c.l1(seq, b, l1_bids.get(b), a, l1_asks.get(a), synced)
                continue
            if kind == "snapshot" or u == 1:
                if u == 1 and last_u is not None:
                    c.report.skipped["service restarts (u = 1, book replaced)"] += 1
                c.replace_book(data.get("b", []), data.get("a", []), exch, t)
                synced = True
            elif kind == "delta":
                if not synced:
                    c.report.skipped["deltas while out of sync" if c.report.gaps else "deltas before the first snapshot"] += 1
                    continue
                if u <= last_u:
                    c.report.skipped["stale deltas (u <= previous u)"] += 1
                    continue
                if u != last_u + 1:
                    c.gap(f"u {u} does not follow {last_u}")
                    synced = False
                    c.report.skipped["deltas while out of sync"] += 1
                    continue
                c.update(data.get("b", []), data.get("a", []), exch, t)
            else:
                raise c.error("type", f"{kind!r} is not snapshot or delta")
            last_u, c.last_id = u, seq
            c.verify_at(seq)
        elif parts[0] == "publicTrade":
            c.check_symbol(parts[-1])
            for tr in data if isinstance(data, list) else [data]:
                side = {"Buy": 1, "Sell": -1}.get(tr.get("S"))
                if side is None:
                    raise c.error("S", f"{tr.get('S')!r} is not Buy or Sell")
                texch = int(c.get(tr, "T")) * MS
                c.trade(side, texch, local if local is not None else texch, c.get(tr, "p"), c.get(tr, "v"), tr.get("i"))
        else:
            c.report.skipped[f"other topics ({parts[0]})"] += 1
    c.flush(final=True)
    return c.report
