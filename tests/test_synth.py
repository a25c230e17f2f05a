"""The synthetic market: determinism, session-dependent spreads and quoting, grids, timestamps, multiplier, informed flow."""

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from data.inspect import inspect_store, scan_store, top_of_book
from data.schema import KIND_DEPTH, KIND_MULTIPLIER, KIND_NAMES, KIND_QUOTE, KIND_SESSION, KIND_SNAPSHOT, KIND_TRADE
from data.synth import (
    INFORMED_HORIZON_S, JUMP_SHARE, PREMIUM_HALF_LIFE_S, PREMIUM_STD_BPS, YEAR_NS, generate_events, premium_path,
    share_path, synthesize,
)
from stockbridge.commands.data_synth import register
from stockbridge.config import load_config
from stockbridge.errors import ConfigError, DataError
from stockbridge.instruments import to_ns
from stockbridge.sessions import AFTER, CLOSED, OVERNIGHT, PRE, REGULAR, SessionCalendar

from conftest import DEMO

BOOK_KINDS = (KIND_QUOTE, KIND_DEPTH, KIND_SNAPSHOT, KIND_TRADE)


def cli_app():
    """`stockbridge data ...` as the main CLI wires it: these commands registered on the data sub-app."""
    app, data_app = typer.Typer(), typer.Typer()
    register(data_app)
    app.add_typer(data_app, name="data")
    return app


def coarse(cfg, **synth):
    """The config with book updates every 5 s (few rows, same behaviour) and any other [synth] overrides."""
    return cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"quote_interval_ms": 5000.0, **synth})})


@pytest.fixture(scope="module")
def demo():
    return load_config(DEMO)


@pytest.fixture(scope="module")
def week(demo, tmp_path_factory):
    """The demo's five days (Jul 3 half day, Jul 4 holiday, weekend, Monday with the multiplier step), coarse."""
    cfg = coarse(demo)
    root = tmp_path_factory.mktemp("week")
    summary = synthesize(cfg, root, seed=11)
    return cfg, root, summary


@pytest.fixture(scope="module")
def week_events(week):
    cfg, _, _ = week
    streams = {}
    for venue, _, _, events in generate_events(cfg, seed=11):
        streams.setdefault(venue, []).append(events)
    return {v: np.concatenate(parts) for v, parts in streams.items()}


@pytest.fixture(scope="module")
def calendar(demo):
    start = to_ns(demo.synth.start)
    return SessionCalendar(start, start + 400 * 86_400 * 10**9, demo.sessions.calendar, demo.sessions.weights)


def test_same_seed_same_rows_other_seed_other_rows(demo):
    cfg = coarse(demo)
    a = list(generate_events(cfg, days=1, seed=5))
    b = list(generate_events(cfg, days=1, seed=5))
    c = list(generate_events(cfg, days=1, seed=6))
    assert [x[:3] for x in a] == [x[:3] for x in b] == [x[:3] for x in c]
    assert [x[:2] for x in a] == [("bybit", "AAPLx"), ("kraken", "AAPLx"), ("solana_dex", "AAPLx"), ("broker", "AAPL")]
    for (_, _, _, ea), (_, _, _, eb), (_, _, _, ec) in zip(a, b, c):
        assert len(ea) > 1000
        assert ea.tobytes() == eb.tobytes()
        assert len(ea) != len(ec) or ea.tobytes() != ec.tobytes()


def test_summary_matches_what_the_store_holds(week):
    cfg, root, summary = week
    assert summary["days"] == 5 and summary["seed"] == 11
    assert summary["first_ts"] == to_ns("2025-07-03T00:00:00Z")
    assert summary["last_ts"] < to_ns("2025-07-08T00:00:01Z")
    stored = scan_store(root).group_by("venue", "kind").len().collect()
    from_store = {(r["venue"], r["kind"]): r["len"] for r in stored.iter_rows(named=True)}
    from_summary = {(v, k): n for v, per in summary["events"].items() for k, n in per.items()}
    assert {(v, KIND_NAMES[k]): n for (v, k), n in from_store.items()} == from_summary
    assert sum(from_store.values()) == summary["total"]


def test_token_spreads_wider_while_the_share_market_is_closed(week):
    """Acceptance: every token venue's median spread is wider while the underlying is closed than in regular hours.

    The generator widens half-spreads 4x when closed (TOKEN_SPREAD_MULT) and 3x overnight, so the
    medians must differ by well over 2x; the share, quoted only while open, has no closed samples.
    """
    cfg, root, _ = week
    spreads = inspect_store(root, cfg).spreads
    med = {(r["venue"], r["state"]): r["median_bps"] for r in spreads.iter_rows(named=True)}
    for venue in ("bybit", "kraken", "solana_dex"):
        assert med[(venue, "closed")] > 2 * med[(venue, "regular")]
        assert med[(venue, "overnight")] > 2 * med[(venue, "regular")]
        assert med[(venue, "pre")] > med[(venue, "regular")]
        assert med[("broker", "regular")] < med[(venue, "regular")]
    assert ("broker", "closed") not in med and ("broker", "overnight") not in med


def test_share_quotes_and_trades_only_while_its_market_is_open(week_events, calendar):
    ev = week_events["broker"]
    live = ev[np.isin(ev["kind"], (KIND_QUOTE, KIND_TRADE))]
    states = calendar.state_at(live["exch_ts"])
    assert set(np.unique(states)) == {PRE, REGULAR, AFTER}
    assert not np.isin(states, (CLOSED, OVERNIGHT)).any()
    # session rows: the state at the start, then every boundary inside the window
    sess = ev[ev["kind"] == KIND_SESSION]
    start, end = to_ns("2025-07-03T00:00:00Z"), to_ns("2025-07-08T00:00:00Z")
    inside = (calendar.boundaries > start) & (calendar.boundaries < end)
    np.testing.assert_array_equal(sess["exch_ts"], np.concatenate([[start], calendar.boundaries[inside]]))
    np.testing.assert_array_equal(sess["size"], calendar.state_at(sess["exch_ts"]))


def test_prices_on_tick_grid_and_sizes_on_lot_grid(week_events, demo):
    for name, ev in week_events.items():
        venue = demo.venues[name]
        book = ev[np.isin(ev["kind"], BOOK_KINDS)]
        assert len(book) > 1000
        ticks = book["price"] / venue.tick_size
        lots = book["size"] / venue.lot_size
        assert np.abs(ticks - np.round(ticks)).max() < 1e-6, name
        assert np.abs(lots - np.round(lots)).max() < 1e-6, name
        assert (book["price"] > 0).all()


def test_local_after_exchange_time_and_never_decreasing(week_events, demo):
    for name, ev in week_events.items():
        lag = ev["local_ts"] - ev["exch_ts"]
        assert (lag >= 0).all(), name
        assert (np.diff(ev["local_ts"]) >= 0).all(), name
        base = int(demo.venues[name].response_latency_ms * 1e6)
        assert lag.min() == base, name
        if demo.venues[name].latency_jitter_ms == 0:
            assert (lag == base).all(), name  # no jitter: exactly the configured feed latency


def test_snapshots_are_whole_batches(week_events):
    ev = week_events["bybit"]
    snap = np.flatnonzero(ev["kind"] == KIND_SNAPSHOT)
    firsts = snap[(ev["flags"][snap] & 1) == 1]
    # every snapshot is 5 bids then 5 asks, contiguous, one timestamp, F_CLEAR first and F_BATCH_END last
    assert len(snap) == 10 * len(firsts)
    for i in firsts[:200]:
        batch = ev[i:i + 10]
        assert (batch["kind"] == KIND_SNAPSHOT).all()
        np.testing.assert_array_equal(batch["side"], [1] * 5 + [-1] * 5)
        np.testing.assert_array_equal(batch["flags"], [1] + [0] * 8 + [2])
        assert len(set(batch["local_ts"])) == 1
        assert (np.diff(batch["price"][:5]) < 0).all() and (np.diff(batch["price"][5:]) > 0).all()
        assert batch["price"][0] < batch["price"][5]


def test_multiplier_step_shows_in_the_token_share_ratio(week):
    """AAPLx's multiplier goes 1.0 -> 1.0025 at Monday's open: the token/share mid ratio moves by 25 bps."""
    cfg, root, _ = week
    tob = top_of_book(root, cfg.venue_ids(), cfg.instrument_ids()).with_columns(mid=(pl.col("bid") + pl.col("ask")) / 2)
    share = tob.filter(pl.col("venue") == "broker").select("exch_ts", pl.col("mid").alias("share")).sort("exch_ts")
    before = (to_ns("2025-07-03T13:30:00Z"), to_ns("2025-07-03T17:00:00Z"))   # Thursday's regular session
    after = (to_ns("2025-07-07T13:30:00Z"), to_ns("2025-07-07T20:00:00Z"))    # Monday's, from the step on
    for venue in ("bybit", "kraken", "solana_dex"):
        tok = tob.filter(pl.col("venue") == venue).select("exch_ts", "mid").sort("exch_ts")
        ratio = tok.join_asof(share, on="exch_ts").with_columns(r=pl.col("mid") / pl.col("share"))

        def median(lo, hi):
            return ratio.filter(pl.col("exch_ts").is_between(lo, hi, closed="left")).get_column("r").median()

        assert median(*after) / median(*before) - 1 == pytest.approx(0.0025, abs=0.0008), venue
    for name in ("bybit", "kraken", "solana_dex"):
        rows = scan_store(root).filter((pl.col("venue") == name) & (pl.col("kind") == KIND_MULTIPLIER)).collect()
        assert rows.get_column("exch_ts").to_list() == [to_ns("2025-07-03T00:00:00Z"), to_ns("2025-07-07T13:30:00Z")]
        assert rows.get_column("price").to_list() == [1.0, 1.0025]


def _side_vs_next_move(cfg, root):
    """Correlation of trade side with the venue's mid change over the informed horizon, per token venue."""
    tob = top_of_book(root, cfg.venue_ids(), cfg.instrument_ids()).with_columns(mid=(pl.col("bid") + pl.col("ask")) / 2)
    trades = scan_store(root).filter(pl.col("kind") == KIND_TRADE).select("venue", "exch_ts", "side").collect()
    out = {}
    for venue in ("bybit", "kraken", "solana_dex"):
        book = tob.filter(pl.col("venue") == venue).select("exch_ts", "mid").sort("exch_ts")
        t = trades.filter(pl.col("venue") == venue).sort("exch_ts")
        # the book just before the trade (the trade's own depletion row shares its timestamp) and H later
        t = t.with_columns(t0=pl.col("exch_ts") - 1, t1=pl.col("exch_ts") + INFORMED_HORIZON_S * 10**9)
        t = t.join_asof(book.rename({"exch_ts": "t0", "mid": "m0"}), on="t0")
        t = t.sort("t1").join_asof(book.rename({"exch_ts": "t1", "mid": "m1"}), on="t1").drop_nulls()
        assert t.height > 2000
        out[venue] = np.corrcoef(t.get_column("side").to_numpy().astype(float), (t["m1"] - t["m0"]).to_numpy())[0, 1]
    return out


def test_informed_trades_predict_the_next_move(demo, tmp_path):
    monday = dict(start="2025-07-07T00:00:00Z", days=1, quote_interval_ms=1000.0)
    informed = coarse(demo, informed_fraction=1.0, **monday)
    noise = coarse(demo, informed_fraction=0.0, **monday)
    synthesize(informed, tmp_path / "informed", seed=3)
    synthesize(noise, tmp_path / "noise", seed=3)
    with_info = _side_vs_next_move(informed, tmp_path / "informed")
    without = _side_vs_next_move(noise, tmp_path / "noise")
    for venue in with_info:
        assert with_info[venue] > 0.2, (venue, with_info[venue])
        assert abs(without[venue]) < 0.08, (venue, without[venue])


def test_gap_variance_is_released_at_the_reopen():
    """Steps of variance v: 2 regular, 5 closed, 3 pre-market. Across the reopen the log move has the last
    closed step's diffusion (1-J)v plus the gap J*5v; a regular step has v; the whole path 9v."""
    v = 1e-4
    states = np.array([REGULAR] * 2 + [CLOSED] * 5 + [PRE] * 3, dtype=np.int8)
    var_inc = np.full(10, v)
    gen = np.random.Generator(np.random.PCG64(42))
    paths = np.empty((20_000, 10))
    for k in range(paths.shape[0]):
        paths[k] = share_path(var_inc, states, JUMP_SHARE, gen, np.array([0.0, 0.0]))
    lr = np.diff(np.log(paths), axis=1)
    assert lr[:, 0].var() == pytest.approx(v, rel=0.05)
    assert lr[:, 3].var() == pytest.approx((1 - JUMP_SHARE) * v, rel=0.05)
    assert lr[:, 6].var() == pytest.approx((1 - JUMP_SHARE) * v + JUMP_SHARE * 5 * v, rel=0.05)
    assert np.log(paths[:, -1]).var() == pytest.approx(9 * v, rel=0.05)
    assert paths[:, -1].mean() == pytest.approx(1.0, abs=0.001)  # a martingale in price


def test_premium_mean_reverts_to_its_per_state_spread():
    """All steps closed: std-dev PREMIUM_STD_BPS[CLOSED] x scale, autocorrelation 1/2 after one half-life."""
    n = 2_000_000
    states = np.full(n, CLOSED, dtype=np.int8)
    p = premium_path(states, PREMIUM_STD_BPS, PREMIUM_HALF_LIFE_S, 1.5, np.random.Generator(np.random.PCG64(1)), np.zeros(1))
    assert p.std() * 1e4 == pytest.approx(PREMIUM_STD_BPS[CLOSED] * 1.5, rel=0.15)
    lag = int(PREMIUM_HALF_LIFE_S[CLOSED])
    assert np.corrcoef(p[:-lag], p[lag:])[0, 1] == pytest.approx(0.5, abs=0.1)


def test_regular_hours_share_variance_matches_annual_vol(week, calendar):
    """One regular-hours minute carries annual_vol^2 * 60 / (variance-seconds in the year after the start)."""
    cfg, root, _ = week
    start = to_ns(cfg.synth.start)
    per_minute = cfg.synth.annual_vol**2 * 60 / calendar.variance_time(start, start + YEAR_NS)
    tob = top_of_book(root, cfg.venue_ids(), cfg.instrument_ids()).filter(pl.col("venue") == "broker")
    minutes = (
        tob.with_columns(m=pl.col("exch_ts") // 60_000_000_000, mid=(pl.col("bid") + pl.col("ask")) / 2)
        .group_by("m").agg(pl.col("mid").last(), pl.col("exch_ts").last()).sort("m")
    )
    states = calendar.state_at(minutes.get_column("exch_ts").to_numpy())
    m = minutes.get_column("m").to_numpy()
    lr = np.diff(np.log(minutes.get_column("mid").to_numpy()))
    keep = (states[1:] == REGULAR) & (states[:-1] == REGULAR) & (np.diff(m) == 1)
    assert keep.sum() > 500
    assert lr[keep].var() / per_minute == pytest.approx(1.0, abs=0.25)


def test_cli_synth_writes_the_store_and_refuses_a_second_run(demo, tmp_path):
    cfg_path = tmp_path / "demo.toml"
    cfg_path.write_text(DEMO.read_text().replace("quote_interval_ms = 1000", "quote_interval_ms = 20000"))
    app = cli_app()
    runner = CliRunner()
    args = ["data", "synth", str(cfg_path), "--days", "1", "--seed", "4", "--out", str(tmp_path / "out")]
    first = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert first.exit_code == 0, first.output
    assert "1 days, seed 4" in first.output and "bybit" in first.output and "broker" in first.output
    venues = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert venues == ["synth-params.json", "venue=broker", "venue=bybit", "venue=kraken", "venue=solana_dex"]
    again = runner.invoke(app, args)
    assert isinstance(again.exception, DataError) and "--overwrite" in str(again.exception)
    third = runner.invoke(app, args + ["--overwrite"])
    assert third.exit_code == 0, third.output
    rows = scan_store(tmp_path / "out").select(pl.len()).collect().item()
    assert rows == sum(len(e) for _, _, _, e in generate_events(load_config(cfg_path), days=1, seed=4))


def test_cli_synth_without_a_token_names_the_file_and_key(tmp_path):
    cfg_path = tmp_path / "shares.toml"
    cfg_path.write_text(
        '[instruments.AAPL]\nkind = "share"\n'
        '[venues.broker]\nkind = "equity_broker"\ninstruments = { AAPL = "AAPL" }\ntick_size = 0.01\nlot_size = 1\nhours = "equity"\n'
    )
    app = cli_app()
    result = CliRunner().invoke(app, ["data", "synth", str(cfg_path), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"{cfg_path}: instruments: the synthetic market needs a token instrument (kind = 'token')"
    assert not (tmp_path / "out").exists()
