"""Hedge decisions: band, target, lot grid, cost test and the carry across a closure."""

import math

import pytest

from stockbridge.core.hedging import carry_after, hedge_cost, hedge_decision, hedge_risk_price, round_to_lot

BID, ASK = 99.99, 100.01  # mid 100, half-spread 0.01
FEE = 0.5e-4  # 0.5 bp -> 0.005 per share at 100
BORROW = 0.005 / 31_536_000  # 50 bp a year, per second
HOLD = 3 * 86_400.0  # a short expected to stay open three days


def decide(net, *, hedge_open=1, carried=0.0, band=20.0, target=0.0, hedge_position=0.0, risk_price=0.0, bid=BID, ask=ASK):
    return hedge_decision(net, band, target, hedge_open, carried, bid, ask, FEE, BORROW, HOLD, 1.0, hedge_position, risk_price)


def test_round_to_lot():
    assert round_to_lot(27.4, 1.0) == 27.0
    assert round_to_lot(2.5, 1.0) == 3.0
    assert round_to_lot(-2.5, 1.0) == -3.0
    assert round_to_lot(0.4, 1.0) == 0.0
    assert round_to_lot(0.37, 0.1) == pytest.approx(0.4)


def test_band_and_target():
    assert decide(19.0) == 0.0  # inside the band
    assert decide(27.4) == -27.0  # outside: trade to target 0, nearest lot
    assert decide(-31.6) == 32.0
    assert decide(27.4, target=10.0) == 0.0  # |27.4 - 10| = 17.4 is inside the band
    assert decide(37.4, target=10.0) == -27.0  # 10 - 37.4 = -27.4
    assert decide(25.0, band=30.0, target=10.0) == 0.0  # |25 - 10| <= 30


def test_no_hedge_while_closed_or_without_a_book():
    assert decide(150.0, hedge_open=0) == 0.0
    assert decide(150.0, hedge_open=0, carried=-150.0) == 0.0
    assert decide(150.0, bid=math.nan) == 0.0
    assert decide(150.0, bid=100.02, ask=100.01) == 0.0  # crossed book: not trusted


def test_cost_includes_spread_fees_and_borrow_of_new_shorts():
    # selling 25 from flat: 25*(0.01 + 0.005) = 0.375, plus borrow on 25 new short shares
    # 0.005/31536000 * 259200 * 100 * 25 = 0.1027397 -> 0.4777397
    assert hedge_cost(-25.0, 0.0, BID, ASK, FEE, BORROW, HOLD) == pytest.approx(0.4777397, abs=1e-7)
    # selling 25 out of a 30 share long borrows nothing
    assert hedge_cost(-25.0, 30.0, BID, ASK, FEE, BORROW, HOLD) == pytest.approx(0.375)
    # selling 25 out of a 10 share long borrows 15
    assert hedge_cost(-25.0, 10.0, BID, ASK, FEE, BORROW, HOLD) == pytest.approx(0.375 + 0.1027397 * 15 / 25, abs=1e-7)
    # buying back a short never pays borrow
    assert hedge_cost(25.0, -40.0, BID, ASK, FEE, BORROW, HOLD) == pytest.approx(0.375)


def test_hedge_only_when_risk_removed_is_worth_the_cost():
    # e = 25, hedge -25: benefit = risk_price * (25^2 - 0^2) = 625 * risk_price vs cost 0.4777397
    assert decide(25.0, risk_price=0.0007) == 0.0  # 0.4375 < 0.4777
    assert decide(25.0, risk_price=0.0008) == -25.0  # 0.5 >= 0.4777
    # with 30 long shares to sell no borrow is due: 0.4375 >= 0.375
    assert decide(25.0, risk_price=0.0007, hedge_position=30.0) == -25.0


def test_hedge_risk_price():
    # 0.5 * gamma * sigma^2 * hold = 0.5 * 0.1 * 0.02^2 * 3600 = 0.072
    assert hedge_risk_price(0.1, 0.02, 3600.0) == pytest.approx(0.072)


def test_carried_hedge_goes_first_at_the_open():
    # closed: 25 shares outside the band are owed
    carried = carry_after(0.0, 0.0, 25.0, 20.0, 0.0, 0, 1.0)
    assert carried == -25.0
    # fills while closed bring it back inside the band: nothing owed
    assert carry_after(carried, 0.0, 12.0, 20.0, 0.0, 0, 1.0) == 0.0
    # at the open a carried hedge trades in full even inside the band and against the cost test
    assert decide(18.0, carried=-25.0, risk_price=1e-6) == -18.0
    # once sent, the carry is cleared; an open venue without a book keeps it
    assert carry_after(-25.0, -18.0, 18.0, 20.0, 0.0, 1, 1.0) == 0.0
    assert carry_after(-25.0, 0.0, 18.0, 20.0, 0.0, 1, 1.0) == -25.0
    assert carry_after(-25.0, 0.0, 0.3, 20.0, 0.0, 1, 1.0) == 0.0  # nothing left that rounds to a lot
