"""Backing off a venue that answered with its rate-limit error (execution.backoff), driven with
explicit times (ns UTC). The guards' hold on its order actions is in test_live_guards.py."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from execution.backoff import BackoffAdapter, HeldBack
from execution.venue import is_definite_refusal
from live.live_rig import MS, NS, T0


class Venue:
    """A venue client whose REST calls answer from ``answers`` (an exception instance is raised)."""

    def __init__(self):
        self.answers: list = []
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None  # set: calls wait on it (a slow answer)
        self.markets = {"AAPLX/USDT": {}}

    async def fetch_balance(self, params={}):
        return await self._answer("fetch_balance")

    async def cancel_order(self, id, symbol=None, params={}):
        return await self._answer("cancel_order")

    async def watch_orders(self, symbol=None):
        self.calls.append("watch_orders")
        return []

    async def _answer(self, name):
        self.calls.append(name)
        if self.gate is not None:
            await self.gate.wait()
        a = self.answers.pop(0) if self.answers else {"ok": True}
        if isinstance(a, BaseException):
            raise a
        return a


def rig(first_ms=1_000, max_ms=8_000):
    now = [T0]
    holds: list[int] = []
    venue = Venue()
    ad = BackoffAdapter(venue, lambda: now[0], first_ns=first_ms * MS, max_ns=max_ms * MS, on_hold=holds.append)
    return venue, ad, now, holds


async def test_a_rate_limit_answer_holds_every_call_and_the_hold_doubles_until_an_answer():
    venue, ad, now, holds = rig()
    venue.answers = [ccxt.RateLimitExceeded("10006 Too many visits")] * 5
    with pytest.raises(ccxt.RateLimitExceeded):
        await ad.fetch_balance()
    assert holds == [T0 + 1 * NS]
    now[0] = T0 + 999 * MS
    with pytest.raises(HeldBack):
        await ad.cancel_order("1", "AAPLX/USDT")
    assert venue.calls == ["fetch_balance"]  # nothing sent while held
    # each refusal in a row doubles the hold: 1, 2, 4, 8 s, then no more than max_ns
    for k, hold_s in enumerate((2, 4, 8, 8)):
        now[0] = ad.held_until_ns
        with pytest.raises(ccxt.RateLimitExceeded) as err:
            await ad.fetch_balance()
        assert not isinstance(err.value, HeldBack)
        assert ad.held_until_ns == now[0] + hold_s * NS
    assert ad.holds == 5 and ad.held_back == 1
    now[0] = ad.held_until_ns
    assert await ad.fetch_balance() == {"ok": True}
    assert ad.streak == 0
    venue.answers = [ccxt.RateLimitExceeded("again")]
    with pytest.raises(ccxt.RateLimitExceeded):
        await ad.fetch_balance()
    assert ad.held_until_ns == now[0] + 1 * NS  # an answer ended the streak: back to the first hold


async def test_after_a_hold_one_call_probes_and_calls_in_flight_together_count_once():
    venue, ad, now, holds = rig()
    venue.gate = asyncio.Event()
    venue.answers = [ccxt.RateLimitExceeded("a"), ccxt.RateLimitExceeded("b"), ccxt.RateLimitExceeded("c")]
    burst = [asyncio.ensure_future(ad.fetch_balance()) for _ in range(3)]
    await asyncio.sleep(0)
    venue.gate.set()
    results = await asyncio.gather(*burst, return_exceptions=True)
    assert all(isinstance(r, ccxt.RateLimitExceeded) for r in results)
    assert ad.holds == 1 and ad.held_until_ns == T0 + 1 * NS  # three refusals of one burst: one hold
    now[0] = ad.held_until_ns
    venue.gate.clear()
    probe = asyncio.ensure_future(ad.fetch_balance())
    await asyncio.sleep(0)
    with pytest.raises(HeldBack, match="probing"):
        await ad.cancel_order("1")
    venue.gate.set()
    assert await probe == {"ok": True}
    assert await ad.cancel_order("1") == {"ok": True}  # the venue answered: calls flow again
    assert venue.calls == ["fetch_balance"] * 4 + ["cancel_order"]


async def test_other_errors_streams_and_attributes_pass_through():
    venue, ad, now, holds = rig()
    venue.answers = [ccxt.RequestTimeout("slow"), ccxt.InsufficientFunds("no")]
    with pytest.raises(ccxt.RequestTimeout):
        await ad.fetch_balance()
    with pytest.raises(ccxt.InsufficientFunds):
        await ad.fetch_balance()
    assert holds == [] and ad.held_until_ns == 0
    ad.session_state = lambda: 3  # set on the venue client, as the broker adapter's hook is
    assert venue.session_state() == 3 and ad.markets is venue.markets
    venue.answers = [ccxt.DDoSProtection("418 banned")]
    with pytest.raises(ccxt.DDoSProtection):
        await ad.fetch_balance()
    assert await ad.watch_orders() == []  # a stream is not a request: never held


def test_a_rate_limit_or_nonce_refusal_is_a_definite_no_and_other_network_errors_are_not():
    assert is_definite_refusal(ccxt.RateLimitExceeded("429"))
    assert is_definite_refusal(HeldBack("not sent"))
    assert is_definite_refusal(ccxt.InvalidNonce('kraken {"error": ["EAPI:Invalid nonce"]}'))
    assert not is_definite_refusal(ccxt.RequestTimeout("?"))
    assert not is_definite_refusal(ccxt.DDoSProtection("?"))
