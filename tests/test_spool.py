"""backtest.runner.Spool: the replay's Parquet files written by a thread of their own, in order, with
every write's error raised to the replay."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.runner import Spool, _named


def test_tables_land_in_the_order_given(tmp_path):
    spool = Spool(tmp_path / "x.parquet")
    parts = [pa.table({"ts": np.arange(k * 1000, (k + 1) * 1000), "px": np.full(1000, float(k))}) for k in range(20)]
    for t in parts:
        spool.write(t)
    spool.close()
    got = pq.read_table(tmp_path / "x.parquet")
    assert got.equals(pa.concat_tables(parts))


def test_a_failed_write_is_raised_not_lost(tmp_path):
    spool = Spool(tmp_path / "x.parquet")
    spool.write(pa.table({"ts": np.arange(3)}))
    spool.write(pa.table({"other": np.arange(3.0)}))  # not the file's schema: the writer thread fails
    with pytest.raises(ValueError, match="schema"):
        spool.close()


def test_names_are_taken_from_their_codes():
    col = _named(("gtc", "ioc"), np.array([1, 0, 0, 1], dtype=np.int8))
    assert col.type == pa.string() and col.to_pylist() == ["ioc", "gtc", "gtc", "ioc"]
