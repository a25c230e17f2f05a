"""The live-side unit tests' rig: a fake clock, one scripted venue (test double), a journal, an order manager."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from execution.journal import Journal
from execution.order_manager import OrderManager
from execution.venue import VenueLink
from live.scripted_venue import RecordingCore, ScriptedVenue
from stockbridge.core.actions import new_actions
from stockbridge.core.order_codes import ACT_CANCEL, ACT_NEW, GTC, TAG_QUOTE

NS = 1_000_000_000
MS = 1_000_000
T0 = 1_751_896_800 * NS  # 2025-07-07T14:00Z
ALPHA, AAPLX = 0, 1
SYMBOL = "AAPLX/USDT"


class Clock:
    """ns UTC, moved by the test."""

    def __init__(self, now: int = T0):
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> int:
        self.now += ns
        return self.now


def cid(serial: int, slot: int = 0, prefix: int = 77) -> int:
    """A client order id as the core makes them (stockbridge.core.working.make_cid)."""
    return (prefix << 44) | (serial << 12) | slot


def new(c: int, side: int = 1, price: float = 99.95, qty: float = 2.0, *, tif: int = GTC, post_only: int = 1,
        tag: int = TAG_QUOTE, venue: int = ALPHA, ts: int = T0) -> np.ndarray:
    a = new_actions(1)
    a[0] = (c, ts, price, qty, ACT_NEW, side, tif, post_only, tag, venue, AAPLX)
    return a


def cancel(c: int, venue: int = ALPHA, ts: int = T0) -> np.ndarray:
    a = new_actions(1)
    a[0]["cid"], a[0]["ts"], a[0]["kind"], a[0]["venue"], a[0]["instrument"] = c, ts, ACT_CANCEL, venue, AAPLX
    return a


def link(venue: ScriptedVenue, name: str = "alpha") -> VenueLink:
    return VenueLink(name=name, adapter=venue, symbols={AAPLX: SYMBOL}, instrument_names={AAPLX: "AAPLx"},
                     base_currency={AAPLX: "AAPLX"}, quote_currency={AAPLX: "USDT"})


class Rig:
    """A scripted venue, a recording core, a journal and the order manager between them."""

    def __init__(self, tmp_path: Path, **kwargs):
        self.clock = Clock()
        self.venue = ScriptedVenue()
        self.core = RecordingCore()
        self.journal = Journal(tmp_path, redact=kwargs.pop("redact", ()))
        self.om = OrderManager(self.core, self.journal, {ALPHA: link(self.venue)}, clock=self.clock,
                               unknown_grace_ns=kwargs.pop("grace", 2 * NS), lookup_interval_ns=NS, **kwargs)

    def pump(self) -> None:
        """Deliver what the venue's private streams have queued."""
        for kind, d in self.venue.stream():
            (self.om.on_order if kind == "order" else self.om.on_trade)(ALPHA, d)
