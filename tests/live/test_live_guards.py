"""The risk guards, driven with explicit times (ns UTC): stale books, the order-rate queue, balances
the venues report, the drawdown kill switch, and what each guard shows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.guards import BalanceGuard, DrawdownGuard, Guards, RateGuard, TokenBucket
from live.live_rig import MS, NS, T0, cancel, cid, new
from stockbridge.core.order_codes import ACT_CANCEL, ACT_NEW

ALPHA, BETA = 0, 1


def guards(**kw) -> Guards:
    base = dict(stale_book_ns=500 * MS, rate_per_s=2.0, burst=2, max_position=10.0, exposure_cap=[1e9, 1e9],
                position_tolerance=0.01, cash_tolerance=1.0, max_drawdown=100.0, max_drawdown_haircut=150.0)
    return Guards(["alpha", "beta"], **(base | kw))


def cat(*rows: np.ndarray) -> np.ndarray:
    return np.concatenate(rows)


def test_a_venue_never_heard_from_is_stale_and_a_fresh_book_lets_orders_through():
    g = guards()
    out = g.screen(new(cid(1)), T0)
    assert len(out.send) == 0 and "alpha: book stale" in out.refuse[0][1]
    g.book_update(ALPHA, T0)
    out = g.screen(new(cid(2)), T0 + 100 * MS)
    assert out.send["cid"].tolist() == [cid(2)] and out.refuse == []


def test_a_book_going_stale_pulls_that_venues_quotes_once_and_blocks_it_until_fresh():
    g = guards()
    g.book_update(ALPHA, T0)
    g.book_update(BETA, T0)
    assert g.screen(None, T0 + 400 * MS).pull_quotes == []
    g.book_update(BETA, T0 + 400 * MS)
    out = g.screen(None, T0 + 600 * MS)
    assert out.pull_quotes == [ALPHA]
    assert g.screen(None, T0 + 700 * MS).pull_quotes == []  # once per stale spell
    out = g.screen(cat(new(cid(1), venue=ALPHA), new(cid(2), venue=BETA), cancel(cid(9), venue=ALPHA)), T0 + 700 * MS)
    assert out.send["cid"].tolist() == [cid(9), cid(2)]  # cancels always go; beta is fresh
    assert [r[0]["cid"][0] for r in out.refuse] == [cid(1)]
    assert g.snapshot(T0 + 700 * MS)["venues"]["alpha"]["stale_book"]["state"] == "stale"
    g.book_update(ALPHA, T0 + 800 * MS)
    assert g.snapshot(T0 + 800 * MS)["venues"]["alpha"]["stale_book"] == {"state": "ok", "age_ms": 0.0, "since_ns": T0 + 800 * MS}
    assert len(g.screen(new(cid(3)), T0 + 800 * MS).send) == 1
    g.screen(None, T0 + 2 * NS)
    assert g.screen(None, T0 + 2 * NS).pull_quotes == []  # pulled once again at 2 s, not twice
    assert g.stale.stale[ALPHA]


def test_over_the_rate_actions_wait_with_cancels_first_and_a_waiting_new_order_can_be_annulled():
    g = guards(rate_per_s=2.0, burst=2)
    g.book_update(ALPHA, T0)
    out = g.screen(cat(new(cid(1)), new(cid(2)), new(cid(3)), new(cid(4))), T0)
    assert out.send["cid"].tolist() == [cid(1), cid(2)]
    assert g.next_wakeup_ns(T0) == T0 + 500 * MS  # 2 a second: the next token in half a second
    out = g.screen(cat(cancel(cid(1)), cancel(cid(4))), T0 + 100 * MS)
    assert len(out.send) == 0
    assert [(r[0]["cid"][0], r[1]) for r in out.refuse] == [(cid(4), "cancelled before it was sent (rate limit queue)")]
    view = g.snapshot(T0 + 100 * MS)["venues"]["alpha"]["rate"]
    assert view["queued_cancels"] == 1 and view["queued_news"] == 1 and view["state"] == "waiting"
    g.book_update(ALPHA, T0 + 500 * MS)
    out = g.screen(None, T0 + 500 * MS)
    assert out.send["cid"].tolist() == [cid(1)] and int(out.send["kind"][0]) == ACT_CANCEL  # the cancel jumped the queue
    g.book_update(ALPHA, T0 + NS)
    out = g.screen(None, T0 + NS)
    assert out.send["cid"].tolist() == [cid(3)] and int(out.send["kind"][0]) == ACT_NEW
    assert g.next_wakeup_ns(T0 + NS) is None


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 50), burst=st.integers(1, 10), gaps=st.lists(st.integers(0, 2 * NS), min_size=1, max_size=60))
def test_a_token_bucket_never_lets_more_through_than_burst_plus_rate_times_time(rate, burst, gaps):
    b = TokenBucket(rate, burst)
    t, taken = T0, 0
    for gap in gaps:
        t += gap
        taken += b.take(t)
        assert taken <= burst + rate * (t - T0) / NS + 1e-9
        nxt = b.next_ns(t)
        assert nxt >= t
        if nxt > t:
            assert not TokenBucket(rate, burst, tokens=b.tokens, last_ns=b.last_ns).take(nxt - 1)
            assert TokenBucket(rate, burst, tokens=b.tokens, last_ns=b.last_ns).take(nxt)


def test_rate_queue_releases_in_order_per_venue_and_venues_do_not_share_tokens():
    r = RateGuard(2, rate_per_s=1.0, burst=1)
    for row in cat(new(cid(1), venue=ALPHA), new(cid(2), venue=ALPHA), new(cid(3), venue=BETA)):
        r.push(row)
    assert [int(x["cid"]) for x in r.release(T0)] == [cid(1), cid(3)]
    assert [int(x["cid"]) for x in r.release(T0 + NS)] == [cid(2)]


def test_balances_reported_by_the_venue_reimpose_the_inventory_limit_and_stop_a_venue_that_drifts():
    b = BalanceGuard(max_position=10.0, exposure_cap=[5_000.0], position_tolerance=0.01, cash_tolerance=1.0)
    assert b.on_balance(0, position=9.0, cash=1_000.0, mark=100.0, core_position=9.0, core_cash=1_000.2, now=T0) is None
    assert b.allows(0, 1, 2.0) is not None and "inventory limit 10" in b.allows(0, 1, 2.0)
    assert b.allows(0, -1, 2.0) is None   # a sell brings it back
    assert b.allows(0, 1, 1.0) is None    # 10 is at the limit, not over it
    why = b.on_balance(0, position=9.5, cash=1_000.0, mark=100.0, core_position=9.0, core_cash=1_000.0, now=T0, name="alpha")
    assert why.startswith("alpha: reported position 9.5 differs from our books' 9 by more than 0.01 tokens")
    assert b.allows(0, -1, 1.0) == why and b.view(0)["state"] == "stopped"
    assert "cash" in b.on_balance(0, position=9.0, cash=990.0, mark=100.0, core_position=9.0, core_cash=1_000.0, now=T0)
    assert "exposure cap" in b.on_balance(0, position=9.0, cash=4_500.0, mark=100.0, core_position=9.0,
                                          core_cash=4_500.0, now=T0)
    assert b.on_balance(0, position=1.0, cash=100.0, mark=100.0, core_position=1.0, core_cash=100.0, now=T0 + NS) is None
    assert b.view(0)["state"] == "ok"


def test_the_drawdown_kill_switch_trips_on_raw_or_haircut_equity_latches_and_refuses_everything_new():
    d = DrawdownGuard(max_drawdown=100.0, max_drawdown_haircut=50.0)
    assert not d.update(1_000.0, 900.0, T0)
    assert not d.update(1_100.0, 1_000.0, T0 + 1)
    assert not d.update(1_050.0, 960.0, T0 + 2)  # 50 and 40 below the peaks
    assert d.update(1_050.0, 949.0, T0 + 3)       # after haircut: 51 below its peak
    assert "after haircut 51.00" in d.reason
    assert not d.update(2_000.0, 2_000.0, T0 + 4) and d.view()["state"] == "killed"  # latched
    raw = DrawdownGuard(max_drawdown=100.0, max_drawdown_haircut=1e9)
    raw.update(1_000.0, 0.0, T0)
    assert raw.update(899.0, 0.0, T0 + 1) and raw.reason.startswith("drawdown 101.00")

    g = guards(max_drawdown=100.0)
    g.book_update(ALPHA, T0)
    out = g.screen(cat(new(cid(1)), new(cid(2)), new(cid(3))), T0)   # one waits for the rate
    g.drawdown.update(1_000.0, 1_000.0, T0)
    g.drawdown.update(800.0, 800.0, T0 + 1)
    out = g.screen(cat(new(cid(4)), cancel(cid(1))), T0 + 2)
    assert out.kill and "drawdown 200.00" in out.kill
    assert sorted(int(r[0]["cid"][0]) for r in out.refuse) == [cid(3), cid(4)]
    assert len(out.send) == 0  # the cancel waits for a token
    later = g.screen(None, T0 + NS)
    assert later.kill is None  # said once; g.killed stays true
    assert later.send["cid"].tolist() == [cid(1)] and int(later.send["kind"][0]) == ACT_CANCEL  # cancels still go
    assert g.killed and g.snapshot(T0)["drawdown"]["state"] == "killed"


def test_a_held_venue_refuses_new_orders_and_its_cancels_wait_then_go_first():
    g = guards(rate_per_s=100.0, burst=10)
    g.book_update(ALPHA, T0 + 1 * NS)
    g.book_update(BETA, T0 + 1 * NS)
    g.rate.hold(ALPHA, T0 + 2 * NS)
    out = g.screen(cat(new(cid(1), venue=ALPHA), cancel(cid(7), venue=ALPHA), new(cid(2), venue=BETA)), T0 + 1 * NS)
    assert out.send["cid"].tolist() == [cid(2)]   # the other venue is not held
    assert [r[0]["cid"][0] for r in out.refuse] == [cid(1)] and "rate-limited us" in out.refuse[0][1]
    assert g.next_wakeup_ns(T0 + 1 * NS) == T0 + 2 * NS
    assert g.snapshot(T0 + 1 * NS)["venues"]["alpha"]["rate"]["state"] == "held"
    g.book_update(ALPHA, T0 + 2 * NS)
    out = g.screen(new(cid(3), venue=ALPHA), T0 + 2 * NS)
    assert out.send["cid"].tolist() == [cid(7), cid(3)]  # the held cancel first
