"""The live bot's journal: one SQLite file in the run directory, the record a restart trusts.

Write-ahead: every intent (an action from the trader core) is committed before it is sent; every
answer (ack, order update, fill, cancel, reject, balance snapshot) is written when it arrives, with
the venue's timestamp and ours (ns UTC), and committed with the answers that arrived with it once the
event loop has handled them (group commit, see ``Journal._tx``): a SIGKILL in between loses at most
those, and start-up reconciliation finds them at the venues. WAL mode, ``sync="full"`` (the
default): a commit is on disk once the write-ahead log has been fsynced after it, so a SIGKILL or a power cut loses nothing that was made durable, and the file opens
cleanly afterwards (SQLite replays or discards the WAL tail itself). The connection runs at
``synchronous=NORMAL`` (COMMIT writes the WAL, no fsync) and the journal fsyncs the WAL file itself:
the intents' commit before :meth:`Journal.record_intents` returns (write-ahead: an order waits for
it, a few hundred µs on an ordinary disk), the answers' group commits in a thread while the event
loop goes on (SQLite's own ``synchronous=FULL`` fsync inside every COMMIT had held the loop for 43 %
of the bot's busy time); :meth:`Journal.durable` waits until every commit so far is on disk. Off an
event loop every commit is fsynced before the method returns. ``sync="normal"``: no fsync of ours; a
commit is in the WAL, in the operating system's hands, when it returns: a SIGKILL of the bot loses
nothing; a power cut or a kernel crash may lose the last commits before the next checkpoint, which
start-up reconciliation then recovers from the venues (orders by our client-id prefix, fills since
the cursor, balances).

Tables (all times int ns UTC; prices quote currency; sizes tokens, shares at the equity venue):

- ``intents``: what the core decided, one row per action (``new`` / ``cancel``), in decision order;
- ``orders``: each order's current state as the order manager's state machine has it;
- ``events``: every state change and answer, append-only (the order's history);
- ``fills``: one row per venue fill, unique by ``(venue, trade_id)``: inserting a fill twice is a
  no-op, which is the dedupe that survives a restart;
- ``balances``: balance snapshots as the venue reported them;
- ``cursors``: per venue, the latest fill time and trade id, for ``fetch_my_trades(since=...)``.

Nothing secret is written: the journal stores only the fields passed to it, and every free text
(reasons, details) goes through the ``redact`` list given at open (the run's API keys and secrets).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

SCHEMA_VERSION = 1
JOURNAL_NAME = "journal.sqlite"

# the order manager's final states (execution.order_manager.OrderState values)
FINAL_STATES = ("filled", "cancelled", "rejected", "expired")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('new', 'cancel')),
    venue TEXT NOT NULL,
    instrument TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side INTEGER,
    price REAL,
    qty REAL,
    tif TEXT,
    post_only INTEGER,
    tag TEXT,
    decided_ns INTEGER NOT NULL,
    local_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS intents_one_new ON intents (client_id) WHERE action = 'new';
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY,
    cid INTEGER NOT NULL,
    venue TEXT NOT NULL,
    instrument TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side INTEGER NOT NULL,
    price REAL,
    qty REAL NOT NULL,
    tag TEXT NOT NULL,
    venue_order_id TEXT,
    state TEXT NOT NULL,
    filled REAL NOT NULL DEFAULT 0,
    venue_created_ns INTEGER,
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_state ON orders (venue, state);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT,
    venue TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT,
    detail TEXT,
    venue_ns INTEGER,
    local_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    venue TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    client_id TEXT,
    cid INTEGER,
    venue_order_id TEXT,
    instrument TEXT NOT NULL,
    side INTEGER NOT NULL,
    price REAL NOT NULL,
    qty REAL NOT NULL,
    fee REAL NOT NULL,
    fee_cost REAL,
    fee_currency TEXT,
    liquidity TEXT NOT NULL,
    tag TEXT NOT NULL,
    arrival_ns INTEGER,
    venue_ns INTEGER,
    local_ns INTEGER NOT NULL,
    fair REAL,
    multiplier REAL,
    booked INTEGER NOT NULL,
    PRIMARY KEY (venue, trade_id)
);
CREATE TABLE IF NOT EXISTS balances (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    venue TEXT NOT NULL,
    asset TEXT NOT NULL,
    free REAL,
    used REAL,
    total REAL,
    venue_ns INTEGER,
    local_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    venue TEXT PRIMARY KEY,
    last_fill_ns INTEGER NOT NULL,
    last_trade_id TEXT NOT NULL
);
"""

# the live fill log has the backtest's fills.parquet columns and dtypes (backtest.runner.Replay.fills_frame)
FILLS_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Int64, "arrival_ts": pl.Int64, "local_ts": pl.Int64, "venue": pl.String, "instrument": pl.String,
    "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64, "fee": pl.Float64, "liquidity": pl.String,
    "order_id": pl.Int64, "tag": pl.String, "fair": pl.Float64, "multiplier": pl.Float64,
}


class JournalError(RuntimeError):
    """The journal cannot be opened or is not one of ours (names the file)."""


class Journal:
    """The run's journal at ``path`` (a file, or a run directory: then ``journal.sqlite`` inside it).

    Every ``record_*`` method is one write: off an event loop committed and fsynced before it
    returns; on one, the intents likewise, the rest committed with its group and fsynced in the
    background, which :meth:`durable` waits for. Not thread-safe: the live bot's single event loop owns it.
    """

    def __init__(self, path: str | Path, *, redact: Sequence[str] = (), sync: str = "full"):
        path = Path(path)
        if path.is_dir():
            path = path / JOURNAL_NAME
        self.path = path
        # short secrets would blank out ordinary words; API keys and secrets are long
        self._redact = tuple(s for s in redact if s and len(s) >= 8)
        self._open = False        # a group transaction is open (see _tx)
        self._flush_soon = False  # its commit is scheduled on the loop
        try:
            self.db = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions explicit
            self.db.execute("PRAGMA journal_mode=WAL")
            if sync not in ("full", "normal"):
                raise ValueError(f"journal sync must be 'full' or 'normal', got {sync!r}")
            # "full": the journal fsyncs the WAL itself, the answers' off the event loop (module doc)
            self.db.execute("PRAGMA synchronous=NORMAL")
            # a run directory on a slow disk: wait for a checkpointing reader rather than fail
            self.db.execute("PRAGMA busy_timeout=5000")
            self._fsync = sync == "full"
            self._wal_fd = -1
            self._commits = 0   # commits made so far
            self._synced = 0    # of them, on disk
            self._sync_task: asyncio.Task[None] | None = None
            self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (commits to cover, durable()'s future)
            self._create()
            self.flush()  # _create's write, grouped when opened on a running loop: in the WAL now
            if self._fsync:
                # the WAL exists from the first write on and is reused in place after a checkpoint
                # (SQLite truncates or deletes it only when the last connection closes)
                self._wal_fd = os.open(f"{path}-wal", os.O_RDONLY)
                self._sync_now()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise JournalError(f"{path}: cannot open the journal ({exc})") from None
        self.db.row_factory = sqlite3.Row

    def _create(self) -> None:
        # executescript commits on its own; the statements are idempotent (IF NOT EXISTS)
        self.db.executescript(_SCHEMA)
        with self._tx():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise JournalError(f"{self.path}: journal schema {row[0]}, this version reads {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self, *, at_once: bool = False) -> Iterator[sqlite3.Connection]:
        """One write. BEGIN IMMEDIATE takes the write lock up front, so a write never fails half-way
        for a lock; COMMIT is the durable point (see the module doc for ``sync``).

        Group commit: on a running event loop a write joins the transaction that commits when the
        loop has run what is ready now (``call_soon``), so the answers that arrive together cost one
        commit (one fsync) instead of one each, and the loop is not held up by each. ``at_once``
        (the intents) commits before returning, with whatever the group holds. Off a loop every
        write commits at once. A write that fails is undone alone (a savepoint), never the group."""
        group = not at_once and _loop_running()
        if not self._open:
            self.db.execute("BEGIN IMMEDIATE")
            self._open = True
        self.db.execute("SAVEPOINT write")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK TO write")
            self.db.execute("RELEASE write")
            if not group:
                self.flush(now=True)
            raise
        self.db.execute("RELEASE write")
        if not group:
            self.flush(now=True)
        elif not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self, *, now: bool = False) -> None:
        """Commit the group transaction, if one is open. With ``sync="full"`` the WAL's fsync follows:
        before this returns if ``now`` or off an event loop (the intents: an order waits for it
        anyway, and a thread's fsync hands back only when the loop's thread lets go of the GIL, up
        to its 5 ms switch interval later), else in a thread while the loop goes on (the answers'
        group commits, which nothing waits for)."""
        self._flush_soon = False
        if self._open:
            self._open = False
            self.db.execute("COMMIT")
            self._commits += 1
            if self._wal_fd >= 0:
                if now or not _loop_running():
                    self._sync_now()
                else:
                    self._start_sync()

    @property
    def commits(self) -> int:
        """Commits made so far (a count for :meth:`durable`)."""
        return self._commits

    async def durable(self, upto: int | None = None) -> None:
        """Return once the first ``upto`` commits (default: every commit made before the call) are on
        disk; at once with ``sync="normal"``. An fsync error is raised here: what it covered is not
        known to be durable."""
        target = self._commits if upto is None else upto
        if self._synced >= target:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((target, done))
        self._start_sync()
        await done

    def _start_sync(self) -> None:
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        # one fsync covers every commit made before it started; commits made meanwhile get the next one.
        # A waiter is released by the first fsync that covers its commits, not when the commits stop.
        while self._synced < self._commits:
            upto = self._commits
            fd = os.dup(self._wal_fd)  # its own descriptor: close() may run while the thread syncs
            try:
                await asyncio.to_thread(os.fsync, fd)
            except BaseException as exc:
                waiters, self._waiters = self._waiters, []
                for _, w in waiters:
                    if not w.done():
                        w.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                raise
            finally:
                os.close(fd)
            self._synced_upto(upto)

    def _sync_now(self) -> None:
        upto = self._commits
        os.fsync(self._wal_fd)
        self._synced_upto(upto)

    def _synced_upto(self, upto: int) -> None:
        """Commits up to ``upto`` are on disk: the durable() calls waiting for them return."""
        self._synced = max(self._synced, upto)
        waiting = []
        for target, w in self._waiters:
            if target > self._synced:
                waiting.append((target, w))
            elif not w.done():
                w.set_result(None)
        self._waiters = waiting

    def close(self) -> None:
        self.flush()
        if self._wal_fd >= 0:
            self._sync_now()
            os.close(self._wal_fd)
            self._wal_fd = -1
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, text: str) -> str:
        """``text`` with every redacted secret replaced by ``***``."""
        for secret in self._redact:
            text = text.replace(secret, "***")
        return text

    def _detail(self, detail: dict[str, Any] | None) -> str | None:
        if not detail:
            return None
        return self.scrub(json.dumps(detail, default=str, sort_keys=True))

    # -- writes ---------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (key, self.scrub(value)))

    def record_intents(self, intents: Sequence[dict[str, Any]], local_ns: int, *, sent: bool = True) -> None:
        """Intents of one decision, committed together before any of them is sent. ``sent=False``: intents
        a guard refused, never sent, so nothing waits for them: they join the group commit (write-ahead
        is for what leaves; the order manager's refusals had cost an fsync each on the loop).

        Each dict: ``cid`` (int), ``client_id``, ``action`` ("new" / "cancel"), ``venue``,
        ``instrument``, ``symbol``, ``decided_ns``; for "new" also ``side`` (+1/-1), ``price``,
        ``qty``, ``tif``, ``post_only``, ``tag`` and the initial ``state``. A "new" intent also opens
        the order's row in ``orders``; a second "new" for the same client id is refused (IntegrityError):
        a client id is never reused.
        """
        with self._tx(at_once=sent) as db:
            for it in intents:
                db.execute(
                    "INSERT INTO intents (cid, client_id, action, venue, instrument, symbol, side, price, qty, tif,"
                    " post_only, tag, decided_ns, local_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (it["cid"], it["client_id"], it["action"], it["venue"], it["instrument"], it["symbol"],
                     it.get("side"), it.get("price"), it.get("qty"), it.get("tif"), it.get("post_only"),
                     it.get("tag"), it["decided_ns"], local_ns))
                if it["action"] == "new":
                    db.execute(
                        "INSERT INTO orders (client_id, cid, venue, instrument, symbol, side, price, qty, tag, state,"
                        " updated_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (it["client_id"], it["cid"], it["venue"], it["instrument"], it["symbol"], it["side"],
                         it["price"], it["qty"], it["tag"], it["state"], local_ns))

    def record_event(self, venue: str, kind: str, local_ns: int, *, client_id: str | None = None,
                     state: str | None = None, filled: float | None = None, venue_order_id: str | None = None,
                     venue_created_ns: int | None = None, venue_ns: int | None = None,
                     detail: dict[str, Any] | None = None) -> None:
        """An answer or a state change of order ``client_id`` (kind: "ack", "update", "reject",
        "unknown", "lookup", "cancel_sent", "cancel_reject", "done", ...); with ``state`` it also
        updates the order's row (and ``filled``, ``venue_order_id``, ``venue_created_ns`` when given)."""
        with self._tx() as db:
            db.execute("INSERT INTO events (client_id, venue, kind, state, detail, venue_ns, local_ns)"
                       " VALUES (?,?,?,?,?,?,?)",
                       (client_id, venue, kind, state, self._detail(detail), venue_ns, local_ns))
            if client_id is not None and state is not None:
                db.execute(
                    "UPDATE orders SET state = ?, filled = COALESCE(?, filled),"
                    " venue_order_id = COALESCE(?, venue_order_id), venue_created_ns = COALESCE(?, venue_created_ns),"
                    " updated_ns = ? WHERE client_id = ?",
                    (state, filled, venue_order_id, venue_created_ns, local_ns, client_id))

    def record_fill(self, fill: dict[str, Any]) -> bool:
        """A fill, unique by ``(venue, trade_id)``; True if it is new, False if already journalled
        (then nothing changes). Keys: ``venue``, ``trade_id``, ``client_id``, ``cid``,
        ``venue_order_id``, ``instrument``, ``side``, ``price``, ``qty``, ``fee`` (quote ccy,
        negative = rebate), ``fee_cost`` / ``fee_currency`` (as the venue charged it), ``liquidity``
        ("maker" / "taker"), ``tag``, ``arrival_ns`` (venue time the order reached it), ``venue_ns``,
        ``local_ns``, ``fair`` / ``multiplier`` (the core's marks when booked), ``booked`` (the core
        took it). Advances the venue's fill cursor in the same transaction."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO fills (venue, trade_id, client_id, cid, venue_order_id, instrument, side, price,"
                " qty, fee, fee_cost, fee_currency, liquidity, tag, arrival_ns, venue_ns, local_ns, fair, multiplier, booked)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (fill["venue"], str(fill["trade_id"]), fill.get("client_id"), fill.get("cid"), fill.get("venue_order_id"),
                 fill["instrument"], fill["side"], fill["price"], fill["qty"], fill["fee"], fill.get("fee_cost"),
                 fill.get("fee_currency"), fill["liquidity"], fill["tag"], fill.get("arrival_ns"), fill.get("venue_ns"),
                 fill["local_ns"], _real(fill.get("fair")), _real(fill.get("multiplier")), int(bool(fill.get("booked", True)))))
            if cur.rowcount == 0:
                return False
            ts = fill.get("venue_ns") if fill.get("venue_ns") is not None else fill["local_ns"]
            db.execute(
                "INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (venue) DO UPDATE SET"
                " last_fill_ns = excluded.last_fill_ns, last_trade_id = excluded.last_trade_id"
                " WHERE excluded.last_fill_ns >= cursors.last_fill_ns",
                (fill["venue"], ts, str(fill["trade_id"])))
            return True

    def record_balance(self, venue: str, balances: dict[str, dict[str, float | None]], local_ns: int,
                       venue_ns: int | None = None) -> None:
        """A balance snapshot: ``{asset: {"free", "used", "total"}}`` (ccxt's per-asset shape)."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO balances (venue, asset, free, used, total, venue_ns, local_ns) VALUES (?,?,?,?,?,?,?)",
                [(venue, asset, b.get("free"), b.get("used"), b.get("total"), venue_ns, local_ns)
                 for asset, b in balances.items()])

    # -- reads ----------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def intents(self) -> list[dict[str, Any]]:
        """Every intent in decision order."""
        return [dict(r) for r in self.db.execute("SELECT * FROM intents ORDER BY seq")]

    def open_orders(self, venue: str | None = None) -> list[dict[str, Any]]:
        """Orders not in a final state (pending new, open, partially filled, pending cancel, unknown):
        what reconciliation asks each venue about."""
        q = f"SELECT * FROM orders WHERE state NOT IN ({','.join('?' * len(FINAL_STATES))})"
        args: list[Any] = list(FINAL_STATES)
        if venue is not None:
            q += " AND venue = ?"
            args.append(venue)
        return [dict(r) for r in self.db.execute(q + " ORDER BY rowid", args)]

    def order(self, client_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,)).fetchone()
        return None if row is None else dict(row)

    def events(self, client_id: str | None = None) -> list[dict[str, Any]]:
        if client_id is None:
            return [dict(r) for r in self.db.execute("SELECT * FROM events ORDER BY seq")]
        return [dict(r) for r in self.db.execute("SELECT * FROM events WHERE client_id = ? ORDER BY seq", (client_id,))]

    def fills(self, venue: str | None = None) -> list[dict[str, Any]]:
        """Fills in the order they were journalled (of one venue, or all)."""
        if venue is None:
            return [dict(r) for r in self.db.execute("SELECT * FROM fills ORDER BY rowid")]
        return [dict(r) for r in self.db.execute("SELECT * FROM fills WHERE venue = ? ORDER BY rowid", (venue,))]

    def trade_ids(self, venue: str | None = None) -> set[tuple[str, str]]:
        """``(venue, trade_id)`` of every journalled fill: the dedupe set a restarted order manager loads."""
        q, args = "SELECT venue, trade_id FROM fills", ()
        if venue is not None:
            q, args = q + " WHERE venue = ?", (venue,)
        return {(r[0], r[1]) for r in self.db.execute(q, args)}

    def cursor(self, venue: str) -> tuple[int, str] | None:
        """``(last_fill_ns, last_trade_id)`` at ``venue``, None before its first fill."""
        row = self.db.execute("SELECT last_fill_ns, last_trade_id FROM cursors WHERE venue = ?", (venue,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def latest_balances(self, venue: str) -> dict[str, dict[str, float | None]]:
        """The last reported balance of each asset at ``venue``."""
        rows = self.db.execute(
            "SELECT asset, free, used, total FROM balances WHERE seq IN"
            " (SELECT MAX(seq) FROM balances WHERE venue = ? GROUP BY asset) ORDER BY asset", (venue,))
        return {r[0]: {"free": r[1], "used": r[2], "total": r[3]} for r in rows}

    def fills_frame(self) -> pl.DataFrame:
        """The live fill log with the backtest's fills.parquet columns (FILLS_SCHEMA), in journal order.

        ``ts`` is the venue's fill time (ours when the venue gave none), ``arrival_ts`` when the order
        reached the venue (its venue creation time when reported, else the fill time), ``order_id`` the
        core's client order id as an integer (the backtest's order ids are the same numbers)."""
        rows = self.db.execute(
            "SELECT COALESCE(venue_ns, local_ns), COALESCE(arrival_ns, venue_ns, local_ns), local_ns, venue, instrument,"
            " side, price, qty, fee, liquidity, cid, tag, fair, multiplier FROM fills ORDER BY rowid").fetchall()
        cols = list(FILLS_SCHEMA)
        data = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
        for c in ("fair", "multiplier"):
            data[c] = [math.nan if x is None else x for x in data[c]]
        return pl.DataFrame(data, schema=FILLS_SCHEMA)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _real(x: float | None) -> float | None:
    """NaN is stored as NULL (SQLite has no NaN) and read back as NaN."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


__all__ = ["FILLS_SCHEMA", "FINAL_STATES", "JOURNAL_NAME", "Journal", "JournalError", "SCHEMA_VERSION"]
