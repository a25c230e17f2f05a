"""Invariants every fill log must satisfy, checked independently of the matcher from the raw rows.

:func:`check_fills` takes the event store rows (an EVENT_DTYPE array or a polars frame in
data.schema.POLARS_SCHEMA) and a fills frame as ``fills.parquet`` has it (``ts`` venue ns,
``arrival_ts`` venue ns when the order reached the venue, ``local_ts``, ``venue``, ``instrument``,
``side``, ``price``, ``qty``, ``fee``, ``liquidity`` "maker"/"taker", ``order_id``, ``tag``) and
returns the violations found, one line each (empty: all good). :func:`assert_fills_ok` raises
AssertionError listing them. Venue and instrument columns may hold ids or names (then pass
``venues`` / ``instruments``: names in id order, as in the config).

Checks (each names itself at the start of its lines):

- ``arrival``: every fill's venue time is at or after its order's arrival at the venue; all fills of
  one order agree on the arrival (and with the orders frame, when given);
- ``liquidity``: per venue, order and fill price, what we were filled never exceeds what the data
  offered us. A taker fill at price p (at arrival A) gets at most the size the data displayed at p on
  the opposite side at A. Maker fills of an order resting at L from A to its last fill E get at most:
  the displayed size of the opposite levels at or through L at A, plus every increase of those
  levels' displayed sizes in (A, E], plus the volume of trades in [A, E] printed at or through L,
  plus, for each opposite level P at or through L displayed in [A, E], the volume of the trades in
  [A, E] on that side at or through P (a trade through a level shows that it was refreshed). The data
  book is rebuilt here from the rows: depth and snapshot levels set (size 0 removes), ``F_CLEAR``
  empties both sides, an L1 quote becomes its side's only level, a level of size > 0 removes opposite
  levels at or through it. A level restated at the size it had adds nothing: that is how lots taken
  twice show;
- ``halt`` / ``default``: no fill at a venue time inside a halt window ``(venue, start, end)``
  (start inclusive, end exclusive) or at or after a default ``(venue, t)`` of its venue;
- with an orders frame (``order_id`` and any of ``arrival_ts`` / ``ts_venue``; ``cancel_ts``: venue
  time the cancel was carried out, null if none; ``final_ts``, ``state``, ``reason`` as in
  ``orders.parquet``, where a ``cancelled`` / ``user`` order's ``final_ts`` is its cancel):
  ``cancel``, no fill after the cancel was carried out; ``final``, no fill after the order ended at
  the venue, and every order ends filled, cancelled or rejected.

Units: times int64 ns (venue clock for ``ts``, ``arrival_ts`` and scenario windows); sizes tokens.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from data.schema import EVENT_DTYPE, F_CLEAR, KIND_DEPTH, KIND_QUOTE, KIND_SNAPSHOT, KIND_TRADE, to_numpy

TOL = 1e-9  # tokens, relative to the bound
PRICE_TOL = 1e-9  # relative: prices this close are the same level (as stockbridge.core.book.same_price)
FINAL_STATES = {"filled", "cancelled", "rejected", 4, 5, 6}


def _ids(col: pl.Series, names, what: str) -> np.ndarray:
    if col.dtype.is_integer():
        return col.to_numpy().astype(np.int64)
    if names is None:
        raise ValueError(f"fills column {what!r} holds names: pass {what}s=[names in id order]")
    index = {n: k for k, n in enumerate(names)}
    missing = sorted(set(col.unique().to_list()) - set(index))
    if missing:
        raise ValueError(f"fills column {what!r} has names not in {what}s: {missing}")
    return np.array([index[x] for x in col.to_list()], dtype=np.int64)


def _venue_id(v, venues) -> int:
    if isinstance(v, str):
        return list(venues).index(v)
    return int(v)


class _BookReplay:
    """The data book of one venue/instrument over venue time, with the queries the checks need."""

    def __init__(self, rows: np.ndarray, query_times):
        """``query_times``: the times :meth:`state_at` will be asked about (our orders' arrivals)."""
        self.rows = rows[np.argsort(rows["exch_ts"], kind="stable")]
        queries = sorted(set(int(t) for t in query_times))
        self._states = {}
        lv_ts, lv_side, lv_px, lv_inc, lv_new = [], [], [], [], []
        tr = self.rows[self.rows["kind"] == KIND_TRADE]
        self.tr_ts = tr["exch_ts"].astype(np.int64)
        self.tr_side = tr["side"].astype(np.int64)
        self.tr_px = tr["price"].astype(np.float64)
        self.tr_size = np.maximum(np.nan_to_num(tr["size"].astype(np.float64), nan=0.0), 0.0)
        self._book_rows = self.rows[np.isin(self.rows["kind"], (KIND_QUOTE, KIND_DEPTH, KIND_SNAPSHOT))
                                    & (self.rows["side"] != 0)]
        book = [{}, {}]

        def set_(s, p, new, ts):
            prev = book[s].get(p, 0.0)
            if new > 0.0:
                book[s][p] = new
            else:
                book[s].pop(p, None)
            lv_ts.append(ts)
            lv_side.append(s)
            lv_px.append(p)
            lv_inc.append(max(new - prev, 0.0))
            lv_new.append(new)

        qk = 0
        for r in self._book_rows:
            ts = int(r["exch_ts"])
            while qk < len(queries) and queries[qk] < ts:
                self._states[queries[qk]] = (dict(book[0]), dict(book[1]))
                qk += 1
            s = 0 if r["side"] > 0 else 1
            p = float(r["price"])
            size = float(r["size"]) if np.isfinite(r["size"]) else 0.0
            if int(r["flags"]) & F_CLEAR:
                for side in (0, 1):
                    for q in list(book[side]):
                        set_(side, q, 0.0, ts)
            if int(r["kind"]) == KIND_QUOTE:
                for q in list(book[s]):
                    if q != p:
                        set_(s, q, 0.0, ts)
            set_(s, p, size, ts)
            if size > 0.0:
                o = 1 - s
                for q in list(book[o]):
                    if (q >= p) if o == 0 else (q <= p):
                        set_(o, q, 0.0, ts)
        for t in queries[qk:]:
            self._states[t] = (dict(book[0]), dict(book[1]))
        self.lv_ts = np.array(lv_ts, dtype=np.int64)
        self.lv_side = np.array(lv_side, dtype=np.int64)
        self.lv_px = np.array(lv_px, dtype=np.float64)
        self.lv_inc = np.array(lv_inc, dtype=np.float64)
        self.lv_new = np.array(lv_new, dtype=np.float64)

    def state_at(self, t: int) -> tuple[dict, dict]:
        """Displayed book (bids, asks: price -> size) after every row with exch_ts <= t."""
        return self._states[t]

    def taker_bound(self, side: int, price: float, arrival: int) -> float:
        opp = 1 if side > 0 else 0
        tol = PRICE_TOL * max(1.0, abs(price))
        return sum(q for p, q in self.state_at(arrival)[opp].items() if abs(p - price) <= tol)

    def maker_bound(self, side: int, limit: float, a: int, e: int) -> float:
        opp = 1 if side > 0 else 0

        tol = PRICE_TOL * max(1.0, abs(limit))  # our limit is rounded to the grid, data prices are parsed

        def crossing(px):  # opposite level at or through our limit
            return px <= limit + tol if opp == 1 else px >= limit - tol

        at_a = {p: q for p, q in self.state_at(a)[opp].items() if crossing(p)}
        lo, hi = np.searchsorted(self.lv_ts, [a, e], side="right")
        m = (self.lv_side[lo:hi] == opp) & crossing(self.lv_px[lo:hi])
        displayed = sum(at_a.values()) + float(self.lv_inc[lo:hi][m].sum())
        levels = set(at_a) | set(self.lv_px[lo:hi][m & (self.lv_new[lo:hi] > 0.0)].tolist())
        tlo = int(np.searchsorted(self.tr_ts, a, side="left"))
        thi = int(np.searchsorted(self.tr_ts, e, side="right"))
        px, sz, ag = self.tr_px[tlo:thi], self.tr_size[tlo:thi], self.tr_side[tlo:thi]
        traded = float(sz[crossing(px)].sum())
        # trades on the opposite side (the aggressor hits it: a buy hits asks) refresh its levels
        hits_opp = (ag >= 0) if opp == 1 else (ag <= 0)
        for p in levels:
            through = (px >= p - tol) if opp == 1 else (px <= p + tol)
            traded += float(sz[hits_opp & through].sum())
        return displayed + traded


def check_fills(events, fills: pl.DataFrame, orders: pl.DataFrame | None = None, *, venues=None,
                instruments=None, halts=(), defaults=()) -> list[str]:
    """The violations of the invariants (module doc) by ``fills``, one line each."""
    ev = events if isinstance(events, np.ndarray) else to_numpy(events)
    if ev.dtype != EVENT_DTYPE:
        raise ValueError("events must be an EVENT_DTYPE array or a frame in data.schema.POLARS_SCHEMA")
    out: list[str] = []
    if fills.height == 0:
        return out
    f = {
        "ts": fills["ts"].to_numpy().astype(np.int64),
        "arrival": fills["arrival_ts"].to_numpy().astype(np.int64),
        "venue": _ids(fills["venue"], venues, "venue"),
        "instrument": _ids(fills["instrument"], instruments, "instrument"),
        "side": fills["side"].to_numpy().astype(np.int64),
        "price": fills["price"].to_numpy().astype(np.float64),
        "qty": fills["qty"].to_numpy().astype(np.float64),
        "maker": (fills["liquidity"] == "maker").to_numpy(),
        "oid": fills["order_id"].to_numpy().astype(np.int64),
    }
    n = fills.height

    # arrival
    for k in np.nonzero(f["ts"] < f["arrival"])[0]:
        out.append(f"arrival: fill {k} of order {f['oid'][k]} at venue {f['venue'][k]}: venue time {f['ts'][k]} "
                   f"is before the order reached the venue at {f['arrival'][k]}")
    first_arrival = {}
    for k in range(n):
        a = first_arrival.setdefault(int(f["oid"][k]), int(f["arrival"][k]))
        if a != f["arrival"][k]:
            out.append(f"arrival: fills of order {f['oid'][k]} disagree on its arrival ({a}, {f['arrival'][k]})")

    # halt / default
    for v, start, end in halts:
        vid = _venue_id(v, venues)
        for k in np.nonzero((f["venue"] == vid) & (f["ts"] >= start) & (f["ts"] < end))[0]:
            out.append(f"halt: fill {k} of order {f['oid'][k]} at venue {vid}, venue time {f['ts'][k]}, "
                       f"inside the halt [{start}, {end})")
    for v, t in defaults:
        vid = _venue_id(v, venues)
        for k in np.nonzero((f["venue"] == vid) & (f["ts"] >= t))[0]:
            out.append(f"default: fill {k} of order {f['oid'][k]} at venue {vid}, venue time {f['ts'][k]}, "
                       f"after the venue defaulted at {t}")

    # liquidity
    groups: dict[tuple, list[int]] = {}
    for k in range(n):
        key = (int(f["venue"][k]), int(f["instrument"][k]), int(f["oid"][k]), float(f["price"][k]), bool(f["maker"][k]))
        groups.setdefault(key, []).append(k)
    replays: dict[tuple[int, int], _BookReplay] = {}
    for v, ins in {(g[0], g[1]) for g in groups}:
        mine = (f["venue"] == v) & (f["instrument"] == ins)
        rows = ev[(ev["venue"] == v) & (ev["instrument"] == ins)]
        replays[(v, ins)] = _BookReplay(rows, f["arrival"][mine])
    for (v, ins, oid, price, maker), ks in groups.items():
        book = replays[(v, ins)]
        ks = np.array(ks)
        side = int(f["side"][ks[0]])
        a = int(f["arrival"][ks[0]])
        e = int(f["ts"][ks].max())
        if e < a:
            continue  # a fill before its order arrived: the arrival check says so
        got = float(f["qty"][ks].sum())
        bound = book.maker_bound(side, price, a, e) if maker else book.taker_bound(side, price, a)
        if got > bound + TOL * max(1.0, bound):
            what = "maker" if maker else "taker"
            out.append(f"liquidity: order {oid} at venue {v} instrument {ins} was filled {got:g} at {price:g} "
                       f"({what}, arrival {a}, last fill {e}) but the data offered at most {bound:g}")

    # orders frame
    if orders is not None and orders.height:
        by_id = {int(r["order_id"]): r for r in orders.iter_rows(named=True)}
        arr_col = "arrival_ts" if "arrival_ts" in orders.columns else ("ts_venue" if "ts_venue" in orders.columns else None)
        for k in range(n):
            r = by_id.get(int(f["oid"][k]))
            if r is None:
                out.append(f"orders: fill {k} names order {f['oid'][k]}, which is not in the orders frame")
                continue
            if arr_col and r[arr_col] is not None and int(r[arr_col]) != f["arrival"][k]:
                out.append(f"arrival: fill {k} says order {f['oid'][k]} arrived at {f['arrival'][k]}, "
                           f"the orders frame says {r[arr_col]}")
            c = r.get("cancel_ts")
            if c is None and r.get("state") == "cancelled" and r.get("reason") == "user":
                c = r.get("final_ts")  # orders.parquet: the venue time our cancel was carried out
            if c is not None and f["ts"][k] > int(c):
                out.append(f"cancel: fill {k} of order {f['oid'][k]} at venue time {f['ts'][k]} is after its "
                           f"cancel was carried out at {c}")
            e = r.get("final_ts")
            if e is not None and f["ts"][k] > int(e):
                out.append(f"final: fill {k} of order {f['oid'][k]} at venue time {f['ts'][k]} is after the order "
                           f"ended at the venue at {e}")
        if "state" in orders.columns:
            for r in orders.iter_rows(named=True):
                if r["state"] not in FINAL_STATES:
                    out.append(f"final: order {r['order_id']} ended in state {r['state']!r}, not filled, cancelled or rejected")
    return out


def assert_fills_ok(events, fills: pl.DataFrame, orders: pl.DataFrame | None = None, **kw) -> None:
    """Raise AssertionError listing the violations (the first 30) if there are any."""
    bad = check_fills(events, fills, orders, **kw)
    if bad:
        more = f"\n... and {len(bad) - 30} more" if len(bad) > 30 else ""
        raise AssertionError(f"{len(bad)} fill invariant violations:\n" + "\n".join(bad[:30]) + more)
