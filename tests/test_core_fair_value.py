"""Fair value around the clock and the online volatility, against hand-computed numbers."""

import math

import numpy as np
import pytest

from stockbridge.core.fair_value import (
    fair_value,
    fair_value_update_underlying,
    fair_value_update_venue,
    last_print_ts,
    new_fair_state,
    venue_consensus,
    weighted_median,
)
from stockbridge.core.volatility import new_vol_state, vol_sigma, vol_update

T0 = 1_751_896_800_000_000_000
S = 1_000_000_000  # one second in ns
HALF_LIFE_S = 60.0


def test_open_underlying_is_mid_times_multiplier():
    st = new_fair_state()
    fair_value_update_underlying(st, T0, 200.0)
    fair_value_update_venue(st, 0, T0, 250.0)  # venues are ignored while the share trades
    # fair = 200 * 1.0025 = 200.5; std = sigma_rel * fair * sqrt(var) = 1e-4 * 200.5 * sqrt(400) = 0.401
    fair, std = fair_value(st, T0 + 5 * S, 1.0025, 1, 400.0, 1e-4, HALF_LIFE_S, 10.0)
    assert fair == pytest.approx(200.5)
    assert std == pytest.approx(0.401)
    assert last_print_ts(st) == T0


def test_closed_without_venues_carries_the_reference():
    st = new_fair_state()
    fair_value_update_underlying(st, T0, 200.0)
    # the multiplier rose (dividend reinvested) while closed: the carried fair follows it
    fair, std = fair_value(st, T0 + 3600 * S, 1.01, 0, 400.0, 1e-4, HALF_LIFE_S, 10.0)
    assert fair == pytest.approx(202.0)
    assert std == pytest.approx(1e-4 * 202.0 * 20.0)


def test_right_after_the_close_fair_is_the_reference():
    st = new_fair_state()
    fair_value_update_underlying(st, T0, 200.0)
    fair_value_update_venue(st, 0, T0, 205.0)
    fair, std = fair_value(st, T0, 1.0, 0, 0.0, 1e-4, HALF_LIFE_S, 10.0)
    assert (fair, std) == (200.0, 0.0)


def test_blend_with_venue_consensus():
    # reference 200, var_ref = (1e-4 * 200)^2 * 10000 = 4 (std 2)
    # one fresh venue at 202, noise 10 bps: var_cons = (0.001 * 202)^2 / 1 = 0.040804
    # weight of the consensus = 4 / 4.040804 = 0.9899020096 -> fair = 200 + 0.9899020096 * 2
    st = new_fair_state()
    fair_value_update_underlying(st, T0, 200.0)
    fair_value_update_venue(st, 1, T0 + 100 * S, 202.0)
    fair, std = fair_value(st, T0 + 100 * S, 1.0, 0, 10_000.0, 1e-4, HALF_LIFE_S, 10.0)
    assert fair == pytest.approx(201.9798040192, abs=1e-9)
    assert std == pytest.approx(2.0)


def test_consensus_only_without_a_reference():
    # three venue mids of ages 0, 1 and 2 half-lives: weights 1, 0.5, 0.25 (total 1.75)
    # sorted 199 (0.5), 201 (1), 205 (0.25): cumulative 0.5, 1.5 >= 0.875 -> 201
    st = new_fair_state()
    now = T0 + 1000 * S
    fair_value_update_venue(st, 0, now, 201.0)
    fair_value_update_venue(st, 1, now - 60 * S, 199.0)
    fair_value_update_venue(st, 2, now - 120 * S, 205.0)
    cons, weight = venue_consensus(st, now, HALF_LIFE_S)
    assert cons == 201.0
    assert weight == pytest.approx(1.75)
    fair, std = fair_value(st, now, 1.0, 0, 0.0, 1e-4, HALF_LIFE_S, 10.0)
    # std = (10 bps * 201) / sqrt(1.75) = 0.201 / 1.3228757 = 0.1519456
    assert fair == 201.0
    assert std == pytest.approx(0.201 / math.sqrt(1.75))


def test_nothing_known_is_nan():
    fair, std = fair_value(new_fair_state(), T0, 1.0, 0, 0.0, 1e-4, HALF_LIFE_S, 10.0)
    assert math.isnan(fair) and math.isnan(std)
    assert last_print_ts(new_fair_state()) == -1


def test_bad_mids_are_not_recorded():
    st = new_fair_state()
    fair_value_update_underlying(st, T0, 200.0)
    fair_value_update_underlying(st, T0 + S, math.nan)
    fair_value_update_underlying(st, T0 + S, 0.0)
    fair_value_update_venue(st, 0, T0, -1.0)
    assert st[0] == 200.0 and last_print_ts(st) == T0
    assert math.isnan(venue_consensus(st, T0, HALF_LIFE_S)[0])


@pytest.mark.parametrize(
    "values, weights, expected",
    [
        ([10.0, 20.0, 30.0], [1.0, 1.0, 1.0], 20.0),
        ([30.0, 10.0, 20.0], [1.0, 3.0, 1.0], 10.0),  # 10 carries 3 of 5: cumulative 3 >= 2.5
        ([10.0, 20.0, 30.0], [1.0, 1.0, 2.0], 25.0),  # cumulative hits half (2) exactly at 20: mean of 20, 30
        ([10.0, 20.0], [1.0, 1.0], 15.0),
        ([7.0], [0.2], 7.0),
    ],
)
def test_weighted_median(values, weights, expected):
    assert weighted_median(np.array(values), np.array(weights), len(values)) == pytest.approx(expected)


# -- volatility -----------------------------------------------------------------------------------


def test_vol_ewma_per_variance_second():
    st = new_vol_state(half_life_var_s=100.0, min_interval_var_s=1.0)
    assert math.isnan(vol_update(st, 0.0, 100.0))  # first price: anchor only
    # r = ln(1.01) = 0.0099503309 over 4 variance-seconds: r^2/4 = 2.4752271e-5, the first estimate
    assert vol_update(st, 4.0, 101.0) == pytest.approx(math.sqrt(2.4752271e-5), rel=1e-7)
    # 0.5 variance-seconds later is inside the minimum interval: not sampled
    assert vol_update(st, 4.5, 150.0) == pytest.approx(math.sqrt(2.4752271e-5), rel=1e-7)
    # from the anchor (t=4, 101) to (t=8, 101*1.02): r = ln(1.02) = 0.0198026273, r^2/4 = 9.8036012e-5
    # alpha = 1 - 2^(-4/100) = 0.0273450526; var = 2.4752271e-5 + alpha*(9.8036012e-5 - 2.4752271e-5)
    #       = 2.6756219e-5
    sigma = vol_update(st, 8.0, 101.0 * 1.02)
    assert sigma == pytest.approx(math.sqrt(2.6756219e-5), rel=1e-6)
    assert st[5] == 2.0  # two returns folded in
    assert vol_sigma(st) == sigma


def test_vol_prior_and_bad_prices():
    st = new_vol_state(100.0, 1.0, sigma0=0.002)
    assert vol_sigma(st) == pytest.approx(0.002)
    vol_update(st, 0.0, 100.0)
    assert vol_update(st, 10.0, math.nan) == pytest.approx(0.002)
    assert vol_update(st, 10.0, -5.0) == pytest.approx(0.002)
    # no move over 100 variance-seconds (one half-life) halves the variance: 0.002^2 / 2
    assert vol_update(st, 100.0, 100.0) == pytest.approx(0.002 / math.sqrt(2.0))


@pytest.mark.parametrize("half_life, interval", [(0.0, 1.0), (10.0, 0.0), (-1.0, 1.0)])
def test_vol_state_rejects_bad_settings(half_life, interval):
    with pytest.raises(ValueError):
        new_vol_state(half_life, interval)
