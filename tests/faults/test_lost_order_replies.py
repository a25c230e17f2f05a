"""Issue 12 #2 and #3: order calls whose replies are lost or refused, against the emulators on a
stepped clock. The venue's ledger is the truth the invariants compare with (faults/invariants.py)."""

from __future__ import annotations

from live.live_sandbox import close_live, start_live, with_live

from faults.invariants import (
    assert_ledger_invariants,
    assert_orders_converge,
    bounded,
    live_venue,
    step_until,
)

FAST = dict(call_timeout_ms=500.0, unknown_order_grace_ms=1_000.0, lookup_interval_ms=200.0)


def resting(run, venue):
    return [o for o in run.sb[venue].account.orders.values() if not o.is_final]


@bounded(60)
async def test_a_create_the_venue_took_but_never_answered_is_found_not_sent_again(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                   tmp_path):
    cfg = with_live(sb_cfg, **FAST)
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit", "kraken"))
    try:
        for v in ("bybit", "kraken"):
            run.sb[v].fault("lose", what="ack", count=1)
        run.start()
        await run.step(20)
        for v in ("bybit", "kraken"):
            acct = run.sb[v].account
            first = next(iter(acct.orders.values()))  # the call that got no answer
            lost = run.runner.om.orders[first.client_id]
            assert run.sb[v].emu.faults.lose_n["ack"] == 0, f"{v}: no order call met the fault"
            assert lost.venue_order_id == first.order_id, f"{v}: the bot never learned the order"
            assert lost.state.value not in ("pending_new", "unknown") and not lost.presumed_absent
            await assert_orders_converge(run, (v,))
        await run.stop()
        assert_ledger_invariants(run, ("bybit", "kraken"))
    finally:
        await close_live(run)


@bounded(60)
async def test_a_create_the_venue_refused_without_an_answer_is_dropped_not_resent(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                   tmp_path):
    cfg = with_live(sb_cfg, **FAST)
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit",))
    em = run.sb["bybit"]
    symbol = next(iter(em.emu.markets))
    try:
        # halted from the start: nothing rests, so the first order calls are creates, all refused,
        # and the first refusal is never answered
        em.fault("halt", symbol=symbol)
        em.fault("lose", what="refusal", count=1)
        before: set[str] = set()
        run.start()
        lost = None
        for _ in range(30):
            await run.step(1)
            unknown = [c for c in run.runner.om.orders if c not in before and
                       any(e["kind"] == "unknown" for e in run.session.journal.events(c))]
            if unknown:
                lost = run.runner.om.orders[unknown[0]]
                break
        assert lost is not None, ("the bot sent no new order while the market was halted: "
                                  f"{[(e['kind'], e['client_id'], e['detail']) for e in run.session.journal.events()][-12:]}"
                                  f" stale={live_venue(run, 'bybit').stale} {run.runner.feeds[0].stats}")
        await step_until(run, lambda: lost.final, steps=10)
        assert lost.state.value == "rejected" and lost.presumed_absent, \
            f"the refused order is {lost.state.value}, not dropped after its grace: " \
            f"{[(e['kind'], e['local_ns'], e['detail']) for e in run.session.journal.events(lost.client_id)]}"
        assert lost.client_id not in em.account.by_client_id, "the venue has an order it refused"
        em.fault("resume", symbol=symbol)
        await run.step(15)
        assert resting(run, "bybit"), "no quote after the market came back"
        assert lost.client_id not in em.account.by_client_id, "the dropped order was sent again"
        await assert_orders_converge(run, ("bybit",))
        await run.stop()
        assert_ledger_invariants(run, ("bybit",))
    finally:
        await close_live(run)


@bounded(60)
async def test_a_cancel_refused_while_halted_leaves_the_order_live_and_goes_through_after_resume(
        sb_cfg, sb_store, sb_compiled, tmp_path):  # noqa: F811
    cfg = with_live(sb_cfg, **FAST)
    run = await start_live(cfg, sb_store, tmp_path, venues=("bybit",))
    em = run.sb["bybit"]
    symbol = next(iter(em.emu.markets))
    j = run.session.journal
    try:
        run.start()
        await run.step(10)
        assert resting(run, "bybit")
        em.fault("halt", symbol=symbol)
        n_rejects = sum(e["kind"] == "cancel_reject" for e in j.events())
        # the stale guard pulls the quotes when the book stops changing; a requote cancels: either way
        # the cancels meet a halted market
        for _ in range(20):
            await run.step(1)
            if sum(e["kind"] == "cancel_reject" for e in j.events()) > n_rejects:
                break
        assert sum(e["kind"] == "cancel_reject" for e in j.events()) > n_rejects, "no cancel met the halt"
        assert resting(run, "bybit"), "the halted venue cancelled an order"
        await assert_orders_converge(run, ("bybit",))  # a refused cancel leaves the order live in the bot too
        halted_orders = {o.client_id for o in resting(run, "bybit")}
        em.fault("resume", symbol=symbol)
        await run.step(15)
        left = halted_orders & {o.client_id for o in resting(run, "bybit")}
        lv = live_venue(run, "bybit")
        await assert_orders_converge(run, ("bybit",))
        await run.stop()
        assert_ledger_invariants(run, ("bybit",))
        assert lv.id is not None and left <= halted_orders
    finally:
        await close_live(run)
