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
- ``rate_limit`` [count | seconds]: the next ``count`` REST calls, or every REST call for the next
  ``seconds`` of data time, answer with the venue's rate-limit error;
- ``partial_fill`` [fraction (default 0.5), count]: the next ``count`` orders that take liquidity at
  once (IOC or market) fill at most ``fraction`` of their quantity (down to the lot) and the rest is
  cancelled, as when the displayed size was not there; the order the client sees is the full one,
  partially filled, then cancelled;
- ``halt`` / ``resume`` [symbol]: the market stops trading (new orders refused, cancels refused,
  no fills), then trades again;
- ``default``: the venue is gone: every live order is lost, balances frozen, every call fails;
- ``freeze_feed`` / ``unfreeze_feed``: market data stops updating (REST and websocket show the
  book as it was), matching goes on underneath;
- ``skew_clock`` [ms]: the venue's clock runs ``ms`` ahead (negative: behind);
- ``garbage`` [what, channel: book | trade | rest (default book), count]: the next ``count``
  public messages on ``channel`` (websocket book updates, websocket trade prints, REST order-book
  answers) are hostile, in the venue's own wire format so the client parses them as far as it can.
  ``what`` is one of :data:`GARBAGE` (see garbage.py for what each looks like); a book or trade
  message goes out *in addition to* the real one after it, a REST answer *instead of* the real one.
  Not every pair is meaningful (a crossed trade is not a thing): those raise :class:`FaultError`.
  Each hostile message sent is logged as a record of kind ``garbage_sent`` (params ``what``,
  ``channel``, ``symbol``, ``bytes``) and counted in :attr:`Faults.garbage_sent`;
- ``clear``: undo every pending count, delay, freeze and skew (not halts or a default).

The ban: a venue bans a client that goes on calling while it answers rate-limit errors (Binance
documents it: "repeatedly violating rate limits and/or failing to back off after receiving 429s will
result in an automated IP ban"). More than ``ban_after`` (default 20) REST calls answered with the
rate-limit error within ``ban_window_s`` (10 s of data time) ban the API keys for ``ban_s`` (60 s):
every REST call then answers HTTP 418. The three numbers may be given with a ``rate_limit`` fault.
Each ban is logged as a record of kind ``ban`` and counted in :attr:`Faults.bans`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

NS = 1_000_000_000

KINDS = ("drop_ws", "delay", "lose", "duplicate", "reorder", "http_error", "timeout", "rate_limit", "partial_fill",
         "halt", "resume", "default", "freeze_feed", "unfreeze_feed", "skew_clock", "garbage", "clear")

# hostile public messages (the ``garbage`` kind): what may go on which channel
GARBAGE = ("truncated_json", "nan_strings", "negative_size", "crossed_book", "wrong_symbol", "enormous")
GARBAGE_CHANNELS: dict[str, tuple[str, ...]] = {
    "book": GARBAGE,
    "trade": tuple(w for w in GARBAGE if w != "crossed_book"),
    "rest": GARBAGE,
}


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
        self.partial_fill_n = 0
        self.partial_fraction = 0.5
        self.rate_limit_until_ns = 0   # data ns: every REST call is refused for rate until then
        self.ban_after, self.ban_window_ns, self.ban_ns = 20, 10 * NS, 60 * NS
        self.refused_for_rate: deque[int] = deque()  # data ns of the calls refused for rate, in the window
        self.banned_until_ns = 0
        self.bans = 0
        self.rate_refusals = 0  # REST calls answered with the rate-limit error, in all
        self.halted: set[str] = set()
        self.defaulted = False
        self.frozen = False
        self.skew_ms = 0.0
        self.garbage: dict[str, deque[str]] = {ch: deque() for ch in GARBAGE_CHANNELS}  # pending, per channel
        self.garbage_sent: Counter = Counter()  # (channel, what) -> hostile messages sent
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
            if "seconds" in p:
                self.rate_limit_until_ns = max(self.rate_limit_until_ns, int(data_ns) + int(float(p["seconds"]) * NS))
            else:
                self.rate_limit_n += int(p.get("count", 1))
            self.ban_after = int(p.get("ban_after", self.ban_after))
            self.ban_window_ns = int(float(p.get("ban_window_s", self.ban_window_ns / NS)) * NS)
            self.ban_ns = int(float(p.get("ban_s", self.ban_ns / NS)) * NS)
        elif kind == "partial_fill":
            self.partial_fraction = float(p.get("fraction", 0.5))
            if not 0.0 <= self.partial_fraction < 1.0:
                raise FaultError(f"partial_fill: fraction must be in [0, 1), got {self.partial_fraction}")
            self.partial_fill_n += int(p.get("count", 1))
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
        elif kind == "garbage":
            what, channel = p.get("what"), p.setdefault("channel", "book")
            if channel not in GARBAGE_CHANNELS:
                raise FaultError(f"garbage: 'channel' must be one of {', '.join(GARBAGE_CHANNELS)}, got {channel!r}")
            if what not in GARBAGE_CHANNELS[channel]:
                raise FaultError(f"garbage: 'what' on the {channel} channel must be one of "
                                 f"{', '.join(GARBAGE_CHANNELS[channel])}, got {what!r}")
            n = int(p.setdefault("count", 1))
            if n < 1:
                raise FaultError(f"garbage: 'count' must be >= 1, got {n}")
            self.garbage[channel].extend([what] * n)
        elif kind == "clear":
            for q in self.garbage.values():
                q.clear()
            self.delay_s = {"ack": 0.0, "fill": 0.0}
            self.lose_n = {"ack": 0, "refusal": 0, "fill": 0}
            self.http_error_n = self.timeout_n = self.rate_limit_n = self.duplicate_n = self.reorder_n = 0
            self.partial_fill_n = 0
            self.rate_limit_until_ns = 0
            self.frozen = False
            self.skew_ms = 0.0
        rec = FaultRecord(time.time_ns(), int(data_ns), kind, p)
        self.log.append(rec)
        return rec

    def refuse_for_rate(self, data_ns: int) -> bool:
        """Whether a REST call at ``data_ns`` answers the rate-limit error (a count or a timed storm);
        each refusal counts toward the ban."""
        if not (data_ns < self.rate_limit_until_ns or self.take("rate_limit")):
            return False
        self.rate_refusals += 1
        q = self.refused_for_rate
        q.append(data_ns)
        while q and q[0] <= data_ns - self.ban_window_ns:
            q.popleft()
        if len(q) > self.ban_after and data_ns >= self.banned_until_ns:
            self.banned_until_ns = data_ns + self.ban_ns
            self.bans += 1
            self.log.append(FaultRecord(time.time_ns(), int(data_ns), "ban",
                                        {"calls_refused": len(q), "window_s": self.ban_window_ns / NS, "seconds": self.ban_ns / NS}))
            q.clear()
        return True

    def take_garbage(self, channel: str) -> str | None:
        """The hostile kind the next message on ``channel`` must be (None: a real one)."""
        q = self.garbage[channel]
        return q.popleft() if q else None

    def garbage_out(self, what: str, channel: str, symbol: str, nbytes: int, data_ns: int) -> None:
        """Log and count one hostile message the server has just sent."""
        self.garbage_sent[(channel, what)] += 1
        self.log.append(FaultRecord(time.time_ns(), int(data_ns), "garbage_sent",
                                    {"what": what, "channel": channel, "symbol": symbol, "bytes": nbytes}))

    def banned(self, data_ns: int) -> bool:
        return data_ns < self.banned_until_ns

    def take(self, counter: str) -> bool:
        """Use up one of a pending count ('http_error', 'timeout', 'rate_limit', 'duplicate', 'reorder', 'partial_fill',
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
