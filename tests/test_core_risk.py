"""Credit haircuts, exposure room, credit skew and the off-hours size factor."""

import math

import numpy as np
import pytest

from stockbridge.core.risk import credit_skew, equity_after_haircut, equity_raw, exposure_room, haircut_charge, size_factor


def test_equity_after_haircut():
    values = np.array([100.0, -50.0, 30.0])
    haircuts = np.array([0.1, 0.5, 0.2])
    assert equity_raw(values) == pytest.approx(80.0)
    # 0.1*100 + (no haircut on what we owe) + 0.2*30 = 16
    assert haircut_charge(values, haircuts) == pytest.approx(16.0)
    assert equity_after_haircut(values, haircuts) == pytest.approx(64.0)


def test_demo_haircuts():
    # 20000 at 6 %, 20000 at 4 %, 10000 at 10 %, 50000 at 1 %: 1200 + 800 + 1000 + 500 = 3500
    values = np.array([20_000.0, 20_000.0, 10_000.0, 50_000.0])
    haircuts = np.array([0.06, 0.04, 0.10, 0.01])
    assert equity_after_haircut(values, haircuts) == pytest.approx(100_000.0 - 3_500.0)


def test_exposure_room():
    assert exposure_room(500.0, 3.0, 100.0) == pytest.approx(2.0)  # (3 + 2) * 100 = 500
    assert exposure_room(500.0, -2.0, 100.0) == pytest.approx(7.0)  # buys back the short first
    assert exposure_room(500.0, 6.0, 100.0) == 0.0  # already above
    assert exposure_room(math.inf, 1e9, 100.0) == math.inf


def test_credit_skew_moves_risky_venues_down():
    # haircuts 6 %, 4 %, 10 % on the quoted venues (mean 6.6667 %); the broker's 1 % is not quoted
    haircuts = np.array([0.06, 0.04, 0.10, 0.01])
    mask = np.array([1, 1, 1, 0])
    # venue 2: -210 * 10 bps * (0.10/0.066667 - 1) = -0.21 * 0.5 = -0.105
    assert credit_skew(haircuts, mask, 2, 10.0, 210.0) == pytest.approx(-0.105)
    # venue 1: -0.21 * (0.04/0.066667 - 1) = -0.21 * -0.4 = +0.084
    assert credit_skew(haircuts, mask, 1, 10.0, 210.0) == pytest.approx(0.084)
    assert credit_skew(haircuts, mask, 0, 10.0, 210.0) == pytest.approx(-0.21 * (0.06 / (0.2 / 3) - 1))
    shifts = [credit_skew(haircuts, mask, v, 10.0, 210.0) for v in range(3)]
    assert sum(shifts) == pytest.approx(0.0, abs=1e-12)  # relative to the mean: no net shift
    assert credit_skew(np.zeros(4), mask, 1, 10.0, 210.0) == 0.0


def test_size_factor():
    assert size_factor(1, 0.3) == 1.0
    assert size_factor(0, 0.3) == 0.3
