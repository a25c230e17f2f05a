"""`data inspect` on a hand-built store whose spreads, counts and ranges are worked out below."""

from datetime import datetime, timezone

import numpy as np
import pytest
import typer
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from data.inspect import flush_books, inspect_store, replay_books
from data.schema import (
    EVENT_DTYPE, F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SESSION, KIND_SNAPSHOT, KIND_TRADE,
)
from data.store import write_events
from stockbridge.commands.data_synth import register
from stockbridge.config import load_config
from stockbridge.errors import DataError

MS = 1_000_000


def utc(y, m, d, hh, mm, ss=0):
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def rows(*specs):
    """(kind, side, exch_ts, price, size, flags) -> EVENT_DTYPE rows received 1 ms after the exchange stamp."""
    out = np.zeros(len(specs), dtype=EVENT_DTYPE)
    for i, (kind, side, t, price, size, flags) in enumerate(specs):
        out[i] = (kind, side, 0, 0, flags, t, t + MS, price, size, 0)
    return out


SAT = (2025, 7, 5)   # NYSE closed
MON = (2025, 7, 7)   # 10:00 UTC = 06:00 New York (pre), 14:00 UTC regular, 21:00 UTC = 17:00 (after)

TOKEN = rows(
    # Saturday (closed): 99.0 / 101.0, then the bid vanishes (one-sided), then 99.5 / 101.0
    (KIND_SNAPSHOT, 1, utc(*SAT, 15, 0), 99.0, 1.0, F_CLEAR),
    (KIND_SNAPSHOT, -1, utc(*SAT, 15, 0), 101.0, 1.0, F_BATCH_END),
    (KIND_DEPTH, 1, utc(*SAT, 15, 1), 99.0, 0.0, F_BATCH_END),
    (KIND_DEPTH, 1, utc(*SAT, 15, 2), 99.5, 2.0, F_BATCH_END),
    # Monday pre-market: 100.00 / 100.04
    (KIND_SNAPSHOT, 1, utc(*MON, 10, 0), 100.00, 1.0, F_CLEAR),
    (KIND_SNAPSHOT, 1, utc(*MON, 10, 0), 99.99, 2.0, 0),
    (KIND_SNAPSHOT, -1, utc(*MON, 10, 0), 100.04, 1.0, 0),
    (KIND_SNAPSHOT, -1, utc(*MON, 10, 0), 100.05, 2.0, F_BATCH_END),
    # Monday regular: 100.00 / 100.02, ask level deleted -> 100.03, a trade, then one update of two rows
    (KIND_SNAPSHOT, 1, utc(*MON, 14, 0), 100.00, 1.0, F_CLEAR),
    (KIND_SNAPSHOT, 1, utc(*MON, 14, 0), 99.99, 2.0, 0),
    (KIND_SNAPSHOT, -1, utc(*MON, 14, 0), 100.02, 1.0, 0),
    (KIND_SNAPSHOT, -1, utc(*MON, 14, 0), 100.03, 2.0, F_BATCH_END),
    (KIND_DEPTH, -1, utc(*MON, 14, 1), 100.02, 0.0, F_BATCH_END),
    (KIND_TRADE, 1, utc(*MON, 14, 1, 30), 100.03, 0.5, 0),
    (KIND_DEPTH, 1, utc(*MON, 14, 2), 100.01, 1.0, 0),
    (KIND_DEPTH, -1, utc(*MON, 14, 2), 100.02, 3.0, F_BATCH_END),
)
SHARE = rows(
    (KIND_SESSION, 0, utc(*MON, 13, 30), 0.0, 2.0, 0),
    (KIND_QUOTE, 1, utc(*MON, 14, 0, 10), 50.00, 100.0, 0),
    (KIND_QUOTE, -1, utc(*MON, 14, 0, 10), 50.01, 100.0, F_BATCH_END),
    (KIND_QUOTE, 1, utc(*MON, 14, 0, 20), 50.01, 100.0, 0),
    (KIND_QUOTE, -1, utc(*MON, 14, 0, 20), 50.03, 100.0, F_BATCH_END),
    (KIND_QUOTE, 1, utc(*MON, 21, 0), 50.00, 100.0, 0),
    (KIND_QUOTE, -1, utc(*MON, 21, 0), 50.10, 100.0, F_BATCH_END),
)

# (venue, instrument, state) -> (samples, one-sided, median bps, median abs), worked by hand
EXPECTED = {
    ("zz", "TOKx", "closed"): (2, 1, (2.0 / 100.0 + 1.5 / 100.25) / 2 * 1e4, (2.0 + 1.5) / 2),
    ("zz", "TOKx", "pre"): (1, 0, 0.04 / 100.02 * 1e4, 0.04),
    # regular spreads 0.02 (mid 100.01), 0.03 (mid 100.015), 0.01 (mid 100.015): the middle one is 0.02
    ("zz", "TOKx", "regular"): (3, 0, 0.02 / 100.01 * 1e4, 0.02),
    ("eq", "TOK", "regular"): (2, 0, (0.01 / 50.005 + 0.02 / 50.02) / 2 * 1e4, 0.015),
    ("eq", "TOK", "after"): (1, 0, 0.10 / 50.05 * 1e4, 0.10),
}

CONFIG = """
[instruments.TOKx]
kind = "token"
underlying = "TOK"
[instruments.TOK]
kind = "share"
[venues.zz]
kind = "cex_spot"
instruments = { TOKx = "TOKX/USD" }
tick_size = 0.01
lot_size = 0.01
[venues.eq]
kind = "equity_broker"
instruments = { TOK = "TOK" }
tick_size = 0.01
lot_size = 1
hours = "equity"
"""


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_events(root, "zz", "TOKx", TOKEN)
    write_events(root, "eq", "TOK", SHARE)
    return root


def check_report(report):
    counts = {(r["venue"], r["instrument"], r["kind"]): r["rows"] for r in report.counts.iter_rows(named=True)}
    assert counts == {
        ("eq", "TOK", "quote"): 6, ("eq", "TOK", "session"): 1,
        ("zz", "TOKx", "depth"): 5, ("zz", "TOKx", "snapshot"): 10, ("zz", "TOKx", "trade"): 1,
    }
    ranges = {r["venue"]: r for r in report.ranges.iter_rows(named=True)}
    assert ranges["zz"]["first_exch"] == utc(*SAT, 15, 0)
    assert ranges["zz"]["last_exch"] == utc(*MON, 14, 2)
    assert ranges["zz"]["last_local"] == utc(*MON, 14, 2) + MS
    assert ranges["eq"]["first_local"] == utc(*MON, 13, 30) + MS
    got = {(r["venue"], r["instrument"], r["state"]): r for r in report.spreads.iter_rows(named=True)}
    assert set(got) == set(EXPECTED)
    for key, (samples, one_sided, bps, spread) in EXPECTED.items():
        assert got[key]["samples"] == samples, key
        assert got[key]["one_sided"] == one_sided, key
        assert got[key]["median_bps"] == pytest.approx(bps, rel=1e-9), key
        assert got[key]["median_abs"] == pytest.approx(spread, rel=1e-9), key


def test_inspect_names_from_partitions(store):
    check_report(inspect_store(store))


def test_inspect_with_config_ids_in_config_order(store, tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    cfg = load_config(cfg_path)
    assert cfg.venue_ids() == {"zz": 0, "eq": 1}  # the reverse of the sorted partition names
    check_report(inspect_store(store, cfg))


def test_inspect_empty_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no event partitions"):
        inspect_store(tmp_path)


def test_cli_inspect_prints_the_three_tables(store, tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    app, data_app = typer.Typer(), typer.Typer()
    register(data_app)
    app.add_typer(data_app, name="data")
    result = CliRunner().invoke(app, ["data", "inspect", str(store), "--config", str(cfg_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "events by venue and kind" in out and "time range (UTC)" in out and "median quoted spread" in out
    assert "2025-07-05 15:00:00.000" in out  # first exch_ts
    assert "174.81 bps / 1.75" in out       # zz closed
    assert "2.00 bps / 0.02" in out          # zz regular
    assert "+1 one-sided" in out
    assert "19.98 bps / 0.1" in out          # eq after-hours


def test_book_keeps_the_best_levels_when_full():
    """With room for two bid levels, 1, 2, 3 leaves 2 and 3; a worse 0.5 is ignored; deleting 3 leaves 2."""
    cap = 2
    keys, sizes = np.zeros((1, 2, cap)), np.zeros((1, 2, cap))
    cnt = np.zeros((1, 2), np.int64)
    state = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.bool_)
    ev = rows(*[(KIND_DEPTH, 1, i + 1, p, s, 0) for i, (p, s) in enumerate([(1, 1), (2, 1), (3, 1), (0.5, 1), (3, 0)])])
    out = np.empty(5, np.int64), np.empty(5, np.int64), np.empty(5), np.empty(5)
    book_of = np.zeros((1, 1), np.int64)
    m = replay_books(ev, book_of, keys, sizes, cnt, *state, *out)
    m2 = flush_books(keys, cnt, state[1], state[2], *(a[m:] for a in out))
    bids = out[2][: m + m2]
    np.testing.assert_array_equal(bids, [1.0, 2.0, 3.0, 3.0, 2.0])
    assert cnt[0, 0] == 1 and keys[0, 0, 0] == 2.0


level = st.tuples(st.sampled_from([KIND_DEPTH, KIND_SNAPSHOT, KIND_QUOTE]), st.sampled_from([1, -1]),
                  st.integers(90, 110), st.sampled_from([0.0, 1.0, 2.5]), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(level, min_size=1, max_size=60))
def test_book_replay_matches_a_dict_book(updates):
    """Every row its own update: the sampled best bid/ask equal those of a plain dict-of-levels book."""
    specs, expect = [], []
    bids, asks = {}, {}
    for i, (kind, side, tick, size, clear) in enumerate(updates):
        price = tick / 100.0
        flags = F_CLEAR if (kind == KIND_SNAPSHOT and clear) else 0
        specs.append((kind, side, 1_000 + i, price, size, flags))
        book = bids if side > 0 else asks
        if flags:
            bids.clear()
            asks.clear()
        if kind == KIND_QUOTE:
            book.clear()
        if size > 0:
            book[price] = size
        else:
            book.pop(price, None)
        expect.append((max(bids) if bids else np.nan, min(asks) if asks else np.nan))
    ev = rows(*specs)
    cap = 64
    keys, sizes = np.zeros((1, 2, cap)), np.zeros((1, 2, cap))
    cnt = np.zeros((1, 2), np.int64)
    last_local, last_exch, pending = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.bool_)
    n = len(ev)
    out = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64), np.empty(n + 1), np.empty(n + 1)
    m = replay_books(ev, np.zeros((1, 1), np.int64), keys, sizes, cnt, last_local, last_exch, pending, *out)
    m += flush_books(keys, cnt, last_exch, pending, *(a[m:] for a in out))
    assert m == n
    np.testing.assert_array_equal(out[2][:n], [b for b, _ in expect])
    np.testing.assert_array_equal(out[3][:n], [a for _, a in expect])
    np.testing.assert_array_equal(out[1][:n], [s[2] for s in specs])


def test_console_script_inspect_and_its_error_line(store, tmp_path, run_cli):
    ok = run_cli("data", "inspect", store)
    assert ok.returncode == 0, ok.stderr
    assert "174.81 bps / 1.75" in ok.stdout
    bad = run_cli("data", "inspect", tmp_path / "nothing")
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'nothing'}: store directory does not exist"


def test_inspect_tables_fit_100_columns_without_cutting_a_cell(tmp_path):
    # the demo's one-day market: every table of `data inspect` at most 100 characters wide, no '…'
    import subprocess
    import sys
    from pathlib import Path

    from rich.console import Console

    from data.inspect import inspect_store, print_report
    from stockbridge.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "demo.toml")
    out = tmp_path / "store"
    subprocess.run([sys.executable, "-m", "stockbridge.cli", "data", "synth", str(root / "configs" / "demo.toml"),
                    "--out", str(out), "--days", "1"], check=True, capture_output=True, timeout=600)
    console = Console(width=100, record=True)
    print_report(inspect_store(out, cfg), console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "closed" in text and "overnight" in text and "mult" in text
