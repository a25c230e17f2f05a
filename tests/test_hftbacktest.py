"""hftbacktest .npz interoperability: constants pinned from hftbacktest's source, hand-made rows both ways, a store round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import data.convert.hftbacktest as hb
from data.convert import convert_files, detect_format
from data.convert.source import Job
from data.schema import F_BATCH_END as E, F_CLEAR as C, KIND_DEPTH, KIND_QUOTE, KIND_SESSION, KIND_SNAPSHOT, KIND_TRADE, empty
from data.store import read_partition, write_events
from stockbridge.config import load_config
from stockbridge.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CONFIG = FIX / "data_config.toml"
T = 1_751_846_400 * 1_000_000_000
MS = 1_000_000
EXL = (1 << 31) | (1 << 30)


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def test_constants_match_hftbacktest():
    # py-hftbacktest/hftbacktest/types.py and hftbacktest/src/types.rs (nkaz001/hftbacktest)
    assert (hb.DEPTH_EVENT, hb.TRADE_EVENT, hb.DEPTH_CLEAR_EVENT, hb.DEPTH_SNAPSHOT_EVENT, hb.DEPTH_BBO_EVENT) == (1, 2, 3, 4, 5)
    assert (hb.EXCH_EVENT, hb.LOCAL_EVENT, hb.BUY_EVENT, hb.SELL_EVENT) == (2147483648, 1073741824, 536870912, 268435456)
    assert hb.HFT_DTYPE.itemsize == 64
    assert [(n, hb.HFT_DTYPE[n].str) for n in hb.HFT_DTYPE.names] == [
        ("ev", "<u8"), ("exch_ts", "<i8"), ("local_ts", "<i8"), ("px", "<f8"), ("qty", "<f8"), ("order_id", "<u8"), ("ival", "<i8"), ("fval", "<f8")
    ]


def hft(*rows):
    out = np.zeros(len(rows), dtype=hb.HFT_DTYPE)
    for i, (ev, exch, local, px, qty, ival) in enumerate(rows):
        out[i] = (ev, exch, local, px, qty, 0, ival, 0.0)
    return out


BUY, SELL = 1 << 29, 1 << 28


def test_import_hand_made_rows(cfg, tmp_path):
    rows = hft(
        (EXL | 3, T, T + 5, 0.0, 0.0, 0),                    # clear
        (EXL | 4 | BUY, T, T + 5, 100.0, 2.0, 0),           # snapshot bid
        (EXL | 4 | SELL, T, T + 5, 100.5, 1.0, 0),          # snapshot ask
        ((1 << 31) | 1 | BUY, T + 10, T + 12, 100.1, 1.0, 0),  # exchange-only copy of the next row
        ((1 << 30) | 1 | BUY, T + 10, T + 12, 100.1, 1.0, 0),  # depth, local only
        (EXL | 2 | SELL, T + 20, T + 22, 100.0, 0.5, 77),   # trade, seller initiated, id 77
        (EXL | 10 | BUY, T + 30, T + 31, 100.0, 1.0, 0),    # L3 add order: not supported
        (EXL | 5 | BUY, T + 40, T + 41, 100.1, 3.0, 0),     # BBO bid
        (EXL | 5 | SELL, T + 40, T + 41, 100.4, 2.0, 0),    # BBO ask
    )
    path = tmp_path / "btcusdt_20250707.npz"
    np.savez_compressed(path, data=rows)
    assert detect_format(path) == "hftbacktest"
    [report] = convert_files("hftbacktest", [path], Job(cfg, "bybit", out=tmp_path / "s"))
    got = read_partition(tmp_path / "s", "bybit", "AAPLx", "2025-07-07").select("kind", "side", "flags", "exch_ts", "local_ts", "price", "size", "id").rows()
    assert got == [
        (KIND_SNAPSHOT, 1, C, T, T + 5, 100.0, 2.0, 0),
        (KIND_SNAPSHOT, -1, E, T, T + 5, 100.5, 1.0, 0),
        (KIND_DEPTH, 1, E, T + 10, T + 12, 100.1, 1.0, 0),
        (KIND_TRADE, -1, 0, T + 20, T + 22, 100.0, 0.5, 77),
        (KIND_QUOTE, 1, 0, T + 40, T + 41, 100.1, 3.0, 0),
        (KIND_QUOTE, -1, E, T + 40, T + 41, 100.4, 2.0, 0),
    ]
    assert dict(report.skipped) == {
        "exchange-only rows (repeat local rows)": 1,
        "event kind 10 rows (L3 order events or unknown; not supported)": 1,
        "clear rows (folded into the next row's F_CLEAR)": 1,
    }


def test_export_hand_made_rows_and_order_flags():
    ev = empty(4)
    ev["kind"] = [KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_TRADE, KIND_SESSION]
    ev["side"] = [1, -1, 1, 0]
    ev["flags"] = [C, E, 0, 0]
    # the trade's exchange time is before the snapshot's: it is exchange-ordered first, locally last
    ev["exch_ts"] = [T + 10, T + 10, T + 5, T + 30]
    ev["local_ts"] = [T + 20, T + 20, T + 25, T + 30]
    ev["price"] = [100.0, 100.5, 100.2, 0.0]
    ev["size"] = [1.0, 2.0, 0.3, 2.0]
    ev["id"] = [0, 0, 9, 0]
    rows, skipped = hb.to_hftbacktest(ev)
    assert dict(skipped) == {"session/multiplier rows (no hftbacktest kind)": 1}
    assert [(int(r["ev"]), int(r["exch_ts"] - T), int(r["local_ts"] - T), float(r["px"]), int(r["ival"])) for r in rows] == [
        ((1 << 31) | 2 | BUY, 5, 25, 100.2, 9),     # trade, exchange side first
        (EXL | 3, 10, 20, 0.0, 0),                   # clear before the snapshot levels
        (EXL | 4 | BUY, 10, 20, 100.0, 0),
        (EXL | 4 | SELL, 10, 20, 100.5, 0),
        ((1 << 30) | 2 | BUY, 5, 25, 100.2, 9),     # the trade again, local side
    ]
    # each processor's rows are in its own time order, as hftbacktest's validate_event_order requires
    exch = rows[(rows["ev"] & (1 << 31)) != 0]["exch_ts"]
    local = rows[(rows["ev"] & (1 << 30)) != 0]["local_ts"]
    assert np.all(np.diff(exch) >= 0) and np.all(np.diff(local) >= 0)


def test_store_round_trip_through_the_cli(run_cli, tmp_path):
    ev = empty(7)
    ev["kind"] = [KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_DEPTH, KIND_TRADE, KIND_DEPTH, KIND_DEPTH]
    ev["side"] = [1, 1, -1, -1, -1, 1, -1]
    ev["flags"] = [C, 0, E, E, 0, 0, E]
    ev["exch_ts"] = [T, T, T, T + 3 * MS, T + 4 * MS, T + 9 * MS, T + 9 * MS]
    ev["local_ts"] = ev["exch_ts"] + 2 * MS
    ev["price"] = [99.9, 100.0, 100.5, 100.4, 100.0, 100.1, 100.6]
    ev["size"] = [1.0, 2.0, 1.5, 0.7, 0.2, 3.0, 0.0]
    ev["id"] = [0, 0, 0, 0, 123, 0, 0]
    write_events(tmp_path / "a", "bybit", "AAPLx", ev)
    out = tmp_path / "x.npz"
    got = run_cli("data", "export-hftbacktest", tmp_path / "a", "--config", CONFIG, "--venue", "bybit", "--instrument", "AAPLx", "--out", out)
    assert got.returncode == 0, got.stderr
    assert "8 hftbacktest rows from 7 events" in got.stdout
    got = run_cli("data", "convert", "hftbacktest", out, "--config", CONFIG, "--venue", "kraken", "--out", tmp_path / "b")
    assert got.returncode == 0, got.stderr
    cols = ["kind", "side", "flags", "exch_ts", "local_ts", "price", "size", "id"]
    a = read_partition(tmp_path / "a", "bybit", "AAPLx", "2025-07-07").select(cols)
    b = read_partition(tmp_path / "b", "kraken", "AAPLx", "2025-07-07").select(cols)
    assert a.equals(b)


def test_bad_npz_is_one_line(cfg, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, other=np.zeros(3))
    with pytest.raises(DataError) as err:
        convert_files("hftbacktest", [path], Job(cfg, "bybit"))
    assert str(err.value) == f"{path}: field 'data': no array named 'data' in this .npz (hftbacktest saves its events as data=...)"
    np.savez_compressed(path, data=np.zeros(3))
    with pytest.raises(DataError, match="expected hftbacktest's 64-byte event rows"):
        convert_files("hftbacktest", [path], Job(cfg, "bybit"))
    rows = hft((EXL | 2 | BUY, T, T + 1, np.nan, 1.0, 0))
    np.savez_compressed(path, data=rows)
    with pytest.raises(DataError, match=r"field 'px': nan is not a finite number"):
        convert_files("hftbacktest", [path], Job(cfg, "bybit"))
