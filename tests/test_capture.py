"""Raw Binance / Bybit websocket captures: book sync as each venue documents it, gaps by line, L1 verification, trades.

The fixtures in tests/fixtures/captures are written by hand; each line's role is listed in the
expected events below (a stale diff, a gap, an interleaved REST snapshot, a Bybit u=1 restart).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from data.convert import convert_files
from data.convert.source import Job
from data.schema import F_BATCH_END as E, F_CLEAR as C, KIND_DEPTH as D, KIND_SNAPSHOT as S, KIND_TRADE as T
from data.store import read_partition
from stockbridge.config import load_config
from stockbridge.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CAP = FIX / "captures"
CONFIG = FIX / "capture_config.toml"
SPOT = CAP / "binance_spot_aaplxusdt.txt.gz"
USDM = CAP / "binance_usdm_aaplxusdt.txt"
BYBIT = CAP / "bybit_orderbook_aaplxusdt.txt"
T0 = 1_751_846_400_000_000_000  # 2025-07-07 00:00 UTC, ns
MS = 1_000_000


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def stored(store, venue):
    frame = read_partition(store, venue, "AAPLx", "2025-07-07")
    return [(k, s, f, (x - T0) // MS, (loc - T0) // MS, p, q, i) for k, s, f, x, loc, p, q, i in
            frame.select("kind", "side", "flags", "exch_ts", "local_ts", "price", "size", "id").iter_rows()]


def test_binance_spot_sync_gap_resync_and_l1(cfg, tmp_path):
    [r] = convert_files("binance", [SPOT], Job(cfg, "binance", out=tmp_path))
    assert r.format == "binance spot capture" and r.source_rows == 16
    assert stored(tmp_path, "binance") == [
        # line 2: REST snapshot (no exchange time: the receive time)
        (S, 1, C, 100, 100, 211.40, 3.0, 0), (S, 1, 0, 100, 100, 211.30, 5.0, 0),
        (S, -1, 0, 100, 100, 211.60, 2.0, 0), (S, -1, E, 100, 100, 211.70, 4.0, 0),
        # line 3 (u=105 <= lastUpdateId) is stale; line 4 (U=104 <= 106 <= u=107) is the first applied
        (D, 1, E, 240, 250, 211.45, 1.0, 0),
        (T, 1, 0, 289, 300, 211.60, 0.5, 501),        # line 6: m=false, the buyer took
        (D, -1, E, 340, 350, 211.60, 0.0, 0),         # line 7: U=108 follows 107
        (D, -1, E, 440, 450, 211.65, 1.0, 0),         # line 10: U=109 follows 108
        # line 11: U=112 after u=110 is a gap; line 12 waits for the snapshot of line 13
        (S, 1, C, 700, 700, 211.50, 2.0, 0), (S, -1, E, 700, 700, 211.55, 1.0, 0),
        (D, 1, E, 740, 750, 211.52, 1.0, 0),          # line 14: U=119 <= 121 <= u=121
        (T, -1, 0, 789, 800, 211.52, 0.1, 9001),      # line 15: aggTrade, m=true, the seller took
    ]
    assert r.gaps == [11]
    assert dict(r.skipped) == {
        "depth diffs before the first snapshot": 1,
        "stale depth diffs (u <= lastUpdateId)": 1,
        "L1 lines verified against the rebuilt book (match)": 4,  # lines 5, 8, 9 (buffered until line 10), 16
        "book gaps (re-synced at the next snapshot)": 1,
        "depth diffs while out of sync": 2,
    }


def test_binance_usdm_uses_pu(cfg, tmp_path):
    [r] = convert_files("binance", [USDM], Job(cfg, "binance_usdm", out=tmp_path))
    assert r.format == "binance usd-m capture"
    assert stored(tmp_path, "binance_usdm") == [
        (S, 1, C, 90, 100, 211.40, 3.0, 0), (S, 1, 0, 90, 100, 211.30, 5.0, 0), (S, -1, E, 90, 100, 211.60, 2.0, 0),
        (D, 1, E, 240, 250, 211.45, 1.0, 0),                                      # U=995 <= 1000 <= u=1003
        (D, 1, 0, 340, 350, 211.45, 0.0, 0), (D, -1, E, 340, 350, 211.58, 0.5, 0),  # pu=1003
    ]
    assert r.gaps == [7]  # pu=1009 after u=1006
    assert r.skipped["stale depth diffs (u < lastUpdateId)"] == 1
    assert r.skipped["L1 lines verified against the rebuilt book (match)"] == 2


def test_binance_first_diff_ending_at_last_update_id(cfg, tmp_path):
    # u == lastUpdateId: stale on spot (u <= lastUpdateId), the first applied diff on USD-M (U <= lastUpdateId <= u)
    snap = '1751846400100000000 {"lastUpdateId":50,"bids":[["211.40","3.0"]],"asks":[["211.60","2.0"]]}'
    for futures, applied in ((False, 0), (True, 1)):
        pu = ',"pu":44' if futures else ""
        diff = f'1751846400200000000 {{"e":"depthUpdate","E":1751846400190,"s":"AAPLXUSDT","U":45,"u":50{pu},"b":[["211.41","1.0"]],"a":[]}}'
        path = tmp_path / f"cap{futures}.txt"
        path.write_text(snap + "\n" + diff + "\n")
        [r] = convert_files("binance", [path], Job(cfg, "binance"))
        assert r.written["AAPLx"] == 2 + applied and not r.gaps


def test_bybit_snapshot_delta_gap_restart(cfg, tmp_path):
    [r] = convert_files("bybit", [BYBIT], Job(cfg, "bybit", out=tmp_path))
    assert stored(tmp_path, "bybit") == [
        (S, 1, C, 90, 100, 211.40, 3.0, 0), (S, 1, 0, 90, 100, 211.30, 5.0, 0), (S, -1, E, 90, 100, 211.60, 2.0, 0),
        (D, 1, E, 190, 200, 211.45, 1.0, 0),                                      # u=501
        (T, 1, 0, 240, 250, 211.60, 0.5, 2290000000012345),
        (D, -1, 0, 290, 300, 211.60, 0.0, 0), (D, -1, E, 290, 300, 211.65, 1.0, 0),  # u=502; line 7 repeats it (stale)
        # line 8: u=504 after 502 is a gap, line 9 waits; line 10: u=1, the service restarted
        (S, 1, C, 590, 600, 211.50, 2.0, 0), (S, -1, E, 590, 600, 211.55, 1.0, 0),
        (D, 1, E, 690, 700, 211.52, 1.0, 0),                                      # u=2
        (T, -1, 0, 790, 800, 211.52, 0.25, 2290000000012346),
    ]
    assert r.gaps == [8]
    assert dict(r.skipped) == {
        "L1 lines verified against the rebuilt book (match)": 3,  # orderbook.1 at seq 9000, 9005, 12001
        "stale deltas (u <= previous u)": 1,
        "book gaps (re-synced at the next snapshot)": 1,
        "deltas while out of sync": 2,  # lines 8 and 9
        "service restarts (u = 1, book replaced)": 1,
    }


def test_l1_mismatch_names_the_line(cfg, tmp_path):
    lines = gzip.decompress(SPOT.read_bytes()).decode().splitlines(keepends=True)
    lines[7] = lines[7].replace('"A":"4.0"', '"A":"3.0"')  # line 8: the ask size disagrees with the rebuilt book
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(lines))
    with pytest.raises(DataError) as err:
        convert_files("binance", [bad], Job(cfg, "binance", out=tmp_path / "s"))
    assert str(err.value) == (
        f"{bad}: row 8: field 'b': L1 line says best bid 211.45 x 1.0 / ask 211.7 x 3.0, "
        "the rebuilt book has 211.45 x 1.0 / 211.7 x 4.0 at the same update id"
    )
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("venue=*"))  # nothing half-written


@pytest.mark.parametrize(
    "line, row, message",
    [
        ('1751846400000000000 {"e":"depthUpdate"', 1, "not a JSON message"),
        ('abc {"e":"trade"}', 1, "field 'local_ts': line starts with 'abc'"),
        ('1751846400000000000 {"e":"trade","E":1,"s":"MSFTXUSDT","t":1,"p":"1","q":"1","T":1,"m":true}', 1, "field 's': symbol 'MSFTXUSDT' is not this capture's instrument"),
        ('1751846400000000000 {"e":"trade","E":1,"s":"AAPLXUSDT","t":1,"p":"NaN","q":"1","T":1,"m":true}', 1, "field 'p': nan is not a finite number"),
        ('1751846400000000000 {"e":"trade","E":1,"s":"AAPLXUSDT","t":1,"p":"1","q":"1","m":true}', 1, "field 'T': field is missing"),
    ],
)
def test_bad_lines_are_one_line_errors(cfg, tmp_path, line, row, message):
    path = tmp_path / "cap.txt"
    path.write_text(line + "\n")
    with pytest.raises(DataError) as err:
        convert_files("binance", [path], Job(cfg, "binance"))
    assert str(err.value).startswith(f"{path}: row {row}: ") and message in str(err.value), str(err.value)


def test_receive_time_going_back_is_an_error(cfg, tmp_path):
    path = tmp_path / "cap.txt"
    trade = '{"e":"trade","E":1751846400000,"s":"AAPLXUSDT","t":1,"p":"1","q":"1","T":1751846400000,"m":true}'
    path.write_text(f"1751846400000000005 {trade}\n1751846400000000001 {trade}\n")
    with pytest.raises(DataError, match=r"row 2: field 'local_ts': 1751846400000000001 ns is earlier than 1751846400000000005 ns"):
        convert_files("binance", [path], Job(cfg, "binance"))
