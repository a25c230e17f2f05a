"""Backing off a venue that says "slow down": no REST call goes there for a while after it answers
with its rate-limit error.

A venue that refuses calls for rate (ccxt's ``RateLimitExceeded``: Bybit 10006, Kraken
``EAPI:Rate limit exceeded``, HTTP 429) or sheds load (``DDoSProtection``, e.g. HTTP 418) bans a
client that keeps calling. ccxt's own limiter spaces calls to the venue's published budget but
does not react to a refusal, so :class:`BackoffAdapter` wraps each venue adapter: after such an
answer every REST call fails at once with :class:`HeldBack` (nothing is sent) until the hold ends;
the hold starts at ``first_ns`` and doubles with each refusal in a row up to ``max_ns``. When a hold
ends, one call goes first (a probe) and the others fail with :class:`HeldBack` until it is
answered: a venue still refusing sees one call per hold, not the backlog. Any call the venue
answers otherwise ends the streak. ``last_answer_ns`` is when the venue last answered at all (the
runner's test for a venue that is gone). Websocket methods (``watch_*``) pass through: a stream
is not a request.

The order manager treats a rate-limit refusal, the venue's or ours, as a definite "not done" (the
venue refuses before matching; :func:`execution.venue.is_definite_refusal`). The guards hold the
venue's actions while the hold lasts (``on_hold``): new orders there are refused, cancels wait and
leave first when it ends (execution.guards.RateGuard).

Times are ns of the bot's clock (UTC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ccxt

# the calls that are HTTP requests (ccxt's unified names the bot uses, and Kraken's lookups)
REST_CALLS = frozenset({"create_order", "cancel_order", "fetch_order", "fetch_open_orders", "fetch_closed_orders",
                        "fetch_orders", "fetch_my_trades", "fetch_balance", "fetch_order_book", "fetch_trades",
                        "fetch_ticker", "fetch_time"})


class HeldBack(ccxt.RateLimitExceeded):
    """A call not sent: the venue rate-limited us and its hold has not ended."""


class BackoffAdapter:
    """``adapter`` (a ccxt.pro exchange or one of its shape) with a hold after a rate-limit answer.

    ``clock``: ns UTC now; ``on_hold(until_ns)``: told when a hold starts (the guards hold the
    venue's order actions until then)."""

    def __init__(self, adapter: Any, clock: Callable[[], int], *, first_ns: int, max_ns: int,
                 on_hold: Callable[[int], None] | None = None):
        if not 0 < first_ns <= max_ns:
            raise ValueError(f"need 0 < first_ns <= max_ns, got {first_ns}, {max_ns}")
        # set in __dict__: any other attribute set on the wrapper is the adapter's (see __setattr__)
        self.__dict__.update(_adapter=adapter, _clock=clock, _on_hold=on_hold, first_ns=first_ns, max_ns=max_ns,
                             held_until_ns=0,
                             _hold_started_ns=-1,  # when the current (last) hold began
                             _probing=False,       # after a hold, one call goes first: the rest wait for its answer
                             streak=0,             # holds in a row with no other answer between
                             holds=0,              # holds started
                             held_back=0,          # calls not sent because of a hold
                             last_answer_ns=clock())  # the venue's last answer of any kind (a refusal too)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._adapter, name)
        if name not in REST_CALLS:
            return attr
        return lambda *args, **kwargs: self._call(name, attr, args, kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._adapter, name, value)  # e.g. the broker adapter's session_state hook

    async def _call(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        now = self._clock()
        if now < self.held_until_ns:
            self.held_back += 1
            raise HeldBack(f"{name} not sent: rate-limited by the venue, holding for "
                           f"{(self.held_until_ns - now) / 1e6:.0f} ms more")
        if self.streak and self._probing:
            self.held_back += 1
            raise HeldBack(f"{name} not sent: rate-limited by the venue, one call is probing whether it still is")
        probe = self.streak > 0
        self._probing = probe
        try:
            out = await fn(*args, **kwargs)
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
            self.last_answer_ns = self._clock()
            # calls already in flight when a hold began are the same burst: they do not double it
            if now > self._hold_started_ns:
                self.streak += 1
                self.holds += 1
                self._hold_started_ns = self._clock()
                hold = min(self.max_ns, self.first_ns << min(self.streak - 1, 30))
                self.held_until_ns = max(self.held_until_ns, self._hold_started_ns + hold)
                if self._on_hold is not None:
                    self._on_hold(self.held_until_ns)
            raise
        except ccxt.ExchangeError:
            self.streak = 0  # the venue answered: it is not limiting us
            self.last_answer_ns = self._clock()
            raise
        finally:
            if probe:
                self._probing = False
        self.streak = 0
        self.last_answer_ns = self._clock()
        return out


__all__ = ["BackoffAdapter", "HeldBack", "REST_CALLS"]
