"""Bad data: one-line errors naming file, row and field; ``--repair`` drops and counts; the L2 book check."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.convert import convert_files
from data.convert.source import Job
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_SNAPSHOT, empty
from data.store import list_partitions, read_partition, write_events
from data.validate import BookState, book_crossed, drop_summary, validate_store
from stockbridge.config import load_config
from stockbridge.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CONFIG = FIX / "data_config.toml"
L2_HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
QUOTES_HEADER = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
T0 = 1_751_846_400_000_000  # µs


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def l2(ts_offsets_us, rest, local=None):
    """incremental_book_L2 lines from (timestamp offset µs, 'is_snapshot,side,price,amount')."""
    lines = []
    for i, (dt, tail) in enumerate(zip(ts_offsets_us, rest)):
        lt = T0 + (local[i] if local is not None else dt) + 100
        lines.append(f"bybit-spot,AAPLXUSDT,{T0 + dt},{lt},{tail}\n")
    return L2_HEADER + "".join(lines)


SNAP = [(0, "true,ask,100.2,1"), (0, "true,bid,100.0,1")]


def one_line_error(path: Path, cfg, venue="bybit", fmt="tardis", **job) -> str:
    with pytest.raises(DataError) as err:
        convert_files(fmt, [path] if not isinstance(path, list) else path, Job(cfg, venue, **job))
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "body, row, field, message",
    [
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,211.5,1\nx,AAPLXUSDT,{T0},{T0},2,buy,abc,1\n", 2, "price", "cannot parse 'abc'"),
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,211.5,\n", 1, "amount", "value is missing"),
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,211.5,1\nx,AAPLXUSDT,{T0},{T0},2,buy,211.5,0\n", 2, "amount", "0.0 is not positive"),
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,-3,1\n", 1, "price", "-3.0 is not positive"),
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,long,211.5,1\n", 1, "side", "'long' is not one of buy, sell, unknown"),
        (TRADES_HEADER + f"x,MSFTXUSDT,{T0},{T0},1,buy,211.5,1\n", 1, "symbol", "symbol 'MSFTXUSDT' matches none of this venue's symbols in the config (AAPLXUSDT; "),
        (
            TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0 + 5},1,buy,211.5,1\nx,AAPLXUSDT,{T0},{T0 + 9},1,buy,211.5,1\nx,AAPLXUSDT,{T0},{T0 + 7},1,buy,211.5,1\n",
            3,
            "local_timestamp",
            f"{(T0 + 7) * 1000} ns is earlier than {(T0 + 9) * 1000} ns",
        ),
        (QUOTES_HEADER + f"k,AAPLX/USDT,{T0},{T0},1,211.5,211.5,2\n", 1, "bid_price", "crossed or locked quote: bid 211.5 >= ask 211.5"),
        (
            l2([0, 0, 10, 10], ["true,ask,100.2,1", "true,bid,100.0,1", "false,bid,100.3,2", "false,ask,100.25,1"]),
            4,
            "price",
            "crossed or locked book after this update: best bid 100.3 >= best ask 100.2",
        ),
        (l2([0, 0], ["true,ask,100.2,0", "true,bid,100.0,1"]), 1, "amount", "0.0 is not positive"),
        (TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,211.5,1,surplus\n", 1, None, "more fields than the 8 expected"),
    ],
    ids=["unparseable", "missing", "zero-size", "negative-price", "bad-side", "unknown-symbol", "non-monotonic", "locked-quote", "crossed-l2", "zero-snapshot-level", "ragged"],
)
def test_bad_tardis_rows_name_file_row_field(cfg, tmp_path, body, row, field, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    text = one_line_error(path, cfg)
    where = f"{path}: row {row}: field '{field}': " if field else f"{path}: row {row}: "
    assert text.startswith(where), text
    assert message in text, text


def test_depth_size_zero_is_a_deletion_not_an_error(cfg, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(l2([0, 0, 0, 10], ["true,ask,100.2,1", "true,ask,100.3,1", "true,bid,100.0,1", "false,ask,100.2,0"]))
    [report] = convert_files("tardis", [path], Job(cfg, "bybit"))
    assert report.written["AAPLx"] == 4 and not report.dropped


def test_lobster_row_count_mismatch_names_both_files(cfg, tmp_path):
    msg, book = tmp_path / "msg.csv", tmp_path / "book.csv"
    msg.write_text("34200.0,1,1,10,2000100,1\n34201.0,1,2,10,2000100,1\n")
    book.write_text("2000200,30,2000100,10\n")
    text = one_line_error([msg, book], cfg, venue="broker", fmt="lobster", date="2025-07-07")
    assert str(msg) in text and str(book) in text and "has 2 rows" in text and "has 1" in text


def test_lobster_bad_rows(cfg, tmp_path):
    msg, book = tmp_path / "msg.csv", tmp_path / "book.csv"
    msg.write_text("34200.0,1,1,10,2000100,1\n34201.0,1,2,10,2000100,2\n")
    book.write_text("2000200,30,2000100,10\n2000200,30,2000100,10\n")
    text = one_line_error([msg, book], cfg, venue="broker", fmt="lobster", date="2025-07-07")
    assert text == f"{msg}: row 2: field 'direction': direction 2 is not 1 or -1"
    msg.write_text("34200.0,1,1,10,2000100,1\n34201.0,1,2,10,2000100,1\n")
    book.write_text("2000200,30,2000100,10\n2000100,30,2000100,10\n")
    text = one_line_error([msg, book], cfg, venue="broker", fmt="lobster", date="2025-07-07")
    assert text == f"{book}: row 2: field 'bid_px_1': crossed or locked quote: bid 200.01 >= ask 200.01"


def test_nbbo_time_without_zone(cfg, tmp_path):
    path = tmp_path / "nbbo.csv"
    path.write_text("ts,bid,bid_size,ask,ask_size\n2025-07-07T13:30:00Z,210,1,210.1,1\n2025-07-07T13:30:01,210,1,210.1,1\n")
    text = one_line_error(path, cfg, venue="broker", fmt="nbbo")
    assert text == f"{path}: row 2: field 'ts': cannot parse '2025-07-07T13:30:01' (expected ISO-8601 with a zone or integer ns)"


def test_ohlcv_inconsistent_bar(cfg, tmp_path):
    path = tmp_path / "bars.json"
    path.write_text("[[1751846400000, 211.5, 211.6, 211.4, 211.55, 1], [1751846460000, 211.5, 211.4, 211.3, 211.45, 1]]")
    assert one_line_error(path, cfg, fmt="ccxt-ohlcv") == f"{path}: row 2: field 'high': high 211.4 is below open, close or low"


def test_repair_drops_and_counts(cfg, tmp_path):
    # rows 4 and 5 go back in local time; rows 6-7 are one update that locks the book.
    body = l2(
        [0, 0, 10, 10, 10, 20, 20, 30],
        ["true,ask,100.2,1", "true,bid,100.0,1", "false,bid,100.1,1", "false,bid,99.9,1", "false,bid,99.8,1",
         "false,bid,100.2,5", "false,ask,100.5,1", "false,ask,100.4,3"],
        local=[0, 0, 10, 5, 5, 20, 20, 30],
    )
    path = tmp_path / "l2.csv.gz"
    path.write_bytes(gzip.compress(body.encode()))
    out = tmp_path / "store"
    [report] = convert_files("tardis", [path], Job(cfg, "bybit", out=out, repair=True))
    assert drop_summary(report.dropped) == "dropped 4 rows: 2 non-monotonic local_timestamp, 2 crossed book"
    got = read_partition(out, "bybit", "AAPLx", "2025-07-07").select("kind", "side", "flags", "price", "size").rows()
    assert got == [
        (KIND_SNAPSHOT, -1, F_CLEAR, 100.2, 1.0),
        (KIND_SNAPSHOT, 1, F_BATCH_END, 100.0, 1.0),
        (KIND_DEPTH, 1, F_BATCH_END, 100.1, 1.0),
        (KIND_DEPTH, -1, F_BATCH_END, 100.4, 3.0),
    ]
    assert report.written["AAPLx"] == 4 and report.source_rows == 8


def test_repair_other_formats(cfg, tmp_path):
    trades = tmp_path / "t.csv"
    trades.write_text("ts,price,size,side\n1,10,1,buy\n2,-1,1,buy\n3,10,,sell\n4,10,1,hold\n5,10,1,sell\n")
    [report] = convert_files("trades-csv", [trades], Job(cfg, "broker", repair=True))
    assert drop_summary(report.dropped) == "dropped 3 rows: 1 non-positive price, 1 missing/unparseable size, 1 missing/unparseable side"
    assert report.written["AAPL"] == 2


# -- stored data ------------------------------------------------------------------------------------

def test_validate_store_ok_and_unknown_venue(cfg, tmp_path):
    convert_files("tardis", [FIX / "tardis_incremental_book_L2.csv.gz"], Job(cfg, "bybit", out=tmp_path))
    assert validate_store(tmp_path, cfg.venue_ids(), cfg.instrument_ids()) == {"partitions": 1, "rows": 10}
    ev = empty(1)
    ev["kind"], ev["side"], ev["price"], ev["size"], ev["local_ts"] = 4, 1, 10.0, 1.0, T0 * 1000
    write_events(tmp_path, "binance", "AAPLx", ev)
    with pytest.raises(DataError) as err:
        validate_store(tmp_path, cfg.venue_ids(), cfg.instrument_ids())
    assert str(err.value).endswith("venue=binance/instrument=AAPLx/date=2025-07-07: field 'venue': venue 'binance' is not in the config (known: kraken, bybit, broker)")


def test_validate_store_bad_values_and_crossed(cfg, tmp_path):
    ev = empty(3)
    ev["kind"] = [KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_DEPTH]
    ev["side"] = [1, -1, 1]
    ev["flags"] = [F_CLEAR, F_BATCH_END, F_BATCH_END]
    ev["price"] = [100.0, 100.5, 100.5]
    ev["size"] = [1.0, 1.0, 2.0]
    ev["local_ts"] = T0 * 1000 + np.arange(3)
    write_events(tmp_path, "bybit", "AAPLx", ev)
    [(v, i, d)] = list_partitions(tmp_path)
    with pytest.raises(DataError) as err:
        validate_store(tmp_path, cfg.venue_ids(), cfg.instrument_ids())
    assert str(err.value).endswith(f"date={d}: row 3: field 'price': crossed or locked book after this update: best bid 100.5 >= best ask 100.5")
    ev["size"][2] = -1.0
    write_events(tmp_path / "neg", "bybit", "AAPLx", ev)
    with pytest.raises(DataError, match=r"row 3: field 'size': -1.0 is not positive"):
        validate_store(tmp_path / "neg", cfg.venue_ids(), cfg.instrument_ids())


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    from stockbridge.cli import main

    path = tmp_path / "bad.csv"
    path.write_text(TRADES_HEADER + f"x,AAPLXUSDT,{T0},{T0},1,buy,abc,1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "convert", "tardis", str(path), "--config", str(CONFIG), "--venue", "bybit", "--out", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}: row 1: field 'price': cannot parse 'abc'\n"


# -- the L2 book kernel against a plain-Python book ------------------------------------------------

def reference_crossed(events, repair):
    """Per-row bad flags from dict books, applying each group and undoing it if it crosses."""
    bids, asks, bad, group = {}, {}, [], []
    saved = None
    for i, (kind, side, flags, price, size) in enumerate(events):
        if not group:
            saved = (dict(bids), dict(asks))
        group.append(i)
        if flags & F_CLEAR:
            bids.clear()
            asks.clear()
        book = bids if side > 0 else asks
        if size > 0:
            book[price] = size
        else:
            book.pop(price, None)
        if flags & F_BATCH_END or i == len(events) - 1:
            crossed = bids and asks and max(bids) >= min(asks)
            if crossed:
                bad += group
                if not repair:
                    return bad
                bids, asks = saved
            group = []
    return bad


def test_repair_undoes_a_crossing_update():
    kind = np.full(4, KIND_DEPTH, dtype=np.uint8)
    side = np.array([1, -1, 1, -1], dtype=np.int8)
    flags = np.full(4, F_BATCH_END, dtype=np.uint16)
    price = np.array([100.0, 101.0, 102.0, 101.5])
    size = np.ones(4)
    state = BookState()
    bad, first, bid, ask = book_crossed(state, kind, side, flags, price, size, True)
    assert bad.tolist() == [False, False, True, False] and first == 2 and (bid, ask) == (102.0, 101.0)
    assert state.n.tolist() == [1, 2] and state.keys[0, 0] == 100.0 and state.keys[1, :2].tolist() == [-101.5, -101.0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(-1, 1).filter(bool), st.integers(95, 105), st.sampled_from([0.0, 1.0, 2.0]), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    st.booleans(),
)
def test_book_kernel_matches_reference(rows, repair):
    kind = np.array([KIND_SNAPSHOT if snap else KIND_DEPTH for snap, *_ in rows], dtype=np.uint8)
    side = np.array([s for _, s, *_ in rows], dtype=np.int8)
    price = np.array([float(p) for _, _, p, _, _ in rows])
    size = np.array([q for *_, q, _ in rows])
    flags = np.array([F_BATCH_END if end else 0 for *_, end in rows], dtype=np.uint16)
    starts = np.r_[True, kind[1:] != kind[:-1]] & (kind == KIND_SNAPSHOT)
    flags[starts] |= F_CLEAR
    events = list(zip(kind, side, flags, price, size))
    want = reference_crossed(events, repair)
    bad, first, _, _ = book_crossed(BookState(), kind, side, flags, price, size, repair)
    assert sorted(np.flatnonzero(bad).tolist()) == sorted(want)
    assert (first >= 0) == bool(want)
