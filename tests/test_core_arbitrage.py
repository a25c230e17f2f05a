"""Crossed-market detection between token venues and against the underlying, hand-computed edges."""

import numpy as np
import pytest
from core_ctx import HEDGE, TOKEN_A, TOKEN_B, make_ctx

from stockbridge.core.arbitrage import detect_arbitrage, pair_edge
from stockbridge.core.context import new_takes
from stockbridge.core.quoting import finalize_takes


def crossed_tokens(**scalars):
    """TOKEN_A offers 5 at 100.00 (taker 10 bps), TOKEN_B bids 3 at 100.50 (taker 26 bps); broker closed.

    Edge per token: 100.50*(1 - 0.0026) - 100.00*(1 + 0.001) = 100.2387 - 100.1 = 0.1387;
    3 tokens: 0.4161 on 300 of notional = 13.87 bps.
    """
    ctx = make_ctx(hedge_open=0, **scalars)
    c = ctx[0]
    c["ask"][TOKEN_A], c["ask_size"][TOKEN_A] = 100.00, 5.0
    c["bid"][TOKEN_B], c["bid_size"][TOKEN_B] = 100.50, 3.0
    c["ask"][TOKEN_B] = 100.60
    c["taker_fee"][:2] = (0.001, 0.0026)
    return ctx


def detect(ctx, min_edge_bps, takes=None):
    takes = new_takes() if takes is None else takes
    return detect_arbitrage(ctx[0], min_edge_bps, takes), takes


def test_token_token_cross():
    ctx = crossed_tokens()
    assert pair_edge(ctx[0], TOKEN_A, TOKEN_B) == pytest.approx(0.1387)
    n, t = detect(ctx, 10.0)
    assert n == 2
    assert tuple(t[0]) == pytest.approx((TOKEN_A, 1, 100.00, 3.0))
    assert tuple(t[1]) == pytest.approx((TOKEN_B, -1, 100.50, 3.0))
    assert detect(ctx, 15.0)[0] == 0  # 13.87 bps is not enough
    # the core's own rules leave the pair as it is
    assert finalize_takes(ctx[0], t, n) == 2
    assert tuple(t[1]) == pytest.approx((TOKEN_B, -1, 100.50, 3.0))


def test_no_cross_no_takes():
    ctx = crossed_tokens()
    ctx[0]["bid"][TOKEN_B] = 100.10  # 100.10*(0.9974) = 99.84 < 100.1
    assert detect(ctx, 0.0)[0] == 0


def test_haircut_cost_of_moving_balance_to_a_riskier_venue():
    # buying on the 6 % venue and selling on the 4 % one moves value to more risk: 0.02 * 100 = 2.00
    ctx = crossed_tokens()
    ctx[0]["haircut"][:2] = (0.06, 0.04)
    assert pair_edge(ctx[0], TOKEN_A, TOKEN_B) == pytest.approx(0.1387 - 2.0)
    assert detect(ctx, 0.0)[0] == 0
    # toward the safer venue it costs nothing (and earns nothing)
    ctx[0]["haircut"][:2] = (0.04, 0.06)
    assert pair_edge(ctx[0], TOKEN_A, TOKEN_B) == pytest.approx(0.1387)
    assert detect(ctx, 10.0)[0] == 2


def test_gas_counts_per_leg():
    ctx = crossed_tokens()
    ctx[0]["gas"][:2] = 0.25  # 0.4161 - 0.5 < 0
    assert detect(ctx, 0.0)[0] == 0
    ctx[0]["gas"][:2] = 0.1  # 0.4161 - 0.2 = 0.2161 on 300 = 7.2 bps
    assert detect(ctx, 5.0)[0] == 2
    assert detect(ctx, 8.0)[0] == 0


def test_size_within_position_and_exposure_limits():
    ctx = crossed_tokens()
    ctx[0]["max_position"][TOKEN_A] = 2.0
    n, t = detect(ctx, 0.0)
    assert (t[0, 3], t[1, 3]) == pytest.approx((2.0, 2.0))
    ctx = crossed_tokens()
    ctx[0]["position"][TOKEN_B] = -2.5
    ctx[0]["max_position"][TOKEN_B] = 4.0  # TOKEN_B may only go 1.5 shorter
    n, t = detect(ctx, 0.0)
    assert (t[0, 3], t[1, 3]) == pytest.approx((1.5, 1.5))
    ctx = crossed_tokens()
    ctx[0]["exposure_cap"][TOKEN_A] = 150.0  # 150 / max(fair 100, ask 100) = 1.5 tokens
    n, t = detect(ctx, 0.0)
    assert (t[0, 3], t[1, 3]) == pytest.approx((1.5, 1.5))


def token_vs_share(**scalars):
    """Multiplier 2: TOKEN_A offers 5 at 200.00 (10 bps), the broker bids 15 shares at 100.50 (0.5 bp).

    Per share-equivalent: 100.50*(1 - 0.00005) - 200.00/2*(1.001) = 100.494975 - 100.1 = 0.394975.
    """
    ctx = make_ctx(multiplier=2.0, fair=200.0, **scalars)
    c = ctx[0]
    c["tradable"][TOKEN_B] = 0
    c["bid"][TOKEN_A], c["ask"][TOKEN_A], c["ask_size"][TOKEN_A] = 199.0, 200.0, 5.0
    c["bid"][HEDGE], c["ask"][HEDGE], c["bid_size"][HEDGE] = 100.50, 100.52, 15.0
    c["taker_fee"][:3] = (0.001, 0.0026, 0.00005)
    return ctx


def test_token_against_the_underlying():
    ctx = token_vs_share()
    assert pair_edge(ctx[0], TOKEN_A, HEDGE) == pytest.approx(0.394975)
    n, t = detect(ctx, 30.0)  # 10 shares * 0.394975 = 3.94975 on 1000 = 39.5 bps
    assert n == 2
    assert tuple(t[0]) == pytest.approx((TOKEN_A, 1, 200.00, 5.0))  # 5 tokens = 10 shares
    assert tuple(t[1]) == pytest.approx((HEDGE, -1, 100.50, 10.0))
    assert detect(ctx, 40.0)[0] == 0


def test_no_underlying_leg_while_the_hedge_venue_is_closed():
    assert detect(token_vs_share(hedge_open=0), 0.0)[0] == 0


def test_best_pair_first_and_depth_shared():
    # a second token venue offers at 200.20: (100.494975 - 200.2/2*1.001) = 0.294875 per share, 29.4 bps
    ctx = token_vs_share()
    c = ctx[0]
    c["tradable"][TOKEN_B] = 1
    c["bid"][TOKEN_B], c["ask"][TOKEN_B], c["ask_size"][TOKEN_B] = 199.0, 200.2, 5.0
    c["taker_fee"][TOKEN_B] = 0.001
    n, t = detect(ctx, 0.0)
    assert n == 4
    assert tuple(t[0]) == pytest.approx((TOKEN_A, 1, 200.00, 5.0))
    assert tuple(t[1]) == pytest.approx((HEDGE, -1, 100.50, 10.0))
    # 5 of the broker's 15 shares are left: 2.5 tokens
    assert tuple(t[2]) == pytest.approx((TOKEN_B, 1, 200.20, 2.5))
    assert tuple(t[3]) == pytest.approx((HEDGE, -1, 100.50, 5.0))
    # room for one pair only
    small = np.zeros((2, 4))
    assert detect(ctx, 0.0, small)[0] == 2
    assert small[0, 0] == TOKEN_A


def test_lot_residual_may_not_breach_net_delta():
    # multiplier 1.0025: 5 shares against floor(5/1.0025, 0.01) = 4.98 tokens = 4.99245 shares,
    # so the pair shortens delta by 0.00755 shares
    ctx = make_ctx(multiplier=1.0025, fair=200.5)
    c = ctx[0]
    c["tradable"][TOKEN_B] = 0
    c["bid"][TOKEN_A], c["ask"][TOKEN_A], c["ask_size"][TOKEN_A] = 200.0, 200.5, 5.0
    c["bid"][HEDGE], c["ask"][HEDGE], c["bid_size"][HEDGE] = 201.0, 201.02, 100.0
    n, t = detect(ctx, 0.0)
    assert n == 2
    assert (t[0, 3], t[1, 3]) == pytest.approx((4.98, 5.0))
    c["net_delta"], c["max_net_delta"] = -50.0, 50.0
    assert detect(ctx, 0.0)[0] == 0
