"""A validated config turned into the flat arrays the compiled core and engines read.

Backtest and live both build their :class:`MarketTables` here, so a venue's grid, fees, haircut
and hours mean the same thing in both. Per-venue arrays have length ``MAX_VENUES`` and are indexed
by venue id (config order). Units: fees as fractions of notional (bps / 1e4, negative = rebate),
gas and caps in quote currency, borrow as a fraction of notional per second. (The simulated venues'
latency tables are built from the same config by backtest.latency.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stockbridge.config import StockbridgeConfig
from stockbridge.core.context import MAX_VENUES
from stockbridge.instruments import InstrumentKind, VenueKind
from stockbridge.sessions import SessionCalendar, state_mask

SECONDS_PER_YEAR = 365.25 * 24 * 3600


@dataclass(frozen=True)
class MarketTables:
    venue_names: tuple[str, ...]
    instrument_names: tuple[str, ...]
    n_venues: int
    token: int                 # instrument id of the quoted token
    share: int                 # instrument id of its underlying share
    hedge_venue: int           # venue id of the equity broker, -1 if none
    venue_instrument: np.ndarray  # int64[MAX_VENUES]: the instrument each venue trades in this run (-1 none)
    quotable: np.ndarray       # int64[MAX_VENUES]
    tick: np.ndarray
    lot: np.ndarray
    min_notional: np.ndarray
    maker_fee: np.ndarray
    taker_fee: np.ndarray
    gas: np.ndarray
    haircut: np.ndarray
    exposure_cap: np.ndarray
    max_position: np.ndarray   # tokens (inf at the hedge venue: its bound is max_net_delta)
    borrow_rate: np.ndarray    # fraction of short notional per second
    hours_bounds: np.ndarray   # int64[MAX_VENUES, H]: segment starts of each venue's trading hours (padded)
    hours_open: np.ndarray     # uint8[MAX_VENUES, H]
    hours_len: np.ndarray      # int64[MAX_VENUES]: used length of each row
    sess_boundaries: np.ndarray
    sess_states: np.ndarray
    sess_cumvar: np.ndarray
    sess_weights: np.ndarray
    hedge_mask: np.ndarray     # uint8[5]: session states in which the hedge venue may trade
    mult_times: np.ndarray     # int64: multiplier activation times of the quoted token
    mult_values: np.ndarray    # float64
    max_net_delta: float
    hedge_band: float
    hedge_target: float
    offhours_size_factor: float
    gap_z: float
    min_spread_z: float
    credit_skew_bps: float
    calendar: SessionCalendar


def build_tables(cfg: StockbridgeConfig, start_ns: int, end_ns: int) -> MarketTables:
    """Flatten ``cfg`` for a run covering [start_ns, end_ns] (ns UTC)."""
    venues = list(cfg.venues)
    if len(venues) > MAX_VENUES:
        raise ValueError(f"at most {MAX_VENUES} venues are supported, the config has {len(venues)}")
    inst_ids = cfg.instrument_ids()
    token_name = cfg.quoted_token()
    token = cfg.instruments[token_name]
    if token.kind is not InstrumentKind.token:
        raise ValueError(f"strategy.instrument '{token_name}' is not a token")
    share_name = token.underlying
    cal = SessionCalendar(start_ns, end_ns, cfg.sessions.calendar, cfg.sessions.weights)
    quote_set = set(cfg.strategy.quote_venues) if cfg.strategy and cfg.strategy.quote_venues else None

    def arr(fill=0.0, dtype=np.float64):
        return np.full(MAX_VENUES, fill, dtype=dtype)

    t = dict(
        venue_instrument=arr(-1, np.int64), quotable=arr(0, np.int64), tick=arr(1.0), lot=arr(1.0),
        min_notional=arr(), maker_fee=arr(), taker_fee=arr(), gas=arr(), haircut=arr(),
        exposure_cap=arr(np.inf), max_position=arr(), borrow_rate=arr(),
    )
    hedge_venue = -1
    hours = []
    for vid, name in enumerate(venues):
        v = cfg.venues[name]
        if v.kind is VenueKind.equity_broker and share_name in v.instruments:
            hedge_venue = vid if hedge_venue < 0 else hedge_venue
            t["venue_instrument"][vid] = inst_ids[share_name]
            t["max_position"][vid] = np.inf
        elif token_name in v.instruments:
            t["venue_instrument"][vid] = inst_ids[token_name]
            t["quotable"][vid] = int(quote_set is None or name in quote_set)
            t["max_position"][vid] = cfg.risk.max_position
        t["tick"][vid], t["lot"][vid], t["min_notional"][vid] = v.tick_size, v.lot_size, v.min_notional
        t["maker_fee"][vid], t["taker_fee"][vid] = v.maker_fee_bps / 1e4, v.taker_fee_bps / 1e4
        t["gas"][vid], t["haircut"][vid], t["exposure_cap"][vid] = v.gas_per_trade, v.haircut, v.exposure_cap
        t["borrow_rate"][vid] = v.borrow_bps_annual / 1e4 / SECONDS_PER_YEAR
        hours.append(cal.venue_table(v.hours))
    width = max(len(b) for b, _ in hours)
    hours_bounds = np.full((MAX_VENUES, width), np.iinfo(np.int64).max, dtype=np.int64)
    hours_open = np.zeros((MAX_VENUES, width), dtype=np.uint8)
    hours_len = np.zeros(MAX_VENUES, dtype=np.int64)
    for vid, (b, f) in enumerate(hours):
        hours_bounds[vid, : len(b)], hours_open[vid, : len(f)], hours_len[vid] = b, f, len(b)
    hedge_sessions = cfg.venues[venues[hedge_venue]].hedge_sessions if hedge_venue >= 0 else ()
    mult_times, mult_values = token.multiplier_schedule()
    return MarketTables(
        venue_names=tuple(venues), instrument_names=tuple(cfg.instruments), n_venues=len(venues),
        token=inst_ids[token_name], share=inst_ids[share_name], hedge_venue=hedge_venue,
        hours_bounds=hours_bounds, hours_open=hours_open, hours_len=hours_len,
        sess_boundaries=cal.boundaries, sess_states=cal.states, sess_cumvar=cal.cumvar, sess_weights=cal.weights,
        hedge_mask=state_mask(hedge_sessions), mult_times=mult_times, mult_values=mult_values,
        max_net_delta=cfg.risk.max_net_delta, hedge_band=cfg.risk.hedge_band, hedge_target=cfg.risk.hedge_target,
        offhours_size_factor=cfg.risk.offhours_size_factor, gap_z=cfg.sessions.gap_z,
        min_spread_z=cfg.risk.min_spread_z, credit_skew_bps=cfg.risk.credit_skew_bps, calendar=cal, **t,
    )


def fill_static_context(ctx: np.ndarray, tables: MarketTables) -> None:
    """Copy the fields of a CTX_DTYPE record that do not change during a run."""
    c = ctx[0] if ctx.ndim else ctx
    c["n_venues"] = tables.n_venues
    c["hedge_venue"] = tables.hedge_venue
    c["max_net_delta"] = tables.max_net_delta
    c["spread_z"] = tables.min_spread_z
    c["credit_skew_bps"] = tables.credit_skew_bps
    for field in ("quotable", "tick", "lot", "min_notional", "maker_fee", "taker_fee", "gas", "haircut",
                  "exposure_cap", "max_position"):
        c[field][:] = getattr(tables, field)
