"""Differential test: the compiled simulated venues (backtest.matching, driven through
``venues_advance``) produce exactly the fills of the pure-Python reference (tests/reference_venue.py)
on random multi-venue scenarios.

A scenario: 2-4 venues with very different feed latencies (0 to 2.5 s, ``local_ts - exch_ts``),
order and response latencies and fees; per venue a stream of L1 quotes, depth rows, snapshots and
trades (aggressor +1 / -1 / 0) on a 7-tick price grid, so that levels, our prices and times collide;
a halt at some venues, a default at fewer; and a script of our actions at chosen local times (each
drawn to reach its venue within 3 ms of one of the venue's rows): GTC quotes (most joining a level
the data shows, some post-only), IOC takes (limit or market) and cancels. The driver below is all the
Python there is: it sets venue status changes at their venue time (as the engine's scenarios do),
advances the venues to each local time, takes the reports due, and sends the actions due then;
venue-side logic lives only in the engine and in the reference. Each scenario runs twice through the
engine: the whole event array at once, and in chunks as the runner feeds it (lookahead by feed
latency, NEED_MORE_DATA, rebase). The reference's own fills also pass tests/fill_invariants.py.

The minimal cases this test found, with what the engine did, are in
tests/test_matching_reference_cases.py. Examples per run come from the hypothesis profile (tests/conftest.py): ``ci`` (2000) by
default, ``--hypothesis-profile nightly`` (50000) for a long run, ``dev`` (100) for a quick one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from fill_invariants import check_fills
from hypothesis import given, settings, strategies as st
from reference_venue import GTC, IOC, MS, Cancel, ReferenceVenues, Submit, event_rows

from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import (
    NEED_MORE_DATA,
    VENUE_DEFAULTED,
    VENUE_HALTED,
    VENUE_OK,
    venue_advance,
    venue_set_status,
    venues_advance,
    venues_keep_from,
    venues_rebase,
)
from backtest.orders import next_report_time, request_cancel, submit_order, take_report
from backtest.simvenue import new_sim
from data.schema import F_BATCH_END, F_CLEAR, KIND_DEPTH, KIND_NAMES, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE

T0 = 1_751_500_000_000_000_000
PRICES = [99.0 + 0.25 * k for k in range(7)]
SIZES = [0.5, 1.0, 2.0, 3.0, 5.0, 10.0]
FEED_MS = [0, 0, 1, 6, 50, 400, 1300, 2500]
ORDER_MS = [0, 1, 3, 5, 11, 40, 250]
RESPONSE_MS = [0, 1, 4, 20, 300]
STEP_MS = [0, 0, 1, 1, 2, 3, 5, 11, 40]


@dataclass
class Scenario:
    n_venues: int
    n_instruments: int
    maker_bps: list
    taker_bps: list
    gas: list
    order_ms: list
    response_ms: list
    events: np.ndarray
    actions: list
    cuts: list  # where the chunked replay splits the event array
    status: list  # venue status changes (venue, venue time, OK / HALTED / DEFAULTED), in time order

    def __repr__(self):  # what a failing example prints: readable rows and script
        lines = [f"Scenario(venues={self.n_venues}, instruments={self.n_instruments}, maker_bps={self.maker_bps}, "
                 f"taker_bps={self.taker_bps}, gas={self.gas}, order_ms={self.order_ms}, response_ms={self.response_ms}, "
                 f"cuts={self.cuts}, status={[(v, (t - T0) / MS, c) for v, t, c in self.status]})"]
        for e in self.events:
            lines.append(f"  row v{e['venue']} i{e['instrument']} {KIND_NAMES[int(e['kind'])]:8} side {int(e['side']):+d} "
                         f"{e['price']:g} x {e['size']:g} exch {(e['exch_ts'] - T0) / MS:g} ms "
                         f"local {(e['local_ts'] - T0) / MS:g} ms flags {int(e['flags'])}")
        for k, a in enumerate(self.actions):
            lines.append(f"  act {k}: {_show(a)}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):  # hypothesis prints falsifying examples with this
        p.text(repr(self))


def _show(a):
    t = (a.t - T0) / MS
    if isinstance(a, Cancel):
        return f"cancel order {a.target + 1} at local {t:g} ms"
    tif = "IOC" if a.tif == IOC else "GTC"
    po = " post-only" if a.post_only else ""
    return f"{tif}{po} v{a.venue} i{a.instrument} {'buy' if a.side > 0 else 'sell'} {a.qty:g} @ {a.price:g} at local {t:g} ms"


def digits(x: int, *radices) -> list[int]:
    """``x`` in a mixed radix, least significant first: one hypothesis integer per row or action is
    decoded into all its fields (drawing each field on its own made generation the slowest part of
    the test), and shrinking towards 0 still means the simplest row: a depth bid at the lowest price."""
    out = []
    for r in radices:
        out.append(x % r)
        x //= r
    return out


ROW_KINDS = ["depth", "trade", "quote", "depth", "trade", "snapshot", "trade", "depth", "quote", "snapshot"]
# one draw per row or action: hypothesis' wide integers lean towards small values (so the high
# digits would nearly always be 0); random bytes are uniform and still shrink towards 0
CODE = st.binary(min_size=6, max_size=6).map(lambda b: int.from_bytes(b, "little"))


def venue_stream(v, n_instruments, params: int, codes: list[int]) -> tuple[list[dict], list[dict]]:
    """Rows of venue ``v`` from their codes: exchange times step forward on a ms grid; feed latency is
    at least the venue's base, and local times never go back within a venue. Also, per row, the
    prices of the data's book after it ({side: [prices]}, roughly: it only steers the choice of
    prices towards ones that meet something)."""
    feed_k, jitter_k = digits(params, len(FEED_MS), 4)
    feed = FEED_MS[feed_k] * MS
    jitter = [0, 0, 2, 30][jitter_k] * MS
    rows = []
    t = T0
    last_local = 0
    book = {1: {}, -1: {}}
    books = []
    for code in codes:
        kind, step, ins, jit, side, px, size, reuse, *levels = digits(
            code, len(ROW_KINDS), len(STEP_MS), n_instruments, 11, 3, len(PRICES), len(SIZES) + 1, 3,
            4, 2, len(PRICES), len(SIZES), 2, len(PRICES), len(SIZES), 2, len(PRICES), len(SIZES))
        kind = ROW_KINDS[kind]
        hit = sorted(book[-1 if side == 0 else 1], reverse=side != 0)
        if kind == "trade" and reuse and side != 2 and hit:
            px = PRICES.index(hit[0 if reuse == 1 else px % len(hit)])  # most trades print at a level shown
        t += STEP_MS[step] * MS
        local = max(last_local, t + feed + jit * jitter // 10)
        last_local = local
        base = dict(venue=v, instrument=ins, exch_ts=t, local_ts=local)
        n_before = len(rows)
        bside = 1 if side != 1 else -1
        if kind != "trade":  # bids mostly low on the grid, asks high: crossed rows happen, not all the time
            px = px % 5 + (0 if bside > 0 else 2)
            shown = sorted(book[bside], reverse=bside > 0)
            if kind != "snapshot" and reuse and shown:  # restate a level shown: queues grow and shrink
                px = PRICES.index(shown[0 if reuse == 1 else px % len(shown)])
        if kind == "snapshot":
            snap = [(bside, px, SIZES[size % len(SIZES)])]
            for k in range(levels[0]):
                ls, lp, lz = levels[1 + 3 * k: 4 + 3 * k]
                snap.append((1 if ls == 0 else -1, lp, SIZES[lz]))
            for k, (sd, p, z) in enumerate(snap):
                flags = (F_CLEAR if k == 0 else 0) | (F_BATCH_END if k == len(snap) - 1 else 0)
                rows.append(dict(base, kind=KIND_SNAPSHOT, side=sd, price=PRICES[p], size=z, flags=flags))
        elif kind == "trade":
            rows.append(dict(base, kind=KIND_TRADE, side=[1, -1, 0][side], price=PRICES[px],
                             size=SIZES[size % len(SIZES)]))
        elif kind == "quote":  # size 0: the side is empty
            rows.append(dict(base, kind=KIND_QUOTE, side=bside, price=PRICES[px],
                             size=0.0 if size == len(SIZES) and step == 0 else SIZES[size % len(SIZES)]))
        else:  # depth: size 0 deletes the level
            rows.append(dict(base, kind=KIND_DEPTH, side=bside, price=PRICES[px],
                             size=0.0 if size == len(SIZES) else SIZES[size]))
        for r in rows[n_before:]:
            rs = int(r["side"])
            if r["kind"] == KIND_TRADE:
                pass
            elif r.get("flags", 0) & F_CLEAR:
                book = {1: {}, -1: {}}
            elif r["kind"] == KIND_QUOTE:
                book[rs] = {}
            if r["kind"] != KIND_TRADE:
                if r["size"] > 0:
                    book[rs][r["price"]] = r["size"]
                else:
                    book[rs].pop(r["price"], None)
            books.append({1: sorted(book[1]), -1: sorted(book[-1])})
    return rows, books


ACTION_KINDS = ["quote", "ioc", "quote", "cancel", "ioc", "quote", "quote", "ioc", "cancel", "ioc"]
MAKER_BPS = [-2.5, 0.0, 1.0, 10.0]
TAKER_BPS = [0.0, 5.0, 7.5, 30.0]
GAS = [0.0, 0.0, 0.25]


@st.composite
def scenarios(draw):
    nv = draw(st.integers(2, 4))
    ni = draw(st.sampled_from([1, 1, 2]))
    rows = []
    venue_params = []
    books = []
    for v in range(nv):
        params = draw(CODE)
        venue_params.append(params)
        r, b = venue_stream(v, ni, params, draw(st.lists(CODE, min_size=1, max_size=25)))
        rows.extend(r)
        books.append(b)
    events = event_rows(rows)
    order_ms = [ORDER_MS[digits(p // 32, len(MAKER_BPS), len(TAKER_BPS), len(GAS), len(ORDER_MS))[3]] for p in venue_params]
    exch = [events["exch_ts"][events["venue"] == v] for v in range(nv)]
    raw = []
    for k, code in enumerate(draw(st.lists(CODE, max_size=20))):
        kind, v, ins, side, px, qty, po, row, delta, target = digits(
            code, len(ACTION_KINDS), 6, 2, 2, len(PRICES) + 1, len(SIZES), 3, 64, 7, 64)
        v = [0, 0, 1, 2, 3, 1][v] % nv  # venue 0 busier than the others
        # sent so that it reaches venue v within 3 ms of one of its rows (times far from the venue's
        # data would meet an empty or finished book)
        row %= len(exch[v])
        t = int(exch[v][row]) - order_ms[v] * MS + (delta - 3) * MS
        side = 1 if side == 0 else -1
        join = books[v][row][side]
        raw.append((t, k, ACTION_KINDS[kind], v, ins % ni, side, px - 1, SIZES[qty], po == 2, target, join))
    raw.sort()
    actions = []
    venue_of = []  # per Submit so far, its venue
    for t, _, kind, v, ins, side, px, qty, po, target, join in raw:
        t = int(t)
        if kind == "cancel":
            if venue_of:  # an order of the venue whose rows its time was drawn against, if it has one
                here = [k for k, u in enumerate(venue_of) if u == v] or list(range(len(venue_of)))
                actions.append(Cancel(t, here[target % len(here)]))
            continue
        if kind == "quote":
            # most quotes join a level the venue's data shows on their side, to meet a queue; the
            # best one most often (where the trades print)
            if join and px % 3:
                price = (join[-1] if side > 0 else join[0]) if px % 3 == 1 else join[px % len(join)]
            else:
                price = PRICES[max(px, 0)]
            actions.append(Submit(t, v, ins, side, price, qty, GTC, po))
        else:
            price = (math.inf if side > 0 else 0.0) if px < 0 else PRICES[px]
            actions.append(Submit(t, v, ins, side, price, qty, IOC, False))
        venue_of.append(v)
    fee_lat = [digits(p // 32, len(MAKER_BPS), len(TAKER_BPS), len(GAS), len(ORDER_MS), len(RESPONSE_MS))
               for p in venue_params]
    return Scenario(
        nv, ni,
        maker_bps=[MAKER_BPS[d[0]] for d in fee_lat], taker_bps=[TAKER_BPS[d[1]] for d in fee_lat],
        gas=[GAS[d[2]] for d in fee_lat], order_ms=[ORDER_MS[d[3]] for d in fee_lat],
        response_ms=[RESPONSE_MS[d[4]] for d in fee_lat], events=events, actions=actions,
        cuts=sorted(draw(st.lists(st.integers(0, len(events)), max_size=3))),
        status=status_changes(venue_params, exch),
    )


def status_changes(venue_params, exch) -> list[tuple]:
    """A halt at a quarter of the venues, a default at an eighth, each near one of its rows."""
    out = []
    for v, p in enumerate(venue_params):
        halt, h_row, h_delta, h_len, default, d_row, d_delta = digits(p // (32 * 1680), 4, 64, 7, 4, 8, 64, 7)
        if halt == 0:
            start = int(exch[v][h_row % len(exch[v])]) + (h_delta - 3) * MS
            out += [(v, start, VENUE_HALTED), (v, start + [1, 3, 10, 50][h_len] * MS, VENUE_OK)]
        if default == 0:
            out.append((v, int(exch[v][d_row % len(exch[v])]) + (d_delta - 3) * MS, VENUE_DEFAULTED))
    return sorted(out, key=lambda c: c[1])


def run_engine(scn: Scenario, chunked: bool = False) -> np.ndarray:
    """The compiled venues on the scenario: the fills (FILL_DTYPE). With ``chunked`` the events come
    in the pieces ``scn.cuts`` makes, as the runner feeds them: each venue looks ahead by its largest
    feed latency (``sim.lmax``) and asks for more data (NEED_MORE_DATA) when that is not enough."""
    sim = new_sim(scn.n_venues, scn.n_instruments, fee_table(scn.maker_bps, scn.taker_bps, scn.gas),
                  latency_table(scn.order_ms, scn.response_ms, 0.0), queue_model="conservative",
                  book_levels=16, order_capacity=64, fill_capacity=1024, queue_capacity=256)
    events = scn.events
    chunks = np.split(events, scn.cuts) if chunked else [events]
    arr, nxt = chunks[0], 1
    sim.final[0] = 1 if len(chunks) == 1 else 0
    for v in range(scn.n_venues):
        mine = events["venue"] == v
        sim.lmax[v] = int((events["local_ts"][mine] - events["exch_ts"][mine]).max()) if mine.any() else 0
    rep_i, rep_f = np.zeros(6, dtype=np.int64), np.zeros(3, dtype=np.float64)
    sent = []  # per Submit: (slot, order id)
    by_time: dict[int, list] = {}
    for a in scn.actions:
        by_time.setdefault(a.t, []).append(a)
    times = sorted(set(events["local_ts"].tolist()) | set(by_time))

    def advance(call):
        nonlocal arr, nxt
        while (rc := call()) == NEED_MORE_DATA:
            keep = venues_keep_from(sim, len(arr))
            venues_rebase(sim, keep)
            arr, nxt = np.concatenate((arr[keep:], chunks[nxt])), nxt + 1
            sim.final[0] = 1 if nxt == len(chunks) else 0
        assert rc >= 0

    changes = list(scn.status)
    for now in times + [times[-1] + 10**12]:
        # a status change at venue time t, as the engine's scenarios do it: the venue catches up to
        # just before t, then changes
        while changes and changes[0][1] <= now:
            v, t, code = changes.pop(0)
            advance(lambda: venue_advance(sim, arr, v, t - 1))
            venue_set_status(sim, v, code, t)
        advance(lambda: venues_advance(sim, arr, now))
        while next_report_time(sim) <= now:
            take_report(sim, rep_i, rep_f)
        for a in by_time.get(now, ()):
            if isinstance(a, Submit):
                slot = submit_order(sim, a.venue, a.instrument, a.side, a.price, a.qty, a.tif, int(a.post_only), a.tag, now)
                assert slot >= 0
                sent.append((slot, int(sim.orders["id"][slot])))
            else:
                slot, oid = sent[a.target]
                if sim.orders["id"][slot] == oid:  # the slot was not reused by a later order
                    request_cancel(sim, slot, now)
    return sim.fills[: sim.fill_n[0]].copy()


def engine_fills(fills: np.ndarray) -> list[tuple]:
    return [(int(f["venue"]), int(f["order_id"]), int(f["ts_venue"]), int(f["ts_arrival"]), int(f["ts_local"]),
             float(f["price"]), float(f["qty"]), float(f["fee"]), int(f["maker"])) for f in fills]


def by_venue(rows: list[tuple]) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return out


def same(a: tuple, b: tuple) -> bool:
    return a[:5] == b[:5] and a[8] == b[8] and all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12) for x, y in zip(a[5:8], b[5:8]))


def show_fills(rows):
    return "\n".join(f"    order {r[1]} venue {r[0]} ts {(r[2] - T0) / MS:g} ms arrival {(r[3] - T0) / MS:g} ms "
                     f"local {(r[4] - T0) / MS:g} ms {r[6]:g} @ {r[5]:g} fee {r[7]:.6g} {'maker' if r[8] else 'taker'}"
                     for r in rows) or "    (none)"


def reference_fills(scn: Scenario) -> list[tuple]:
    ref = ReferenceVenues(scn.n_venues, scn.n_instruments, scn.maker_bps, scn.taker_bps, scn.gas, scn.order_ms,
                          scn.response_ms)
    return [f.key() for f in ref.run(scn.events, scn.actions, scn.status)]


def assert_same_fills(scn: Scenario, chunked: bool = False):
    want = by_venue(reference_fills(scn))
    got = by_venue(engine_fills(run_engine(scn, chunked)))
    for v in sorted(set(want) | set(got)):
        w, g = want.get(v, []), got.get(v, [])
        if len(w) != len(g) or not all(same(x, y) for x, y in zip(w, g)):
            how = "in chunks" if chunked else "whole"
            raise AssertionError(f"venue {v}: fills differ (events {how})\n  reference:\n{show_fills(w)}\n"
                                 f"  engine:\n{show_fills(g)}")


@given(scenarios())  # as many examples as the profile says (conftest.py)
def test_engine_matches_reference(scn):
    assert_same_fills(scn)
    assert_same_fills(scn, chunked=True)


@settings(max_examples=300)
@given(scenarios())
def test_reference_fills_keep_the_invariants(scn):
    """The reference's own fills pass the fill-log invariants (a check of both)."""
    import polars as pl

    fills = [f for f in ReferenceVenues(scn.n_venues, scn.n_instruments, scn.maker_bps, scn.taker_bps, scn.gas,
                                        scn.order_ms, scn.response_ms).run(scn.events, scn.actions, scn.status)]
    frame = pl.DataFrame({
        "ts": [f.ts_venue for f in fills], "arrival_ts": [f.ts_arrival for f in fills],
        "local_ts": [f.ts_local for f in fills], "venue": [f.venue for f in fills],
        "instrument": [f.instrument for f in fills], "side": [f.side for f in fills],
        "price": [f.price for f in fills], "qty": [f.qty for f in fills], "fee": [f.fee for f in fills],
        "liquidity": ["maker" if f.maker else "taker" for f in fills], "order_id": [f.order_id for f in fills],
        "tag": ["quote"] * len(fills),
    }, schema={"ts": pl.Int64, "arrival_ts": pl.Int64, "local_ts": pl.Int64, "venue": pl.Int64,
               "instrument": pl.Int64, "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64, "fee": pl.Float64,
               "liquidity": pl.String, "order_id": pl.Int64, "tag": pl.String})
    halts = []
    starts = {}
    for v, t, c in scn.status:
        if c == VENUE_HALTED:
            starts[v] = t
        elif c == VENUE_OK and v in starts:
            halts.append((v, starts.pop(v), t))
    defaults = [(v, t) for v, t, c in scn.status if c == VENUE_DEFAULTED]
    assert check_fills(scn.events, frame, halts=halts, defaults=defaults) == []


# Found by a fresh-clone CI run on 2026-12-01 (the "ci" profile explored at random then; it is
# derandomized now, tests/conftest.py). Our IOC sell took 2.5 of the 99 bid level; an L1 bid quote
# (99.75) then hid that level without removing it, and an L1 ask (99.5) crossed and removed the 99.75
# bid while filling 2 of our resting 100.5 bid. A trade of 0.5 at 99 follows, aggressor unknown. The
# 99 level we emptied is still in the data's book (the data never removed it), so the print is a
# sell at or through the best bid and it trades through our bid: the rest of it fills, 0.5 at our
# 100.5, maker. The reference used to classify against the rows' stated levels only, found no bid,
# and ignored the print.
def test_a_trade_printed_through_a_bid_after_a_crossing_quote_filled_part_of_it():
    ms = lambda t: T0 + int(t * MS)  # noqa: E731
    rows = [dict(venue=0, instrument=0, kind=KIND_DEPTH, side=1, price=99.0, size=0.5, exch_ts=ms(0)),
            dict(venue=1, instrument=0, kind=KIND_DEPTH, side=1, price=99.0, size=0.5, exch_ts=ms(0)),
            dict(venue=2, instrument=0, kind=KIND_SNAPSHOT, side=1, price=99.0, size=10.0, exch_ts=ms(0), flags=F_CLEAR),
            dict(venue=2, instrument=0, kind=KIND_SNAPSHOT, side=1, price=100.0, size=1.0, exch_ts=ms(0)),
            dict(venue=2, instrument=0, kind=KIND_SNAPSHOT, side=-1, price=100.0, size=0.5, exch_ts=ms(0)),
            dict(venue=2, instrument=0, kind=KIND_SNAPSHOT, side=1, price=100.25, size=0.5, exch_ts=ms(0), flags=F_BATCH_END),
            dict(venue=2, instrument=0, kind=KIND_QUOTE, side=1, price=99.75, size=0.5, exch_ts=ms(11)),
            dict(venue=2, instrument=0, kind=KIND_QUOTE, side=-1, price=99.5, size=2.0, exch_ts=ms(12)),
            dict(venue=2, instrument=0, kind=KIND_TRADE, side=0, price=99.0, size=0.5, exch_ts=ms(14))]
    scn = Scenario(3, 1, maker_bps=[-2.5] * 3, taker_bps=[0.0] * 3, gas=[0.0, 0.0, 0.25], order_ms=[0, 0, 0],
                   response_ms=[0, 0, 1], events=event_rows(rows),
                   actions=[Submit(ms(0), 2, 0, 1, 100.5, 3.0, GTC, False), Submit(ms(3), 2, 0, -1, 99.0, 3.0, IOC, False)],
                   cuts=[], status=[(0, ms(-3), VENUE_HALTED), (0, ms(-3), VENUE_DEFAULTED), (1, ms(-3), VENUE_HALTED),
                                    (1, ms(-3), VENUE_DEFAULTED), (0, ms(-2), VENUE_OK), (1, ms(-2), VENUE_OK)])
    last = [f for f in reference_fills(scn) if f[1] == 1][-1]
    # venue, order, venue time, arrival, local (+1 ms report), price, qty, fee (-2.5 bps + 0.25 gas), maker
    assert same(last, (2, 1, ms(14), ms(0), ms(15), 100.5, 0.5, 0.5 * 100.5 * -2.5e-4 + 0.25, 1))
    assert sum(f[6] for f in reference_fills(scn) if f[1] == 1) == 2.5
    assert_same_fills(scn)
