"""Quoting formulas pinned to hand-computed values (DOMAIN.md "Quoting models"), and the core's rules."""

import math
from decimal import Decimal

import pytest
from core_ctx import HEDGE, TOKEN_A, TOKEN_B, make_ctx
from hypothesis import given, settings
from hypothesis import strategies as st

from stockbridge.core.context import ASK, BID, new_quotes, new_takes
from stockbridge.core.quoting import (
    as_reservation_price,
    as_spread,
    avellaneda_stoikov,
    ceil_to_grid,
    finalize_quotes,
    finalize_takes,
    floor_to_grid,
    gap_tau,
    glft_half_spreads,
    glft_xi_half_spreads,
    horizon_sigma,
)

# gamma = 0.1, sigma = 0.5, k = 1.5, A = 2 throughout the formula tests.
# ln(1 + gamma/k) = ln(16/15) = 0.0645385211
LN_16_15 = 0.0645385211


def test_as_reservation_price():
    # 100 - q*gamma*sigma^2*tau = 100 - 2*0.1*0.25*10 = 100 - 0.5
    assert as_reservation_price(100.0, 2.0, 0.1, 0.5, 10.0) == pytest.approx(99.5, abs=1e-12)
    # a short book is willing to pay more: 100 + 0.5
    assert as_reservation_price(100.0, -2.0, 0.1, 0.5, 10.0) == pytest.approx(100.5, abs=1e-12)


def test_as_spread():
    # gamma*sigma^2*tau + (2/gamma)*ln(1+gamma/k) = 0.1*0.25*10 + 20*0.0645385211 = 0.25 + 1.290770422
    assert as_spread(0.1, 0.5, 10.0, 1.5) == pytest.approx(1.540770422, abs=1e-8)
    # the horizon term vanishes at tau = 0: 20*ln(16/15)
    assert as_spread(0.1, 0.5, 0.0, 1.5) == pytest.approx(20 * LN_16_15, abs=1e-8)


def test_avellaneda_stoikov_quotes():
    bid, ask = avellaneda_stoikov(100.0, 2.0, 0.1, 0.5, 10.0, 1.5)
    # r = 99.5, half spread = 1.540770422/2 = 0.770385211
    assert bid == pytest.approx(99.5 - 0.770385211, abs=1e-8)
    assert ask == pytest.approx(99.5 + 0.770385211, abs=1e-8)


def test_glft_half_spreads():
    # C = sqrt(sigma^2*gamma/(2kA) * (1+gamma/k)^(1+k/gamma)) = sqrt(0.025/6 * (16/15)^16)
    #   = sqrt(0.0041666667 * 2.8084039656) = sqrt(0.0117016832) = 0.1081743185
    # base = ln(16/15)/gamma = 0.645385211
    c, base = 0.1081743185, 0.645385211
    db, da = glft_half_spreads(1.0, 0.1, 0.5, 1.5, 2.0)
    assert db == pytest.approx(base + 1.5 * c, abs=1e-8)  # (2q+1)/2 = 1.5 -> 0.8076466892
    assert da == pytest.approx(base - 0.5 * c, abs=1e-8)  # (2q-1)/2 = 0.5 -> 0.5912980521
    db, da = glft_half_spreads(-2.0, 0.1, 0.5, 1.5, 2.0)
    assert db == pytest.approx(0.4831237336, abs=1e-8)  # base - 1.5*C
    assert da == pytest.approx(0.9158210077, abs=1e-8)  # base + 2.5*C


def test_glft_xi_half_spreads():
    # xi = 0.05, Delta = 2 -> xi*Delta = 0.1, xi*Delta/k = 1/15
    # c1 = ln(16/15)/0.1 = 0.645385211
    # c2 = sqrt(gamma/(2*A*Delta*k) * (16/15)^(15+1)) = sqrt(0.1/12 * 2.8084039656) = 0.1529815884
    # delta_b = c1 + Delta/2*sigma*c2 + q*sigma*c2 = 0.645385211 + 0.0764907942 + 3*0.0764907942
    db, da = glft_xi_half_spreads(3.0, 0.1, 0.5, 1.5, 2.0, 0.05, 2.0)
    assert db == pytest.approx(0.9513483881, abs=1e-8)
    assert da == pytest.approx(0.4924036230, abs=1e-8)  # 0.645385211 + 0.0764907942 - 0.2294723826


def test_glft_xi_equals_glft_when_xi_is_gamma_and_unit_orders():
    for q in (-3.0, 0.0, 2.0):
        assert glft_xi_half_spreads(q, 0.1, 0.5, 1.5, 2.0, 0.1, 1.0) == pytest.approx(
            glft_half_spreads(q, 0.1, 0.5, 1.5, 2.0), abs=1e-12
        )


def test_glft_xi_zero_is_the_limit():
    # xi -> 0: c1 = 1/k = 0.6666667, c2 = sqrt(0.1/12 * e) = 0.1505065; q=3, Delta=2:
    # 0.6666667 + 0.5*0.1505065 + 1.5*0.1505065 = 0.9676806
    db, _ = glft_xi_half_spreads(3.0, 0.1, 0.5, 1.5, 2.0, 0.0, 2.0)
    assert db == pytest.approx(0.9676806103, abs=1e-8)
    near, _ = glft_xi_half_spreads(3.0, 0.1, 0.5, 1.5, 2.0, 1e-9, 2.0)
    assert near == pytest.approx(db, abs=1e-6)


def test_horizon_sigma_and_gap_tau():
    assert horizon_sigma(0.5, 400.0, 100.0) == pytest.approx(1.0)  # 0.5*sqrt(4)
    assert horizon_sigma(0.5, 50.0, 100.0) == pytest.approx(0.5)  # never below the open-hours sigma
    assert gap_tau(1000.0, 2.0) == pytest.approx(5000.0)  # 1000*(1 + 2^2)
    assert gap_tau(0.0, 2.0) == 0.0


def test_grid_rounding():
    assert floor_to_grid(100.017, 0.01) == pytest.approx(100.01)
    assert ceil_to_grid(100.011, 0.01) == pytest.approx(100.02)
    # 100.01 arrives as 100.00999999999999 and stays 100.01 either way
    assert floor_to_grid(0.1 + 0.2, 0.1) == pytest.approx(0.3)
    assert ceil_to_grid(100.01 - 1e-13, 0.01) == pytest.approx(100.01)


@settings(max_examples=300, deadline=None)
@given(k=st.integers(min_value=1, max_value=10**8), step=st.sampled_from(["0.01", "0.001", "0.0001", "0.05", "0.25", "1", "5"]))
def test_a_grid_price_is_the_number_the_venue_prints(k, step):
    # exactly the double nearest the decimal k * step, as parsing the venue's "207.89" gives
    # (20789 * 0.01 would be 207.89000000000001)
    want = float(Decimal(k) * Decimal(step))
    x = want * (1 + 1e-13)  # a computed price a hair above the grid point
    assert floor_to_grid(x, float(step)) == want
    assert ceil_to_grid(want * (1 - 1e-13), float(step)) == want


# -- finalize_quotes ------------------------------------------------------------------------------


def put(quotes, v, side, lvl, price, size):
    quotes[v, side, lvl] = (price, size)


def finalize(ctx, quotes):
    return finalize_quotes(ctx[0], quotes)


def test_quotes_round_to_grid_outward_and_lot_down():
    ctx, q = make_ctx(), new_quotes()
    put(q, TOKEN_A, BID, 0, 99.7371, 1.2345)
    put(q, TOKEN_A, ASK, 0, 100.2629, 1.2345)
    assert finalize(ctx, q) == 2
    assert tuple(q[TOKEN_A, BID, 0]) == pytest.approx((99.73, 1.23))
    assert tuple(q[TOKEN_A, ASK, 0]) == pytest.approx((100.27, 1.23))


def test_min_half_spread_from_fair_uncertainty():
    # fair_std 0.2, spread_z 1: a pair centred at 100 is pushed out to 100 -/+ 0.2
    ctx, q = make_ctx(fair_std=0.2), new_quotes()
    put(q, TOKEN_A, BID, 0, 99.95, 1.0)
    put(q, TOKEN_A, ASK, 0, 100.05, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 0] == pytest.approx(99.80)
    assert q[TOKEN_A, ASK, 0, 0] == pytest.approx(100.20)
    ctx, q = make_ctx(fair_std=0.2, spread_z=2.0), new_quotes()
    put(q, TOKEN_A, BID, 0, 99.95, 1.0)
    put(q, TOKEN_A, ASK, 0, 100.05, 1.0)
    finalize(ctx, q)
    assert (q[TOKEN_A, BID, 0, 0], q[TOKEN_A, ASK, 0, 0]) == pytest.approx((99.60, 100.40))


def test_skewed_pair_keeps_its_center_and_stays_post_only():
    # a long book offers below fair: pair 98.90/99.00 (center 98.95), h = 0.2
    ctx, q = make_ctx(fair_std=0.2), new_quotes()
    put(q, TOKEN_A, BID, 0, 98.90, 1.0)
    put(q, TOKEN_A, ASK, 0, 99.00, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 0] == pytest.approx(98.75)  # 98.95 - 0.2
    # 98.95 + 0.2 = 99.15 would cross the venue's bid 99.50: one tick above it instead
    assert q[TOKEN_A, ASK, 0, 0] == pytest.approx(99.51)


def test_one_sided_quote_is_held_away_from_fair():
    ctx, q = make_ctx(fair_std=0.2), new_quotes()
    put(q, TOKEN_A, ASK, 0, 99.00, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, ASK, 0, 0] == pytest.approx(100.20)
    assert q[TOKEN_A, BID, 0, 1] == 0.0


def test_bid_never_crosses_the_venue_ask():
    ctx, q = make_ctx(), new_quotes()
    ctx[0]["ask"][TOKEN_A] = 99.90
    put(q, TOKEN_A, BID, 0, 99.95, 1.0)
    put(q, TOKEN_A, ASK, 0, 100.60, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 0] == pytest.approx(99.89)  # best ask - one tick
    assert q[TOKEN_A, ASK, 0, 0] == pytest.approx(100.60)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["quotable"].__setitem__(TOKEN_A, 0),
        lambda c: c["tradable"].__setitem__(TOKEN_A, 0),
        lambda c: c.__setitem__("n_venues", 0),
        lambda c: c.__setitem__("fair", math.nan),
        lambda c: c["tick"].__setitem__(TOKEN_A, 0.0),
    ],
    ids=["not quotable", "not tradable", "beyond n_venues", "no fair value", "no grid"],
)
def test_quotes_dropped_where_not_allowed(change):
    ctx, q = make_ctx(), new_quotes()
    change(ctx[0])
    put(q, TOKEN_A, BID, 0, 99.7, 1.0)
    put(q, TOKEN_A, ASK, 0, 100.3, 1.0)
    assert finalize(ctx, q) == 0
    assert not q.any()


def test_size_factor_and_min_notional():
    ctx, q = make_ctx(size_factor=0.3), new_quotes()
    put(q, TOKEN_A, BID, 0, 99.7, 2.0)
    put(q, TOKEN_A, ASK, 0, 100.3, 2.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(0.6)  # 2 * 0.3
    ctx, q = make_ctx(), new_quotes()
    ctx[0]["min_notional"][TOKEN_A] = 5.0
    put(q, TOKEN_A, BID, 0, 99.7, 0.05)  # 4.985 < 5: dropped
    put(q, TOKEN_A, ASK, 0, 100.3, 0.06)  # 6.018: kept
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == 0.0
    assert q[TOKEN_A, ASK, 0, 1] == pytest.approx(0.06)


def test_venue_position_bound_counts_every_level():
    ctx, q = make_ctx(), new_quotes()
    ctx[0]["position"][TOKEN_A] = 9.5
    ctx[0]["max_position"][TOKEN_A] = 10.0
    put(q, TOKEN_A, BID, 0, 99.7, 0.4)
    put(q, TOKEN_A, BID, 1, 99.6, 0.4)
    put(q, TOKEN_A, ASK, 0, 100.3, 2.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(0.4)
    assert q[TOKEN_A, BID, 1, 1] == pytest.approx(0.1)  # 10 - 9.5 - 0.4 left
    assert q[TOKEN_A, ASK, 0, 1] == pytest.approx(2.0)  # sale room 10 + 9.5


def test_net_delta_bound_in_share_equivalents():
    # multiplier 2: a token adds 2 shares of delta; room to buy (50 - 48)/2 = 1 token
    ctx, q = make_ctx(multiplier=2.0, fair=200.0, net_delta=48.0, max_net_delta=50.0), new_quotes()
    ctx[0]["bid"][TOKEN_A], ctx[0]["ask"][TOKEN_A] = 199.0, 201.0
    put(q, TOKEN_A, BID, 0, 199.5, 3.0)
    put(q, TOKEN_A, ASK, 0, 200.5, 3.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(1.0)
    assert q[TOKEN_A, ASK, 0, 1] == pytest.approx(3.0)  # room (50 + 48)/2 = 49 tokens
    ctx[0]["net_delta"] = 51.0  # already beyond: no bid at all
    put(q, TOKEN_A, BID, 0, 199.5, 3.0)
    put(q, TOKEN_A, ASK, 0, 200.5, 3.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == 0.0
    assert q[TOKEN_A, ASK, 0, 1] == pytest.approx(3.0)


def test_net_delta_room_is_shared_across_venues():
    ctx, q = make_ctx(max_net_delta=1.5), new_quotes()
    for v in (TOKEN_A, TOKEN_B):
        put(q, v, BID, 0, 99.7, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(1.0)
    assert q[TOKEN_B, BID, 0, 1] == pytest.approx(0.5)


def test_exposure_cap_limits_buys():
    # long 3 tokens worth 100: cap 500 leaves (500/100 - 3) = 2 tokens
    ctx, q = make_ctx(), new_quotes()
    ctx[0]["position"][TOKEN_A] = 3.0
    ctx[0]["exposure_cap"][TOKEN_A] = 500.0
    put(q, TOKEN_A, BID, 0, 99.7, 5.0)
    put(q, TOKEN_A, ASK, 0, 100.3, 5.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(2.0)
    assert q[TOKEN_A, ASK, 0, 1] == pytest.approx(5.0)  # a sale takes no token exposure


def test_exposure_cap_values_a_bid_above_fair_at_its_price():
    # short 2, bidding 100.40 > fair: room = 303/100.4 + 2 = 5.0179 -> 5.01; 3.01 * 100.4 = 302.2 <= 303
    ctx, q = make_ctx(), new_quotes()
    ctx[0]["position"][TOKEN_A] = -2.0
    ctx[0]["exposure_cap"][TOKEN_A] = 303.0
    put(q, TOKEN_A, BID, 0, 100.40, 9.0)
    put(q, TOKEN_A, ASK, 0, 100.60, 1.0)
    finalize(ctx, q)
    assert q[TOKEN_A, BID, 0, 0] == pytest.approx(100.40)
    assert q[TOKEN_A, BID, 0, 1] == pytest.approx(5.01)


def test_hedge_venue_quotes_in_share_units():
    # multiplier 2, fair 200 per token -> 100 per share; fair_std 0.4 per token -> h = 0.2 per share
    ctx, q = make_ctx(multiplier=2.0, fair=200.0, fair_std=0.4), new_quotes()
    ctx[0]["quotable"][HEDGE] = 1
    put(q, HEDGE, BID, 0, 99.99, 3.0)
    finalize(ctx, q)
    assert tuple(q[HEDGE, BID, 0]) == pytest.approx((99.80, 3.0))


# -- finalize_takes -------------------------------------------------------------------------------


def takes_of(*rows):
    t = new_takes()
    for i, row in enumerate(rows):
        t[i] = row
    return t


def test_take_limits_round_conservatively():
    ctx = make_ctx()
    t = takes_of((TOKEN_A, 1, 100.017, 1.257), (TOKEN_B, -1, 99.993, 2.0))
    assert finalize_takes(ctx[0], t, 2) == 2
    assert tuple(t[0]) == pytest.approx((TOKEN_A, 1, 100.01, 1.25))  # buy never pays more
    assert tuple(t[1]) == pytest.approx((TOKEN_B, -1, 100.00, 2.0))  # sale never sells cheaper


def test_takes_dropped_and_packed():
    ctx = make_ctx(hedge_open=0)
    t = takes_of(
        (HEDGE, 1, 100.01, 3.0),  # hedge venue closed
        (TOKEN_A, 0, 100.0, 1.0),  # no side
        (TOKEN_B, -1, math.nan, 1.0),  # no price
        (TOKEN_A, -1, 99.5, 1.0),
    )
    assert finalize_takes(ctx[0], t, 4) == 1
    assert tuple(t[0]) == pytest.approx((TOKEN_A, -1, 99.5, 1.0))
    assert not t[1:].any()
    assert finalize_takes(ctx[0], takes_of((TOKEN_A, 1, 100.0, 1.0)), -3) == 0
    assert finalize_takes(ctx[0], takes_of((TOKEN_A, 1, 100.0, 1.0)), 99) == 1


def test_take_position_and_exposure_limits():
    ctx = make_ctx()
    ctx[0]["position"][TOKEN_A] = 4.0
    ctx[0]["max_position"][TOKEN_A] = 5.0
    ctx[0]["max_position"][TOKEN_B] = 5.0
    t = takes_of((TOKEN_A, 1, 100.0, 3.0), (TOKEN_A, -1, 99.0, 20.0), (TOKEN_B, 1, 101.0, 9.0))
    ctx[0]["exposure_cap"][TOKEN_B] = 505.0
    assert finalize_takes(ctx[0], t, 3) == 3
    assert t[0, 3] == pytest.approx(1.0)  # 5 - 4
    assert t[1, 3] == pytest.approx(9.0)  # 5 + 4
    assert t[2, 3] == pytest.approx(5.0)  # 505 / max(fair 100, limit 101)


def test_take_batch_net_delta():
    # a lone buy of 3 at net delta 48 (limit 50) is trimmed to 2
    ctx = make_ctx(net_delta=48.0, max_net_delta=50.0)
    t = takes_of((TOKEN_A, 1, 100.0, 3.0))
    assert finalize_takes(ctx[0], t, 1) == 1
    assert t[0, 3] == pytest.approx(2.0)
    # an arbitrage pair (buy 3 tokens, sell 3 shares) leaves delta where it was: untouched
    t = takes_of((TOKEN_A, 1, 100.0, 3.0), (HEDGE, -1, 99.99, 3.0))
    assert finalize_takes(ctx[0], t, 2) == 2
    assert t[0, 3] == pytest.approx(3.0) and t[1, 3] == pytest.approx(3.0)

