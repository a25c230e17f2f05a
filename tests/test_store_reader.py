"""Parquet store round trip and the merged, bounded, deterministic reader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import data.reader as reader
from data.reader import dataset_ids, read_merged
from data.schema import EVENT_DTYPE, empty, to_polars
from data.store import NS_PER_DAY, list_bars, list_partitions, part_files, partition_dir, read_bars, read_partition, write_bars, write_events
from stockbridge.errors import DataError

DAY = 20_276  # 2025-07-07, days since the epoch
VENUES = {"kraken": 0, "bybit": 1, "broker": 2}  # config order, not alphabetical
INSTRUMENTS = {"AAPLx": 0, "AAPL": 1}


def events(local_ts, price=None, kind=4) -> np.ndarray:
    ev = empty(len(local_ts))
    ev["kind"] = kind
    ev["side"] = 1
    ev["local_ts"] = local_ts
    ev["exch_ts"] = np.asarray(local_ts) - 7
    ev["price"] = np.arange(1, len(local_ts) + 1, dtype=float) if price is None else price
    ev["size"] = 1.0
    ev["id"] = np.arange(len(local_ts))
    return ev


def test_round_trip_splits_by_utc_date_and_sorts_stably(tmp_path):
    t = DAY * NS_PER_DAY
    ev = events([t + 50, t + 10, t + NS_PER_DAY + 1, t + 10, t - 1])
    ev["venue"], ev["instrument"] = 9, 9  # ignored: names are what is stored
    assert write_events(tmp_path, "bybit", "AAPLx", ev) == 5
    assert list_partitions(tmp_path) == [
        ("bybit", "AAPLx", "2025-07-06"),
        ("bybit", "AAPLx", "2025-07-07"),
        ("bybit", "AAPLx", "2025-07-08"),
    ]
    got = read_partition(tmp_path, "bybit", "AAPLx", "2025-07-07", venue_id=1, instrument_id=0)
    assert got.get_column("local_ts").to_list() == [t + 10, t + 10, t + 50]
    assert got.get_column("price").to_list() == [2.0, 4.0, 1.0]  # equal times keep their input order
    assert set(got.get_column("venue").to_list()) == {1} and set(got.get_column("instrument").to_list()) == {0}
    assert got.get_column("exch_ts").to_list() == [t + 3, t + 3, t + 43]
    assert read_partition(tmp_path, "bybit", "AAPLx", "2025-07-06").get_column("local_ts").to_list() == [t - 1]


def test_appends_new_parts_and_reads_them_in_order(tmp_path):
    t = DAY * NS_PER_DAY
    write_events(tmp_path, "kraken", "AAPLx", events([t + 5, t + 20], price=[1.0, 2.0]))
    write_events(tmp_path, "kraken", "AAPLx", to_polars(events([t + 5, t + 10], price=[3.0, 4.0])))
    files = part_files(partition_dir(tmp_path, "kraken", "AAPLx", "2025-07-07"))
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    got = read_partition(tmp_path, "kraken", "AAPLx", "2025-07-07")
    assert got.select("local_ts", "price").rows() == [(t + 5, 1.0), (t + 5, 3.0), (t + 10, 4.0), (t + 20, 2.0)]
    assert write_events(tmp_path, "kraken", "AAPLx", empty(0)) == 0


def test_partition_names_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="partition directory"):
        write_events(tmp_path, "by/bit", "AAPLx", events([1]))
    with pytest.raises(ValueError, match="partition directory"):
        write_events(tmp_path, "bybit", "a=b", events([1]))


def test_bars_table(tmp_path):
    bars = pl.DataFrame({"ts": [120, 60], "open": [2.0, 1.0], "high": [2.0, 1.5], "low": [1.0, 0.5], "close": [1.5, 1.2], "volume": [3.0, 4.0]})
    assert write_bars(tmp_path, "bybit", "AAPLx", bars) == 2
    assert list_bars(tmp_path) == [("bybit", "AAPLx")]
    assert read_bars(tmp_path, "bybit", "AAPLx").rows() == [(60, 1.0, 1.5, 0.5, 1.2, 4.0), (120, 2.0, 2.0, 1.0, 1.5, 3.0)]
    assert list_partitions(tmp_path) == []


# -- merged reader --------------------------------------------------------------------------------

def build_dataset(root: Path) -> np.ndarray:
    """Three venues over three days with cross-venue ties; returns the expected merged sequence."""
    t = DAY * NS_PER_DAY
    h = 3_600_000_000_000
    streams = {
        ("kraken", "AAPLx"): [t + h, t + 2 * h, t + 2 * h, t + NS_PER_DAY + h, t + 2 * NS_PER_DAY + 5],
        ("bybit", "AAPLx"): [t + 2 * h, t + 3 * h, t + NS_PER_DAY - 1, t + NS_PER_DAY, t + 2 * NS_PER_DAY + 5],
        ("broker", "AAPL"): [t + 2 * h, t + NS_PER_DAY + h, t + NS_PER_DAY + h, t + 2 * NS_PER_DAY],
    }
    expected = []
    for (venue, inst), times in streams.items():
        ev = events(times, price=np.arange(len(times)) + 100.0 * VENUES[venue])
        write_events(root, venue, inst, ev)
        ev["venue"], ev["instrument"] = VENUES[venue], INSTRUMENTS[inst]
        expected.append(ev)
    allev = np.concatenate(expected)
    # Reference order: local time, then venue id, then instrument id, then the stream's own order.
    order = np.lexsort((allev["id"], allev["instrument"], allev["venue"], allev["local_ts"]))
    return allev[order]


def test_merged_order_across_venues_and_days_in_small_chunks(tmp_path):
    want = build_dataset(tmp_path)
    chunks = list(read_merged(tmp_path, VENUES, INSTRUMENTS, chunk_size=4))
    assert all(0 < len(c) <= 4 and c.dtype == EVENT_DTYPE for c in chunks)
    got = np.concatenate(chunks)
    assert len(got) == len(want) == 14
    assert np.array_equal(got, want)
    assert np.all(np.diff(got["local_ts"]) >= 0)
    again = np.concatenate(list(read_merged(tmp_path, VENUES, INSTRUMENTS, chunk_size=1)))
    assert np.array_equal(again, want)
    # The three-way tie at 02:00 on day one: kraken (id 0), bybit (1), broker (2), kraken's own order kept.
    tie = got[got["local_ts"] == DAY * NS_PER_DAY + 2 * 3_600_000_000_000]
    assert tie["venue"].tolist() == [0, 0, 1, 2] and tie["price"].tolist() == [1.0, 2.0, 100.0, 200.0]


def test_ids_follow_the_mapping_not_the_directory_names(tmp_path):
    build_dataset(tmp_path)
    other = {"broker": 0, "bybit": 5, "kraken": 7}
    got = np.concatenate(list(read_merged(tmp_path, other, {"AAPL": 3, "AAPLx": 4})))
    assert set(zip(got["venue"].tolist(), got["instrument"].tolist())) == {(0, 3), (5, 4), (7, 4)}


def test_unknown_partition_name_is_an_error(tmp_path):
    build_dataset(tmp_path)
    with pytest.raises(DataError, match=r"venue=bybit/instrument=AAPLx/date=2025-07-07: field 'venue': venue 'bybit' is not in the config"):
        next(read_merged(tmp_path, {"kraken": 0, "broker": 2}, INSTRUMENTS))
    with pytest.raises(DataError, match=r"field 'instrument': instrument 'AAPL' is not in the config"):
        next(read_merged(tmp_path, VENUES, {"AAPLx": 0}))


def test_time_range_and_venue_filter(tmp_path):
    want = build_dataset(tmp_path)
    t = DAY * NS_PER_DAY
    lo, hi = t + 2 * 3_600_000_000_000, t + NS_PER_DAY + 3_600_000_000_000
    got = np.concatenate(list(read_merged(tmp_path, VENUES, INSTRUMENTS, start_ns=lo, end_ns=hi, chunk_size=3)))
    assert np.array_equal(got, want[(want["local_ts"] >= lo) & (want["local_ts"] < hi)])
    only = np.concatenate(list(read_merged(tmp_path, {"bybit": 1}, {"AAPLx": 0}, venues=["bybit"])))
    assert np.array_equal(only, want[want["venue"] == 1])
    assert list(read_merged(tmp_path, VENUES, INSTRUMENTS, start_ns=t + 5 * NS_PER_DAY)) == []


def test_reader_loads_one_day_at_a_time(tmp_path, monkeypatch):
    build_dataset(tmp_path)
    loaded: list[str] = []
    real = reader.read_partition_parts

    def spy(root, venue, instrument, date):
        loaded.append(date)
        return real(root, venue, instrument, date)

    monkeypatch.setattr(reader, "read_partition_parts", spy)
    it = read_merged(tmp_path, VENUES, INSTRUMENTS, chunk_size=2)
    first = next(it)
    assert loaded == ["2025-07-07"] * 3 and len(first) == 2
    rest = list(it)
    assert loaded == ["2025-07-07"] * 3 + ["2025-07-08"] * 3 + ["2025-07-09"] * 3
    assert sum(map(len, rest)) == 12


def test_dataset_ids(tmp_path):
    build_dataset(tmp_path)
    assert dataset_ids(tmp_path) == (["broker", "bybit", "kraken"], ["AAPL", "AAPLx"])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(VENUES)), st.integers(0, 3 * NS_PER_DAY // 1_000_000_000)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 7),
)
def test_merge_matches_a_stable_sort(rows, chunk):
    """Random streams: the merged sequence is every event once, ordered by (local_ts, venue id, stream order)."""
    with tempfile.TemporaryDirectory() as root:
        expected = []
        for venue, vid in VENUES.items():
            secs = [s for v, s in rows if v == venue]
            if not secs:
                continue
            local = DAY * NS_PER_DAY + np.array(secs, dtype=np.int64) * 1_000_000_000
            ev = events(local, price=np.arange(len(secs)) + 1000.0 * vid)
            write_events(root, venue, "AAPLx", ev)
            ev = ev[np.argsort(ev["local_ts"], kind="stable")]
            ev["venue"] = vid
            expected.append(ev)
        allev = np.concatenate(expected)
        want = allev[np.lexsort((allev["venue"], allev["local_ts"]))]
        got = np.concatenate(list(read_merged(root, VENUES, INSTRUMENTS, chunk_size=chunk)))
        assert np.array_equal(got, want)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=12), min_size=1, max_size=24),
    st.sampled_from(list(VENUES)),
    st.integers(1, 9),
)
def test_parts_of_a_partition_merge_as_a_stable_sort(parts, venue, chunk):
    """A partition written in several parts (interleaved in time, following on, or more than the merge
    takes as separate runs) reads as the parts concatenated in part order, then stably sorted, beside
    another venue's stream."""
    with tempfile.TemporaryDirectory() as root:
        base = DAY * NS_PER_DAY
        written = []
        for k, secs in enumerate(parts):
            ev = events(base + np.array(secs, dtype=np.int64) * 1_000_000_000, price=1000.0 * k + np.arange(len(secs)))
            write_events(root, venue, "AAPLx", ev)
            written.append(ev[np.argsort(ev["local_ts"], kind="stable")])
        other = next(v for v in VENUES if v != venue)
        mine = np.concatenate(written)
        mine = mine[np.argsort(mine["local_ts"], kind="stable")]
        theirs = events(base + np.arange(0, 41, 5, dtype=np.int64) * 1_000_000_000, price=-1.0 - np.arange(9))
        write_events(root, other, "AAPLx", theirs)
        mine["venue"], theirs["venue"] = VENUES[venue], VENUES[other]
        both = np.concatenate([mine, theirs] if VENUES[venue] < VENUES[other] else [theirs, mine])
        want = both[np.argsort(both["local_ts"], kind="stable")]
        got = np.concatenate(list(read_merged(root, VENUES, INSTRUMENTS, chunk_size=chunk)))
        assert np.array_equal(got, want)
        lo, hi = base + 10 * 1_000_000_000, base + 30 * 1_000_000_000
        cut = np.concatenate(list(read_merged(root, VENUES, INSTRUMENTS, start_ns=lo, end_ns=hi, chunk_size=chunk)))
        assert np.array_equal(cut, want[(want["local_ts"] >= lo) & (want["local_ts"] < hi)])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(VENUES)), st.integers(0, 2), st.integers(-3, 3), st.integers(0, 2)), min_size=1, max_size=40),
    st.fixed_dictionaries({v: st.sampled_from([0.0, -2000.0, -1000.0, 1000.0, 3000.0]) for v in VENUES}),
    st.integers(1, 7),
    st.booleans(),
)
def test_clock_offsets_merge_as_a_stable_sort_of_the_shifted_rows(rows, offset_ms, chunk, bounded):
    """Rows near the day boundaries (seconds around each midnight, ties among them), written in up to
    three parts per stream, each venue's clock shifted by its offset: the merged sequence is every row
    once, ordered by (shifted local_ts, venue id, then the stream's day, part and row order), within
    the time bounds."""
    with tempfile.TemporaryDirectory() as root:
        expected = []
        for venue, vid in VENUES.items():
            mine = [(day, sec, part) for v, day, sec, part in rows if v == venue]
            if not mine:
                continue
            instrument = "AAPL" if venue == "broker" else "AAPLx"
            local = np.array([(DAY + 1 + day) * NS_PER_DAY + sec * 1_000_000_000 for day, sec, _ in mine], dtype=np.int64)
            ev = events(local, price=1000.0 * vid + np.arange(len(mine)))
            ev["instrument"] = INSTRUMENTS[instrument]
            in_order = []
            for part in range(3):  # one part file per (part, UTC day): write_events splits by day
                pick = np.array([p == part for _, _, p in mine])
                if pick.any():
                    write_events(root, venue, instrument, ev[pick])
                    in_order.append(ev[pick])
            stream = np.concatenate(in_order)
            # the store's own order of the stream: by day, then part, then stably by local_ts
            day_of = stream["local_ts"] // NS_PER_DAY
            order = []
            for d in np.unique(day_of):
                rows_d = np.flatnonzero(day_of == d)
                order.extend(rows_d[np.argsort(stream["local_ts"][rows_d], kind="stable")])
            stream = stream[np.array(order)]
            stream["venue"] = vid
            stream["local_ts"] += int(offset_ms[venue] * 1_000_000)
            expected.append(stream)
        allev = np.concatenate(expected)
        want = allev[np.argsort(allev["local_ts"], kind="stable")]
        kw = {}
        if bounded:
            kw = {"start_ns": (DAY + 1) * NS_PER_DAY - 1_000_000_000, "end_ns": (DAY + 3) * NS_PER_DAY + 1_000_000_000}
            want = want[(want["local_ts"] >= kw["start_ns"]) & (want["local_ts"] < kw["end_ns"])]
        got = list(read_merged(root, VENUES, INSTRUMENTS, chunk_size=chunk, clock_offset_ms=offset_ms, **kw))
        got = np.concatenate(got) if got else want[:0]
        assert np.array_equal(got, want)
