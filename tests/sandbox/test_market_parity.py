"""The sandbox's incremental driving of backtest.matching (market.py: rows appended as the clock
passes them, carried-out rows dropped, small chunks) gives exactly the fills of one pass of the
matching over the whole array, for the same orders at the same times: the sandbox fills by the
backtest's rules, not by a look-alike."""

from __future__ import annotations

import numpy as np
import pytest

from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import venue_advance
from backtest.orders import GTC, IOC, TAG_QUOTE, submit_order, take_report
from backtest.simvenue import new_sim
from execution.sandbox.market import MarketSim
from execution.sandbox.venue import market_chunks

NS = 10**9
# (seconds after the start, side, where: 'join' = our side's best, 'cross' = 2 ticks through the other side, tif)
PLAN = [(30, 1, "join", GTC), (95, -1, "join", GTC), (200, 1, "cross", GTC), (410, -1, "cross", IOC),
        (600, 1, "join", GTC), (615, -1, "join", GTC), (1300, 1, "join", GTC)]
TICK = 0.01


def _price(bids, asks, side, where):
    if where == "join":
        return bids[0][0] if side > 0 else asks[0][0]
    return round(asks[0][0] + 2 * TICK, 2) if side > 0 else round(bids[0][0] - 2 * TICK, 2)


@pytest.mark.parametrize("step_s,chunk_rows", [(7.0, 5_000), (0.5, 997), (60.0, 100_000)])
def test_incremental_sandbox_fills_equal_one_pass_of_the_matching(sb_cfg, sb_store, step_s, chunk_rows):
    v = sb_cfg.venues["bybit"]
    rows = np.concatenate(list(market_chunks(sb_store, sb_cfg, "bybit", "AAPLx")))
    t0 = int(rows["exch_ts"][0]) + 3600 * NS
    t_end = t0 + 1800 * NS

    # the sandbox way
    chunks = iter([rows[i:i + chunk_rows] for i in range(0, len(rows), chunk_rows)])
    ms = MarketSim(chunks, v.maker_fee_bps, v.taker_fee_bps, v.gas_per_trade)
    got = []
    t = t0
    ms.advance(t)
    plan = list(PLAN)
    while t < t_end:
        while plan and t0 + plan[0][0] * NS <= t + int(step_s * NS):
            off, side, where, tif = plan.pop(0)
            bids, asks = ms.book()
            _, _, out = ms.submit(side, _price(bids, asks, side, where), 1.5, tif, False, t0 + off * NS)
            got += [(r.sim_id, r.ts, r.price, r.qty, r.fee, r.maker) for r in out.reports if r.kind == "fill"]
        t = min(t + int(step_s * NS), t_end)
        got += [(r.sim_id, r.ts, r.price, r.qty, r.fee, r.maker) for r in ms.advance(t).reports if r.kind == "fill"]

    # one pass over the whole array, as the backtest's venue clock does it
    ev = rows.copy()
    ev["venue"], ev["instrument"] = 0, 0
    ev["local_ts"] = ev["exch_ts"]
    sim = new_sim(1, 1, fee_table([v.maker_fee_bps], [v.taker_fee_bps], [v.gas_per_trade]), latency_table([0.0], [0.0], [0.0]),
                  fill_capacity=1 << 16)
    sim.final[0] = 1
    out_i, out_f = np.zeros(6, dtype=np.int64), np.zeros(3)
    for off, side, where, tif in PLAN:
        ts = t0 + off * NS
        assert venue_advance(sim, ev, 0, ts) >= 0
        bids = [(sim.px[0, 0, k], sim.qty[0, 0, k]) for k in range(sim.nlev[0, 0])]
        asks = [(sim.px[0, 1, k], sim.qty[0, 1, k]) for k in range(sim.nlev[0, 1])]
        assert submit_order(sim, 0, 0, side, _price(bids, asks, side, where), 1.5, tif, 0, TAG_QUOTE, ts) >= 0
        assert venue_advance(sim, ev, 0, ts) >= 0
        while sim.pq_n[1] > 0:
            take_report(sim, out_i, out_f)
    assert venue_advance(sim, ev, 0, t_end) >= 0
    f = sim.fills[: sim.fill_n[0]]
    want = [(int(r["order_id"]), int(r["ts_venue"]), float(r["price"]), float(r["qty"]), float(r["fee"]), bool(r["maker"]))
            for r in f]
    assert len(want) >= 4  # passive and aggressive fills both happened
    assert {w[5] for w in want} == {True, False}
    assert got == want
