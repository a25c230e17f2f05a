"""The journal: durability settings, fills unique by venue trade id, cursors, the reconciliation
reads, the fill log in the backtest's columns, and a SIGKILL in the middle of writing."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

import execution.journal as journal_module
from execution.journal import FILLS_SCHEMA, Journal, JournalError

ROOT = Path(__file__).resolve().parents[2]


def fill(trade_id: str, venue: str = "alpha", venue_ns: int | None = 1_000, **kw) -> dict:
    base = {"venue": venue, "trade_id": trade_id, "client_id": "sb0000000000001", "cid": 1, "venue_order_id": "V1",
            "instrument": "AAPLx", "side": 1, "price": 99.95, "qty": 0.5, "fee": -0.005, "fee_cost": -0.005,
            "fee_currency": "USDT", "liquidity": "maker", "tag": "quote", "arrival_ns": 900, "venue_ns": venue_ns,
            "local_ns": 1_500, "fair": 100.0, "multiplier": 1.0, "booked": True}
    return base | kw


def intent(client_id: str, cid: int, action: str = "new", state: str = "pending_new") -> dict:
    return {"cid": cid, "client_id": client_id, "action": action, "venue": "alpha", "instrument": "AAPLx",
            "symbol": "AAPLX/USDT", "side": 1, "price": 99.95, "qty": 2.0, "tif": "GTC", "post_only": 1, "tag": "quote",
            "decided_ns": 100, "state": state}


def test_the_journal_is_in_wal_mode_in_the_run_directory_and_full_sync_fsyncs_the_wal_before_a_write_returns(
        tmp_path, monkeypatch):
    real, synced = os.fsync, []

    def fsync(fd):
        real(fd)
        synced.append(os.fstat(fd).st_ino)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    with Journal(tmp_path) as j:
        assert j.path == tmp_path / "journal.sqlite"
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the fsync is the journal's own
        wal = os.stat(f"{j.path}-wal").st_ino
        synced.clear()
        j.record_event("alpha", "ack", 5)  # off an event loop: committed and on disk when it returns
        assert synced == [wal]
    with Journal(tmp_path / "n.sqlite", sync="normal") as j:
        synced.clear()
        j.record_event("alpha", "ack", 5)
        assert synced == []  # left to the operating system


async def test_on_an_event_loop_an_answers_fsync_runs_in_a_thread_and_durable_waits_for_it(tmp_path, monkeypatch):
    real, gate, synced = os.fsync, threading.Event(), []

    def slow_disk(fd):  # the journal's thread: the loop must not wait for it
        assert gate.wait(5), "the event loop was held while the WAL was being fsynced"
        real(fd)
        synced.append(fd)

    with Journal(tmp_path) as j:
        monkeypatch.setattr(journal_module.os, "fsync", slow_disk)
        j.record_event("alpha", "ack", 5)  # grouped: committed once the loop has run what is ready ...
        j.flush()  # ... which is now
        waiting = asyncio.ensure_future(j.durable())
        await asyncio.sleep(0.05)  # the disk is slow: the loop goes on meanwhile
        assert not waiting.done() and synced == []
        assert j.events()[-1]["kind"] == "ack"  # committed, its fsync under way
        gate.set()
        await asyncio.wait_for(waiting, 5)
        assert len(synced) >= 1
        monkeypatch.setattr(journal_module.os, "fsync", real)


def test_a_fill_is_journalled_once_by_venue_and_trade_id_and_the_cursor_only_moves_forward(tmp_path):
    with Journal(tmp_path) as j:
        assert j.record_fill(fill("T1", venue_ns=2_000))
        assert not j.record_fill(fill("T1", venue_ns=2_000, qty=9.0))  # the REST copy of the same fill
        assert j.record_fill(fill("T1", venue="beta"))                  # another venue's T1 is another fill
        assert j.record_fill(fill("T0", venue_ns=1_000))                # an older fill found late
        assert [(f["venue"], f["trade_id"], f["qty"]) for f in j.fills()] == [
            ("alpha", "T1", 0.5), ("beta", "T1", 0.5), ("alpha", "T0", 0.5)]
        assert j.cursor("alpha") == (2_000, "T1")
        assert j.cursor("gamma") is None
        assert j.trade_ids("alpha") == {("alpha", "T1"), ("alpha", "T0")}


def test_open_orders_are_those_not_final_and_a_client_id_is_never_opened_twice(tmp_path):
    with Journal(tmp_path) as j:
        j.record_intents([intent("sb000000000000a", 10), intent("sb000000000000b", 11)], local_ns=5)
        j.record_event("alpha", "ack", 6, client_id="sb000000000000a", state="open", venue_order_id="V1")
        j.record_event("alpha", "reject", 7, client_id="sb000000000000b", state="rejected", detail={"reason": "x"})
        j.record_intents([intent("sb000000000000a", 10, action="cancel")], local_ns=8)
        assert [o["client_id"] for o in j.open_orders()] == ["sb000000000000a"]
        assert j.open_orders("beta") == []
        assert j.order("sb000000000000a")["venue_order_id"] == "V1"
        with pytest.raises(sqlite3.IntegrityError):
            j.record_intents([intent("sb000000000000a", 10)], local_ns=9)
        # the failed transaction left nothing behind
        assert len(j.intents()) == 3


def test_the_latest_balance_per_asset_is_read_back(tmp_path):
    with Journal(tmp_path) as j:
        j.record_balance("alpha", {"USDT": {"free": 10.0, "used": 0.0, "total": 10.0}}, local_ns=1)
        j.record_balance("alpha", {"USDT": {"free": 8.0, "used": 2.0, "total": 10.0},
                                   "AAPLX": {"free": 1.0, "used": None, "total": 1.0}}, local_ns=2, venue_ns=2)
        assert j.latest_balances("alpha") == {"AAPLX": {"free": 1.0, "used": None, "total": 1.0},
                                              "USDT": {"free": 8.0, "used": 2.0, "total": 10.0}}


def test_the_live_fill_log_has_the_backtest_fill_log_columns_and_dtypes(tmp_path):
    from backtest.runner import Replay

    no_fills = SimpleNamespace(fills=[], marks=[], tables=SimpleNamespace(venue_names=("alpha",), instrument_names=("AAPLx",)))
    backtest_schema = dict(Replay.fills_frame(no_fills).schema)
    assert dict(FILLS_SCHEMA) == backtest_schema
    with Journal(tmp_path) as j:
        j.record_fill(fill("T1", venue_ns=None, arrival_ns=None, fair=None, multiplier=math.nan))
        j.record_fill(fill("T2", side=-1, liquidity="taker", cid=2))
        df = j.fills_frame()
    assert dict(df.schema) == backtest_schema
    assert df["ts"].to_list() == [1_500, 1_000]          # no venue time: ours
    assert df["arrival_ts"].to_list() == [1_500, 900]
    assert df["side"].to_list() == [1, -1] and df["order_id"].to_list() == [1, 2]
    assert math.isnan(df["multiplier"][0]) and df["fair"][1] == 100.0
    assert df.filter(pl.col("liquidity") == "taker").height == 1


def test_a_journal_of_another_schema_version_is_refused_by_name(tmp_path):
    with Journal(tmp_path) as j:
        j.set_meta("schema_version", "99")
    with pytest.raises(JournalError, match="journal schema 99"):
        Journal(tmp_path)
    (tmp_path / "junk").mkdir()
    bad = tmp_path / "junk" / "journal.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open the journal"):
        Journal(bad)


def test_redacted_secrets_never_reach_the_file(tmp_path):
    secret = "sk-live-AAAABBBBCCCCDDDD"
    with Journal(tmp_path, redact=[secret, "short"]) as j:
        j.record_event("alpha", "reject", 1, detail={"reason": f"invalid key {secret}"})
        j.set_meta("note", f"started with {secret}")
        assert "***" in j.events()[0]["detail"] and j.meta("note") == "started with ***"
    for p in tmp_path.iterdir():
        assert secret.encode() not in p.read_bytes()


WRITER = textwrap.dedent("""
    import sys
    from execution.journal import Journal
    j = Journal(sys.argv[1])
    n = 0
    while True:
        j.record_intents([{"cid": n + 1, "client_id": f"sb{n + 1:013d}", "action": "new", "venue": "alpha",
                           "instrument": "AAPLx", "symbol": "AAPLX/USDT", "side": 1, "price": 99.95, "qty": 2.0,
                           "tif": "GTC", "post_only": 1, "tag": "quote", "decided_ns": n, "state": "pending_new"}], n)
        j.record_fill({"venue": "alpha", "trade_id": f"T{n}", "cid": n + 1, "instrument": "AAPLx", "side": 1,
                       "price": 99.95, "qty": 0.5, "fee": 0.0, "liquidity": "maker", "tag": "quote", "local_ns": n})
        n += 1
        print(n, flush=True)  # committed: both rows are on disk
""")


def test_a_writer_killed_with_sigkill_loses_nothing_it_committed_and_the_file_opens_cleanly(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    committed = 0
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and committed >= 60
    assert (tmp_path / "journal.sqlite-wal").exists()  # killed before any clean close
    with Journal(tmp_path) as j:
        assert j.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n_fills, n_intents = len(j.fills()), len(j.intents())
        assert n_fills >= committed and n_intents >= committed
        # every fill has its intent, and no transaction is half there
        assert n_intents in (n_fills, n_fills + 1)
        assert [f["trade_id"] for f in j.fills()] == [f"T{k}" for k in range(n_fills)]
        assert j.cursor("alpha") == (n_fills - 1, f"T{n_fills - 1}")
