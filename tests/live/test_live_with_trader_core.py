"""The real trader core (stockbridge.trader.TraderCore) behind the order manager and the scripted
venue double: its quotes go out, the venue's answers come back as its reports, and its books and
working orders follow (config: tests/engine_fixtures, alpha quotes AAPLx)."""

from __future__ import annotations

import pytest
from engine_fixtures import (
    AAPLX,
    ALPHA,
    BETA,
    BROKER,
    NS,
    QUOTE,
    T0,
    make_config,
    script,
    script_kernel,
)

import live.scripted_venue as sv
from execution.journal import Journal
from execution.order_manager import OrderManager, OrderState, core_marks
from execution.venue import VenueLink
from live.live_rig import Clock
from stockbridge.core.order_codes import ACT_CANCEL, ACT_NEW
from stockbridge.tables import build_tables
from stockbridge.trader import TraderCore, build_trader, cid_prefix, cid_text

HOUR = 3600 * NS


def market(core: TraderCore, now: int) -> None:
    for v, ins, bid, ask, size in ((BROKER, 0, 99.99, 100.01, 300.0), (ALPHA, AAPLX, 99.96, 100.04, 5.0),
                                   (BETA, AAPLX, 99.94, 100.06, 5.0)):
        core.book_level(v, ins, 1, bid, size, is_quote=True, now=now)
        core.book_level(v, ins, -1, ask, size, is_quote=True, now=now)
        core.book_end(v, ins, now)


async def test_quotes_from_the_core_are_sent_filled_requoted_and_the_cores_books_follow(tmp_path):
    params = script((T0 - NS, T0 + 10 * NS, ALPHA, 1, 99.95, 2.0, QUOTE),
                    (T0 + 10 * NS, T0 + HOUR, ALPHA, 1, 99.90, 2.0, QUOTE))
    cfg = make_config(tmp_path / "c.toml")
    tables = build_tables(cfg, T0 - HOUR, T0 + 24 * HOUR)
    core = TraderCore(build_trader(cfg, tables, T0 - HOUR, book_depth=16, prefix=cid_prefix(3, "live-test")),
                      params, script_kernel)
    venue = sv.ScriptedVenue()
    clock = Clock(T0)
    link = VenueLink("alpha", venue, symbols={AAPLX: "AAPLX/USDT"}, instrument_names={AAPLX: "AAPLx"},
                     quote_currency={AAPLX: "USDT"})
    with Journal(tmp_path) as journal:
        om = OrderManager(core, journal, {ALPHA: link}, clock=clock, marks=core_marks(core))

        def pump():
            for kind, d in venue.stream():
                (om.on_order if kind == "order" else om.on_trade)(ALPHA, d)

        market(core, T0)
        core.step(T0)
        acts = core.actions()
        assert [int(a["kind"]) for a in acts] == [ACT_NEW]
        await om.submit(acts)
        bid = cid_text(int(acts[0]["cid"]))
        (w,) = core.working()
        assert w["state"] == 2  # OPEN: the core had the ack
        venue.fill(bid, 0.5)
        pump()
        assert core.tr.kpos[ALPHA, AAPLX] == pytest.approx(0.5)
        assert core.working()[0]["leaves"] == pytest.approx(1.5)
        # the kernel moves the bid 5 ticks: cancel and replace
        clock.now = T0 + 11 * NS
        market(core, clock.now)
        core.step(clock.now)
        acts = core.actions()
        assert [int(a["kind"]) for a in acts] == [ACT_CANCEL, ACT_NEW]
        await om.submit(acts)
        pump()
        assert om.orders[bid].state == OrderState.CANCELLED
        (w,) = core.working()  # the replaced bid is gone from the core; the new one rests
        assert w["cid"] == int(acts[1]["cid"]) and w["price"] == pytest.approx(99.90)
        df = journal.fills_frame()
        assert df["order_id"].to_list() == [int(acts[0]["cid"])] and df["fair"][0] == pytest.approx(100.0, abs=0.05)
        assert [i["action"] for i in journal.intents()] == ["new", "cancel", "new"]
