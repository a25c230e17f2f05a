"""Built-in strategies on hand-built contexts, the params API, and the registry's errors.

Contexts come from strategies.testing.example_context: AAPLx fair 210.525 (share 210 x multiplier
1.0025) on bybit (0, tick 0.01), kraken (1, tick 0.01), solana_dex (2, tick 0.001), broker (3, hedge).
"""

import importlib.metadata as md
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockbridge.config import parse_config
from stockbridge.core.context import ASK, BID, new_quotes, new_takes
from stockbridge.core.decide import decide
from stockbridge.core.quoting import avellaneda_stoikov, glft_half_spreads, glft_xi_half_spreads, horizon_sigma
from stockbridge.errors import ConfigError
from strategies import registry
from strategies.base import StrategyParams, StrategySpec, param
from strategies.testing import FAIR, HEDGE_VENUE, MULTIPLIER, SIGMA, TOKEN_VENUES, WEEKEND_TAU, example_context

FIXED = registry.get("fixed_spread")
AS = registry.get("avellaneda_stoikov")
GLFT = registry.get("glft")
ARB = registry.get("cross_venue_arb")


def raw(spec, ctx, **params):
    """The kernel's own output, before the core's rules."""
    quotes, takes = new_quotes(), new_takes()
    n = spec.kernel(ctx[0], spec.params_model(**params).to_array(), quotes, takes)
    return quotes, takes, n


def final(spec, ctx, **params):
    """What the core lets through: decide() = kernel + finalize."""
    quotes, takes = new_quotes(), new_takes()
    n = decide(ctx[0], spec.params_model(**params).to_array(), spec.kernel, quotes, takes)
    return quotes, takes, n


# -- registry ---------------------------------------------------------------------------------------


def test_registry_lists_the_four_builtins_first():
    found = registry.available()
    assert list(found)[:4] == ["fixed_spread", "avellaneda_stoikov", "glft", "cross_venue_arb"]
    for name in ("fixed_spread", "avellaneda_stoikov", "glft", "cross_venue_arb"):
        assert found[name].source == "built-in"
        assert found[name].spec.name == name


def test_builtins_list_matches_the_entry_points_in_pyproject():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][registry.GROUP] == registry.BUILTINS


def test_unknown_strategy_names_the_available_ones():
    with pytest.raises(registry.UnknownStrategyError, match=r"unknown strategy 'nope' \(available: fixed_spread, "):
        registry.get("nope")


def _fake_entry_points(monkeypatch, *eps):
    real = md.entry_points

    def entry_points(**kw):
        if kw.get("group") == registry.GROUP:
            return md.EntryPoints(eps)
        return real(**kw)

    monkeypatch.setattr(registry.md, "entry_points", entry_points)


def test_builtin_declared_by_metadata_too_is_listed_once(monkeypatch):
    _fake_entry_points(monkeypatch, md.EntryPoint("glft", "strategies.glft:SPEC", registry.GROUP))
    assert list(registry.available()).count("glft") == 1
    assert registry.available()["glft"].source == "built-in"


def test_broken_plugin_gives_one_line_naming_it(monkeypatch):
    _fake_entry_points(monkeypatch, md.EntryPoint("broken", "no_such_module_xyz:SPEC", registry.GROUP))
    with pytest.raises(registry.PluginError) as info:
        registry.available()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("strategy plugin 'broken' (no_such_module_xyz:SPEC, from unknown distribution) failed to load")
    assert "ModuleNotFoundError" in msg
    # Other strategies stay reachable by name.
    assert registry.get("glft") is GLFT


def test_plugin_that_is_not_a_spec_or_misnamed_is_refused(monkeypatch):
    _fake_entry_points(monkeypatch, md.EntryPoint("notspec", "strategies.glft:GlftParams", registry.GROUP))
    with pytest.raises(registry.PluginError, match="'notspec'.* is a ModelMetaclass, expected a strategies.base.StrategySpec"):
        registry.get("notspec")
    _fake_entry_points(monkeypatch, md.EntryPoint("alias", "strategies.glft:SPEC", registry.GROUP))
    with pytest.raises(registry.PluginError, match="entry point name differs from the spec's name 'glft'"):
        registry.get("alias")


def test_plugin_clashing_with_a_builtin_is_refused(monkeypatch):
    _fake_entry_points(monkeypatch, md.EntryPoint("glft", "my_glft:SPEC", registry.GROUP))
    with pytest.raises(registry.PluginError, match="'glft' \\(my_glft:SPEC.*clashes with the built-in strategy"):
        registry.available()


# -- params -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,key,words",
    [
        ({"gamma": -1.0}, "strategy.params.gamma", "greater than 0"),
        ({"gama": 0.1}, "strategy.params.gama", "unknown parameter of strategy 'glft' (known: gamma, k, A, xi,"),
        ({"levels": 2.5}, "strategy.params.levels", "valid integer"),
        ({"levels": 4}, "strategy.params.levels", "less than or equal to 3"),
        ({"size": "1"}, "strategy.params.size", "valid number"),
    ],
)
def test_params_errors_name_strategy_params_field(params, key, words):
    with pytest.raises(ConfigError) as info:
        GLFT.parse_params(params, "conf.toml")
    msg = str(info.value)
    assert msg.startswith(f"conf.toml: {key}: "), msg
    assert words in msg and "\n" not in msg


def test_from_config_validates_params_and_name(demo_config_path):
    data = tomllib.loads(demo_config_path.read_text())
    spec, params = registry.from_config(parse_config(data, demo_config_path), demo_config_path)
    assert spec is GLFT and params == GLFT.params_model()
    data["strategy"]["params"] = {"k": 0}
    with pytest.raises(ConfigError, match=r"demo.toml: strategy.params.k: Input should be greater than 0 \(got 0\)$"):
        registry.from_config(parse_config(data, demo_config_path), demo_config_path)
    data["strategy"] = {"name": "glfy"}
    with pytest.raises(ConfigError, match=r"demo.toml: strategy.name: unknown strategy 'glfy'"):
        registry.from_config(parse_config(data, demo_config_path), demo_config_path)


def test_to_array_is_field_order_with_bools_as_numbers():
    class P(StrategyParams):
        a: float = param(1.5, unit="bps", description="a")
        on: bool = param(True, unit="flag", description="switch")
        n: int = param(3, unit="levels", description="n", ge=1)

    arr = P(a=2.5).to_array()
    assert arr.dtype == np.float64 and arr.tolist() == [2.5, 1.0, 3.0]
    assert P.indices("n", "a") == (2, 0)
    assert [(p.name, p.type, p.default, p.unit, p.bounds) for p in P.describe()] == [
        ("a", "float", 1.5, "bps", ""), ("on", "bool", True, "flag", ""), ("n", "int", 3, "levels", ">= 1")
    ]


@pytest.mark.parametrize(
    "body,words",
    [
        ("x: float = 1.0", "needs a description"),
        ("x: float = param(1.0, unit='', description='d')", "needs a unit"),
        ("x: str = param('a', unit='u', description='d')", "is not allowed"),
        ("x: float", "needs a default"),
    ],
)
def test_params_model_declaration_mistakes_fail_at_import(body, words):
    with pytest.raises(TypeError, match=words):
        exec(f"class Bad(StrategyParams):\n    {body}\n", {"StrategyParams": StrategyParams, "param": param})


def test_spec_requires_a_compiled_kernel():
    with pytest.raises(TypeError, match="kernel must be a numba @njit function"):
        StrategySpec("plain", FIXED.params_model, lambda ctx, p, q, t: 0, "python function")


# -- fixed_spread ------------------------------------------------------------------------------------


def test_fixed_spread_prices_by_hand():
    # net delta 20.05 shares = 20 tokens; skew 0.5 bps/token -> 10 bps down.
    ctx = example_context(net_delta=20.05)
    quotes, _, n = raw(FIXED, ctx, half_spread_bps=10.0, skew_bps_per_token=0.5, size=2.0, levels=2, level_spacing_bps=5.0)
    assert n == 0
    for v in TOKEN_VENUES:
        assert quotes[v, BID, :2, 0] == pytest.approx([210.525 * (1 - 20e-4), 210.525 * (1 - 25e-4)], abs=1e-9)
        assert quotes[v, ASK, :2, 0] == pytest.approx([210.525, 210.525 * (1 + 5e-4)], abs=1e-9)
        assert quotes[v, :, :2, 1].tolist() == [[2.0, 2.0], [2.0, 2.0]]
        assert not quotes[v, :, 2].any()
    assert not quotes[HEDGE_VENUE].any()


def test_fixed_spread_through_the_core_rounds_and_floors_by_hand():
    ctx = example_context(net_delta=20.05)
    quotes, _, _ = final(FIXED, ctx, half_spread_bps=10.0, skew_bps_per_token=0.5, size=2.0, levels=2, level_spacing_bps=5.0)
    # The core's floor is spread_z * fair_std = 0.0260086 around the ladder's own center, the level-0
    # mid 210.525 * (1 - 10e-4) = 210.314475: bid <= 210.288466, ask >= 210.340484. Both raw level-0
    # prices (210.10395, 210.525) are already outside it, so only the grid acts: bids round down,
    # asks up (ask 1 = 210.6302625).
    assert quotes[0, BID, :2, 0] == pytest.approx([210.10, 209.99], abs=1e-9)
    assert quotes[0, ASK, :2, 0] == pytest.approx([210.53, 210.64], abs=1e-9)
    assert quotes[2, BID, :2, 0] == pytest.approx([210.103, 209.998], abs=1e-9)  # DEX tick 0.001
    assert quotes[2, ASK, :2, 0] == pytest.approx([210.525, 210.631], abs=1e-9)


def test_fixed_spread_skips_venues_not_quotable():
    ctx = example_context()
    ctx[0]["quotable"][1] = 0
    quotes, _, _ = raw(FIXED, ctx)
    assert not quotes[1].any() and quotes[0, BID, 0, 1] == 1.0 and quotes[2, ASK, 0, 1] == 1.0


@settings(max_examples=60, deadline=None)
@given(
    half=st.floats(0.5, 200.0), skew=st.floats(0.0, 5.0), spacing=st.floats(0.1, 50.0),
    levels=st.integers(1, 3), net=st.floats(-150.0, 150.0),
)
def test_fixed_spread_ladder_properties(half, skew, spacing, levels, net):
    ctx = example_context(net_delta=net)
    quotes, _, _ = raw(FIXED, ctx, half_spread_bps=half, skew_bps_per_token=skew, level_spacing_bps=spacing, levels=levels)
    bids, asks = quotes[0, BID, :levels, 0], quotes[0, ASK, :levels, 0]
    bps = FAIR * 1e-4
    assert asks[0] - bids[0] == pytest.approx(2 * half * bps, rel=1e-9, abs=1e-9)
    assert (asks[0] + bids[0]) / 2 == pytest.approx(FAIR - skew * (net / MULTIPLIER) * bps, rel=1e-12, abs=1e-9)
    assert np.allclose(np.diff(bids), -spacing * bps) and np.allclose(np.diff(asks), spacing * bps)
    assert not quotes[0, :, levels:].any()


# -- avellaneda_stoikov ------------------------------------------------------------------------------


def test_avellaneda_stoikov_matches_the_core_formula_and_by_hand():
    ctx = example_context(net_delta=20.05, hedge_open=False)  # q = 20 tokens over a weekend
    p = dict(gamma=0.002, k=10.0, size=1.0, levels=2, level_spacing_bps=5.0)
    quotes, _, _ = raw(AS, ctx, **p)
    bid, ask = avellaneda_stoikov(FAIR, 20.0, 0.002, SIGMA, WEEKEND_TAU, 10.0)
    assert quotes[0, BID, 0, 0] == pytest.approx(bid, rel=1e-12) and quotes[0, ASK, 0, 0] == pytest.approx(ask, rel=1e-12)
    r = FAIR - 20.0 * 0.002 * SIGMA**2 * WEEKEND_TAU
    spread = 0.002 * SIGMA**2 * WEEKEND_TAU + (2 / 0.002) * math.log(1 + 0.002 / 10.0)
    assert (bid, ask) == pytest.approx((r - spread / 2, r + spread / 2), rel=1e-12)
    assert quotes[0, BID, 1, 0] == pytest.approx(bid - 5e-4 * FAIR) and quotes[0, ASK, 1, 0] == pytest.approx(ask + 5e-4 * FAIR)


def test_avellaneda_stoikov_skews_only_when_the_hedge_is_closed():
    open_q, _, _ = raw(AS, example_context(net_delta=20.05, hedge_open=True))
    bid, ask = open_q[0, :, 0, 0]
    assert (bid + ask) / 2 == pytest.approx(FAIR, abs=1e-9)  # tau = 0: inventory is hedged instead
    closed_q, _, _ = raw(AS, example_context(net_delta=20.05, hedge_open=False))
    assert closed_q[0, BID, 0, 0] < bid and closed_q[0, ASK, 0, 0] < ask  # long: both quotes lower


# -- glft --------------------------------------------------------------------------------------------


def test_glft_matches_the_core_formula_with_horizon_sigma():
    ctx = example_context(net_delta=-10.025, hedge_open=False)  # short 10 tokens over a weekend
    p = dict(gamma=0.05, k=10.0, A=1.0, xi=0.02, size=2.0, tau_ref=60.0, levels=1, level_spacing_bps=5.0)
    quotes, _, _ = raw(GLFT, ctx, **p)
    sigma_h = horizon_sigma(SIGMA, WEEKEND_TAU, 60.0)
    assert sigma_h == pytest.approx(SIGMA * math.sqrt(WEEKEND_TAU / 60.0))
    db, da = glft_xi_half_spreads(-10.0, 0.05, sigma_h, 10.0, 1.0, 0.02, 2.0)
    assert quotes[1, BID, 0, 0] == pytest.approx(FAIR - db, rel=1e-12)
    assert quotes[1, ASK, 0, 0] == pytest.approx(FAIR + da, rel=1e-12)
    assert db < da  # short: the bid moves up to buy back, the ask moves out
    assert quotes[1, BID, 0, 1] == 2.0


@pytest.mark.parametrize("xi", [0.02, 0.0])
def test_glft_params_carry_the_coefficients_of_the_paper_after_the_fields(xi):
    # Gueant (2017): c1 = ln(1 + xi D / k) / (xi D), c2 = sqrt(gamma / (2 A D k) (1 + xi D / k)^(k / (xi D) + 1));
    # the xi -> 0 limit is c1 = 1/k and the power term e
    gamma, k, a, size = 0.05, 10.0, 1.5, 2.0
    p = GLFT.params_model(gamma=gamma, k=k, A=a, xi=xi, size=size)
    arr = p.to_array()
    fields = list(type(p).model_fields)
    assert arr.shape == (len(fields) + 2,)
    assert [arr[i] for i in range(len(fields))] == [float(getattr(p, f)) for f in fields]
    x = xi * size
    c1 = 1.0 / k if x == 0.0 else math.log1p(x / k) / x
    growth = math.e if x == 0.0 else (1.0 + x / k) ** (k / x + 1.0)
    c2 = math.sqrt(gamma / (2.0 * a * size * k) * growth)
    i1, i2 = type(p).indices("c1", "c2")
    assert (i1, i2) == (len(fields), len(fields) + 1)
    assert arr[i1] == pytest.approx(c1, rel=1e-14)
    assert arr[i2] == pytest.approx(c2, rel=1e-14)


def test_derived_constants_must_match_their_names():
    class Bad(StrategyParams):
        DERIVED = ("one", "two")
        width: float = param(1.0, unit="bps", description="half-spread", gt=0)

        def derived(self):
            return (self.width * 2.0,)

    with pytest.raises(TypeError, match=r"Bad.derived\(\) gave 1 values for DERIVED \('one', 'two'\)"):
        Bad().to_array()
    assert Bad.indices("width", "two") == (0, 2)
    with pytest.raises(KeyError, match="has no field three"):
        Bad.indices("three")


def test_glft_with_xi_gamma_and_unit_size_is_glft_2013_in_open_hours():
    ctx = example_context(net_delta=3.0075)  # 3 tokens, hedge open: sigma unchanged
    quotes, _, _ = raw(GLFT, ctx, gamma=0.05, xi=0.05, size=1.0, k=10.0, A=1.0)
    db, da = glft_half_spreads(3.0, 0.05, SIGMA, 10.0, 1.0)
    assert quotes[0, BID, 0, 0] == pytest.approx(FAIR - db, rel=1e-12)
    assert quotes[0, ASK, 0, 0] == pytest.approx(FAIR + da, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(tau1=st.floats(0.0, 1e5), tau2=st.floats(0.0, 1e5), net=st.floats(-100.0, 100.0))
def test_as_and_glft_spreads_never_narrow_with_a_longer_horizon(tau1, tau2, net):
    lo, hi = sorted((tau1, tau2))
    for spec in (AS, GLFT):
        spreads = []
        for tau in (lo, hi):
            ctx = example_context(net_delta=net)
            ctx[0]["tau"] = tau
            q, _, _ = raw(spec, ctx)
            spreads.append(q[0, ASK, 0, 0] - q[0, BID, 0, 0])
        assert spreads[1] >= spreads[0] - 1e-9


# -- cross_venue_arb --------------------------------------------------------------------------------


def _crossed():
    """kraken offers at 210.00 while bybit bids 211.00; the broker's book is too wide to matter."""
    ctx = example_context()
    c = ctx[0]
    c["bid"][1], c["ask"][1] = 209.90, 210.00
    c["bid"][0], c["ask"][0] = 211.00, 211.10
    c["bid"][HEDGE_VENUE], c["ask"][HEDGE_VENUE] = 205.0, 215.0
    return ctx


def test_cross_venue_arb_takes_a_crossed_market_and_quotes_nothing():
    # Edge per share-equivalent: (211 * (1 - 10e-4) - 210 * (1 + 26e-4)) / 1.0025 = 0.2424, about
    # 11.6 bps of the buy; kraken (haircut 4 %) is safer than bybit (6 %), so no credit charge.
    # Size: the smaller top-of-book, kraken's 25 tokens.
    quotes, takes, n = final(ARB, _crossed(), min_edge_bps=5.0)
    assert n == 2
    assert takes[:2].tolist() == [[1.0, 1.0, 210.0, 25.0], [0.0, -1.0, 211.0, 25.0]]
    assert not quotes.any()


def test_cross_venue_arb_respects_min_edge_and_does_nothing_on_a_normal_market():
    _, takes, n = final(ARB, _crossed(), min_edge_bps=12.0)
    assert n == 0 and not takes.any()
    quotes, takes, n = final(ARB, example_context(), min_edge_bps=0.0)
    assert n == 0 and not takes.any() and not quotes.any()


# -- calling from Python ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fixed_spread", "avellaneda_stoikov", "glft", "cross_venue_arb"])
def test_decider_makes_the_same_decision_as_core_decide(name):
    spec = registry.get(name)
    ctx = _crossed() if name == "cross_venue_arb" else example_context(net_delta=20.05, hedge_open=False)
    params = spec.params_model(**({"levels": 3} if name != "cross_venue_arb" else {})).to_array()
    q1, t1, q2, t2 = new_quotes(), new_takes(), new_quotes(), new_takes()
    n1 = decide(ctx[0], params, spec.kernel, q1, t1)
    n2 = spec.decider()(ctx, params, q2, t2)
    assert q1.any() or n1 > 0
    assert n1 == n2 and np.array_equal(q1, q2) and np.array_equal(t1, t2)
    assert spec.decider() is spec.decider()


# -- CLI -------------------------------------------------------------------------------------------------


def test_cli_strategies_list_shows_every_param_with_unit(run_cli):
    res = run_cli("strategies", "list")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("fixed_spread", "avellaneda_stoikov", "glft", "cross_venue_arb"):
        assert name in out
    for spec in (FIXED, AS, GLFT, ARB):
        for p in spec.params_model.describe():
            assert p.name in out
    assert "1/quote ccy" in out and "variance-s" in out and "built-in" in out and "<= 3" in out


def test_credit_skew_quotes_riskier_venues_lower_by_hand():
    # haircuts bybit 0.06, kraken 0.04, solana_dex 0.10 -> mean 0.2/3; skew 6 bps:
    # c_v = -fair * 6e-4 * (h_v / h_mean - 1): bybit -fair*6e-4*(-0.1), kraken +fair*6e-4*0.4, dex -fair*6e-4*0.5
    ctx = example_context()
    plain, _, _ = raw(FIXED, ctx, half_spread_bps=10.0, skew_bps_per_token=0.0, size=1.0, levels=1, level_spacing_bps=5.0)
    ctx["credit_skew_bps"] = 6.0
    skewed, _, _ = raw(FIXED, ctx, half_spread_bps=10.0, skew_bps_per_token=0.0, size=1.0, levels=1, level_spacing_bps=5.0)
    fair = float(ctx["fair"][0])
    h_mean = (0.06 + 0.04 + 0.10) / 3
    for v, h in ((0, 0.06), (1, 0.04), (2, 0.10)):
        shift = -fair * 6e-4 * (h / h_mean - 1.0)
        assert skewed[v, BID, 0, 0] == pytest.approx(plain[v, BID, 0, 0] + shift, abs=1e-9)
        assert skewed[v, ASK, 0, 0] == pytest.approx(plain[v, ASK, 0, 0] + shift, abs=1e-9)
    # the riskiest venue (the DEX) sells cheapest, the safest (kraken) buys highest
    assert skewed[2, ASK, 0, 0] < skewed[0, ASK, 0, 0] < skewed[1, ASK, 0, 0]
    assert skewed[1, BID, 0, 0] > skewed[0, BID, 0, 0] > skewed[2, BID, 0, 0]
