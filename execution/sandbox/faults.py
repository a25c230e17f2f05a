"""Faults on demand: what a sandbox venue should do wrong next, and the log of what was asked.

One :class:`Faults` per emulator. The servers consult it on every call and message; the control API
(HTTP ``POST /sandbox/faults``) and the Python handle set it. Every fault set is logged with the wall
time and the replay's data time (ns UTC).

Kinds (``params`` in brackets):

- ``drop_ws`` [scope: public | private | all]: close the websocket connections now;
- ``delay`` [what: ack | fill, seconds]: hold REST order acks (create/cancel answers) or private
  fill/order messages this long; the order still happens at the venue when it arrives;
- ``lose`` [what: ack | refusal | fill, count]: never answer the next ``count`` order calls the venue
  carries out (the client times out; the order still happens), or the next ``count`` order calls it
  refuses (``refusal``, Bybit and Kraken: the client times out; nothing happened), or drop the next
  ``count`` private fill messages;
- ``http_error`` [status (default 503), count]: the next ``count`` REST calls answer that status;
- ``timeout`` [count]: the next ``count`` REST calls hang until the client gives up (nothing happens);
- ``duplicate`` [count]: send each of the next ``count`` private fill messages twice;
- ``reorder`` [count]: hold back each of the next ``count`` private fill messages and send it right
  after the fill message that follows it (a partial fill then arrives after the fill that completed
  the order; a held message with no fill after it is never sent);
- ``rate_limit`` [count]: the next ``count`` REST calls answer with the venue's rate-limit error;
- ``halt`` / ``resume`` [symbol]: the market stops trading (new orders refused, cancels refused,
  no fills), then trades again;
- ``default``: the venue is gone: every live order is lost, balances frozen, every call fails;
- ``freeze_feed`` / ``unfreeze_feed``: market data stops updating (REST and websocket show the
  book as it was), matching goes on underneath;
- ``skew_clock`` [ms]: the venue's clock runs ``ms`` ahead (negative: behind);
- ``clear``: undo every pending count, delay, freeze and skew (not halts or a default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

KINDS = ("drop_ws", "delay", "lose", "duplicate", "reorder", "http_error", "timeout", "rate_limit", "halt", "resume", "default",
         "freeze_feed", "unfreeze_feed", "skew_clock", "clear")


@dataclass
class FaultRecord:
    wall_ns: int       # real wall clock when the fault was set, ns UTC
    data_ns: int       # replay data time then, ns UTC
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"wall_ns": self.wall_ns, "data_ns": self.data_ns, "kind": self.kind, "params": self.params}


class FaultError(ValueError):
    """A fault request that does not make sense (unknown kind, missing parameter)."""


class Faults:
    """The pending faults of one emulator."""

    def __init__(self) -> None:
        self.delay_s: dict[str, float] = {"ack": 0.0, "fill": 0.0}
        self.lose_n: dict[str, int] = {"ack": 0, "refusal": 0, "fill": 0}
        self.duplicate_n = 0
        self.reorder_n = 0
        self.http_error_n = 0
        self.http_status = 503
        self.timeout_n = 0
        self.rate_limit_n = 0
        self.halted: set[str] = set()
        self.defaulted = False
        self.frozen = False
        self.skew_ms = 0.0
        self.log: list[FaultRecord] = []

    def record(self, kind: str, params: dict[str, Any], data_ns: int) -> FaultRecord:
        """Check and store a fault (the venue applies halts, defaults and drops; see venue.py)."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        p = dict(params)
        if kind in ("delay", "lose"):
            what = p.get("what")
            whats = ("ack", "fill") if kind == "delay" else ("ack", "refusal", "fill")
            if what not in whats:
                raise FaultError(f"{kind}: 'what' must be {' or '.join(map(repr, whats))}, got {what!r}")
            if kind == "delay":
                self.delay_s[what] = float(p.get("seconds", 1.0))
            else:
                self.lose_n[what] += int(p.get("count", 1))
        elif kind == "http_error":
            self.http_status = int(p.get("status", 503))
            if not 500 <= self.http_status <= 599:
                raise FaultError(f"http_error: status must be 5xx, got {self.http_status}")
            self.http_error_n += int(p.get("count", 1))
        elif kind == "duplicate":
            self.duplicate_n += int(p.get("count", 1))
        elif kind == "reorder":
            self.reorder_n += int(p.get("count", 1))
        elif kind == "timeout":
            self.timeout_n += int(p.get("count", 1))
        elif kind == "rate_limit":
            self.rate_limit_n += int(p.get("count", 1))
        elif kind in ("halt", "resume"):
            if not p.get("symbol"):
                raise FaultError(f"{kind}: 'symbol' is required")
        elif kind == "default":
            self.defaulted = True
        elif kind == "freeze_feed":
            self.frozen = True
        elif kind == "unfreeze_feed":
            self.frozen = False
        elif kind == "skew_clock":
            if "ms" not in p:
                raise FaultError("skew_clock: 'ms' is required")
            self.skew_ms = float(p["ms"])
        elif kind == "clear":
            self.delay_s = {"ack": 0.0, "fill": 0.0}
            self.lose_n = {"ack": 0, "refusal": 0, "fill": 0}
            self.http_error_n = self.timeout_n = self.rate_limit_n = self.duplicate_n = self.reorder_n = 0
            self.frozen = False
            self.skew_ms = 0.0
        rec = FaultRecord(time.time_ns(), int(data_ns), kind, p)
        self.log.append(rec)
        return rec

    def take(self, counter: str) -> bool:
        """Use up one of a pending count ('http_error', 'timeout', 'rate_limit', 'duplicate', 'reorder',
        'lose_ack', 'lose_refusal', 'lose_fill')."""
        if counter.startswith("lose_"):
            what = counter[5:]
            if self.lose_n[what] > 0:
                self.lose_n[what] -= 1
                return True
            return False
        attr = f"{counter}_n"
        n = getattr(self, attr)
        if n > 0:
            setattr(self, attr, n - 1)
            return True
        return False
