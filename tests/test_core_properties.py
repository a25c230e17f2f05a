"""Properties of the core that must hold for every state, checked with hypothesis."""


import numpy as np
from core_ctx import HEDGE, TOKEN_A, TOKEN_B, make_ctx, on_grid
from hypothesis import HealthCheck, given, settings, strategies as st
from numba import njit

from stockbridge.core.context import ASK, BID, MAX_LEVELS, new_quotes, new_takes
from stockbridge.core.decide import decide
from stockbridge.core.hedging import carry_after, hedge_decision, round_to_lot
from stockbridge.core.quoting import avellaneda_stoikov, finalize_quotes, finalize_takes
from stockbridge.core.risk import equity_after_haircut, equity_raw

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = (TOKEN_A, TOKEN_B)
TICKS = st.sampled_from([0.001, 0.01, 0.05, 0.5])
LOTS = st.sampled_from([0.0001, 0.01, 0.1, 1.0])


@njit
def as_kernel(ctx, params, quotes, takes):
    """Avellaneda-Stoikov on every quotable venue: params = (gamma, k, size per level, levels, step)."""
    q = ctx.net_delta / ctx.multiplier / params[2]
    bid, ask = avellaneda_stoikov(ctx.fair, q, params[0], ctx.sigma, ctx.tau, params[1])
    for v in range(ctx.n_venues):
        if ctx.quotable[v] == 1:
            for lvl in range(int(params[3])):
                quotes[v, 0, lvl, 0] = bid - lvl * params[4]
                quotes[v, 0, lvl, 1] = params[2]
                quotes[v, 1, lvl, 0] = ask + lvl * params[4]
                quotes[v, 1, lvl, 1] = params[2]
    return 0


@njit
def replay_kernel(ctx, params, quotes, takes):
    """Writes ``params`` (a flattened quotes array) as the raw quotes: the same wishes in any state."""
    quotes.ravel()[:] = params
    return 0


@st.composite
def ladders(draw, fair):
    """Raw quotes on both token venues: a ladder around a center near fair (level 0 innermost)."""
    quotes = new_quotes()
    for v in TOKENS:
        center = fair * (1 + draw(st.floats(-0.02, 0.02)))
        half = fair * draw(st.floats(0.0, 0.01))
        step = fair * draw(st.floats(0.0, 0.005))
        for lvl in range(MAX_LEVELS):
            for side, sign in ((BID, -1.0), (ASK, 1.0)):
                size = draw(st.sampled_from([0.0, 0.05, 0.5, 3.0, 20.0]))
                quotes[v, side, lvl] = (center + sign * (half + lvl * step), size)
    return quotes


@st.composite
def scattered(draw, fair):
    """Raw quotes in any order a careless kernel might write: prices within 3 % of fair, any sizes."""
    quotes = new_quotes()
    for v in TOKENS:
        for lvl in range(MAX_LEVELS):
            for side in (BID, ASK):
                price = fair * (1 + draw(st.floats(-0.03, 0.03)))
                quotes[v, side, lvl] = (price, draw(st.floats(0.0, 30.0)))
    return quotes


@st.composite
def contexts(draw):
    """A context with random fair, grid, books, inventory and limits (two token venues + broker)."""
    fair = draw(st.floats(5.0, 500.0))
    mult = draw(st.sampled_from([1.0, 1.0025, 2.0]))
    ctx = make_ctx(
        fair=fair,
        multiplier=mult,
        fair_std=fair * draw(st.floats(0.0, 0.01)),
        net_delta=draw(st.floats(-60.0, 60.0)),
        max_net_delta=draw(st.floats(1.0, 80.0)),
    )
    c = ctx[0]
    for v in TOKENS:
        c["tick"][v] = draw(TICKS)
        c["lot"][v] = draw(LOTS)
        mid = fair * (1 + draw(st.floats(-0.01, 0.01)))
        half = fair * draw(st.floats(0.0, 0.01))
        c["bid"][v], c["ask"][v] = mid - half, mid + half + c["tick"][v]
        c["position"][v] = draw(st.floats(-30.0, 30.0))
        c["max_position"][v] = draw(st.floats(0.5, 40.0))
        c["exposure_cap"][v] = fair * draw(st.floats(0.5, 50.0))
        c["min_notional"][v] = draw(st.sampled_from([0.0, 1.0, 5.0]))
    c["bid"][HEDGE], c["ask"][HEDGE] = fair / mult - 0.01, fair / mult + 0.01
    return ctx


def live(quotes, v, side):
    return [(p, s) for p, s in quotes[v, side] if s > 0.0]


def best(quotes, v, side):
    rows = live(quotes, v, side)
    if not rows:
        return None
    prices = [p for p, _ in rows]
    return max(prices) if side == BID else min(prices)


# -- inventory ------------------------------------------------------------------------------------


@SETTINGS
@given(
    fair=st.floats(20.0, 400.0),
    net=st.floats(-50.0, 50.0),
    more=st.floats(0.01, 50.0),
    gamma=st.floats(0.001, 0.5),
    tau=st.floats(0.0, 50_000.0),
    hedge_open=st.booleans(),
)
def test_more_long_inventory_never_raises_the_bid(fair, net, more, gamma, tau, hedge_open):
    params = np.array([gamma, 5.0, 1.0, 2.0, 0.05])
    bids = []
    for extra in (0.0, more):
        ctx = make_ctx(fair=fair, net_delta=net + extra, max_net_delta=120.0, tau=tau, sigma=fair * 1e-4,
                       fair_std=fair * 5e-4 * (not hedge_open), hedge_open=int(hedge_open))
        ctx[0]["bid"][:2], ctx[0]["ask"][:2] = fair * 0.99, fair * 1.01
        ctx[0]["position"][TOKEN_A] = net + extra
        ctx[0]["max_position"][:2] = 200.0
        q = new_quotes()
        decide(ctx[0], params, as_kernel, q, new_takes())
        bids.append([best(q, v, BID) for v in TOKENS])
    for less_long, more_long in zip(*bids):
        if more_long is not None:
            assert less_long is not None and more_long <= less_long + 1e-9


# -- off-hours ------------------------------------------------------------------------------------


@SETTINGS
@given(ctx=contexts(), data=st.data())
def test_off_hours_quotes_never_tighter_than_regular_hours(ctx, data):
    """Same book, inventory and raw wishes; off-hours has a larger fair_std, longer tau, smaller sizes."""
    raw = data.draw(ladders(float(ctx[0]["fair"])))
    regular = ctx.copy()
    off = ctx.copy()
    off[0]["hedge_open"], off[0]["session"] = 0, 0
    off[0]["tau"] = data.draw(st.floats(0.0, 50_000.0))
    off[0]["fair_std"] = ctx[0]["fair_std"] * data.draw(st.floats(1.0, 20.0))
    off[0]["size_factor"] = data.draw(st.floats(0.05, 1.0))
    params = raw.ravel().copy()
    out = {}
    for name, c in (("regular", regular), ("off", off)):
        q = new_quotes()
        decide(c[0], params, replay_kernel, q, new_takes())
        out[name] = q
    for v in TOKENS:
        b_reg, b_off = best(out["regular"], v, BID), best(out["off"], v, BID)
        a_reg, a_off = best(out["regular"], v, ASK), best(out["off"], v, ASK)
        if b_reg is not None and b_off is not None:
            assert b_off <= b_reg + 1e-9
        if a_reg is not None and a_off is not None:
            assert a_off >= a_reg - 1e-9


@SETTINGS
@given(fair=st.floats(20.0, 400.0), gamma=st.floats(0.001, 0.5), tau_reg=st.floats(0.0, 600.0),
       tau_extra=st.floats(0.0, 50_000.0), std_mult=st.floats(1.0, 30.0), factor=st.floats(0.05, 1.0))
def test_off_hours_flat_book_quotes_wider_and_smaller(fair, gamma, tau_reg, tau_extra, std_mult, factor):
    """A flat Avellaneda-Stoikov book, no binding limits: every off-hours quote is further out and smaller."""
    params = np.array([gamma, 5.0, 2.0, 3.0, fair * 1e-3])
    out = []
    for hedge_open, tau, std, size_factor in ((1, tau_reg, fair * 1e-4, 1.0), (0, tau_reg + tau_extra, fair * 1e-4 * std_mult, factor)):
        ctx = make_ctx(fair=fair, sigma=fair * 1e-4, tau=tau, fair_std=std, hedge_open=hedge_open, size_factor=size_factor)
        ctx[0]["bid"][:2], ctx[0]["ask"][:2] = fair * 0.9, fair * 1.1
        q = new_quotes()
        decide(ctx[0], params, as_kernel, q, new_takes())
        out.append(q)
    reg, off = out
    for v in TOKENS:
        for lvl in range(3):
            for side in (BID, ASK):
                p_off, s_off = off[v, side, lvl]
                p_reg, s_reg = reg[v, side, lvl]
                if s_off > 0.0:
                    assert s_reg > 0.0 and s_off <= s_reg
                    assert (p_off <= p_reg + 1e-9) if side == BID else (p_off >= p_reg - 1e-9)


# -- hedging --------------------------------------------------------------------------------------


@SETTINGS
@given(
    steps=st.lists(st.tuples(st.booleans(), st.floats(-40.0, 40.0)), min_size=1, max_size=30),
    band=st.floats(0.0, 30.0),
    target=st.floats(-10.0, 10.0),
    risk_price=st.sampled_from([0.0, 1e-6, 1e-3]),
)
def test_no_hedge_while_closed_and_carry_hedged_at_the_open(steps, band, target, risk_price):
    net, hedge_pos, carried = 0.0, 0.0, 0.0
    for hedge_open, fill in steps:
        net += fill  # token fills move net delta at any hour
        shares = hedge_decision(net, band, target, int(hedge_open), carried, 99.99, 100.01, 5e-5, 1e-10, 3600.0, 1.0,
                                hedge_pos, risk_price)
        if not hedge_open:
            assert shares == 0.0
        elif carried != 0.0:
            # the carried hedge goes first and in full, whatever the band or cost say
            assert shares == round_to_lot(target - net, 1.0)
            assert abs(net + shares - target) <= 0.5 + 1e-9
        new_carry = carry_after(carried, shares, net, band, target, int(hedge_open), 1.0)
        if not hedge_open:
            assert new_carry == (target - net if abs(net - target) > band else 0.0)
        else:
            assert new_carry == 0.0  # a valid book at every open: nothing stays owed
        carried = new_carry
        net += shares
        hedge_pos += shares


# -- credit ---------------------------------------------------------------------------------------


@SETTINGS
@given(
    values=st.lists(st.floats(-1e7, 1e7), min_size=1, max_size=8),
    data=st.data(),
)
def test_equity_after_haircut_never_exceeds_raw(values, data):
    haircuts = data.draw(st.lists(st.floats(0.0, 0.999), min_size=len(values), max_size=len(values)))
    v, h = np.array(values), np.array(haircuts)
    assert equity_after_haircut(v, h) <= equity_raw(v) + 1e-9 * max(1.0, np.abs(v).sum())


# -- limits and grid ------------------------------------------------------------------------------


def assert_limits(c, quotes):
    """No quote that would fill (all of them, on every venue at once) breaches a limit."""
    fair, mult = c["fair"], c["multiplier"]
    tol = 1e-9
    up = down = 0.0
    for v in TOKENS:
        bought = sum(s for _, s in live(quotes, v, BID))
        sold = sum(s for _, s in live(quotes, v, ASK))
        pos = c["position"][v]
        if bought:
            top = max(p for p, _ in live(quotes, v, BID))
            assert (pos + bought) * max(fair, top) <= c["exposure_cap"][v] * (1 + tol)
            assert pos + bought <= c["max_position"][v] + tol
        if sold:
            assert pos - sold >= -c["max_position"][v] - tol
        up += bought * mult
        down += sold * mult
    if up:
        assert c["net_delta"] + up <= c["max_net_delta"] + 1e-7
    if down:
        assert c["net_delta"] - down >= -c["max_net_delta"] - 1e-7


@SETTINGS
@given(ctx=contexts(), data=st.data())
def test_quotes_respect_caps_bounds_and_grid(ctx, data):
    c = ctx[0]
    quotes = data.draw(st.one_of(ladders(float(c["fair"])), scattered(float(c["fair"]))))
    finalize_quotes(c, quotes)
    assert_limits(c, quotes)
    for v in TOKENS:
        tick, lot = c["tick"][v], c["lot"][v]
        bids, asks = live(quotes, v, BID), live(quotes, v, ASK)
        for p, s in bids + asks:
            assert on_grid(p, tick) and on_grid(s, lot)
            assert p * s >= c["min_notional"][v] - 1e-9
        for p, _ in bids:
            assert p < c["ask"][v] and all(p < a for a, _ in asks)  # post-only, and below our own asks
        for p, _ in asks:
            assert p > c["bid"][v]


@SETTINGS
@given(ctx=contexts(), data=st.data())
def test_takes_respect_caps_bounds_and_grid(ctx, data):
    c = ctx[0]
    n = data.draw(st.integers(1, 8))
    takes = new_takes()
    for i in range(n):
        v = data.draw(st.sampled_from(TOKENS))
        side = data.draw(st.sampled_from([1.0, -1.0]))
        takes[i] = (v, side, c["fair"] * (1 + data.draw(st.floats(-0.02, 0.02))), data.draw(st.floats(0.0, 30.0)))
    kept = finalize_takes(c, takes, n)
    assert not takes[kept:].any()
    for v in TOKENS:
        rows = takes[:kept][takes[:kept, 0] == v]
        buys = rows[rows[:, 1] > 0]
        sells = rows[rows[:, 1] < 0]
        pos = c["position"][v]
        for p, s in rows[:, 2:4]:
            assert on_grid(p, c["tick"][v]) and on_grid(s, c["lot"][v])
        if len(buys):
            mark = max(c["fair"], buys[:, 2].max())
            assert (pos + buys[:, 3].sum()) * mark <= c["exposure_cap"][v] * (1 + 1e-9)
            assert pos + buys[:, 3].sum() <= c["max_position"][v] + 1e-9
        if len(sells):
            assert pos - sells[:, 3].sum() >= -c["max_position"][v] - 1e-9
    batch = float((takes[:kept, 1] * takes[:kept, 3]).sum()) * c["multiplier"]
    assert abs(c["net_delta"] + batch) <= max(c["max_net_delta"], abs(c["net_delta"])) + 1e-7
