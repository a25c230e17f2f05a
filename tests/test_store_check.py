"""The whole-store check (non-finite, time order, duplicates, clock skew), conversion into occupied partitions, clock offsets, unreadable files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.convert import convert_files
from data.convert.source import Job
from data.reader import clock_offsets, read_merged
from data.schema import KIND_QUOTE, KIND_TRADE, empty
from data.store import NS_PER_DAY, list_partitions, part_files, partition_dir, read_partition, require_store, write_events
from data.store_check import check_store
from data.validate import validate_store
from stockbridge.config import load_config, parse_config
from stockbridge.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CONFIG = FIX / "data_config.toml"
T0 = 1_751_846_400 * 1_000_000_000  # 2025-07-07 00:00 UTC, ns
MS = 1_000_000
TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def config_with_offset(venue: str, ms: float):
    data = tomllib.loads(CONFIG.read_text())
    data["venues"][venue]["clock_offset_ms"] = ms
    return parse_config(data)


def trades(local_ts, exch_ts=None, price=10.0, size=1.0):
    ev = empty(len(local_ts))
    ev["kind"], ev["side"] = KIND_TRADE, 1
    ev["local_ts"] = local_ts
    ev["exch_ts"] = np.asarray(local_ts) - MS if exch_ts is None else exch_ts
    ev["price"], ev["size"], ev["id"] = price, size, np.arange(1, len(local_ts) + 1)
    return ev


def part(store, venue="bybit", instrument="AAPLx", date="2025-07-07", k=0) -> Path:
    return part_files(partition_dir(store, venue, instrument, date))[k]


# -- item 1: non-finite values --------------------------------------------------------------------

@pytest.mark.parametrize("col, value", [("price", np.nan), ("price", np.inf), ("size", -np.inf), ("size", np.nan)])
def test_non_finite_values_are_found_with_file_row_field(cfg, tmp_path, col, value):
    ev = trades(T0 + np.arange(5) * MS)
    ev[col][3] = value
    write_events(tmp_path, "bybit", "AAPLx", ev)
    got = check_store(tmp_path, cfg)
    assert [p.kind for p in got.problems] == ["non-finite"]
    with pytest.raises(DataError) as err:
        got.raise_first()
    assert str(err.value) == f"{part(tmp_path)}: row 4: field '{col}': {value!r} is not a finite number (1 such rows in this file)"
    # the partition-by-partition validator refuses it too (before any positivity check)
    with pytest.raises(DataError, match=rf"row 4: field '{col}': {value!r} is not a finite number"):
        validate_store(tmp_path, cfg.venue_ids(), cfg.instrument_ids())


def test_clean_store_is_ok_and_counts_rows(cfg, tmp_path):
    write_events(tmp_path, "bybit", "AAPLx", trades(T0 + np.arange(5) * MS))
    write_events(tmp_path, "broker", "AAPL", trades(T0 + NS_PER_DAY + np.arange(3) * MS))
    got = check_store(tmp_path, cfg)
    assert got.ok and got.rows == 8 and got.partitions == 2
    assert got.latency["bybit"].median_ns == MS and got.latency["bybit"].negative == 0
    got.raise_first()  # no-op


def test_time_order_problems(cfg, tmp_path):
    write_events(tmp_path, "bybit", "AAPLx", trades(T0 + np.arange(4) * MS))
    f = part(tmp_path)
    frame = pl.read_parquet(f)
    # a part file not sorted by local_ts (written by something other than the store), and a row of another day
    lts = frame.get_column("local_ts").to_numpy().copy()
    lts[2], lts[3] = lts[3], T0 - 5
    frame.with_columns(pl.Series("local_ts", lts)).write_parquet(f)
    got = check_store(tmp_path, cfg)
    msgs = [str(p.error()) for p in got.problems if p.kind == "time order"]
    assert msgs[0] == f"{f}: row 4: field 'local_ts': {T0 - 5} ns is earlier than {T0 + 3 * MS} ns on the row before (1 such rows in this file)"
    assert msgs[1].startswith(f"{f}: row 4: field 'local_ts': {T0 - 5} ns falls on 2025-07-06, outside this partition's date 2025-07-07")


# -- item 3: duplicates, refusal, overwrite --------------------------------------------------------

def test_second_conversion_is_refused_naming_the_partition(cfg, tmp_path):
    src = FIX / "tardis_trades.csv"
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path))
    before = read_partition(tmp_path, "bybit", "AAPLx", "2025-07-07")
    with pytest.raises(DataError) as err:
        convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path))
    assert str(err.value) == (
        f"{partition_dir(tmp_path, 'bybit', 'AAPLx', '2025-07-07')}: partition already holds trade rows (converted before?); "
        "pass --overwrite to replace them or --append to add anyway"
    )
    assert read_partition(tmp_path, "bybit", "AAPLx", "2025-07-07").equals(before)
    assert not list(tmp_path.glob(".staging-*"))  # the aborted run left nothing behind


def test_append_is_flagged_as_duplicates_and_overwrite_replaces(cfg, tmp_path):
    src = FIX / "tardis_trades.csv"
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path))
    n = read_partition(tmp_path, "bybit", "AAPLx", "2025-07-07").height
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path, mode="append"))
    got = check_store(tmp_path, cfg)
    [dup] = got.problems
    assert dup.kind == "duplicate rows" and dup.count == n
    assert str(dup.error()) == (
        f"{part(tmp_path, k=1)}: row 1: row is identical to row 1 of part-00000.parquet; {n} duplicated rows in this partition "
        "(converted twice? reconvert with `data convert --overwrite`)"
    )
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path, mode="overwrite"))
    assert read_partition(tmp_path, "bybit", "AAPLx", "2025-07-07").height == n
    assert check_store(tmp_path, cfg).ok


def test_other_kinds_are_added_and_kept_by_overwrite(cfg, tmp_path):
    convert_files("nbbo", [FIX / "nbbo.csv"], Job(cfg, "broker", out=tmp_path))
    convert_files("trades-csv", [FIX / "trades.csv"], Job(cfg, "broker", out=tmp_path))  # trades beside quotes: fine
    kinds = read_partition(tmp_path, "broker", "AAPL", "2025-07-07").get_column("kind").value_counts().sort("kind").rows()
    assert kinds == [(KIND_QUOTE, 6), (KIND_TRADE, 3)]
    convert_files("nbbo", [FIX / "nbbo.csv"], Job(cfg, "broker", out=tmp_path, mode="overwrite"))
    again = read_partition(tmp_path, "broker", "AAPL", "2025-07-07").get_column("kind").value_counts().sort("kind").rows()
    assert again == kinds
    assert check_store(tmp_path, cfg).ok


# -- item 2: clock skew ----------------------------------------------------------------------------

def test_negative_feed_latency_is_an_error_until_corrected(cfg, tmp_path):
    src = tmp_path / "skewed.csv"
    n = 100
    lines = []
    for i in range(n):
        exch_us = T0 // 1000 + 2_000_000 + i * 10_000
        lines.append(f"bybit,AAPLXUSDT,{exch_us},{exch_us + 2_000 - 1_270_000},{i + 1},buy,211.5,1\n")
    src.write_text(TRADES_HEADER + "".join(lines))
    store = tmp_path / "s"
    convert_files("tardis", [src], Job(cfg, "bybit", out=store))
    got = check_store(store, cfg)
    [p] = got.problems
    lat = got.latency["bybit"]
    assert (lat.rows, lat.negative, lat.median_ns, lat.worst_ns) == (n, n, -1_268 * MS, -1_268 * MS)
    assert str(p.error()) == (
        f"{part(store)}: row 1: field 'local_ts': 100 of 100 rows of venue 'bybit' have local_ts before exch_ts "
        "(median latency -1268.000 ms, worst -1268.000 ms): the capture clock ran behind the exchange; "
        "set venues.bybit.clock_offset_ms in the config or convert with --clock-offset-ms"
    )
    # corrected in the config: the check and the reader see local_ts + 1270 ms
    fixed = config_with_offset("bybit", 1270.0)
    got = check_store(store, fixed)
    assert got.ok and got.latency["bybit"].median_ns == 2 * MS
    [chunk] = read_merged(store, fixed.venue_ids(), fixed.instrument_ids(), clock_offset_ms=clock_offsets(fixed))
    assert (chunk["local_ts"] - chunk["exch_ts"]).tolist() == [2 * MS] * n
    # corrected at conversion instead
    convert_files("tardis", [src], Job(cfg, "bybit", out=tmp_path / "c", clock_offset_ms=1270.0))
    got = check_store(tmp_path / "c", cfg)
    assert got.ok and got.latency["bybit"].median_ns == 2 * MS


def test_reader_offsets_merge_across_the_day_boundary(tmp_path):
    # bybit's clock is 2 s behind: its last rows of day 1 land after broker's first rows of day 2.
    day2 = T0 + NS_PER_DAY
    write_events(tmp_path, "bybit", "AAPLx", trades([day2 - 1_500 * MS, day2 - 500 * MS, day2 + 100 * MS], price=[1.0, 2.0, 3.0]))
    write_events(tmp_path, "broker", "AAPL", trades([day2 - 100 * MS, day2 + 1_000 * MS], price=[10.0, 11.0]))
    ids_v, ids_i = {"kraken": 0, "bybit": 1, "broker": 2}, {"AAPLx": 0, "AAPL": 1}
    for chunk_size in (1, 2, 10):
        got = np.concatenate(list(read_merged(tmp_path, ids_v, ids_i, clock_offset_ms={"bybit": 2000.0}, chunk_size=chunk_size)))
        assert got["price"].tolist() == [10.0, 1.0, 11.0, 2.0, 3.0]
        assert np.all(np.diff(got["local_ts"]) >= 0)
    got = np.concatenate(list(read_merged(tmp_path, ids_v, ids_i, start_ns=day2, end_ns=day2 + 1_600 * MS, clock_offset_ms={"bybit": 2000.0})))
    assert got["price"].tolist() == [1.0, 11.0, 2.0]


def test_clock_offset_config_field(cfg):
    assert cfg.venues["bybit"].clock_offset_ms == 0.0
    assert config_with_offset("kraken", -12.5).venues["kraken"].clock_offset_ms == -12.5
    assert clock_offsets(config_with_offset("kraken", 3.0)) == {"kraken": 3.0, "bybit": 0.0, "broker": 0.0}


# -- items 5 and 6: unreadable files, missing or empty stores --------------------------------------

def test_require_store(tmp_path):
    with pytest.raises(DataError) as err:
        require_store(tmp_path / "nope")
    assert str(err.value) == f"{tmp_path / 'nope'}: store directory does not exist"
    with pytest.raises(DataError, match="holds no event partitions"):
        require_store(tmp_path)
    write_events(tmp_path, "bybit", "AAPLx", trades([T0]))
    assert require_store(tmp_path) == list_partitions(tmp_path)


def damage(f: Path, how: str) -> None:
    data = f.read_bytes()
    if how == "truncated":
        f.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        f.write_bytes(bytes(len(data)))
    else:
        f.write_bytes(b"")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_config_path_module):
    out = tmp_path_factory.mktemp("demo") / "store"
    from data.synth import synthesize

    synthesize(load_config(demo_config_path_module), out, days=1, seed=3)
    return out


@pytest.fixture(scope="module")
def demo_config_path_module():
    return Path(__file__).resolve().parents[1] / "configs" / "demo.toml"


@pytest.mark.parametrize("how", ["truncated", "zeroed", "empty"])
def test_cli_names_the_unreadable_file(run_cli, tmp_path, demo_store, demo_config_path_module, how):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(demo_store, store)
    f = part(store, "kraken", "AAPLx", list_partitions(store)[0][2])
    damage(f, how)
    for args in (
        ("data", "validate", store, "--config", demo_config_path_module),
        ("data", "inspect", store, "--config", demo_config_path_module),
        ("backtest", demo_config_path_module, "--data", store, "--out", tmp_path / "bt"),
    ):
        got = run_cli(*args)
        assert got.returncode == 2, got.stderr
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {f}: "), got.stderr
        assert ("file is empty" if how == "empty" else "unreadable Parquet file") in lines[0]


def test_cli_empty_or_missing_store(run_cli, tmp_path, demo_config_path_module):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    for path, what in ((tmp_path / "missing", "store directory does not exist"), (empty_dir, "holds no event partitions")):
        for args in (("data", "validate", path, "--config", CONFIG), ("data", "inspect", path, "--config", CONFIG),
                     ("backtest", demo_config_path_module, "--data", path, "--out", tmp_path / "bt")):
            got = run_cli(*args)
            assert got.returncode == 2 and got.stderr.startswith(f"error: {path}: {what}"), (args, got.stderr)


def test_duplicates_within_one_file_and_near_duplicates(cfg, tmp_path):
    ev = trades(T0 + np.array([0, 5, 5, 5, 9]) * MS)
    ev["id"] = [1, 2, 2, 3, 4]  # rows 2 and 3 identical; row 4 differs only in id
    write_events(tmp_path, "bybit", "AAPLx", ev)
    [dup] = check_store(tmp_path, cfg).problems
    assert (dup.kind, dup.row, dup.count) == ("duplicate rows", 3, 1)
    assert "identical to row 2 of part-00000.parquet; 1 duplicated rows" in dup.message
    ev["id"][2] = 5
    write_events(tmp_path / "b", "bybit", "AAPLx", ev)
    assert check_store(tmp_path / "b", cfg).ok


def test_store_extent_applies_offsets_and_names_bad_files(tmp_path):
    from data.reader import store_extent

    write_events(tmp_path, "bybit", "AAPLx", trades([T0 + 5 * MS, T0 + 9 * MS]))
    write_events(tmp_path, "broker", "AAPL", trades([T0 + 7 * MS]))
    write_events(tmp_path, "binance", "AAPLx", trades([T0]))  # not a configured venue: left out
    assert store_extent(tmp_path, config_with_offset("bybit", -10.0)) == (T0 - 5 * MS, T0 + 7 * MS, 3)
    part(tmp_path, "broker", "AAPL").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"venue=broker/instrument=AAPL/date=2025-07-07/part-00000.parquet: unreadable Parquet file"):
        store_extent(tmp_path, config_with_offset("bybit", 0.0))
    with pytest.raises(DataError, match="store directory does not exist"):
        store_extent(tmp_path / "none", config_with_offset("bybit", 0.0))
