"""The state of all simulated venues of one replay, as one namedtuple of flat numpy arrays.

numba compiles functions over a namedtuple of arrays like over separate arguments, so the engine
loop passes one ``sim`` around instead of twenty arrays. The arrays are mutated in place; only
:func:`grow_queues` returns a new tuple (with bigger queue arrays).

Fields (``V`` venues, ``I`` instruments, ``B = V * I`` books):

- books (stockbridge.core.book): ``px``, ``qty`` float64[B, 2, levels], ``nlev`` int64[B, 2],
  ``dropped`` int64[B], ``resync_ts`` int64[B] (snapshot in progress, see backtest.matching);
- orders (backtest.orders): ``orders`` ORDER_DTYPE[capacity], ``free``, ``rest`` int64[capacity],
  ``oc`` int64[3], ``scratch`` int64[capacity] (work space of the matching);
- fills: ``fills`` FILL_DTYPE[fill_capacity], ``fill_n`` int64[1] (rows used);
- order log: ``olog`` ORDER_LOG_DTYPE[queue_capacity] (one row per order when it became final), ``olog_n`` int64[1];
- messages in flight (backtest.pending): ``pq_i``, ``pq_f``, ``pq_n``; queue ``v`` = our actions
  to venue ``v``, queue ``V`` = reports to us;
- latency (backtest.latency): ``lat`` float64[V, 4], ``last_arrive``, ``last_report`` int64[V],
  ``rng`` uint64[2] (backtest.rng);
- venues: ``fees`` float64[V, 3] (backtest.fees), ``status`` int64[V] (VENUE_OK / HALTED / DEFAULTED);
- liquidity we took (backtest.consumed): ``cpx``, ``cq`` float64[B, 2, K], ``cn`` int64[B, 2], ``cevict`` int64[1];
- each venue's clock (backtest.matching.venue_advance): ``xnext``, ``xscan`` int64[V] (cursors into
  the event array being replayed), ``lmax`` int64[V] (largest feed latency of the venue's data, ns),
  ``final`` int64[1] (1 when the array holds the rest of the data);
- ``dims`` int64[2] = (V, I); ``qmodel`` float64[2] = (QUEUE_CONSERVATIVE or
  QUEUE_PROBABILISTIC, power n of the probabilistic model).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from stockbridge.core.book import new_book
from backtest.consumed import new_consumed
from backtest.fees import fee_table
from backtest.latency import latency_table
from backtest.matching import FILL_DTYPE, NO_RESYNC, ORDER_LOG_DTYPE, QUEUE_CONSERVATIVE, QUEUE_PROBABILISTIC
from backtest.orders import new_orders
from backtest.pending import grow_pending, new_pending
from backtest.rng import new_rng

SimVenues = namedtuple(
    "SimVenues",
    [
        "px", "qty", "nlev", "dropped", "resync_ts",
        "orders", "free", "rest", "oc", "scratch",
        "fills", "fill_n", "olog", "olog_n",
        "pq_i", "pq_f", "pq_n",
        "lat", "last_arrive", "last_report", "rng",
        "fees", "status",
        "cpx", "cq", "cn", "cevict",
        "xnext", "xscan", "lmax", "final",
        "dims", "qmodel",
    ],
)

QUEUE_MODELS = {"conservative": QUEUE_CONSERVATIVE, "probabilistic": QUEUE_PROBABILISTIC}


def new_sim(
    n_venues: int,
    n_instruments: int,
    fees: np.ndarray,
    lat: np.ndarray,
    *,
    book_levels: int = 128,
    order_capacity: int = 1024,
    fill_capacity: int = 65536,
    queue_capacity: int = 4096,
    queue_model: str = "conservative",
    queue_power: float = 2.0,
    seed: int = 1,
) -> SimVenues:
    """Empty books, no orders, every venue open. ``fees``: backtest.fees table; ``lat``: backtest.latency table."""
    if n_venues < 1 or n_instruments < 1:
        raise ValueError(f"need at least one venue and one instrument, got {n_venues}, {n_instruments}")
    fees = np.ascontiguousarray(fees, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    if fees.shape != (n_venues, 3):
        raise ValueError(f"fees must have shape ({n_venues}, 3), got {fees.shape}")
    if lat.shape != (n_venues, 4):
        raise ValueError(f"lat must have shape ({n_venues}, 4), got {lat.shape}")
    if queue_model not in QUEUE_MODELS:
        raise ValueError(f"queue_model must be one of {sorted(QUEUE_MODELS)}, got {queue_model!r}")
    if not queue_power > 0:
        raise ValueError(f"queue_power must be > 0, got {queue_power}")
    # A call that needs more room than the arrays can ever offer would loop forever on
    # NEED_FILL_ROOM / NEED_REPORT_ROOM: one order's walk touches up to book_levels levels, one
    # market event can fill every resting order (a fill and a done report each).
    if fill_capacity < max(book_levels, order_capacity):
        raise ValueError(f"fill_capacity must be >= max(book_levels, order_capacity) = {max(book_levels, order_capacity)}")
    if queue_capacity < max(book_levels + 2, 2 * order_capacity):
        raise ValueError(f"queue_capacity must be >= max(book_levels + 2, 2 * order_capacity) = {max(book_levels + 2, 2 * order_capacity)}")
    n_books = n_venues * n_instruments
    px, qty, nlev, dropped = new_book(n_books, book_levels)
    orders, free, rest, oc = new_orders(order_capacity)
    pq_i, pq_f, pq_n = new_pending(n_venues + 1, queue_capacity)
    cpx, cq, cn, cevict = new_consumed(n_books)
    return SimVenues(
        px=px, qty=qty, nlev=nlev, dropped=dropped,
        resync_ts=np.full(n_books, NO_RESYNC, dtype=np.int64),
        orders=orders, free=free, rest=rest, oc=oc,
        scratch=np.zeros(order_capacity, dtype=np.int64),
        fills=np.zeros(fill_capacity, dtype=FILL_DTYPE), fill_n=np.zeros(1, dtype=np.int64),
        olog=np.zeros(queue_capacity, dtype=ORDER_LOG_DTYPE), olog_n=np.zeros(1, dtype=np.int64),
        pq_i=pq_i, pq_f=pq_f, pq_n=pq_n,
        lat=lat, last_arrive=np.zeros(n_venues, dtype=np.int64),
        last_report=np.zeros(n_venues, dtype=np.int64), rng=new_rng(seed),
        fees=fees, status=np.zeros(n_venues, dtype=np.int64),
        cpx=cpx, cq=cq, cn=cn, cevict=cevict,
        xnext=np.full(n_venues, -1, dtype=np.int64), xscan=np.zeros(n_venues, dtype=np.int64),
        lmax=np.zeros(n_venues, dtype=np.int64), final=np.zeros(1, dtype=np.int64),
        dims=np.array([n_venues, n_instruments], dtype=np.int64),
        qmodel=np.array([QUEUE_MODELS[queue_model], queue_power], dtype=np.float64),
    )


def sim_from_config(cfg, **kwargs) -> SimVenues:
    """``new_sim`` for a StockbridgeConfig: venues and instruments in config order, their fees
    (``maker_fee_bps``, ``taker_fee_bps``, ``gas_per_trade``) and latencies (``order_latency_ms``,
    ``response_latency_ms``, ``latency_jitter_ms``), ``backtest.queue_model`` and ``backtest.seed``;
    ``kwargs`` override capacities etc."""
    kwargs.setdefault("queue_model", cfg.backtest.queue_model)
    kwargs.setdefault("seed", cfg.backtest.seed)
    venues = list(cfg.venues.values())
    fees = fee_table([v.maker_fee_bps for v in venues], [v.taker_fee_bps for v in venues],
                     [v.gas_per_trade for v in venues])
    lat = latency_table([v.order_latency_ms for v in venues], [v.response_latency_ms for v in venues],
                        [v.latency_jitter_ms for v in venues])
    return new_sim(len(venues), len(cfg.instruments), fees, lat, **kwargs)


def flush_fills(sim: SimVenues) -> np.ndarray:
    """Copy out the fills recorded so far and empty the array (after NEED_FILL_ROOM, or at the end)."""
    n = int(sim.fill_n[0])
    out = sim.fills[:n].copy()
    sim.fill_n[0] = 0
    return out


def flush_orders(sim: SimVenues) -> np.ndarray:
    """Copy out the order-log rows recorded so far and empty the log (with :func:`flush_fills`)."""
    n = int(sim.olog_n[0])
    out = sim.olog[:n].copy()
    sim.olog_n[0] = 0
    return out


def grow_queues(sim: SimVenues, capacity: int) -> SimVenues:
    """The same sim with message queues of ``capacity`` entries (after NEED_REPORT_ROOM / QUEUE_FULL)."""
    pq_i, pq_f = grow_pending(sim.pq_i, sim.pq_f, capacity)
    return sim._replace(pq_i=pq_i, pq_f=pq_f)
