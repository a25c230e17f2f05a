"""Order / response latency draws, message ordering, the in-flight queues, and their interleaving
with market events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from backtest.fees import fee_table
from backtest.latency import ORDER, RESPONSE, deliver, draw_latency, latency_table
from backtest.matching import venue_on_event, venue_process_actions
from backtest.orders import GTC, OPEN, PENDING_NEW, TAG_HEDGE, submit_order
from backtest.pending import ACT_NEW, NEVER, SEQ, SLOT, T, grow_pending, new_pending, peek_time, pop, push
from backtest.rng import RNG_LATENCY, RNG_QUEUE, new_rng, uniform
from backtest.simvenue import new_sim, sim_from_config
from stockbridge.config import load_config
from data.schema import KIND_DEPTH, empty

MS = 1_000_000
T0 = 1_751_500_000_000_000_000


def test_constant_latency_is_exact():
    lat = latency_table([25.0, 0.4], [30.0, 0.0], [0.0, 0.0])
    rng = new_rng(1)
    last_a = np.zeros(2, dtype=np.int64)
    last_r = np.zeros(2, dtype=np.int64)
    assert deliver(lat, last_a, rng, 0, T0, ORDER) == T0 + 25 * MS
    assert deliver(lat, last_r, rng, 0, T0 + 25 * MS, RESPONSE) == T0 + 55 * MS
    assert deliver(lat, last_a, rng, 1, T0, ORDER) == T0 + 400_000
    assert deliver(lat, last_r, rng, 1, T0, RESPONSE) == T0
    assert np.array_equal(rng, new_rng(1))          # constant latencies draw nothing


def test_lognormal_latency_has_the_configured_mean_and_std():
    lat = latency_table([400.0], [20.0], [150.0])
    rng = new_rng(5)
    x = np.array([draw_latency(lat, rng, 0, ORDER) for _ in range(40_000)], dtype=np.float64) / MS
    assert x.min() > 0
    assert x.mean() == pytest.approx(400.0, rel=0.02)
    assert x.std() == pytest.approx(150.0, rel=0.05)
    # lognormal, not normal: median = mean / sqrt(1 + cv^2) = 400 / sqrt(1.140625) = 374.54 ms
    assert np.median(x) == pytest.approx(400.0 / np.sqrt(1 + (150 / 400) ** 2), rel=0.02)
    y = np.array([draw_latency(lat, rng, 0, RESPONSE) for _ in range(40_000)], dtype=np.float64) / MS
    assert y.mean() == pytest.approx(20.0, rel=0.02)


def test_same_seed_same_draws_streams_independent():
    a, b, c = new_rng(42), new_rng(42), new_rng(43)
    xa = [uniform(a, RNG_LATENCY) for _ in range(5)]
    assert xa == [uniform(b, RNG_LATENCY) for _ in range(5)]
    assert xa != [uniform(c, RNG_LATENCY) for _ in range(5)]
    # draws on the queue stream do not move the latency stream
    d = new_rng(42)
    for _ in range(7):
        uniform(d, RNG_QUEUE)
    assert [uniform(d, RNG_LATENCY) for _ in range(5)] == xa
    u = np.array([uniform(a, RNG_QUEUE) for _ in range(10_000)])
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50 * MS), min_size=2, max_size=60), st.integers(0, 2**31))
def test_messages_of_one_venue_never_overtake(send_offsets, seed):
    lat = latency_table([5.0], [5.0], [20.0])     # jitter far above the mean: draws cross often
    rng = new_rng(seed)
    last_a = np.zeros(1, dtype=np.int64)
    last_r = np.zeros(1, dtype=np.int64)
    sends = T0 + np.sort(np.asarray(send_offsets, dtype=np.int64))
    arrive = [deliver(lat, last_a, rng, 0, t, ORDER) for t in sends]
    back = [deliver(lat, last_r, rng, 0, t, RESPONSE) for t in arrive]
    assert arrive == sorted(arrive) and back == sorted(back)
    assert all(a >= s for a, s in zip(arrive, sends)) and all(r >= a for r, a in zip(back, arrive))


def test_latency_table_validation_and_config(demo_config_path):
    with pytest.raises(ValueError, match="order_ms"):
        latency_table([-1.0], [1.0], [0.0])
    with pytest.raises(ValueError, match="mean latency > 0"):
        latency_table([0.0], [1.0], [2.0])
    with pytest.raises(ValueError, match="same length"):
        latency_table([1.0, 2.0], [1.0], [0.0])
    cfg = load_config(demo_config_path)
    sim = sim_from_config(cfg)
    lat = sim.lat
    assert lat.shape == (4, 4)
    assert list(lat[:, 0]) == [25 * MS, 40 * MS, 400 * MS, 5 * MS]    # bybit, kraken, solana_dex, broker
    assert list(lat[:, 1]) == [0.0, 0.0, 150 * MS, 0.0]
    fees = sim.fees
    assert list(fees[0]) == pytest.approx([-1e-4, 10e-4, 0.0])
    assert list(fees[2]) == pytest.approx([0.0, 25e-4, 0.02])
    with pytest.raises(ValueError, match="gas_per_trade"):
        fee_table([0.0], [0.0], [-1.0])
    assert tuple(sim.dims) == (4, 2) and sim.qmodel[0] == 0


# ---------------------------------------------------------------- the in-flight queues


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=200))
def test_heap_pops_in_time_order_ties_in_push_order(times):
    pq_i, pq_f, pq_n = new_pending(2, capacity=256)
    for k, t in enumerate(times):
        assert push(pq_i, pq_f, pq_n, 1, t, ACT_NEW, k, k, 0, 0.0, float(k), 0.0)
    assert pq_n[0] == 0 and pq_n[1] == len(times)
    out_i, out_f = np.zeros(6, dtype=np.int64), np.zeros(3)
    got = []
    while pq_n[1]:
        pop(pq_i, pq_f, pq_n, 1, out_i, out_f)
        got.append((int(out_i[T]), int(out_i[SLOT])))
        assert out_f[1] == out_i[SLOT]              # float payload travels with its entry
    assert got == sorted((t, k) for k, t in enumerate(times))
    assert peek_time(pq_i, pq_n, 1) == NEVER


def test_heap_full_then_grown_keeps_order():
    pq_i, pq_f, pq_n = new_pending(1, capacity=3)
    for t in (30, 10, 20):
        assert push(pq_i, pq_f, pq_n, 0, t, ACT_NEW, t, t, 0, 0.0, 0.0, 0.0)
    assert not push(pq_i, pq_f, pq_n, 0, 5, ACT_NEW, 5, 5, 0, 0.0, 0.0, 0.0)
    assert pq_n[0] == 3
    pq_i, pq_f = grow_pending(pq_i, pq_f, 8)
    assert push(pq_i, pq_f, pq_n, 0, 5, ACT_NEW, 5, 5, 0, 0.0, 0.0, 0.0)
    out_i, out_f = np.zeros(6, dtype=np.int64), np.zeros(3)
    order = []
    while pq_n[0]:
        pop(pq_i, pq_f, pq_n, 0, out_i, out_f)
        order.append(int(out_i[T]))
    assert order == [5, 10, 20, 30]
    assert out_i[SEQ] == 0                          # the first push (t=30) left last


def test_order_action_interleaves_with_market_events_by_venue_time():
    """An order acting at venue time T sees every book event with exch_ts < T, none after; an
    event at exactly T comes first."""
    fees = fee_table([0.0], [0.0], [0.0])
    sim = new_sim(1, 1, fees, latency_table([10.0], [10.0], [0.0]), book_levels=8, order_capacity=8,
                  fill_capacity=64, queue_capacity=64)
    ev = empty(3)
    ev[0] = (KIND_DEPTH, 1, 0, 0, 0, T0, T0 + 3 * MS, 100.00, 4.0, 0)             # before arrival
    ev[1] = (KIND_DEPTH, 1, 0, 0, 0, T0 + 10 * MS, T0 + 13 * MS, 100.00, 6.0, 0)  # at arrival
    ev[2] = (KIND_DEPTH, 1, 0, 0, 0, T0 + 12 * MS, T0 + 15 * MS, 100.00, 9.0, 0)  # after
    slot = submit_order(sim, 0, 0, 1, 100.00, 1.0, GTC, 1, TAG_HEDGE, T0)
    assert sim.orders[slot]["ts_venue"] == T0 + 10 * MS
    seen = []
    for i in range(3):
        assert venue_process_actions(sim, 0, ev[i]["exch_ts"]) >= 0
        seen.append(int(sim.orders[slot]["state"]))
        venue_on_event(sim, ev, i)
    assert seen == [PENDING_NEW, PENDING_NEW, OPEN]
    # it arrived after the level became 6 (the tie went to the market event) and before 9
    assert sim.orders[slot]["queue_ahead"] == 6.0
