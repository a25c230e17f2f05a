"""Fills that could have happened (issue "Backtest fills you can trust"), end to end through run_backtest.

Each test is a defect an independent review found, as a hand-made market with the answer worked out
by hand. The tiny market is tests/engine_fixtures.py: ``alpha`` (cex, 10 ms order and response
latency, maker -1 bps, taker 10 bps), ``beta`` (dex, 20 ms, taker 25 bps + 0.05 gas), ``broker``
(the share, 5 ms). Times are ms after T0 = Mon 2025-07-07 10:00 New York.
"""

from __future__ import annotations

import math

import numpy as np
from engine_fixtures import ALPHA, BETA, BROKER, MS, NS, QUOTE, T0, TAKE, ev, make_config, quote, run, script, trade, utc, write_store
from numba import njit

from data.schema import F_BATCH_END, KIND_DEPTH, KIND_TRADE


def broker(t: int, bid: float = 99.99, ask: float = 100.01) -> list[tuple]:
    return quote(BROKER, t, bid, 500.0, ask, 500.0)


def heartbeat(t_from: int, t_to: int, step: int, bid: float = 99.99, ask: float = 100.01) -> list[tuple]:
    """Broker quotes every ``step`` ns: local events that make the engine look at every venue."""
    return [r for t in range(t_from, t_to, step) for r in broker(t, bid, ask)]


# -- 1. each venue on its own clock ------------------------------------------------------------------


def test_a_trade_printed_before_our_order_reached_the_venue_does_not_fill_it(tmp_path):
    # beta's feed is 500 ms late. Our bid 99.95 x 5 is sent at T0 and reaches beta at T0+20 ms. beta
    # printed a sell of 5 at 99.95 at venue time T0+5 ms (we receive it at T0+505 ms): at the venue
    # it happened before our order was there, so it cannot fill it.
    late = 500 * MS
    rows = (broker(T0)
            + [ev(KIND_DEPTH, BETA, 1, 99.90, 5.0, T0 + 1 * MS, exch=T0 + 1 * MS - late),
               ev(KIND_DEPTH, BETA, -1, 100.10, 5.0, T0 + 1 * MS, exch=T0 + 1 * MS - late, flags=F_BATCH_END)]
            + heartbeat(T0 + 10 * MS, T0 + 800 * MS, 10 * MS)
            + [ev(KIND_TRADE, BETA, -1, 99.95, 5.0, T0 + 505 * MS, exch=T0 + 5 * MS)])
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml")
    params = script((T0 - NS, T0 + 10 * NS, BETA, 1, 99.95, 5.0, QUOTE))
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    fills = replay.fills_frame()
    assert fills.filter(fills["venue"] == "beta").height == 0
    # and a print after the arrival does fill it, stamped at its venue time, after the arrival
    rows2 = rows + [ev(KIND_TRADE, BETA, -1, 99.95, 2.0, T0 + 530 * MS, exch=T0 + 30 * MS)]
    rows2.sort(key=lambda r: r[6])
    _, replay2 = run(cfg, write_store(tmp_path / "s2", rows2), params)
    f = replay2.fills_frame().filter(replay2.fills_frame()["venue"] == "beta")
    assert f["qty"].to_list() == [2.0]
    assert f["ts"].to_list() == [T0 + 30 * MS]
    assert f["arrival_ts"].to_list() == [T0 + 20 * MS]


# -- 2. displayed liquidity is consumed once -----------------------------------------------------------


def test_a_restated_level_does_not_fill_the_same_lots_again(tmp_path):
    # Our bid 100.00 x 10 rests at alpha from T0+10 ms. An ask of 3 at 100.00 appears at T0+50 ms: it
    # crosses us, we buy those 3. The data restates the same 3 at T0+100/150 ms (depth) and T0+200 ms
    # (an L1 quote): the venue has nothing left there, so no more fills. A buy of 3 prints at 100.00
    # at T0+250 ms: the orders we had taken are gone from the data too; a level of 3 shown again at
    # T0+300 ms is new liquidity and fills 3 more. (Fair is 100.10, so a bid at 100.00 is allowed.)
    ask = lambda t, size=3.0: [ev(KIND_DEPTH, ALPHA, -1, 100.00, size, t, flags=F_BATCH_END)]  # noqa: E731
    rows = (broker(T0, 100.09, 100.11) + [ev(KIND_DEPTH, ALPHA, 1, 99.90, 5.0, T0 + 1 * MS, flags=F_BATCH_END)]
            + ask(T0 + 50 * MS) + ask(T0 + 100 * MS) + ask(T0 + 150 * MS)
            + quote(ALPHA, T0 + 200 * MS, ask=100.00, ask_size=3.0)
            + trade(ALPHA, T0 + 250 * MS, 1, 100.00, 3.0) + ask(T0 + 300 * MS)
            + heartbeat(T0 + 320 * MS, T0 + 400 * MS, 10 * MS, 100.09, 100.11))
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml", risk={"max_position": 100.0})
    params = script((T0 - NS, T0 + 10 * NS, ALPHA, 1, 100.00, 10.0, QUOTE))
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    f = replay.fills_frame().sort("ts")
    assert f["qty"].to_list() == [3.0, 3.0]
    assert f["ts"].to_list() == [T0 + 50 * MS, T0 + 300 * MS]
    assert f["liquidity"].to_list() == ["maker", "maker"]


def test_an_aggressive_order_cannot_take_the_same_level_twice(tmp_path):
    # Two takes of 3 at alpha's ask 100.05 x 3 (restated unchanged in between): the first buys the 3
    # shown, the second finds nothing left and its IOC expires.
    rows = (broker(T0) + [ev(KIND_DEPTH, ALPHA, -1, 100.05, 3.0, T0 + 1 * MS, flags=F_BATCH_END)]
            + [ev(KIND_DEPTH, ALPHA, -1, 100.05, 3.0, T0 + 30 * MS, flags=F_BATCH_END)]
            + heartbeat(T0 + 40 * MS, T0 + 200 * MS, 10 * MS))
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml")
    params = script((T0 + 0.5 * MS, T0 + 1.5 * MS, ALPHA, 1, 100.05, 3.0, TAKE),
                    (T0 + 55 * MS, T0 + 65 * MS, ALPHA, 1, 100.05, 3.0, TAKE))
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    assert replay.fills_frame()["qty"].sum() == 3.0


# -- 3. arbitrage goes out as a pair or not at all -------------------------------------------------------


def test_a_batch_of_takes_is_sent_whole_or_not_at_all(tmp_path):
    # The kernel asks on every decision for a buy at alpha and a sell at beta. alpha's takes come
    # back after 20 ms, beta's after 40 ms: sending alpha's leg whenever it is free would buy about
    # twice as much as beta sells. Sent as a unit, both legs go out together every time.
    rows = (broker(T0) + [ev(KIND_DEPTH, ALPHA, -1, 100.05, 500.0, T0 + 1 * MS, flags=F_BATCH_END),
                          ev(KIND_DEPTH, BETA, 1, 100.20, 500.0, T0 + 1 * MS, flags=F_BATCH_END)]
            + heartbeat(T0 + 5 * MS, T0 + 400 * MS, 5 * MS))
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml", risk={"max_position": 1000.0})
    params = script((T0 + 2 * MS, T0 + 300 * MS, ALPHA, 1, 100.05, 1.0, TAKE),
                    (T0 + 2 * MS, T0 + 300 * MS, BETA, -1, 100.20, 1.0, TAKE))
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    f = replay.fills_frame()
    bought = f.filter(f["venue"] == "alpha")["qty"].sum()
    sold = f.filter(f["venue"] == "beta")["qty"].sum()
    assert sold >= 5
    assert bought == sold


# -- 4. a refused cancel keeps the order tracked -------------------------------------------------------


def test_a_cancel_refused_during_a_halt_is_sent_again_and_the_order_counts_meanwhile(tmp_path):
    # Our bid 99.95 x 5 rests at alpha from T0+10 ms. alpha halts from T0+100 ms to T0+600 ms: it is
    # not tradable, so the quote is withdrawn at T0+100 ms; the cancel reaches alpha at T0+110 ms
    # during the halt and is refused (we learn it at T0+120 ms). The order is still ours: it is
    # cancelled again 1 s after the refusal (reaches alpha at T0+1130 ms), so the sell printed at
    # T0+1500 ms does not fill it.
    rows = (broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.90, 5.0, 100.10, 5.0)
            + heartbeat(T0 + 10 * MS, T0 + 2000 * MS, 10 * MS)
            + trade(ALPHA, T0 + 1500 * MS, -1, 99.95, 5.0))
    rows.sort(key=lambda r: r[6])
    halt = {"kind": "halt", "venue": "alpha", "at": "2025-07-07T14:00:00.100Z", "until": "2025-07-07T14:00:00.600Z"}
    cfg = make_config(tmp_path / "c.toml", backtest={"scenarios": [halt]})
    params = script((T0 - NS, T0 + 200 * MS, ALPHA, 1, 99.95, 5.0, QUOTE))
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    assert replay.fills_frame().height == 0
    from stockbridge.core.trader import T_CANCEL_RETRIES
    assert replay.trader.iv[T_CANCEL_RETRIES] == 1
    [o] = replay.orders_frame().to_dicts()  # orders.parquet: the order's whole life at the venue
    assert (o["state"], o["reason"], o["filled"]) == ("cancelled", "user", 0.0)
    assert (o["submit_ts"], o["arrival_ts"]) == (T0, T0 + 10 * MS)
    assert (o["final_ts"], o["done_ts"]) == (T0 + 1130 * MS, T0 + 1140 * MS)


def test_an_order_being_cancelled_counts_against_the_position_limit():
    from core_ctx import make_ctx

    from stockbridge.core.quoting import finalize_quotes

    c = make_ctx()[0]
    v = 0
    c["max_position"][v] = 10.0
    quotes = np.zeros((8, 2, 3, 2))
    quotes[v, 0, 0] = (c["fair"] - 1.0, 8.0)
    finalize_quotes(c, quotes)
    assert quotes[v, 0, 0, 1] == 8.0
    c["working_buy"][v] = 6.0  # a bid of 6 we are cancelling may still fill: room left 4
    quotes[:] = 0.0
    quotes[v, 0, 0] = (c["fair"] - 1.0, 8.0)
    finalize_quotes(c, quotes)
    assert quotes[v, 0, 0, 1] == 4.0


# -- 6. the strategy sees only what it could know ---------------------------------------------------------


@njit(cache=True)
def record_ask_kernel(ctx, params, quotes, takes):
    """params = [t_take, n_seen, (ts, ask_size)*]: take 5 at alpha's ask at the first decision after
    t_take; log what the context shows of alpha's best ask size at every decision."""
    n = int(params[1])
    if 2 + 2 * n + 1 < params.shape[0]:
        params[2 + 2 * n] = ctx.ts
        params[3 + 2 * n] = ctx.ask_size[0]
        params[1] = n + 1
    if params[0] > 0 and ctx.ts >= params[0]:
        params[0] = -1.0
        takes[0, 0] = 0
        takes[0, 1] = 1
        takes[0, 2] = ctx.ask[0]
        takes[0, 3] = 5.0
        return np.int64(1)
    return np.int64(0)


def test_the_decision_context_shows_the_market_as_received_not_our_fills(tmp_path):
    # alpha shows an ask of 5 at 100.05 from T0+1 ms and never updates it. We take all 5 at T0+2 ms:
    # the order reaches alpha at T0+12 ms and the fill report comes back at T0+22 ms. The data we
    # receive never shows that level change, so the context shows 5 throughout; what we did there
    # we know from the report (position 5 from T0+22 ms).
    rows = (broker(T0) + [ev(KIND_DEPTH, ALPHA, -1, 100.05, 5.0, T0 + 1 * MS, flags=F_BATCH_END)]
            + heartbeat(T0 + 2 * MS, T0 + 60 * MS, 2 * MS))
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml")
    params = np.zeros(2 + 2 * 200)
    params[0] = T0 + 2 * MS
    _, replay = run(cfg, write_store(tmp_path / "s", rows), params, kernel=record_ask_kernel)
    assert replay.fills_frame()["qty"].to_list() == [5.0]
    n = int(params[1])
    seen = params[2:2 + 2 * n].reshape(n, 2)
    after_take = seen[seen[:, 0] > T0 + 12 * MS]
    assert len(after_take) > 10
    assert set(after_take[:, 1]) == {5.0}


# -- 7. hedging in the overnight session ---------------------------------------------------------------


def test_a_run_that_starts_overnight_marks_the_share_and_hedges_there(tmp_path):
    # Tue 2025-07-08 02:00 UTC = Mon 22:00 New York: the overnight ATS session. The broker hedges in
    # overnight; the share quotes there are its marks. We buy 5 tokens at alpha: the net delta of 5
    # is outside the band of 1 and the hedge sells 5 shares at the broker, all overnight.
    t0 = utc("2025-07-08T02:00:00Z")
    rows = (quote(BROKER, t0, 99.99, 500.0, 100.01, 500.0)
            + [ev(KIND_DEPTH, ALPHA, -1, 100.05, 50.0, t0 + 1 * MS, flags=F_BATCH_END)]
            + [r for t in range(t0 + 5 * MS, t0 + 2000 * MS, 50 * MS) for r in quote(BROKER, t, 99.99, 500.0, 100.01, 500.0)])
    rows.sort(key=lambda r: r[6])
    cfg = make_config(tmp_path / "c.toml", venues={"broker": {"hedge_sessions": ["overnight", "regular"]}},
                      risk={"hedge_band": 1.0})
    params = script((t0 + 0.5 * MS, t0 + 1.5 * MS, ALPHA, 1, 100.05, 5.0, TAKE))
    summary, replay = run(cfg, write_store(tmp_path / "s", rows), params)
    f = replay.fills_frame()
    hedges = f.filter(f["tag"] == "hedge")
    assert hedges["qty"].sum() == 5.0 and hedges["side"].to_list() == [-1]
    for key in ("pnl_total", "pnl_inventory", "equity_final_raw"):
        assert summary[key] is not None and math.isfinite(summary[key]), key


# -- 8. a sample shows the state at its own timestamp ---------------------------------------------------


def test_samples_show_the_state_and_session_at_their_own_time(tmp_path):
    # Quotes at 15:58:30 and 16:00:30 New York (19:58:30 / 20:00:30 UTC), one-minute samples. The
    # 15:59 sample is regular hours and shows the 15:58:30 market; the 16:00 sample is after-hours.
    t1 = utc("2025-07-07T19:58:30Z")
    t2 = utc("2025-07-07T20:00:30Z")
    rows = broker(t1, 99.00, 99.02) + broker(t2, 101.00, 101.02)
    cfg = make_config(tmp_path / "c.toml", backtest={"sample_interval_s": 60.0})
    _, replay = run(cfg, write_store(tmp_path / "s", rows), script((0, 1, ALPHA, 1, 1.0, 1.0, QUOTE)))
    ts = replay.timeseries_frame()
    from stockbridge.sessions import AFTER, REGULAR
    row = {int(t): (int(s), b) for t, s, b in zip(ts["ts"], ts["session"], ts["mkt_bid_broker"])}
    assert row[utc("2025-07-07T19:59:00Z")] == (REGULAR, 99.00)
    assert row[utc("2025-07-07T20:00:00Z")] == (AFTER, 99.00)


# -- 9. GLFT's units agree off-hours -------------------------------------------------------------------


def test_glft_uses_the_variance_per_wall_clock_second_of_the_session():
    # A is fills per wall-clock second, sigma per sqrt(variance-second). While closed, a wall second
    # holds var_rate = 0.02 variance-seconds, so the variance per wall second is sigma^2 * 0.02.
    # Gueant (2017) with q = 0, Delta = 1, gamma = xi = 0.05, k = 10, A = 1 and tau = tau_ref:
    #   c1 = ln(1 + 0.05/10) / 0.05,  c2 = sqrt(0.05/(2*1*1*10) * (1 + 0.05/10)^(10/0.05 + 1)),
    #   half-spread = c1 + 1/2 * sigma_wall * c2, sigma_wall = 0.5 * sqrt(0.02).
    from core_ctx import make_ctx

    from strategies.glft import SPEC

    c1 = math.log(1 + 0.05 / 10) / 0.05
    c2 = math.sqrt(0.05 / (2 * 1 * 1 * 10) * (1 + 0.05 / 10) ** (10 / 0.05 + 1))
    params = SPEC.params_model(gamma=0.05, k=10.0, A=1.0, xi=0.05, size=1.0, tau_ref=60.0).to_array()
    for var_rate in (1.0, 0.02):
        c = make_ctx(sigma=0.5, tau=60.0, var_rate=var_rate, hedge_open=0, credit_skew_bps=0.0)[0]
        quotes = np.zeros((8, 2, 3, 2))
        SPEC.kernel(c, params, quotes, np.zeros((8, 4)))
        half = c1 + 0.5 * 0.5 * math.sqrt(var_rate) * c2
        assert abs(quotes[0, 0, 0, 0] - (100.0 - half)) < 1e-9
        assert abs(quotes[0, 1, 0, 0] - (100.0 + half)) < 1e-9


# -- 5 and 10. impossible data never reaches the matcher, on every entry point ---------------------------


def test_run_backtest_itself_refuses_a_nan_price_and_a_clock_behind_the_venue(tmp_path):
    import pytest

    from stockbridge.errors import DataError

    cfg = make_config(tmp_path / "c.toml")
    params = script((T0 - NS, T0 + 10 * NS, ALPHA, 1, 99.95, 5.0, QUOTE))
    good = broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.90, 5.0, 100.10, 5.0)
    nan_trade = good + trade(ALPHA, T0 + 100 * MS, -1, float("nan"), 5.0)
    with pytest.raises(DataError, match="price"):
        run(cfg, write_store(tmp_path / "nan", nan_trade), params)
    # alpha's capture clock runs 1.27 s behind the venue: every alpha row arrives "before" it happened
    skewed = broker(T0) + [ev(KIND_DEPTH, ALPHA, 1, 99.90, 5.0, T0 + k * MS, exch=T0 + k * MS + 1270 * MS, flags=F_BATCH_END)
                           for k in range(1, 20)]
    store = write_store(tmp_path / "skew", sorted(skewed, key=lambda r: r[6]))
    with pytest.raises(DataError, match="latency"):
        run(cfg, store, params)
    fixed = make_config(tmp_path / "c.toml", venues={"alpha": {"clock_offset_ms": 1275.0}})
    summary, _ = run(fixed, store, params)
    assert summary["events"] == 21
