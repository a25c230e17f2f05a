"""The trader core driven from Python alone, as the live bot drives it: hand-made book updates and
order reports in, actions out, no simulator.

Config: tests/engine_fixtures (alpha and beta quote the token, the broker hedges the share in
regular hours only; tick 0.01, requote tolerance 1 tick). The scripted kernel says what to quote or
take and when; every number checked below follows from it and from the core's rules by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import AAPL, AAPLX, ALPHA, BETA, BROKER, MS, NS, QUOTE, TAKE, T0, make_config, script, script_kernel, utc

from stockbridge.core.cycle import STEP_IDLE, STEP_OK
from stockbridge.core.order_codes import (
    ACT_CANCEL,
    ACT_NEW,
    CANCELLED,
    FILLED,
    GTC,
    IOC,
    OPEN,
    REP_ACK,
    REP_CANCEL_REJECT,
    REP_DONE,
    REP_FILL,
    TAG_ARB,
    TAG_HEDGE,
    TAG_QUOTE,
)
from stockbridge.core.working import STALE_REFUSED
from stockbridge.tables import build_tables
from stockbridge.trader import TraderCore, build_trader, cid_from_text, cid_prefix, cid_text

HOUR = 3600 * NS
INSTRUMENT = {ALPHA: AAPLX, BETA: AAPLX, BROKER: AAPL}


def core_for(tmp_path, params, start=T0 - HOUR, **overrides) -> TraderCore:
    cfg = make_config(tmp_path / "c.toml", **overrides)
    tables = build_tables(cfg, start, start + 24 * HOUR)
    tr = build_trader(cfg, tables, start, book_depth=16, prefix=cid_prefix(cfg.backtest.seed))
    return TraderCore(tr, params, script_kernel)


def book(core: TraderCore, venue: int, bid: float, ask: float, now: int, size: float = 5.0) -> None:
    ins = INSTRUMENT[venue]
    core.book_level(venue, ins, 1, bid, size, is_quote=True, now=now)
    core.book_level(venue, ins, -1, ask, size, is_quote=True, now=now)
    core.book_end(venue, ins, now)


def market(core: TraderCore, now: int) -> None:
    """Share 99.99 / 100.01 at the broker (fair 100), alpha 99.96 / 100.04, beta 99.94 / 100.06."""
    book(core, BROKER, 99.99, 100.01, now, size=300.0)
    book(core, ALPHA, 99.96, 100.04, now)
    book(core, BETA, 99.94, 100.06, now)


def rows(actions: np.ndarray) -> list[tuple]:
    """(kind, venue, side, price, qty, tag) per action, prices and sizes rounded to the grid."""
    return [(int(a["kind"]), int(a["venue"]), int(a["side"]), round(float(a["price"]), 2), round(float(a["qty"]), 2),
             int(a["tag"])) for a in actions]


def quote_rows(*windows: tuple) -> list[tuple]:
    """Scripted quotes: (t_from, t_until, venue, side, price, size) -> script rows."""
    return [(a, b, v, side, px, sz, QUOTE) for a, b, v, side, px, sz in windows]


def test_a_quote_pair_goes_out_on_the_grid_as_two_new_post_only_orders(tmp_path):
    core = core_for(tmp_path, script(*quote_rows((T0 - NS, T0 + HOUR, ALPHA, 1, 99.95, 2.0),
                                                 (T0 - NS, T0 + HOUR, ALPHA, -1, 100.05, 2.0))))
    market(core, T0)
    assert core.step(T0) == STEP_OK
    acts = core.actions()
    assert rows(acts) == [(ACT_NEW, ALPHA, 1, 99.95, 2.0, TAG_QUOTE), (ACT_NEW, ALPHA, -1, 100.05, 2.0, TAG_QUOTE)]
    assert (acts["tif"] == GTC).all() and (acts["post_only"] == 1).all()
    assert len(set(acts["cid"].tolist())) == 2
    # the same decision again changes nothing: both orders are what the kernel wants
    assert core.step(T0 + MS) == STEP_OK
    assert len(core.actions()) == 0


def test_a_requote_beyond_the_tolerance_cancels_and_replaces_and_one_within_it_keeps_the_order(tmp_path):
    core = core_for(tmp_path, script(*quote_rows(
        (T0 - NS, T0 + 10 * NS, ALPHA, 1, 99.95, 2.0),
        (T0 + 10 * NS, T0 + 20 * NS, ALPHA, 1, 99.94, 2.0),     # 1 tick: within requote_ticks = 1
        (T0 + 20 * NS, T0 + HOUR, ALPHA, 1, 99.90, 2.0),        # 5 ticks from the resting 99.95
    )))
    market(core, T0)
    core.step(T0)
    (first,) = core.actions()
    assert core.report(REP_ACK, int(first["cid"]), now=T0 + 20 * MS)
    market(core, T0 + 15 * NS)
    core.step(T0 + 15 * NS)
    assert len(core.actions()) == 0  # kept: 99.94 is one tick from 99.95
    market(core, T0 + 25 * NS)
    core.step(T0 + 25 * NS)
    acts = core.actions()
    assert rows(acts) == [(ACT_CANCEL, ALPHA, 1, 99.95, 2.0, TAG_QUOTE), (ACT_NEW, ALPHA, 1, 99.90, 2.0, TAG_QUOTE)]
    assert int(acts[0]["cid"]) == int(first["cid"]) and int(acts[1]["cid"]) != int(first["cid"])
    # until the venue says the replaced order is done it may still fill: it counts as working
    assert core.tr.ctx[0]["working_buy"][ALPHA] == 0.0  # the context was built before the cancel
    core.step(T0 + 26 * NS)
    assert core.tr.ctx[0]["working_buy"][ALPHA] == 2.0
    assert core.report(REP_DONE, int(first["cid"]), final_state=CANCELLED, now=T0 + 26 * NS)
    assert not core.report(REP_DONE, int(first["cid"]), final_state=CANCELLED, now=T0 + 26 * NS)  # not ours any more
    core.step(T0 + 27 * NS)
    assert core.tr.ctx[0]["working_buy"][ALPHA] == 0.0


def test_a_refused_cancel_keeps_the_order_and_is_sent_again_a_second_later(tmp_path):
    core = core_for(tmp_path, script(*quote_rows((T0 - NS, T0 + 10 * NS, ALPHA, 1, 99.95, 2.0))))
    market(core, T0)
    core.step(T0)
    (order,) = core.actions()
    cid = int(order["cid"])
    core.report(REP_ACK, cid, now=T0 + 20 * MS)
    t = T0 + 11 * NS  # the kernel stops quoting: the bid is cancelled
    market(core, t)
    core.step(t)
    assert rows(core.actions()) == [(ACT_CANCEL, ALPHA, 1, 99.95, 2.0, TAG_QUOTE)]
    assert core.report(REP_CANCEL_REJECT, cid, now=t + 20 * MS)
    (w,) = core.working()
    assert w["cid"] == cid and w["state"] == OPEN and w["stale"] == STALE_REFUSED and w["leaves"] == 2.0
    core.step(t + 500 * MS)
    assert len(core.actions()) == 0  # not yet: one second after the refusal
    assert core.tr.ctx[0]["working_buy"][ALPHA] == 2.0
    core.step(t + 1020 * MS)
    acts = core.actions()
    assert rows(acts) == [(ACT_CANCEL, ALPHA, 1, 99.95, 2.0, TAG_QUOTE)] and int(acts[0]["cid"]) == cid
    # it fills while the cancel is on its way: the known books take the fill, then it is done
    assert core.report(REP_FILL, cid, price=99.95, qty=2.0, fee=-0.02, now=t + 1030 * MS)
    assert core.tr.kpos[ALPHA, AAPLX] == 2.0
    assert core.tr.kcash[ALPHA] == pytest.approx(25_000.0 - 199.9 + 0.02, abs=1e-9)
    assert core.report(REP_DONE, cid, final_state=FILLED, now=t + 1030 * MS)
    assert core.working() == []


def test_a_hedge_is_deferred_while_the_broker_is_closed_and_sent_at_the_open(tmp_path):
    # Mon 2025-07-07 13:00 UTC = 09:00 New York: pre-market, the broker hedges in regular hours only
    t_pre = utc("2025-07-07T13:00:00Z")
    t_open = utc("2025-07-07T13:30:00Z")
    core = core_for(tmp_path, script(*quote_rows((t_pre, t_pre + NS, ALPHA, 1, 99.95, 5.0))), start=t_pre - HOUR,
                    risk={"hedge_band": 1.0})
    market(core, t_pre)
    core.step(t_pre)
    (bid,) = core.actions()
    core.report(REP_ACK, int(bid["cid"]), now=t_pre + 20 * MS)
    core.report(REP_FILL, int(bid["cid"]), price=99.95, qty=5.0, fee=0.0, now=t_pre + 30 * MS)
    core.report(REP_DONE, int(bid["cid"]), final_state=FILLED, now=t_pre + 30 * MS)
    # 5 tokens long = 5 shares of delta, outside the 1-share band; the broker is closed for hedging
    t = t_pre + 10 * 60 * NS
    market(core, t)
    core.step(t)
    assert [a for a in rows(core.actions()) if a[5] == TAG_HEDGE] == []
    assert core.tr.ctx[0]["hedge_open"] == 0
    market(core, t_open + NS)
    core.step(t_open + NS)
    acts = core.actions()
    hedges = [a for a in acts if a["tag"] == TAG_HEDGE]
    assert len(hedges) == 1
    h = hedges[0]
    # sell 5 shares IOC at the broker, limit 5 ticks through the bid: 99.99 - 0.05
    assert (int(h["venue"]), int(h["side"]), float(h["qty"]), int(h["tif"])) == (BROKER, -1, 5.0, IOC)
    assert float(h["price"]) == pytest.approx(99.94, abs=1e-9)
    # one hedge in flight at a time: the next decision sends none until this one is done
    core.step(t_open + 2 * NS)
    assert [a for a in core.actions() if a["tag"] == TAG_HEDGE] == []


def test_an_arbitrage_batch_goes_out_whole_and_not_again_while_a_leg_is_in_flight(tmp_path):
    take = [(T0 - NS, T0 + HOUR, ALPHA, 1, 100.04, 1.0, TAKE), (T0 - NS, T0 + HOUR, BETA, -1, 99.94, 1.0, TAKE)]
    core = core_for(tmp_path, script(*take))
    market(core, T0)
    core.step(T0)
    acts = core.actions()
    assert rows(acts) == [(ACT_NEW, ALPHA, 1, 100.04, 1.0, TAG_ARB), (ACT_NEW, BETA, -1, 99.94, 1.0, TAG_ARB)]
    assert (acts["tif"] == IOC).all() and (acts["post_only"] == 0).all()
    core.report(REP_DONE, int(acts[0]["cid"]), final_state=FILLED, now=T0 + 20 * MS)
    core.step(T0 + 25 * MS)
    assert len(core.actions()) == 0  # the beta leg has not come back: no new batch, not even its alpha half
    core.report(REP_DONE, int(acts[1]["cid"]), final_state=CANCELLED, now=T0 + 40 * MS)
    core.step(T0 + 45 * MS)
    assert rows(core.actions()) == rows(acts)


def test_a_decision_on_a_cadence_is_idle_between_its_times(tmp_path):
    core = core_for(tmp_path, script(*quote_rows((T0 - NS, T0 + HOUR, ALPHA, 1, 99.95, 2.0))),
                    backtest={"decision_interval_ms": 100.0})
    market(core, T0)
    assert core.step(T0) == STEP_OK
    assert core.step(T0 + 50 * MS) == STEP_IDLE
    assert core.step(T0 + 100 * MS) == STEP_OK


def test_client_order_ids_are_unique_deterministic_and_fit_every_venue(tmp_path):
    core = core_for(tmp_path, script(*quote_rows((T0 - NS, T0 + HOUR, ALPHA, 1, 99.95, 2.0),
                                                 (T0 - NS, T0 + HOUR, ALPHA, -1, 100.05, 2.0))))
    market(core, T0)
    core.step(T0)
    cids = core.actions()["cid"].tolist()
    texts = [cid_text(c) for c in cids]
    assert all(len(t) == 15 and t.isalnum() and t.islower() for t in texts)  # Kraken's free-text cl_ord_id: <= 18
    assert [cid_from_text(t) for t in texts] == cids
    again = core_for(tmp_path / "again", script(*quote_rows((T0 - NS, T0 + HOUR, ALPHA, 1, 99.95, 2.0),
                                                              (T0 - NS, T0 + HOUR, ALPHA, -1, 100.05, 2.0))))
    market(again, T0)
    again.step(T0)
    assert again.actions()["cid"].tolist() == cids  # same seed, same ids
    assert cid_prefix(3) != cid_prefix(3, "2026-12-01T12:00:00Z")  # a live restart gets new ones
    with pytest.raises(ValueError, match="not a stockbridge client order id"):
        cid_from_text("abc")
