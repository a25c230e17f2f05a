"""Fills, average cost, realised/unrealised PnL, fees and net delta, against hand-computed books."""

import numpy as np
import pytest

from stockbridge.core.inventory import BUY, SELL, apply_fill, net_delta, unrealized_pnl, venue_values


def book(n_venues=2, n_instruments=2, cash=10_000.0):
    pos = np.zeros((n_venues, n_instruments))
    return pos, np.full(n_venues, cash), np.zeros_like(pos), np.zeros_like(pos), np.zeros(n_venues)


def test_round_trip_through_a_short():
    pos, cash, avg, realized, fees = book()
    # buy 10 @ 100, taker 10 bps + gas 0.5: fee = 1000*0.001 + 0.5 = 1.5; cash 10000 - 1000 - 1.5
    assert apply_fill(pos, cash, avg, realized, fees, 0, 1, BUY, 100.0, 10.0, 0.001, 0.5) == pytest.approx(1.5)
    assert (pos[0, 1], avg[0, 1], cash[0]) == pytest.approx((10.0, 100.0, 8998.5))
    # buy 5 @ 106 with a 1 bp maker rebate: fee = 530 * -0.0001 = -0.053; avg = (1000 + 530)/15 = 102
    assert apply_fill(pos, cash, avg, realized, fees, 0, 1, BUY, 106.0, 5.0, -0.0001, 0.0) == pytest.approx(-0.053)
    assert (pos[0, 1], avg[0, 1], cash[0]) == pytest.approx((15.0, 102.0, 8468.553))
    # sell 20 @ 110: closes 15 for 15*(110 - 102) = 120, opens a short of 5 at 110
    apply_fill(pos, cash, avg, realized, fees, 0, 1, SELL, 110.0, 20.0, 0.0, 0.0)
    assert (pos[0, 1], avg[0, 1], realized[0, 1], cash[0]) == pytest.approx((-5.0, 110.0, 120.0, 10668.553))
    # buy 5 @ 100 covers the short: 5*(100 - 110)*(-1) = +50
    apply_fill(pos, cash, avg, realized, fees, 0, 1, BUY, 100.0, 5.0, 0.0, 0.0)
    assert (pos[0, 1], avg[0, 1], realized[0, 1]) == pytest.approx((0.0, 0.0, 170.0))
    assert fees[0] == pytest.approx(1.5 - 0.053)
    # flat again: the cash gained is exactly realised PnL minus fees
    assert cash[0] - 10_000.0 == pytest.approx(realized[0, 1] - fees[0])
    assert pos[1].sum() == 0.0 and cash[1] == 10_000.0  # other venue untouched


def test_partial_close_keeps_average_cost():
    pos, cash, avg, realized, fees = book()
    apply_fill(pos, cash, avg, realized, fees, 1, 0, SELL, 50.0, 4.0, 0.0, 0.0)
    apply_fill(pos, cash, avg, realized, fees, 1, 0, BUY, 45.0, 1.0, 0.0, 0.0)
    assert (pos[1, 0], avg[1, 0], realized[1, 0]) == pytest.approx((-3.0, 50.0, 5.0))


def test_float_residue_is_flat():
    pos, cash, avg, realized, fees = book()
    apply_fill(pos, cash, avg, realized, fees, 0, 0, BUY, 10.0, 0.1, 0.0, 0.0)
    apply_fill(pos, cash, avg, realized, fees, 0, 0, BUY, 10.0, 0.2, 0.0, 0.0)
    apply_fill(pos, cash, avg, realized, fees, 0, 0, SELL, 12.0, 0.3, 0.0, 0.0)
    assert pos[0, 0] == 0.0 and avg[0, 0] == 0.0
    assert realized[0, 0] == pytest.approx(0.6)  # 0.3 * (12 - 10)


def test_unrealized_and_venue_values():
    pos = np.array([[10.0, 0.0], [-2.0, 3.0]])
    avg = np.array([[100.0, 0.0], [50.0, 20.0]])
    marks = np.array([[103.0, np.nan], [49.0, 21.0]])  # NaN mark on a flat line is harmless
    upnl = unrealized_pnl(pos, avg, np.nan_to_num(marks))
    assert upnl[0, 0] == pytest.approx(30.0)  # 10 * (103 - 100)
    assert upnl[1, 0] == pytest.approx(2.0)  # -2 * (49 - 50)
    assert upnl[1, 1] == pytest.approx(3.0)  # 3 * (21 - 20)
    values = venue_values(pos, np.array([1000.0, 500.0]), marks)
    assert values == pytest.approx([1000.0 + 1030.0, 500.0 - 98.0 + 63.0])


def test_net_delta_in_share_equivalents():
    # tokens 10 - 4 + 0 = 6, multiplier 1.0025 -> 6.015 shares, hedge -5 shares
    assert net_delta(np.array([10.0, -4.0, 0.0]), 1.0025, -5.0) == pytest.approx(1.015)


def test_multiplier_step_raises_delta_not_token_count():
    tokens = np.array([100.0])
    # a 1:2 split doubles the multiplier: the same 100 tokens are 200 shares of delta
    assert net_delta(tokens, 1.0, 0.0) == pytest.approx(100.0)
    assert net_delta(tokens, 2.0, 0.0) == pytest.approx(200.0)
