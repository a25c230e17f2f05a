"""The compiled replay loop end to end (backtest.engine via backtest.runner.run_backtest), against hand-computed answers.

Every run uses the tiny market of tests/engine_fixtures.py: token venues ``alpha`` (cex, maker -1 bps,
taker 10 bps, 10 ms latency each way) and ``beta`` (dex, taker 25 bps + 0.05 gas per trade, 20 ms),
and the ``broker`` for the share (taker 0.5 bps, 5 ms, lot 1). Fair = broker mid x multiplier while
the share trades; ``min_spread_z = 0`` so a quote's floor is half a tick around fair; hedging is off
(band 1000) unless a test sets a band. Times are ms after T0 = Mon 2025-07-07 10:00 New York.
"""

from __future__ import annotations

import pytest
from engine_fixtures import (
    ALPHA,
    BETA,
    BROKER,
    MS,
    NS,
    QUOTE,
    T0,
    TAKE,
    ev,
    make_config,
    market_stream,
    quote,
    run,
    script,
    trade,
    utc,
    write_store,
)

from backtest import engine as E
from stockbridge.core.trader import T_CARRIED, T_DECISIONS, T_MULT, net_delta
from backtest.runner import WALL_CLOCK_FIELDS
from backtest.orders import OC_NEXT_ID, REASON_HALTED, REASON_POST_ONLY
from data.schema import F_BATCH_END, KIND_DEPTH
from strategies import registry

AAPL, AAPLX = 0, 1


def beta_depth(t: int) -> list[tuple]:
    """beta's book at ``t``: bid 99.98 x 5; asks 100.02 x 1, 100.03 x 2, 100.05 x 3 (one L2 group)."""
    return [
        ev(KIND_DEPTH, BETA, 1, 99.98, 5.0, t),
        ev(KIND_DEPTH, BETA, -1, 100.02, 1.0, t),
        ev(KIND_DEPTH, BETA, -1, 100.03, 2.0, t),
        ev(KIND_DEPTH, BETA, -1, 100.05, 3.0, t, flags=F_BATCH_END),
    ]


def broker(t: int, bid: float = 99.99, ask: float = 100.01) -> list[tuple]:
    return quote(BROKER, t, bid, 500.0, ask, 500.0)


# beta take: buy 4 up to 100.05, decided on beta's book at T0+2 ms (window 1.5..2.5 ms)
BETA_TAKE = (T0 + 1.5 * MS, T0 + 2.5 * MS, BETA, 1, 100.05, 4.0, TAKE)
# walking beta's asks: 1 @ 100.02, 2 @ 100.03, 1 @ 100.05 = 400.13; taker 25 bps of it + 0.05 gas once
BETA_NOTIONAL = 100.02 + 2 * 100.03 + 100.05
BETA_FEES = BETA_NOTIONAL * 25e-4 + 0.05  # 1.000325 + 0.05 = 1.050325
BETA_CASH = 25_000.0 - BETA_NOTIONAL - BETA_FEES  # 24598.819675


def fills_of(replay):
    return replay.fills_frame().sort("ts", "order_id")


def without_wall(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK_FIELDS}


# -- 1. maker fill behind a queue ------------------------------------------------------------------


def test_maker_fill_waits_for_the_queue_ahead_then_books_rebate_cash_and_position(tmp_path):
    # Our bid 99.95 x 2 is decided at T0 (fair 100), reaches alpha at T0+10 ms and joins the 3 tokens
    # shown there since T0+1 ms. Sells at 99.95: 2 (eat the queue: 1 left ahead), 1.5 (1 more ahead,
    # 0.5 to us), 2 (1.5 to us, the rest of our order).
    rows = (broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.95, 3.0, 100.05, 3.0)
            + trade(ALPHA, T0 + 100 * MS, -1, 99.95, 2.0) + trade(ALPHA, T0 + 200 * MS, -1, 99.95, 1.5)
            + trade(ALPHA, T0 + 300 * MS, -1, 99.95, 2.0) + broker(T0 + 400 * MS))
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml")
    summary, replay = run(cfg, tmp_path, script((T0 - MS, T0 + 10 * NS, ALPHA, 1, 99.95, 2.0, QUOTE)))
    f = fills_of(replay)
    assert f.height == 2
    assert f["ts"].to_list() == [T0 + 200 * MS, T0 + 300 * MS]
    assert f["local_ts"].to_list() == [T0 + 210 * MS, T0 + 310 * MS]  # + 10 ms response latency
    assert f["qty"].to_list() == pytest.approx([0.5, 1.5], abs=1e-12)
    assert f["price"].to_list() == [99.95, 99.95]
    assert f["liquidity"].to_list() == ["maker", "maker"]
    assert f["side"].to_list() == [1, 1]
    assert f["tag"].to_list() == ["quote", "quote"]
    # maker rebate 1 bps: 99.95 x 0.5 x -1e-4 = -0.0049975, 99.95 x 1.5 x -1e-4 = -0.0149925
    assert f["fee"].to_list() == pytest.approx([-0.0049975, -0.0149925], abs=1e-12)
    s = replay.state
    # cash 25000 - 99.95 x 2 + 0.01999 = 24800.11999, position 2 tokens
    assert s.cash[ALPHA] == pytest.approx(24_800.11999, abs=1e-9)
    assert s.pos[ALPHA, AAPLX] == pytest.approx(2.0, abs=1e-12)
    assert s.cash[BETA] == s.cash[BROKER] == 25_000.0
    # all reports are in by the last event (T0+400 ms): the known books agree with the true ones
    assert replay.trader.kcash[ALPHA] == pytest.approx(s.cash[ALPHA], abs=1e-9)
    assert replay.trader.kpos[ALPHA, AAPLX] == pytest.approx(2.0, abs=1e-12)
    assert summary["fees_paid"] == pytest.approx(-0.01999, abs=1e-12)
    assert summary["pnl_spread_capture"] == pytest.approx((100.0 - 99.95) * 2, abs=1e-9)


# -- 2. taker walking three levels ----------------------------------------------------------------


def test_take_walks_three_dex_levels_at_exact_vwap_with_taker_fee_and_gas_once(tmp_path):
    rows = broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS) + broker(T0 + 100 * MS)
    write_store(tmp_path, rows)
    summary, replay = run(make_config(tmp_path / "c.toml"), tmp_path, script(BETA_TAKE))
    f = fills_of(replay)
    assert f["price"].to_list() == [100.02, 100.03, 100.05]
    assert f["qty"].to_list() == pytest.approx([1.0, 2.0, 1.0], abs=1e-12)
    assert set(f["liquidity"]) == {"taker"} and set(f["tag"]) == {"arb"} and set(f["venue"]) == {"beta"}
    assert f["ts"].to_list() == [T0 + 22 * MS] * 3  # decided at T0+2 ms, 20 ms order latency
    vwap = float((f["price"] * f["qty"]).sum() / f["qty"].sum())
    assert vwap == pytest.approx(400.13 / 4, abs=1e-12)  # 100.0325
    # 100.02 x 25 bps + 0.05 gas = 0.30005; 200.06 x 25 bps = 0.50015; 100.05 x 25 bps = 0.250125
    assert f["fee"].to_list() == pytest.approx([0.30005, 0.50015, 0.250125], abs=1e-12)
    s = replay.state
    assert s.pos[BETA, AAPLX] == pytest.approx(4.0, abs=1e-12)
    assert s.cash[BETA] == pytest.approx(24_598.819675, abs=1e-9)
    assert summary["pnl_arb"] == pytest.approx(4 * 100.0 - 400.13, abs=1e-9)  # edge vs fair 100: -0.13
    # what we took is gone from beta's book until the data updates those levels: 2 left at 100.05
    b = BETA * 2 + AAPLX
    assert replay.sim.px[b, 1, 0] == 100.05 and replay.sim.qty[b, 1, 0] == pytest.approx(2.0)


# -- 3. post-only rejection -------------------------------------------------------------------------


@pytest.mark.parametrize("ask_moves", [True, False])
def test_post_only_quote_that_crosses_on_arrival_is_rejected(tmp_path, ask_moves):
    # Decided at T0+1 ms: bid 100.00 is floored to fair - half a tick = 99.995 -> 99.99 (alpha asks
    # 100.05). It reaches alpha at T0+11 ms. If alpha's ask drops to 99.99 at T0+5 ms, the bid would
    # cross on arrival: rejected (post-only), reported at T0+21 ms, and the sell at T0+35 ms finds
    # nothing. Without the move it rests at 99.99 and that sell (through our price) fills it before
    # the cancel sent at T0+30 ms (quoting window over) reaches alpha at T0+40 ms.
    rows = broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.95, 3.0, 100.05, 3.0)
    if ask_moves:
        rows += quote(ALPHA, T0 + 5 * MS, ask=99.99, ask_size=3.0)
    rows += broker(T0 + 12 * MS) + broker(T0 + 30 * MS) + trade(ALPHA, T0 + 35 * MS, -1, 99.95, 5.0) + broker(T0 + 60 * MS)
    write_store(tmp_path, rows)
    _, replay = run(make_config(tmp_path / "c.toml"), tmp_path, script((T0 + 0.5 * MS, T0 + 25 * MS, ALPHA, 1, 100.0, 1.0, QUOTE)))
    f = fills_of(replay)
    orders = replay.sim.orders
    assert replay.sim.oc[OC_NEXT_ID] == 2  # exactly one order was ever sent
    first = orders[orders["id"] == 1][0]
    assert first["price"] == pytest.approx(99.99, abs=1e-9)  # on the grid, up to float rounding
    if ask_moves:
        assert f.height == 0
        assert first["reason"] == REASON_POST_ONLY
        assert first["ts_done"] == T0 + 21 * MS
        assert replay.state.pos[ALPHA, AAPLX] == 0.0 and replay.state.cash[ALPHA] == 25_000.0
    else:
        assert f.height == 1
        assert f["price"][0] == pytest.approx(99.99, abs=1e-9) and f["qty"][0] == 1.0 and f["ts"][0] == T0 + 35 * MS
        assert f["liquidity"][0] == "maker"


# -- 4. latency ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_latency_ms, price, ts_ms", [(20.0, 100.06, 22), (0.0, 100.02, 2)])
def test_order_latency_lets_the_price_move_before_the_take_arrives(tmp_path, order_latency_ms, price, ts_ms):
    # Decided at T0+2 ms on ask 100.02; beta's ask moves to 100.06 at T0+10 ms. With 20 ms order
    # latency the take arrives at T0+22 ms and pays 100.06; with none it is at beta at T0+2 ms,
    # ahead of the move, and pays 100.02.
    rows = (broker(T0) + quote(BETA, T0 + 2 * MS, 99.98, 5.0, 100.02, 5.0) + quote(BETA, T0 + 10 * MS, ask=100.06, ask_size=5.0)
            + broker(T0 + 50 * MS) + broker(T0 + 100 * MS))
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml", venues={"beta": {"order_latency_ms": order_latency_ms}})
    _, replay = run(cfg, tmp_path, script((T0 + 1.5 * MS, T0 + 2.5 * MS, BETA, 1, 100.10, 2.0, TAKE)))
    f = fills_of(replay)
    assert f.height == 1
    assert f["price"][0] == price and f["qty"][0] == 2.0
    assert f["ts"][0] == T0 + ts_ms * MS
    assert f["local_ts"][0] == T0 + (ts_ms + 20) * MS  # 20 ms response latency either way
    assert f["fee"][0] == pytest.approx(price * 2 * 25e-4 + 0.05, abs=1e-12)
    assert replay.state.cash[BETA] == pytest.approx(25_000.0 - 2 * price - (price * 2 * 25e-4 + 0.05), abs=1e-9)


# -- 5. hedge deferred over a weekend ----------------------------------------------------------------


def test_hedge_owed_on_friday_evening_waits_for_monday_open_and_trades_to_target_on_the_lot_grid(tmp_path):
    fri = utc("2025-07-11T19:00:00Z")       # Fri 15:00 New York, regular session
    fri_after = utc("2025-07-11T21:00:00Z")  # Fri 17:00 New York, after the close: hedge closed
    mon_open = utc("2025-07-14T13:30:00Z")   # Mon 09:30 New York
    rows = broker(fri) + quote(ALPHA, fri + 1 * MS, 99.95, 50.0, 100.05, 50.0)
    for t in (fri_after, fri_after + 50 * MS, fri_after + NS, utc("2025-07-12T15:00:00Z"), utc("2025-07-13T22:00:00Z"),
              utc("2025-07-14T09:00:00Z"), utc("2025-07-14T13:00:00Z")):
        rows += quote(ALPHA, t, 99.95, 50.0, 100.05, 50.0)
    rows += broker(mon_open, 100.49, 100.51) + broker(mon_open + 100 * MS, 100.49, 100.51) + broker(mon_open + NS, 100.49, 100.51)
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml", risk={"hedge_band": 20.0})
    # buy 30.4 tokens at alpha right after the close: net delta +30.4 shares, outside the band
    summary, replay = run(cfg, tmp_path, script((fri_after - MS, fri_after + MS, ALPHA, 1, 100.10, 30.4, TAKE)))
    f = fills_of(replay)
    assert f["tag"].to_list() == ["arb", "hedge"]
    take, hedge = f.row(0, named=True), f.row(1, named=True)
    assert take["ts"] == fri_after + 10 * MS and take["qty"] == pytest.approx(30.4) and take["price"] == 100.05
    # one order per fill: nothing was sent to the broker while it was closed (Fri evening .. Mon pre-market)
    assert replay.sim.oc[OC_NEXT_ID] == 3
    # the hedge is decided on the first broker quote of Monday 09:30 and reaches the broker 5 ms later;
    # it sells round_to_lot(30.4) = 30 shares at the bid, leaving net delta 0.4 (target 0)
    assert hedge["ts"] == mon_open + 5 * MS
    assert hedge["venue"] == "broker" and hedge["instrument"] == "AAPL" and hedge["side"] == -1
    assert hedge["qty"] == 30.0 and hedge["price"] == 100.49 and hedge["liquidity"] == "taker"
    assert hedge["fee"] == pytest.approx(100.49 * 30 * 0.5e-4, abs=1e-12)  # 0.150735
    s = replay.state
    assert s.pos[BROKER, AAPL] == -30.0
    assert net_delta(replay.trader, s.pos) == pytest.approx(0.4, abs=1e-9)
    assert replay.trader.f[T_CARRIED] == 0.0
    assert summary["fills_hedge"] == 1


# -- 6. venue default --------------------------------------------------------------------------------


def test_venue_default_turns_its_balance_into_a_40pct_claim_and_leaves_other_venues_alone(tmp_path):
    rows = (broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS) + broker(T0 + 500 * MS)
            + broker(T0 + 1500 * MS) + quote(ALPHA, T0 + 1600 * MS, 99.95, 3.0, 100.05, 3.0) + broker(T0 + 2000 * MS))
    write_store(tmp_path, rows)
    at = "2025-07-07T14:00:01Z"  # T0 + 1 s
    cfg = make_config(tmp_path / "c.toml", backtest={"scenarios": [{"kind": "default", "venue": "beta", "at": at, "recovery_rate": 0.4}]})
    summary, replay = run(cfg, tmp_path, script(BETA_TAKE))
    s = replay.state
    # beta before the default: cash 24598.819675 + 4 tokens x fair 100 = 24998.819675;
    # 60 % of it is lost (14999.291805), 9999.52787 remains as a cash claim, no tokens
    value = BETA_CASH + 4 * 100.0
    assert summary["default_loss"] == pytest.approx(0.6 * value, abs=1e-9)
    assert summary["default_loss"] == pytest.approx(14_999.291805, abs=1e-9)
    assert s.cash[BETA] == pytest.approx(9_999.52787, abs=1e-9)
    assert s.pos[BETA, AAPLX] == 0.0 and replay.trader.kpos[BETA, AAPLX] == 0.0
    assert replay.trader.kcash[BETA] == pytest.approx(9_999.52787, abs=1e-9)
    assert s.cash[ALPHA] == s.cash[BROKER] == 25_000.0
    assert s.pos[ALPHA, AAPLX] == s.pos[BROKER, AAPL] == 0.0
    assert summary["equity_final_raw"] == pytest.approx(50_000.0 + 9_999.52787, abs=1e-9)
    assert summary["pnl_total"] == pytest.approx(-15_000.47213, abs=1e-9)
    assert abs(summary["pnl_residual"]) < 1e-6


def test_an_order_that_reached_the_venue_before_its_default_trades_and_its_late_report_is_not_booked_twice(tmp_path):
    # The take reaches beta at T0+22 ms; beta defaults at T0+30 ms; the next event is at T0+50 ms.
    # The venue saw the order first, so it fills (4 tokens at T0+22 ms) and those tokens are part of
    # the balance that defaults. Its report (T0+42 ms) reaches us after the default reset our known
    # books to the claim: it must not add the 4 tokens again, or we would hedge a phantom delta
    # (band 3: a sale of 4 shares).
    rows = broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS) + broker(T0 + 100 * MS) + broker(T0 + 200 * MS)
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml", risk={"hedge_band": 3.0}, backtest={
        "scenarios": [{"kind": "default", "venue": "beta", "at": "2025-07-07T14:00:00.030Z", "recovery_rate": 0.4}]})
    summary, replay = run(cfg, tmp_path, script(BETA_TAKE))
    f = fills_of(replay)
    assert f["tag"].to_list() == ["arb"] * 3 and f["ts"].to_list() == [T0 + 22 * MS] * 3
    assert summary["default_loss"] == pytest.approx(0.6 * (BETA_CASH + 4 * 100.0), abs=1e-9)
    s = replay.state
    assert s.pos[BETA, AAPLX] == 0.0 and replay.trader.kpos[BETA, AAPLX] == 0.0
    assert replay.trader.kcash[BETA] == pytest.approx(s.cash[BETA], abs=1e-9)
    assert s.pos[BROKER, AAPL] == 0.0 and summary["fills_hedge"] == 0


@pytest.mark.parametrize("halt_ms, fills", [((30, 70), True), ((10, 40), False)])
def test_a_halt_sees_an_order_when_it_reached_the_venue_not_when_the_next_event_came(tmp_path, halt_ms, fills):
    # The take reaches beta at T0+22 ms; the venue acts on it when the next event comes (T0+50 ms).
    # A halt from T0+30 ms started after the order was there: it fills at T0+22 ms. A halt from
    # T0+10 ms to T0+40 ms covers its arrival: rejected (reported at T0+42 ms), although the halt is
    # over by T0+50 ms.
    rows = broker(T0) + quote(BETA, T0 + 2 * MS, 99.98, 5.0, 100.02, 5.0) + broker(T0 + 50 * MS) + broker(T0 + 100 * MS)
    write_store(tmp_path, rows)
    at, until = (f"2025-07-07T14:00:00.{ms:03d}Z" for ms in halt_ms)
    cfg = make_config(tmp_path / "c.toml", backtest={"scenarios": [{"kind": "halt", "venue": "beta", "at": at, "until": until}]})
    _, replay = run(cfg, tmp_path, script((T0 + 1.5 * MS, T0 + 2.5 * MS, BETA, 1, 100.10, 2.0, TAKE)))
    f = fills_of(replay)
    order = replay.sim.orders[replay.sim.orders["id"] == 1][0]
    assert replay.sim.oc[OC_NEXT_ID] == 2
    if fills:
        assert f.select("ts", "price", "qty").rows() == [(T0 + 22 * MS, 100.02, 2.0)]
        assert replay.state.pos[BETA, AAPLX] == 2.0
    else:
        assert f.height == 0
        assert order["reason"] == REASON_HALTED and order["ts_done"] == T0 + 42 * MS
        assert replay.state.pos[BETA, AAPLX] == 0.0 and replay.state.cash[BETA] == 25_000.0


def test_venue_default_values_the_balance_at_the_fair_of_the_moment_between_decisions(tmp_path):
    # One decision a second. The take is decided at T0+1 s, filled at T0+1.02 s at fair 100. The share
    # then prints at mid 101 (T0+1.2 s, between decisions: no mark is taken there). Beta defaults at
    # T0+1.5 s, applied on the next event (T0+1.6 s): its 4 tokens are worth fair 101 by then.
    rows = (broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 1000 * MS) + broker(T0 + 1050 * MS)
            + broker(T0 + 1200 * MS, 100.99, 101.01) + quote(ALPHA, T0 + 1600 * MS, 99.95, 3.0, 100.05, 3.0)
            + broker(T0 + 2000 * MS, 100.99, 101.01))
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml", backtest={
        "decision_interval_ms": 1000.0, "sample_interval_s": 10.0,
        "scenarios": [{"kind": "default", "venue": "beta", "at": "2025-07-07T14:00:01.5Z", "recovery_rate": 0.4}]})
    take = (T0 + 999.5 * MS, T0 + 1000.5 * MS, BETA, 1, 100.05, 4.0, TAKE)
    summary, replay = run(cfg, tmp_path, script(take))
    assert fills_of(replay)["ts"].to_list() == [T0 + 1020 * MS] * 3
    value = BETA_CASH + 4 * 101.0  # 25002.819675
    assert summary["default_loss"] == pytest.approx(0.6 * value, abs=1e-9)  # 15001.691805
    assert replay.state.cash[BETA] == pytest.approx(0.4 * value, abs=1e-9)  # 10001.12787
    assert summary["pnl_inventory"] == pytest.approx(4 * 1.0, abs=1e-9)  # the move was ours until the default
    assert summary["equity_final_raw"] == pytest.approx(50_000.0 + 0.4 * value, abs=1e-9)
    assert abs(summary["pnl_residual"]) < 1e-6


# -- 7. multiplier step ----------------------------------------------------------------------------


def test_multiplier_step_moves_fair_and_net_delta_not_positions_and_books_the_jump_as_inventory_pnl(tmp_path):
    rows = broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS) + broker(T0 + 500 * MS) + broker(T0 + NS) + broker(T0 + 1500 * MS)
    write_store(tmp_path, rows)
    step = [{"active_from": "2025-07-07T14:00:01Z", "value": 1.05}]  # T0 + 1 s
    cfg = make_config(tmp_path / "c.toml", instruments={"AAPLx": {"multipliers": step}})
    summary, replay = run(cfg, tmp_path, script(BETA_TAKE))
    ts = replay.timeseries_frame()
    before = ts.filter(ts["ts"] == T0).row(0, named=True)
    after = ts.filter(ts["ts"] == T0 + NS).row(0, named=True)
    assert before["fair"] == pytest.approx(100.0)
    # 4 tokens held across the step: fair 100 x 1.05 = 105; net delta 4 x 1.05 = 4.2 shares; still 4 raw tokens
    assert after["fair"] == pytest.approx(105.0, abs=1e-9)
    assert after["net_delta"] == pytest.approx(4.2, abs=1e-9)
    assert after["pos_beta"] == 4.0
    assert after["pnl_inventory_cum"] == pytest.approx(4 * (105.0 - 100.0), abs=1e-9)
    assert replay.state.pos[BETA, AAPLX] == 4.0
    assert replay.trader.f[T_MULT] == 1.05
    f = fills_of(replay)
    assert set(f["fair"]) == {100.0} and set(f["multiplier"]) == {1.0}  # booked before the step
    assert summary["pnl_inventory"] == pytest.approx(20.0, abs=1e-9)
    # equity 75000 - 400.13 - 1.050325 + 4 x 105
    assert summary["equity_final_raw"] == pytest.approx(75_018.819675, abs=1e-9)


# -- 8. PnL decomposition ----------------------------------------------------------------------------


def _mixed_rows() -> list[tuple]:
    """Quote fills at alpha (as in test 1), the beta take (test 2), a hedge at the broker, then the
    share moves from mid 100.00 to 100.10."""
    return (broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.95, 3.0, 100.05, 3.0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS)
            + trade(ALPHA, T0 + 100 * MS, -1, 99.95, 2.0) + trade(ALPHA, T0 + 200 * MS, -1, 99.95, 1.5)
            + trade(ALPHA, T0 + 300 * MS, -1, 99.95, 2.0) + broker(T0 + 400 * MS, 100.09, 100.11))


MIXED_SCRIPT = script((T0 - MS, T0 + 10 * NS, ALPHA, 1, 99.95, 2.0, QUOTE), BETA_TAKE)


def test_pnl_decomposition_adds_up_with_quote_arb_and_hedge_fills(tmp_path):
    write_store(tmp_path, _mixed_rows())
    cfg = make_config(tmp_path / "c.toml", risk={"hedge_band": 3.0})
    summary, replay = run(cfg, tmp_path, MIXED_SCRIPT)
    f = fills_of(replay)
    # the beta take reaches beta at T0+22 ms and is carried out when the next event (T0+50 ms) lets
    # time pass it; its report (T0+42 ms) is known at the end of that group: net delta 4 > band 3, so
    # sell 4 shares, at the broker at T0+55 ms, filled at the bid 99.99 on the next event
    hedge = f.filter(f["tag"] == "hedge").row(0, named=True)
    assert (hedge["ts"], hedge["side"], hedge["qty"], hedge["price"]) == (T0 + 55 * MS, -1, 4.0, 99.99)
    assert f.filter(f["tag"] == "quote")["qty"].to_list() == pytest.approx([0.5, 1.5])
    assert f.filter(f["tag"] == "arb").height == 3
    # edges against fair 100 (share mark 100 for the hedge)
    assert summary["pnl_spread_capture"] == pytest.approx(0.05 * 2, abs=1e-9)
    assert summary["pnl_arb"] == pytest.approx(-0.13, abs=1e-9)
    assert summary["pnl_hedge"] == pytest.approx(-0.01 * 4, abs=1e-9)
    # marks +0.10 with 2 + 4 tokens long and 4 shares short
    assert summary["pnl_inventory"] == pytest.approx(0.10 * 6 - 0.10 * 4, abs=1e-9)
    # rebates -0.01999, beta 1.050325, broker 99.99 x 4 x 0.5 bps = 0.019998
    assert summary["fees_paid"] == pytest.approx(-0.01999 + 1.050325 + 0.019998, abs=1e-9)
    # alpha 24800.11999 + 2 x 100.1; beta 24598.819675 + 4 x 100.1; broker 25000 + 399.96 - 0.019998 - 4 x 100.1
    assert summary["equity_final_raw"] == pytest.approx(74_999.079667, abs=1e-9)
    assert summary["pnl_total"] == pytest.approx(-0.920333, abs=1e-9)
    assert summary["pnl_total"] == pytest.approx(summary["equity_final_raw"] - summary["equity_initial_raw"], abs=1e-9)
    assert abs(summary["pnl_residual"]) < 0.01


def test_pnl_decomposition_adds_up_on_a_random_market_with_hedges_and_borrow(tmp_path):
    write_store(tmp_path, market_stream(11, n_steps=80))
    cfg = make_config(tmp_path / "c.toml", risk={"hedge_band": 2.0}, venues={"broker": {"borrow_bps_annual": 5e5}})
    spec = registry.get("fixed_spread")
    params = spec.params_model(half_spread_bps=2.0, size=2.0, skew_bps_per_token=0.0).to_array()
    summary, _ = run(cfg, tmp_path, params, kernel=spec.kernel, crosscheck=True)
    assert summary["fills_maker"] > 5 and summary["fills_hedge"] >= 1 and summary["borrow_cost"] > 0
    assert summary["pnl_total"] == summary["equity_final_raw"] - summary["equity_initial_raw"]
    assert abs(summary["pnl_residual"]) < 0.01
    assert summary["backtrader_check"]["agrees"] is True  # borrow is not in the fill log: the runner adds it back


# -- 9, 10. determinism and chunking -----------------------------------------------------------------


def _random_run(root, chunk_size=1_000_000):
    depeg = {"kind": "depeg", "venue": "alpha", "at": "2025-07-07T14:00:03Z", "until": "2025-07-07T14:00:06Z", "depeg_bps": 20.0}
    cfg = make_config(root / "c.toml", risk={"hedge_band": 3.0}, venues={"beta": {"latency_jitter_ms": 5.0}},
                      backtest={"queue_model": "probabilistic", "scenarios": [depeg]})
    spec = registry.get("fixed_spread")
    params = spec.params_model(half_spread_bps=3.0, size=2.0).to_array()
    return run(cfg, root, params, kernel=spec.kernel, chunk_size=chunk_size)


def test_same_config_data_and_seed_give_identical_fills_and_summary(tmp_path):
    write_store(tmp_path, market_stream(5))
    s1, r1 = _random_run(tmp_path)
    s2, r2 = _random_run(tmp_path)
    assert r1.fills_frame().height > 5
    assert r1.fills_frame().equals(r2.fills_frame())
    assert r1.timeseries_frame().equals(r2.timeseries_frame())
    assert without_wall(s1) == without_wall(s2)


@pytest.mark.parametrize("chunk_size", [1, 7])
def test_chunk_size_does_not_change_the_replay(tmp_path, chunk_size):
    write_store(tmp_path, market_stream(5))
    s_small, r_small = _random_run(tmp_path, chunk_size=chunk_size)
    s_big, r_big = _random_run(tmp_path, chunk_size=1_000_000)
    assert r_big.fills_frame().height > 5
    assert r_small.fills_frame().equals(r_big.fills_frame())
    assert r_small.track_frame().equals(r_big.track_frame())
    assert r_small.timeseries_frame().equals(r_big.timeseries_frame())
    assert r_small.trader.iv[T_DECISIONS] == r_big.trader.iv[T_DECISIONS]
    assert without_wall(s_small) == without_wall(s_big)


def test_a_chunk_boundary_inside_a_same_time_group_does_not_add_a_decision(tmp_path):
    # Rows 6 and 7 are the broker's new bid and ask at T0+200 ms (mid 100.00 -> 99.50). chunk_size=7
    # ends a chunk between them: deciding there would see bid 99.49 against the old ask 100.01 (fair
    # 99.75) and send quotes around it that the very next row makes stale.
    rows = (broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.90, 3.0, 100.10, 3.0) + trade(ALPHA, T0 + 50 * MS, 1, 100.20, 1.0)
            + trade(ALPHA, T0 + 60 * MS, 1, 100.20, 1.0) + broker(T0 + 200 * MS, 99.49, 99.51) + broker(T0 + 400 * MS, 99.49, 99.51))
    write_store(tmp_path, rows)
    cfg = make_config(tmp_path / "c.toml", strategy={"name": "fixed_spread", "quote_venues": ["alpha"]})
    spec = registry.get("fixed_spread")
    params = spec.params_model(half_spread_bps=3.0, size=1.0).to_array()
    results = [run(cfg, tmp_path, params, kernel=spec.kernel, chunk_size=c) for c in (7, 1_000_000)]
    (s_small, r_small), (s_big, r_big) = results
    # groups: broker T0, alpha T0+1, two trades, broker T0+200, broker T0+400 = 6 decisions
    assert r_big.trader.iv[T_DECISIONS] == 6
    assert r_small.trader.iv[T_DECISIONS] == 6
    assert r_small.sim.oc[OC_NEXT_ID] == r_big.sim.oc[OC_NEXT_ID]
    assert r_small.fills_frame().equals(r_big.fills_frame())
    assert without_wall(s_small) == without_wall(s_big)


def test_decide_when_changed_skips_the_groups_that_leave_every_top_of_book_alone(tmp_path):
    # Groups: broker and alpha quote (T0, T0+1 ms), two trades (T0+50, +60 ms: no top of book moves),
    # the broker moves (T0+200 ms), then repeats itself (T0+400 ms). A strategy that never orders (no
    # reports). Every group decides by default (6); with decide_when_changed the three that change a
    # top of book do; with a max idle shorter than the gaps, every group again.
    rows = (broker(T0) + quote(ALPHA, T0 + 1 * MS, 99.90, 3.0, 100.10, 3.0) + trade(ALPHA, T0 + 50 * MS, 1, 100.20, 1.0)
            + trade(ALPHA, T0 + 60 * MS, 1, 100.20, 1.0) + broker(T0 + 200 * MS, 99.49, 99.51) + broker(T0 + 400 * MS, 99.49, 99.51))
    write_store(tmp_path, rows)
    decisions = {}
    for name, bt in (("every", {}), ("changed", {"decide_when_changed": True}),
                     ("idle", {"decide_when_changed": True, "decide_max_idle_ms": 5.0})):
        cfg = make_config(tmp_path / f"{name}.toml", backtest=bt)
        _, replay = run(cfg, tmp_path, script())
        decisions[name] = int(replay.trader.iv[T_DECISIONS])
    assert decisions == {"every": 6, "changed": 3, "idle": 6}


# -- 11. backtrader cross-check ---------------------------------------------------------------------


def test_backtrader_replay_of_the_fill_log_agrees_with_the_engine_books(tmp_path):
    write_store(tmp_path, _mixed_rows())
    cfg = make_config(tmp_path / "c.toml", risk={"hedge_band": 3.0})
    summary, replay = run(cfg, tmp_path, MIXED_SCRIPT, crosscheck=True)
    check = summary["backtrader_check"]
    assert check["agrees"] is True
    assert check["max_abs_diff"] <= check["tolerance"]
    # 2 quote fills at alpha, 3 take fills at beta, 1 hedge at the broker, all executed by backtrader
    assert {v: b["fills"] for v, b in check["venues"].items()} == {"alpha": 2, "beta": 3, "broker": 1}
    assert all(b["fills_executed_by_backtrader"] == b["fills"] for b in check["venues"].values())
    assert check["venues"]["beta"]["cash"]["reported"] == pytest.approx(BETA_CASH, abs=1e-9)
    assert check["venues"]["broker"]["positions"]["AAPL"]["backtrader"] == -4.0


def test_backtrader_check_runs_when_a_venue_has_no_fills_and_another_defaulted(tmp_path):
    # only beta trades (the take of test 2), then defaults; alpha and the broker never fill
    rows = broker(T0) + beta_depth(T0 + 2 * MS) + broker(T0 + 50 * MS) + broker(T0 + 1500 * MS)
    write_store(tmp_path, rows)
    default = {"kind": "default", "venue": "beta", "at": "2025-07-07T14:00:01Z", "recovery_rate": 0.4}
    cfg = make_config(tmp_path / "c.toml", backtest={"scenarios": [default]})
    summary, _ = run(cfg, tmp_path, script(BETA_TAKE), crosscheck=True)
    # the claim left at beta is not a fill: the runner leaves the defaulted venue's books out of the comparison
    assert summary["backtrader_check"]["agrees"] is True
    assert summary["backtrader_check"]["venues"]["alpha"]["fills"] == 0
