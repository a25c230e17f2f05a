"""On stop the bot cancels everything and waits for the venues to confirm on their streams (which
must still be listening): the cancel-all ends when the last cancel is confirmed, not after the
whole ``cancel_wait_s`` with a REST sweep at the end."""

from __future__ import annotations

import time

from live.live_sandbox import close_live, start_live

from faults.invariants import assert_ledger_invariants, bounded


@bounded(60)
async def test_the_exit_cancel_all_is_confirmed_by_the_streams_not_by_the_timeout(sb_cfg, sb_store, sb_compiled,  # noqa: F811
                                                                                 tmp_path):
    run = await start_live(sb_cfg, sb_store, tmp_path, venues=("bybit", "kraken"))
    try:
        run.start()
        await run.step(40)
        resting = sum(not o.is_final for v in ("bybit", "kraken") for o in run.sb[v].account.orders.values())
        assert resting, "nothing was quoted"
        t0 = time.monotonic()
        await run.stop()
        took = time.monotonic() - t0
        assert took < run.runner.cancel_wait_s / 2, (
            f"the exit took {took:.1f} s for {resting} orders (cancel_wait_s {run.runner.cancel_wait_s}): "
            "the venues' confirmations were not heard")
        assert run.runner.notices == []
        assert_ledger_invariants(run, ("bybit", "kraken"))
    finally:
        await close_live(run)
