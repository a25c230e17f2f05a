"""Converters on small files written to each format's published layout: the exact events they store."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import data.convert.source as source
from data.convert import convert_files, detect_format
from data.convert.source import Job
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE
from data.store import list_partitions, read_bars, read_partition
from stockbridge.config import load_config
from stockbridge.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CONFIG = FIX / "data_config.toml"
LOB_MSG = FIX / "lobster" / "AAPL_2025-03-10_34200000_57600000_message_2.csv"
LOB_BOOK = FIX / "lobster" / "AAPL_2025-03-10_34200000_57600000_orderbook_2.csv"
US = 1_000
S = 1_000_000_000
DAY0 = 1_751_846_400  # 2025-07-07 00:00:00 UTC, seconds
C, E = F_CLEAR, F_BATCH_END


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def rows(store: Path, venue: str, instrument: str, date: str) -> list[tuple]:
    """(kind, side, flags, exch_ts, local_ts, price, size, id) of one stored partition."""
    frame = read_partition(store, venue, instrument, date)
    return list(frame.select("kind", "side", "flags", "exch_ts", "local_ts", "price", "size", "id").iter_rows())


def utc_ns(*args) -> int:
    """ns since the epoch of a UTC wall time (datetime arithmetic, no time-zone database)."""
    return calendar.timegm(datetime(*args, tzinfo=timezone.utc).utctimetuple()) * S


def test_tardis_incremental_gzip_snapshot_then_updates(cfg, tmp_path):
    src = FIX / "tardis_incremental_book_L2.csv.gz"
    assert src.read_bytes()[:2] == b"\x1f\x8b"
    [report] = convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path))
    assert report.format == "tardis incremental_book_L2"
    assert report.source_rows == 10 and dict(report.written) == {"AAPLx": 10} and not report.dropped
    t0, t1, t2, t3, t4 = (DAY0 * S + d * US for d in (0, 105_000, 230_000, 1_000_000, 1_500_000))
    l0, l1, l2, l3, l4 = (DAY0 * S + d * US for d in (150, 105_210, 230_400, 1_000_100, 1_500_100))
    assert rows(tmp_path, "bybit", "AAPLx", "2025-07-07") == [
        (KIND_SNAPSHOT, -1, C, t0, l0, 211.52, 3.5, 0),
        (KIND_SNAPSHOT, -1, 0, t0, l0, 211.55, 10.0, 0),
        (KIND_SNAPSHOT, 1, 0, t0, l0, 211.48, 2.0, 0),
        (KIND_SNAPSHOT, 1, E, t0, l0, 211.45, 7.25, 0),
        (KIND_DEPTH, 1, 0, t1, l1, 211.48, 0.0, 0),
        (KIND_DEPTH, 1, E, t1, l1, 211.5, 1.5, 0),
        (KIND_DEPTH, -1, E, t2, l2, 211.52, 1.0, 0),
        (KIND_SNAPSHOT, -1, C, t3, l3, 211.6, 4.0, 0),
        (KIND_SNAPSHOT, 1, E, t3, l3, 211.4, 4.0, 0),
        (KIND_DEPTH, -1, E, t4, l4, 211.58, 2.0, 0),
    ]


def test_tardis_incremental_same_events_in_tiny_batches(cfg, tmp_path, monkeypatch):
    """Batch boundaries inside an update group or a snapshot change nothing (the group is held back)."""
    src = FIX / "tardis_incremental_book_L2.csv.gz"
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path / "one"))
    monkeypatch.setattr(source, "BATCH_ROWS", 3)
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path / "many"))
    assert rows(tmp_path / "many", "bybit", "AAPLx", "2025-07-07") == rows(tmp_path / "one", "bybit", "AAPLx", "2025-07-07")


def test_tardis_quotes_two_rows_per_line(cfg, tmp_path):
    convert_files("tardis", [FIX / "tardis_quotes.csv"], Job(cfg, "kraken", out=tmp_path))
    t0, l0 = DAY0 * S, DAY0 * S + 2_000 * US
    t1, l1 = DAY0 * S + 500_000 * US, DAY0 * S + 502_500 * US
    assert rows(tmp_path, "kraken", "AAPLx", "2025-07-07") == [
        (KIND_QUOTE, 1, 0, t0, l0, 211.4, 3.0, 0),
        (KIND_QUOTE, -1, E, t0, l0, 211.6, 12.5, 0),
        (KIND_QUOTE, 1, 0, t1, l1, 211.41, 4.2, 0),
        (KIND_QUOTE, -1, E, t1, l1, 211.58, 10.0, 0),
    ]


def test_tardis_trades_aggressor_and_ids(cfg, tmp_path):
    convert_files("tardis", [FIX / "tardis_trades.csv"], Job(cfg, "bybit", out=tmp_path))
    got = rows(tmp_path, "bybit", "AAPLx", "2025-07-07")
    assert got == [
        (KIND_TRADE, 1, 0, DAY0 * S + 100_000 * US, DAY0 * S + 100_300 * US, 211.52, 0.5, 2280000000001),
        (KIND_TRADE, -1, 0, DAY0 * S + 200_000 * US, DAY0 * S + 200_300 * US, 211.48, 1.25, 2280000000002),
        (KIND_TRADE, 0, 0, DAY0 * S + 300_000 * US, DAY0 * S + 300_300 * US, 211.5, 2.0, 0),
    ]


def test_tardis_book_snapshot_levels_bids_then_asks(cfg, tmp_path):
    [report] = convert_files("tardis", [FIX / "tardis_book_snapshot_2.csv"], Job(cfg, "bybit", out=tmp_path))
    assert report.format == "tardis book_snapshot_2"
    t0, l0 = DAY0 * S, DAY0 * S + 100 * US
    t1, l1 = (DAY0 + 1) * S, (DAY0 + 1) * S + 100 * US
    assert rows(tmp_path, "bybit", "AAPLx", "2025-07-07") == [
        (KIND_SNAPSHOT, 1, C, t0, l0, 211.48, 2.0, 0),
        (KIND_SNAPSHOT, 1, 0, t0, l0, 211.45, 7.25, 0),
        (KIND_SNAPSHOT, -1, 0, t0, l0, 211.52, 3.5, 0),
        (KIND_SNAPSHOT, -1, E, t0, l0, 211.55, 10.0, 0),
        (KIND_SNAPSHOT, 1, C, t1, l1, 211.4, 4.0, 0),
        (KIND_SNAPSHOT, 1, 0, t1, l1, 211.3, 1.0, 0),
        (KIND_SNAPSHOT, -1, E, t1, l1, 211.6, 4.0, 0),  # asks[1] is empty in the file: a thin book
    ]


def test_lobster_pair_on_first_day_of_daylight_time(cfg, tmp_path):
    """2025-03-10 is the Monday after US clocks went forward: 9:30 New York is 13:30 UTC."""
    [report] = convert_files("lobster", [LOB_MSG, LOB_BOOK], Job(cfg, "broker", out=tmp_path, date="2025-03-10"))
    assert report.source_rows == 7 and dict(report.skipped) == {"halt messages (type 7)": 1}
    open_ns = utc_ns(2025, 3, 10, 13, 30)

    def at(seconds_after_930: int, ns: int = 0) -> int:
        return open_ns + seconds_after_930 * S + ns

    t2 = at(1, 250_000_001)
    assert rows(tmp_path, "broker", "AAPL", "2025-03-10") == [
        (KIND_SNAPSHOT, 1, C, at(0), at(0), 200.01, 100.0, 0),
        (KIND_SNAPSHOT, -1, E, at(0), at(0), 200.02, 30.0, 0),
        (KIND_DEPTH, -1, E, at(0, 100_000_000), at(0, 100_000_000), 200.03, 50.0, 0),
        (KIND_TRADE, -1, 0, t2, t2, 200.01, 40.0, 101),  # resting buy hit: the aggressor sold
        (KIND_DEPTH, 1, E, t2, t2, 200.01, 60.0, 0),
        (KIND_TRADE, 1, 0, at(2), at(2), 200.02, 10.0, 999),  # hidden sell order hit: a buyer aggressed
        (KIND_DEPTH, -1, E, at(3), at(3), 200.03, 0.0, 0),
        (KIND_DEPTH, 1, E, at(4), at(4), 200.01, 50.0, 0),
    ]


def test_lobster_standard_time_date_shifts_an_hour(cfg, tmp_path):
    convert_files("lobster", [LOB_MSG, LOB_BOOK], Job(cfg, "broker", out=tmp_path, date="2025-03-07"))
    first = rows(tmp_path, "broker", "AAPL", "2025-03-07")[0]
    assert first[4] == utc_ns(2025, 3, 7, 14, 30)


def _lobster_pair(tmp_path: Path, times: list[float]) -> tuple[Path, Path]:
    """Executions of a resting buy at constant book: one trade event per message."""
    msg, book = tmp_path / "m.csv", tmp_path / "o.csv"
    msg.write_text("".join(f"{t},4,{i},10,2000100,1\n" for i, t in enumerate(times)))
    book.write_text("".join("2000200,30,2000100,10\n" for _ in times))
    return msg, book


def test_lobster_on_the_dst_change_day(cfg, tmp_path):
    """2025-03-09: 01:00 is EST (06:00 UTC), 03:00 is already EDT (07:00 UTC); 02:30 does not exist."""
    msg, book = _lobster_pair(tmp_path, [3600.0, 3 * 3600.0])
    convert_files("lobster", [msg, book], Job(cfg, "broker", out=tmp_path / "s", date="2025-03-09"))
    got = [(r[0], r[4]) for r in rows(tmp_path / "s", "broker", "AAPL", "2025-03-09")]
    six, seven = utc_ns(2025, 3, 9, 6, 0), utc_ns(2025, 3, 9, 7, 0)
    assert got == [(KIND_TRADE, six), (KIND_SNAPSHOT, six), (KIND_SNAPSHOT, six), (KIND_TRADE, seven)]
    msg, book = _lobster_pair(tmp_path, [3600.0, 2.5 * 3600.0])
    with pytest.raises(DataError) as err:
        convert_files("lobster", [msg, book], Job(cfg, "broker", date="2025-03-09"))
    assert f"{msg}: row 2: field 'time': 9000.0 s after midnight does not exist in New York" in str(err.value)


def test_lobster_book_diffs_rebuild_every_orderbook_row(cfg, tmp_path):
    """Applying the stored snapshot and depth rows in order reproduces each orderbook row's levels."""
    rng = np.random.default_rng(5)
    n, levels = 300, 3
    lines_m, lines_o, books = [], [], []
    for i in range(n):
        best_bid = 1000 + int(rng.integers(-3, 4))
        bids = sorted(rng.choice(np.arange(best_bid - 8, best_bid + 1), size=int(rng.integers(0, levels + 1)), replace=False))[::-1]
        asks = sorted(rng.choice(np.arange(best_bid + 1, best_bid + 10), size=int(rng.integers(0, levels + 1)), replace=False))
        sizes_b = rng.integers(1, 4, len(bids)) * 10
        sizes_a = rng.integers(1, 4, len(asks)) * 10
        row = []
        for k in range(levels):
            row += [asks[k] * 100, sizes_a[k]] if k < len(asks) else [9999999999, 0]
            row += [bids[k] * 100, sizes_b[k]] if k < len(bids) else [-9999999999, 0]
        lines_o.append(",".join(str(int(x)) for x in row))
        lines_m.append(f"{36000 + i * 0.001:.3f},1,{i},10,100000,1")
        books.append(({b / 100: float(q) for b, q in zip(bids, sizes_b)}, {a / 100: float(q) for a, q in zip(asks, sizes_a)}))
    (tmp_path / "m.csv").write_text("\n".join(lines_m) + "\n")
    (tmp_path / "o.csv").write_text("\n".join(lines_o) + "\n")
    convert_files("lobster", [tmp_path / "m.csv", tmp_path / "o.csv"], Job(cfg, "broker", out=tmp_path / "s", date="2025-07-07"))
    frame = read_partition(tmp_path / "s", "broker", "AAPL", "2025-07-07")
    by_time: dict[int, list[tuple]] = {}
    for local_ts, *ev in frame.select("local_ts", "side", "flags", "price", "size").iter_rows():
        by_time.setdefault(local_ts, []).append(ev)
    times = sorted(by_time)
    assert len(times) <= n
    first_ns = times[0]
    bid: dict[float, float] = {}
    ask: dict[float, float] = {}
    for i, want in enumerate(books):
        t = first_ns + i * 1_000_000
        for side, flags, price, size in by_time.get(t, []):
            if flags & F_CLEAR:
                bid, ask = {}, {}
            book = bid if side == 1 else ask
            if size == 0:
                del book[price]
            else:
                book[price] = size
        assert (bid, ask) == want, f"orderbook row {i + 1}"


def test_nbbo_and_trades_csv(cfg, tmp_path):
    convert_files("nbbo", [FIX / "nbbo.csv"], Job(cfg, "broker", out=tmp_path))
    convert_files("trades-csv", [FIX / "trades.csv"], Job(cfg, "broker", out=tmp_path))
    open_ns = utc_ns(2025, 7, 7, 13, 30)
    got = rows(tmp_path, "broker", "AAPL", "2025-07-07")
    t0, t1, t2 = open_ns + 1_000, open_ns + S // 2, open_ns + S
    quotes = [
        (KIND_QUOTE, 1, 0, t0, t0, 210.1, 300.0, 0),
        (KIND_QUOTE, -1, E, t0, t0, 210.12, 200.0, 0),
        (KIND_QUOTE, 1, 0, t1, t1, 210.11, 100.0, 0),
        (KIND_QUOTE, -1, E, t1, t1, 210.13, 400.0, 0),
        (KIND_QUOTE, 1, 0, t2, t2, 210.1, 250.0, 0),
        (KIND_QUOTE, -1, E, t2, t2, 210.12, 150.0, 0),
    ]
    trades = [
        (KIND_TRADE, 1, 0, open_ns + S // 4, open_ns + S // 4, 210.12, 100.0, 0),
        (KIND_TRADE, -1, 0, open_ns + 3 * S // 4, open_ns + 3 * S // 4, 210.1, 50.0, 0),
        (KIND_TRADE, 0, 0, open_ns + 3 * S // 2, open_ns + 3 * S // 2, 210.11, 10.0, 0),
    ]
    # Two part files (quotes then trades) of one partition read back merged by local time, stably.
    assert got == sorted(quotes + trades, key=lambda r: r[4])


def test_ccxt_trades_and_ohlcv(cfg, tmp_path):
    convert_files("ccxt-trades", [FIX / "ccxt_trades.json"], Job(cfg, "bybit", out=tmp_path))
    ms = 1_000_000
    assert rows(tmp_path, "bybit", "AAPLx", "2025-07-07") == [
        (KIND_TRADE, 1, 0, DAY0 * S + 100 * ms, DAY0 * S + 100 * ms, 211.52, 0.5, 2280000000001),
        (KIND_TRADE, -1, 0, DAY0 * S + 200 * ms, DAY0 * S + 200 * ms, 211.48, 1.25, 2280000000002),
        (KIND_TRADE, 0, 0, DAY0 * S + 300 * ms, DAY0 * S + 300 * ms, 211.5, 2.0, 0),
    ]
    [report] = convert_files("ccxt-ohlcv", [FIX / "ccxt_ohlcv.json"], Job(cfg, "bybit", out=tmp_path))
    assert dict(report.written) == {"AAPLx (bars)": 3}
    bars = read_bars(tmp_path, "bybit", "AAPLx")
    assert bars.rows() == [
        (DAY0 * S, 211.5, 211.6, 211.4, 211.55, 12.5),
        ((DAY0 + 60) * S, 211.55, 211.7, 211.5, 211.52, 3.0),
        ((DAY0 + 120) * S, 211.52, 211.52, 211.52, 211.52, 0.0),
    ]
    assert list_partitions(tmp_path) == [("bybit", "AAPLx", "2025-07-07")]  # bars live apart from events


def test_detect_format():
    assert detect_format(FIX / "tardis_incremental_book_L2.csv.gz") == "tardis"
    assert detect_format(FIX / "tardis_book_snapshot_2.csv") == "tardis"
    assert detect_format(FIX / "nbbo.csv") == "nbbo"
    assert detect_format(FIX / "trades.csv") == "trades-csv"
    assert detect_format(FIX / "ccxt_trades.json") == "ccxt-trades"
    assert detect_format(FIX / "ccxt_ohlcv.json") == "ccxt-ohlcv"
    assert detect_format(LOB_MSG) is None


def test_check_only_job_writes_nothing(cfg, tmp_path):
    [report] = convert_files("tardis", [FIX / "tardis_trades.csv"], Job(cfg, "bybit", out=None))
    assert dict(report.written) == {"AAPLx": 3}
    assert not any(tmp_path.iterdir())


def test_cli_convert_and_validate(tmp_path):
    import typer

    from stockbridge.commands.data_convert import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "store"
    got = runner.invoke(
        app,
        ["convert", "lobster", str(LOB_MSG), str(LOB_BOOK), "--config", str(CONFIG), "--venue", "broker", "--out", str(out), "--date", "2025-03-10"],
    )
    assert got.exit_code == 0, got.output
    assert "8 rows written" in got.output and "halt messages" in got.output
    got = runner.invoke(app, ["validate", str(out), "--config", str(CONFIG)])
    assert got.exit_code == 0, got.output
    assert "8 rows in 1 partitions" in got.output
    got = runner.invoke(app, ["validate", str(FIX / "tardis_trades.csv"), "--config", str(CONFIG), "--venue", "bybit"])
    assert got.exit_code == 0, got.output
    assert "tardis trades" in got.output
