"""backtrader as an independent second opinion: replay our fill log, and a bar-resolution engine.

1. :func:`crosscheck_with_backtrader` replays the engine's fill log through backtrader's broker and
   compares its cash, positions and value with our own accounting of the same log (and, if given,
   with the balances the engine reported). backtrader keeps a single cash balance per broker, so
   each venue gets its own ``Cerebro`` and broker, funded with that venue's initial cash: the check
   is per venue, as our balances are.
2. :func:`run_backtrader_bars` is ``--engine backtrader``: for users who only have OHLCV bars, it
   drives the same compiled decision (``stockbridge.core.decide.decide`` with a strategy kernel) from
   a backtrader ``Strategy`` at bar resolution, on one venue. Its ``limitations`` say what that
   loses against the tick engine.

Both use :class:`OrderFeeBroker` + :class:`OrderFee`: backtrader asks a commission scheme for the
commission of ``(size, price)`` only, so the broker hands the executing order to the scheme, which
charges ``|part| x (price x info.fee_rate + info.fee_fixed / |order size|)``: a fixed amount per
order (our exact fee per fill, or DEX gas) pro rata over the parts backtrader splits an execution
into (closing an old position, opening a new one), plus a fraction of notional.

Units: prices quote currency per unit, sizes tokens or shares, cash quote currency, ts ns UTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd
import polars as pl

from backtest.metrics import max_drawdown, sharpe
from stockbridge.config import RiskConfig, SessionsConfig
from stockbridge.core.context import ASK, BID, MAX_LEVELS, new_context, new_quotes, new_takes
from stockbridge.core.decide import decide
from stockbridge.core.quoting import gap_tau
from stockbridge.errors import DataError
from stockbridge.instruments import Venue
from stockbridge.sessions import REGULAR, SessionCalendar

NS = 1_000_000_000
FILL_COLUMNS = ("ts", "venue", "instrument", "side", "price", "qty", "fee")
OHLCV_COLUMNS = ("ts", "open", "high", "low", "close", "volume")

BARS_LIMITATIONS = (
    "bar resolution: one decision per bar, made at the bar's close; quotes rest for exactly the next bar",
    "crude book: best bid/ask = close -/+ half the bar's high-low range (at least one tick); no depth, no real spread",
    "fills assumed whenever the next bar's range reaches a quote (low <= bid, high >= ask), at the quote or at the "
    "open if the bar opened through it; no queue position, no partial fills, bar volume ignored",
    "no latency: orders are live from the first instant of the next bar",
    "one venue and no hedge: net delta is the venue position; takes are limit orders on the same venue",
    "fair value = close x multiplier; fills are marked at the close of the bar they execute in",
    "sigma from a rolling window of close-to-close moves per session variance-time; fair_std = sigma over one bar",
    "buys the cash cannot pay for are refused (no margin); shorts are allowed within the core's position bound",
    "no credit haircut, venue default, halt, depeg or borrow cost",
)


# -- commission per order ------------------------------------------------------------------------


class OrderFee(bt.CommInfoBase):
    """Charges the executing order's own fee: ``info.fee_fixed`` per order plus ``info.fee_rate`` x notional.

    Negative values are rebates. :class:`OrderFeeBroker` sets ``order`` before each execution.
    """

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))
    order: bt.Order | None = None

    def _getcommission(self, size, price, pseudoexec):
        info = self.order.info
        return abs(size) * (price * info.get("fee_rate", 0.0) + info.get("fee_fixed", 0.0) / abs(self.order.size))


class OrderFeeBroker(bt.brokers.BackBroker):
    """BackBroker that lets :class:`OrderFee` see which order it is charging."""

    def _execute(self, order, *args, **kwargs):
        self.getcommissioninfo(order.data).order = order
        return super()._execute(order, *args, **kwargs)


# -- 1. fill-log cross-check ---------------------------------------------------------------------


def crosscheck_with_backtrader(
    fills: pl.DataFrame,
    initial_cash_by_venue: Mapping[str, float],
    final_marks: Mapping[str, float],
    *,
    reported: Mapping[str, Mapping[str, Any]] | None = None,
    tolerance: float = 1e-6,
) -> dict[str, Any]:
    """Replay ``fills`` in backtrader and compare with our accounting; returns a JSON-ready dict.

    Ours, per venue: ``cash = initial - sum(side x price x qty) - sum(fee)``, ``position = sum(side x
    qty)`` per instrument, ``value = cash + sum(position x final_marks[instrument])``.

    backtrader, per venue: one broker funded with the venue's cash; one data feed per instrument
    traded there, on a 1-second clock with one bar per fill in log order (fill timestamps repeat and
    backtrader's float datetime cannot separate nanoseconds) and a last bar at the final mark. For
    fill ``k`` the strategy sends a market order of ``side x qty`` on bar ``k`` whose close is the
    fill price; cheat-on-close (``coc``) executes it at that close, and :class:`OrderFee` charges
    the fill's exact fee. backtrader refuses an execution that would take cash below zero, which a
    venue account in the engine may do (a margin account), so the broker also gets a credit line of
    the log's deepest running cash deficit, subtracted again from its cash and value.

    ``reported`` (optional): the engine's own final balances, ``{venue: {"cash": c, "positions":
    {instrument: q}}}``; each is compared with backtrader too, so a fill log that no longer matches
    the balances (a tampered or lost fill) shows up. ``agrees`` is True when every difference is
    within ``tolerance`` (quote ccy or units) and backtrader executed every fill.
    """
    _check_fills(fills)
    log = fills.select(*FILL_COLUMNS).with_row_index("_row").sort(["ts", "_row"])
    venues = list(dict.fromkeys([*initial_cash_by_venue, *log["venue"].unique(maintain_order=True)]))
    out_venues: dict[str, Any] = {}
    diffs: list[float] = []
    all_executed = True
    for venue in venues:
        vlog = log.filter(pl.col("venue") == venue)
        if venue not in initial_cash_by_venue:
            row = int(vlog["_row"][0]) + 1
            raise DataError("<fills>", row, "venue", f"venue '{venue}' has no initial cash")
        instruments = vlog["instrument"].unique(maintain_order=True).to_list()
        missing = [i for i in instruments if i not in final_marks]
        if missing:
            raise DataError("<final_marks>", None, missing[0], "no final mark for this instrument")
        cash0 = float(initial_cash_by_venue[venue])
        ours = _our_books(vlog, cash0, final_marks)
        theirs = _backtrader_books(vlog, cash0, final_marks, instruments)
        all_executed &= theirs["executed"] == vlog.height
        block = {
            "fills": vlog.height,
            "fills_executed_by_backtrader": theirs["executed"],
            "cash": _compare(ours["cash"], theirs["cash"], diffs),
            "value": _compare(ours["value"], theirs["value"], diffs),
            "positions": {i: _compare(ours["positions"][i], theirs["positions"][i], diffs) for i in instruments},
        }
        if reported is not None and venue in reported:
            _add_reported(block, reported[venue], theirs, final_marks, diffs)
        out_venues[venue] = block
    max_diff = max(diffs, default=0.0)
    return {
        "agrees": bool(all_executed and max_diff <= tolerance),
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "brokers": "one backtrader broker per venue (backtrader keeps a single cash balance)",
        "venues": out_venues,
    }


def _check_fills(fills: pl.DataFrame) -> None:
    for name in FILL_COLUMNS:
        if name not in fills.columns:
            raise DataError("<fills>", None, name, "missing column")
    for name, bad in (
        ("side", ~pl.col("side").is_in([1, -1])),
        ("price", ~(pl.col("price").is_finite() & (pl.col("price") > 0))),
        ("qty", ~(pl.col("qty").is_finite() & (pl.col("qty") > 0))),
        ("fee", ~pl.col("fee").is_finite()),
    ):
        rows = fills.with_row_index("_row").filter(bad.fill_null(True))
        if rows.height:
            raise DataError("<fills>", int(rows["_row"][0]) + 1, name, f"invalid value {rows[name][0]!r}")


def _our_books(vlog: pl.DataFrame, cash0: float, marks: Mapping[str, float]) -> dict[str, Any]:
    signed = vlog["side"].cast(pl.Float64) * vlog["qty"]
    cash = cash0 - float((signed * vlog["price"]).sum()) - float(vlog["fee"].sum())
    pos = vlog.with_columns(q=signed).group_by("instrument", maintain_order=True).agg(pl.col("q").sum())
    positions = dict(zip(pos["instrument"].to_list(), pos["q"].to_list()))
    return {"cash": cash, "positions": positions, "value": cash + sum(q * marks[i] for i, q in positions.items())}


def _backtrader_books(vlog: pl.DataFrame, cash0: float, marks: Mapping[str, float], instruments: list[str]) -> dict[str, Any]:
    n = vlog.height
    if n == 0:  # a venue we never traded at: nothing for backtrader to replay, its books are the opening cash
        return {"cash": cash0, "value": cash0, "positions": {}, "executed": 0}
    outflows = (vlog["side"].cast(pl.Float64) * vlog["qty"] * vlog["price"] + vlog["fee"]).cum_sum()
    deficit = float(outflows.max()) - cash0  # deepest the running cash goes below zero
    credit = deficit * (1.0 + 1e-9) + 1.0 if deficit > 0 else 0.0
    clock = pd.date_range(datetime.fromtimestamp(int(vlog["ts"][0]) // NS, timezone.utc).replace(tzinfo=None), periods=n + 1, freq="1s")
    which = vlog["instrument"].to_list()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = OrderFeeBroker(coc=True, checksubmit=False)
    cerebro.broker.setcash(cash0 + credit)
    for inst in instruments:
        # this instrument's last fill price on every bar (its first before it trades), then the mark
        own = vlog.select(pl.when(pl.col("instrument") == inst).then(pl.col("price")).forward_fill().backward_fill())
        close = np.append(own.to_series().to_numpy(), marks[inst])
        frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 0.0}, index=clock)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=inst)
        cerebro.broker.addcommissioninfo(OrderFee(), name=inst)
    cerebro.addstrategy(
        _Replay,
        instruments=which,
        sides=vlog["side"].to_list(),
        qtys=vlog["qty"].to_list(),
        fees=vlog["fee"].to_list(),
    )
    strat = cerebro.run()[0]
    broker = cerebro.broker
    feeds = {d._name: d for d in cerebro.datas}
    return {
        "cash": broker.getcash() - credit,
        "value": broker.getvalue() - credit,
        "positions": {i: float(broker.getposition(feeds[i]).size) for i in instruments},
        "executed": strat.executed,
    }


class _Replay(bt.Strategy):
    """Bar k: send fill k as a market order; coc executes it at bar k's close, the fill price."""

    params = (("instruments", ()), ("sides", ()), ("qtys", ()), ("fees", ()))

    def __init__(self):
        self.executed = 0
        self.feed = {d._name: d for d in self.datas}

    def next(self):
        k = len(self) - 1
        if k >= len(self.p.sides):
            return
        data = self.feed[self.p.instruments[k]]
        order = self.buy if self.p.sides[k] > 0 else self.sell
        order(data=data, size=self.p.qtys[k], exectype=bt.Order.Market, fee_fixed=self.p.fees[k])

    def notify_order(self, order):
        if order.status == order.Completed:
            self.executed += 1


def _compare(ours: float, theirs: float, diffs: list[float]) -> dict[str, float]:
    diff = theirs - ours
    diffs.append(abs(diff))
    return {"ours": ours, "backtrader": theirs, "diff": diff}


def _add_reported(block: dict, rep: Mapping[str, Any], theirs: dict, marks: Mapping[str, float], diffs: list[float]) -> None:
    positions = dict(rep.get("positions", {}))
    for key, theirs_value, rep_value in (
        ("cash", theirs["cash"], float(rep["cash"])),
        ("value", theirs["value"], float(rep["cash"]) + sum(q * marks[i] for i, q in positions.items())),
    ):
        block[key] |= {"reported": rep_value, "diff_reported": theirs_value - rep_value}
        diffs.append(abs(theirs_value - rep_value))
    for inst, entry in block["positions"].items():
        rep_value = float(positions.get(inst, 0.0))
        entry |= {"reported": rep_value, "diff_reported": entry["backtrader"] - rep_value}
        diffs.append(abs(entry["diff_reported"]))


# -- 2. bar-resolution engine --------------------------------------------------------------------


def run_backtrader_bars(
    ohlcv: pl.DataFrame,
    kernel,
    params: np.ndarray,
    venue: Venue,
    risk: RiskConfig,
    *,
    venue_name: str = "venue",
    instrument: str | None = None,
    multiplier: float = 1.0,
    initial_cash: float = 100_000.0,
    sessions: SessionsConfig | None = None,
    spread_z: float = 1.0,
    sigma_window: int = 60,
    source: str = "<ohlcv>",
) -> dict[str, Any]:
    """Run a strategy kernel on OHLCV bars in backtrader (``--engine backtrader``); returns a summary.

    ``ohlcv``: ``ts`` (int64 ns UTC, bar *start*, ccxt's convention), ``open``, ``high``, ``low``,
    ``close`` (quote ccy per share when ``multiplier`` != 1, else per token), ``volume``; strictly
    increasing ``ts``. Prices are turned into token prices (x ``multiplier``) before backtrader sees
    them. At each bar's close the strategy fills a ``CTX_DTYPE`` context (fair = close, book =
    close -/+ half the range, position/cash/exposure from backtrader's broker, session and
    variance-time to the next regular session from the calendar, size factor
    ``risk.offhours_size_factor`` outside regular hours), calls ``decide``, cancels what is left
    of the previous bar's orders and places the new quotes (limit, maker fee) and takes (limit at the
    take price, taker fee); ``venue.gas_per_trade`` is charged per fill.

    Returns a dict: JSON-ready figures (``pnl_total``, ``fees_paid``, ``spread_capture``, ...,
    ``limitations``) plus two polars DataFrames (the keys that are not JSON-ready): ``fills``, in the
    engine's fill-log columns, stamped at the end of the bar they executed in, and ``series``, one
    row per decision (``ts``, ``session``, ``fair``, ``position``, ``cash``, ``equity``, our ``bid``
    and ``ask`` quoted for the next bar (NaN: none), the crude book's ``mkt_bid`` / ``mkt_ask``).
    """
    bars = _check_ohlcv(ohlcv, source)
    instrument = instrument or next(iter(venue.instruments))
    ts = bars["ts"].to_numpy()
    bar_ns = int(np.median(np.diff(ts))) if len(ts) > 1 else 60 * NS
    token = {c: bars[c].to_numpy() * multiplier for c in ("open", "high", "low", "close")}
    sessions = sessions or SessionsConfig()
    cal = SessionCalendar(int(ts[0]), int(ts[-1]) + bar_ns, sessions.calendar, sessions.weights)
    decision_ts = ts + bar_ns
    state = cal.state_at(decision_ts)
    tau = gap_tau(cal.variance_to_open(decision_ts, states=(REGULAR,)), sessions.gap_z)
    var_next = cal.variance_time(decision_ts, decision_ts + bar_ns)
    sigma = _rolling_sigma(token["close"], cal.variance_time(ts[:-1] + bar_ns, ts[1:] + bar_ns), sigma_window)
    market = {
        "decision_ts": decision_ts, "state": state, "tau": tau, "var_next": var_next, "sigma": sigma,
        "var_rate": var_next / (bar_ns * 1e-9),
        "close": token["close"], "half_range": np.maximum((token["high"] - token["low"]) / 2.0, venue.tick_size),
    }
    frame = pd.DataFrame(
        {**token, "volume": bars["volume"].to_numpy()},
        index=pd.to_datetime(ts, unit="ns"),
    )
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = OrderFeeBroker(checksubmit=False)
    cerebro.broker.setcash(initial_cash)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=instrument)
    cerebro.broker.addcommissioninfo(OrderFee(), name=instrument)
    cerebro.addstrategy(
        _BarQuoter,
        kernel=kernel, params_array=np.ascontiguousarray(params, dtype=np.float64), venue=venue, risk=risk,
        multiplier=multiplier, spread_z=spread_z, market=market,
    )
    strat = cerebro.run()[0]
    fills = _bar_fills(strat.fills, venue_name, instrument, multiplier)
    equity = np.asarray(strat.equity, dtype=np.float64)
    eq_ts = decision_ts[: len(equity)]
    drawdown, drawdown_frac = max_drawdown(equity)
    edge = fills.select((pl.col("side").cast(pl.Float64) * (pl.col("fair") - pl.col("price")) * pl.col("qty")).sum()).item()
    final_value = cerebro.broker.getvalue()
    return {
        "engine": "backtrader",
        "venue": venue_name,
        "instrument": instrument,
        "bars": len(ts),
        "bar_seconds": bar_ns / NS,
        "decisions": strat.decisions,
        "orders_placed": strat.orders_placed,
        "orders_refused": strat.orders_refused,
        "fills_count": fills.height,
        "fills_maker": int((fills["liquidity"] == "maker").sum()),
        "fills_taker": int((fills["liquidity"] == "taker").sum()),
        "volume": float(fills["qty"].sum()),
        "notional": float((fills["price"] * fills["qty"]).sum()),
        "fees_paid": float(fills["fee"].sum()),
        "spread_capture": float(edge or 0.0),
        "position_final": float(cerebro.broker.getposition(cerebro.datas[0]).size),
        "cash_final": float(cerebro.broker.getcash()),
        "equity_initial": float(initial_cash),
        "equity_final": float(final_value),
        "pnl_total": float(final_value - initial_cash),
        "sharpe": sharpe(eq_ts, equity),
        "max_drawdown": drawdown,
        "max_drawdown_frac": drawdown_frac,
        "limitations": list(BARS_LIMITATIONS),
        "fills": fills,
        "series": _bar_series(strat.series, market, len(ts)),
    }


def _check_ohlcv(ohlcv: pl.DataFrame, source: str) -> pl.DataFrame:
    for name in OHLCV_COLUMNS:
        if name not in ohlcv.columns:
            raise DataError(source, None, name, "missing column")
    if ohlcv.height < 2:
        raise DataError(source, None, None, f"need at least 2 bars, got {ohlcv.height}")
    bars = ohlcv.select(pl.col("ts").cast(pl.Int64), *(pl.col(c).cast(pl.Float64) for c in OHLCV_COLUMNS[1:]))
    checks = (
        ("ts", pl.col("ts").diff().fill_null(1) <= 0, "ts must increase strictly"),
        *((c, ~(pl.col(c).is_finite() & (pl.col(c) > 0)), "must be a positive number") for c in ("open", "high", "low", "close")),
        ("volume", ~(pl.col("volume").is_finite() & (pl.col("volume") >= 0)), "must be >= 0"),
        ("high", pl.col("high") < pl.max_horizontal("open", "close", "low"), "below open, close or low"),
        ("low", pl.col("low") > pl.min_horizontal("open", "close"), "above open or close"),
    )
    indexed = bars.with_row_index("_row")
    for name, bad, message in checks:
        rows = indexed.filter(bad.fill_null(True))
        if rows.height:
            raise DataError(source, int(rows["_row"][0]) + 1, name, f"{message} (got {rows[name][0]!r})")
    return bars


def _rolling_sigma(close: np.ndarray, var_time: np.ndarray, window: int) -> np.ndarray:
    """Per bar k: sqrt(sum of squared close moves / sum of their variance-time) over the last
    ``window`` moves ending at bar k (quote ccy per sqrt(variance-second)); NaN at bar 0."""
    moves = np.diff(close)
    sq = np.concatenate([[0.0], np.cumsum(moves * moves)])
    vt = np.concatenate([[0.0], np.cumsum(var_time)])
    k = np.arange(len(close))
    lo = np.maximum(k - window, 0)
    num, den = sq[k] - sq[lo], vt[k] - vt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sqrt(num / np.where(den > 0, den, 1.0)), np.nan)


class _BarQuoter(bt.Strategy):
    """Calls the compiled decision once per bar and turns its output into backtrader limit orders."""

    params = (("kernel", None), ("params_array", None), ("venue", None), ("risk", None),
              ("multiplier", 1.0), ("spread_z", 1.0), ("market", None))

    def __init__(self):
        self.ctx = new_context()
        self.quotes, self.takes = new_quotes(), new_takes()
        self.live: list[bt.Order] = []
        self.fills: list[dict[str, Any]] = []
        self.equity: list[float] = []
        self.series: list[tuple[int, float, float, float, float, float]] = []  # ts, pos, cash, equity, our bid, ask
        self.decisions = self.orders_placed = self.orders_refused = 0
        self._static_context()

    def _static_context(self) -> None:
        c, v, risk = self.ctx[0], self.p.venue, self.p.risk
        c["n_venues"], c["hedge_venue"], c["hedge_open"] = 1, -1, 0
        c["quotable"][0] = c["tradable"][0] = 1
        c["multiplier"], c["spread_z"] = self.p.multiplier, self.p.spread_z
        c["max_net_delta"], c["max_position"][0] = risk.max_net_delta, risk.max_position
        c["haircut"][0], c["exposure_cap"][0] = v.haircut, v.exposure_cap
        c["tick"][0], c["lot"][0], c["min_notional"][0] = v.tick_size, v.lot_size, v.min_notional
        c["maker_fee"][0], c["taker_fee"][0], c["gas"][0] = v.maker_fee_bps / 1e4, v.taker_fee_bps / 1e4, v.gas_per_trade

    def next(self):
        k = len(self) - 1
        m, c = self.p.market, self.ctx[0]
        pos = float(self.position.size)
        cash = float(self.broker.getcash())
        value = cash + pos * m["close"][k]
        self.equity.append(value)
        for order in self.live:
            if order.alive():
                self.cancel(order)
        self.live = []
        if not math.isfinite(m["sigma"][k]):
            self.series.append((int(m["decision_ts"][k]), pos, cash, value, math.nan, math.nan))
            return
        c["ts"] = c["last_update"][0] = m["decision_ts"][k]
        c["session"] = m["state"][k]
        c["var_rate"] = m["var_rate"][k]
        c["tau"] = m["tau"][k]
        c["size_factor"] = 1.0 if m["state"][k] == REGULAR else self.p.risk.offhours_size_factor
        c["fair"] = m["close"][k]
        c["sigma"] = m["sigma"][k]
        c["fair_std"] = m["sigma"][k] * math.sqrt(m["var_next"][k])
        c["bid"][0] = m["close"][k] - m["half_range"][k]
        c["ask"][0] = m["close"][k] + m["half_range"][k]
        c["net_delta"] = pos * self.p.multiplier
        c["position"][0], c["cash"][0], c["exposure"][0] = pos, cash, value
        c["equity_raw"], c["equity_haircut"] = value, value * (1.0 - self.p.venue.haircut)
        n_takes = decide(c, self.p.params_array, self.p.kernel, self.quotes, self.takes)
        self.decisions += 1
        maker, taker, gas = c["maker_fee"][0], c["taker_fee"][0], c["gas"][0]
        for side, send in ((BID, self.buy), (ASK, self.sell)):
            for lvl in range(MAX_LEVELS):
                price, size = self.quotes[0, side, lvl]
                if size > 0:
                    self._place(send, price, size, maker, gas, "quote", "maker")
        for row in self.takes[:n_takes]:
            send = self.buy if row[1] > 0 else self.sell
            self._place(send, row[2], row[3], taker, gas, "arb", "taker")
        bid, ask = self.quotes[0, BID, 0], self.quotes[0, ASK, 0]
        self.series.append((int(m["decision_ts"][k]), pos, cash, value,
                            float(bid[0]) if bid[1] > 0 else math.nan, float(ask[0]) if ask[1] > 0 else math.nan))

    def _place(self, send, price, size, rate, gas, tag, liquidity):
        order = send(size=float(size), price=float(price), exectype=bt.Order.Limit,
                     fee_rate=float(rate), fee_fixed=float(gas), tag=tag, liquidity=liquidity)
        self.live.append(order)
        self.orders_placed += 1

    def notify_order(self, order):
        if order.status == order.Completed:
            k = len(self) - 1
            self.fills.append(
                {
                    "ts": int(self.p.market["decision_ts"][k]),
                    "side": 1 if order.isbuy() else -1,
                    "price": float(order.executed.price),
                    "qty": abs(float(order.executed.size)),
                    "fee": float(order.executed.comm),
                    "liquidity": order.info["liquidity"],
                    "order_id": int(order.ref),
                    "tag": order.info["tag"],
                    "fair": float(self.p.market["close"][k]),
                }
            )
        elif order.status in (order.Margin, order.Rejected):
            self.orders_refused += 1


def _bar_fills(rows: list[dict[str, Any]], venue: str, instrument: str, multiplier: float) -> pl.DataFrame:
    schema = {
        "ts": pl.Int64, "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64, "fee": pl.Float64,
        "liquidity": pl.String, "order_id": pl.Int64, "tag": pl.String, "fair": pl.Float64,
    }
    df = pl.DataFrame(rows, schema=schema)
    return df.select(
        "ts",
        pl.col("ts").alias("local_ts"),
        pl.lit(venue).alias("venue"),
        pl.lit(instrument).alias("instrument"),
        "side", "price", "qty", "fee", "liquidity", "order_id", "tag", "fair",
        pl.lit(multiplier, dtype=pl.Float64).alias("multiplier"),
    )


def _bar_series(rows, market: Mapping[str, np.ndarray], n: int) -> pl.DataFrame:
    cols = list(zip(*rows)) if rows else [[] for _ in range(6)]
    k = len(rows)
    return pl.DataFrame({
        "ts": pl.Series(cols[0], dtype=pl.Int64),
        "session": pl.Series(market["state"][:k], dtype=pl.Int8),
        "fair": pl.Series(market["close"][:k], dtype=pl.Float64),
        "position": pl.Series(cols[1], dtype=pl.Float64),
        "cash": pl.Series(cols[2], dtype=pl.Float64),
        "equity": pl.Series(cols[3], dtype=pl.Float64),
        "bid": pl.Series(cols[4], dtype=pl.Float64),
        "ask": pl.Series(cols[5], dtype=pl.Float64),
        "mkt_bid": pl.Series(market["close"][:k] - market["half_range"][:k], dtype=pl.Float64),
        "mkt_ask": pl.Series(market["close"][:k] + market["half_range"][:k], dtype=pl.Float64),
    })


# -- OHLCV bars from tick data, and the bar run in the tick engine's output format ----------------


def bars_from_events(events: pl.DataFrame, bar_seconds: float = 60.0) -> pl.DataFrame:
    """OHLCV bars (``OHLCV_COLUMNS``, ``ts`` = bar start, ns UTC) of one token venue from its event
    stream (``POLARS_SCHEMA`` columns of one venue and instrument, local-time order).

    Prices: the mid of each full book snapshot (best bid = highest bid row, best ask = lowest ask
    row of one snapshot batch) and each trade's price, stamped at ``local_ts``; volume: traded size.
    A bar with no price repeats the previous close (volume 0), so the bars are evenly spaced from
    the first price to the last.
    """
    from data.schema import KIND_SNAPSHOT, KIND_TRADE

    bar_ns = int(bar_seconds * NS)
    snaps = (
        events.filter(pl.col("kind") == KIND_SNAPSHOT)
        .group_by("local_ts", maintain_order=True)
        .agg(pl.col("price").filter(pl.col("side") > 0).max().alias("bid"), pl.col("price").filter(pl.col("side") < 0).min().alias("ask"))
        .filter(pl.col("bid").is_not_null() & pl.col("ask").is_not_null())
        .select(pl.col("local_ts").alias("t"), ((pl.col("bid") + pl.col("ask")) / 2).alias("p"), pl.lit(0.0).alias("v"))
    )
    trades = events.filter(pl.col("kind") == KIND_TRADE).select(pl.col("local_ts").alias("t"), pl.col("price").alias("p"), pl.col("size").alias("v"))
    points = pl.concat([snaps, trades]).sort("t", maintain_order=True)
    if points.height == 0:
        return pl.DataFrame(schema={c: (pl.Int64 if c == "ts" else pl.Float64) for c in OHLCV_COLUMNS})
    bars = (
        points.with_columns((pl.col("t") // bar_ns * bar_ns).alias("ts"))
        .group_by("ts", maintain_order=True)
        .agg(pl.col("p").first().alias("open"), pl.col("p").max().alias("high"), pl.col("p").min().alias("low"),
             pl.col("p").last().alias("close"), pl.col("v").sum().alias("volume"))
    )
    grid = pl.DataFrame({"ts": np.arange(int(bars["ts"][0]), int(bars["ts"][-1]) + 1, bar_ns, dtype=np.int64)})
    full = grid.join(bars, on="ts", how="left").with_columns(pl.col("close").forward_fill())
    return full.select(
        "ts",
        *(pl.col(c).fill_null(pl.col("close")) for c in ("open", "high", "low")),
        "close",
        pl.col("volume").fill_null(0.0),
    )


def bar_run_outputs(result: Mapping[str, Any], *, venue: Venue, multiplier: float = 1.0, seed: int | None = None,
                    config: str | None = None, wall_seconds: float = 0.0) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(summary, fills, timeseries, fair_track) of a :func:`run_backtrader_bars` result in the tick
    engine's formats, so the same files and ``backtest.report.write_report`` serve both engines.

    The summary is :func:`backtest.metrics.summarize` over one venue, one sample per bar, plus the
    bar engine's own figures under ``bar_engine`` and its ``limitations``. Inventory PnL is the
    position held over each bar times the bar's close-to-close move (fills are marked at the close
    of the bar they execute in), so ``pnl_residual`` checks the bar engine's accounting too.
    """
    from backtest.metrics import summarize

    name = result["venue"]
    fills = result["fills"]
    s = result["series"]
    pos, close = s["position"].to_numpy(), s["fair"].to_numpy()
    inventory = float(np.sum(pos[:-1] * np.diff(close))) if len(pos) > 1 else 0.0
    cap = venue.exposure_cap if math.isfinite(venue.exposure_cap) else math.nan
    series = s.select(
        "ts", "session", "fair", (pl.col("fair") / multiplier).alias("fair_share"),
        pl.col("equity").alias("equity_raw"), (pl.col("equity") * (1.0 - venue.haircut)).alias("equity_haircut"),
        (pl.col("position") * multiplier).alias("net_delta"),
        (pl.col("position").shift(1).fill_null(0.0) * pl.col("fair").diff().fill_null(0.0)).cum_sum().alias("pnl_inventory_cum"),
        pl.col("position").alias(f"pos_{name}"), pl.col("cash").alias(f"cash_{name}"),
        pl.col("equity").alias(f"exposure_{name}"), pl.lit(cap, dtype=pl.Float64).alias(f"cap_{name}"),
        pl.col("bid").alias(f"bid_{name}"), pl.col("ask").alias(f"ask_{name}"),
        pl.col("mkt_bid").alias(f"mkt_bid_{name}"), pl.col("mkt_ask").alias(f"mkt_ask_{name}"),
    )
    track = series.select("ts", "fair", "fair_share")
    final = float(result["equity_final"])
    totals = {
        "events": int(result["bars"]), "simulated_seconds": float(result["bars"] * result["bar_seconds"]),
        "wall_seconds": wall_seconds, "equity_initial_raw": float(result["equity_initial"]), "equity_final_raw": final,
        "equity_final_after_haircut": final * (1.0 - venue.haircut), "pnl_inventory": inventory,
        "borrow_cost": 0.0, "default_loss": 0.0, "venues": [name], "seed": seed, "config": config,
    }
    summary = summarize(fills, series, track, totals)
    figures = {k: v for k, v in result.items() if k not in ("fills", "series", "limitations")}
    summary.update(engine="backtrader", bar_engine=figures, limitations=list(result["limitations"]))
    return summary, fills, series, track
