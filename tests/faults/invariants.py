"""The ledger invariants of issue 12, checked against the emulator's own ledger (the truth).

- every fill at the venue is in the journal exactly once, with the same trade id, price, qty and fee;
- every order of ours open at the venue is known to the bot as live, and nothing the bot holds live
  is closed at the venue;
- the core's position is the venue's balance (less the baseline, plus base-asset fees), to the lot;
- no two orders share a client id, every order the venue saw was a journalled intent, sent once.

The checks that need only the journal are execution.sandbox.invariants (``stockbridge sandbox chaos``
runs them too); the ones here also look inside the bot (its core's position, its order book).
Shared by tests/faults and tests/live/test_live_runner.py."""

from __future__ import annotations

import asyncio
import functools

import pytest

from execution.sandbox.invariants import (
    fill_problems,
    resting_problems,
    secret_problems,
    sent_problems,
    venue_secrets,
)

LIVE_STATES = ("open", "partially_filled", "pending_cancel")


def bounded(seconds: float):
    """A test coroutine that fails (with the line it was waiting on) instead of hanging."""

    def wrap(fn):
        @functools.wraps(fn)
        async def run(*args, **kwargs):
            return await asyncio.wait_for(fn(*args, **kwargs), seconds)
        return run
    return wrap


async def step_until(run, done, *, steps: int = 30, seconds: float = 1.0, wall_s: float = 0.3) -> bool:
    """Step the market until ``done()`` (at most ``steps`` steps of ``seconds``), letting ``wall_s`` of
    wall time pass after each: the bot's housekeeping (lookups, REST checks) runs on a wall timer,
    while a stepped clock moves only when told. (Not ``LiveRun.step``: its settle waits up to 3 s
    for each reply a fault holds up.) True if ``done()`` came true."""
    for _ in range(steps):
        if done():
            return True
        await run.sb.step(seconds)
        await asyncio.sleep(wall_s)
        if run.task is not None and run.task.done():
            run.task.result()  # a failure of the bot surfaces here
    return bool(done())


def base_quote(run, venue):
    m = next(iter(run.sb[venue].emu.markets.values()))
    return m.base, m.quote


def live_venue(run, venue):
    return next(v for v in run.runner.venues.values() if v.name == venue)


def assert_journal_is_the_ledger(run, venue):
    """Every fill at the venue is in the journal once, with its price, qty and fee (quote ccy)."""
    problems = fill_problems(run.sb[venue], run.session.journal)
    assert not problems, "\n".join(problems)


def assert_position_is_the_venues(run, venue):
    """The core's position is the venue's balance less the baseline (plus base-asset fees, which the
    core books in quote currency), to well inside a lot."""
    lv = live_venue(run, venue)
    acct = run.sb[venue].account
    base, _ = base_quote(run, venue)
    fee_tokens = sum(f.fee for f in acct.fills if f.fee_currency == base)
    core_pos = float(run.runner.core.tr.kpos[lv.id, lv.instrument])
    assert core_pos == pytest.approx(acct.balance(base).total - lv.baseline + fee_tokens, abs=1e-9), \
        f"{venue}: the core's position differs from the venue's balance"


def assert_orders_agree(run, venue):
    """Every order of ours open at the venue is live in the bot (no orphan), and every order the bot
    holds live (open, partially filled, cancel in flight) is open at the venue."""
    lv = live_venue(run, venue)
    om = run.runner.om
    acct = run.sb[venue].account
    venue_open = {o.client_id for o in acct.orders.values() if not o.is_final and o.client_id.startswith("sb")}
    orphans = sorted(c for c in venue_open if c not in om.orders or om.orders[c].final)
    assert orphans == [], f"{venue}: open at the venue, not live in the bot: " + ", ".join(
        f"{c} ({om.orders[c].state.value if c in om.orders else 'never heard of'})" for c in orphans)
    ghosts = sorted(o.client_id for o in om.orders.values()
                    if o.venue == lv.id and o.state.value in LIVE_STATES and o.client_id not in venue_open)
    assert ghosts == [], f"{venue}: live in the bot, closed at the venue: " + ", ".join(
        f"{c} (venue: {acct.by_client_id[c].status if c in acct.by_client_id else 'never saw it'})" for c in ghosts)


def orders_agree(run, venues) -> bool:
    """:func:`assert_orders_agree` as a predicate (for :func:`step_until`)."""
    try:
        for v in venues:
            assert_orders_agree(run, v)
    except AssertionError:
        return False
    return True


async def assert_orders_converge(run, venues, *, steps: int = 20, seconds: float = 0.25, wall_s: float = 0.3) -> None:
    """The bot's orders agree with each venue's (:func:`assert_orders_agree`) within ``steps`` market
    steps of ``seconds``, ``wall_s`` of wall time each: the venue changes as the market steps, the bot
    hears of it a moment later (short steps: the market moves little while the bot catches up)."""
    if not await step_until(run, lambda: orders_agree(run, venues), steps=steps, seconds=seconds, wall_s=wall_s):
        for v in venues:
            assert_orders_agree(run, v)


def assert_sent_once(run, venue):
    """Every order the venue saw was a journalled intent; one intent, one order; no client id twice."""
    problems = sent_problems(run.sb[venue], run.session.journal)
    assert not problems, "\n".join(problems)


def assert_nothing_left(run, venue):
    """After a stop: nothing of ours rests at the venue, nothing is live (or unknown) in the bot."""
    lv = live_venue(run, venue)
    problems = resting_problems(run.sb[venue])
    assert not problems, "\n".join(problems)
    assert [(o.client_id, o.state.value) for o in run.runner.om.orders.values() if not o.final and o.venue == lv.id] == []


def assert_no_secret_written(run):
    """No API key or secret of any sandbox venue in any file of the run directory (the journal and
    its WAL included, read as bytes), after whatever the faults made the bot log and journal."""
    run.session.journal.flush()
    problems = secret_problems(run.session.journal.path.parent, venue_secrets(run.sb.venues.values()))
    assert not problems, "\n".join(problems)


def assert_ledger_invariants(run, venues, *, stopped: bool = True):
    """All of the above for each of ``venues`` (``stopped``: the run has ended, its cancel-all done),
    and no credential in the run's files."""
    for v in venues:
        assert_journal_is_the_ledger(run, v)
        assert_position_is_the_venues(run, v)
        assert_orders_agree(run, v)
        assert_sent_once(run, v)
        if stopped:
            assert_nothing_left(run, v)
    assert_no_secret_written(run)
