"""The live terminal view: one rich table per refresh from :meth:`LiveRunner.snapshot`.

Per venue: market bid/ask, our quotes, position (tokens, relative to the start-up baseline),
balance value against the exposure cap, fills, status (ok / stale book / stopped / not traded) and
its guards; above it the run's clock, session and time to the next hedge window, PnL raw and after
haircut, net delta, decisions and order counts.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from stockbridge.sessions import STATE_NAMES


def _px(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.2f}"


def next_hedge_window_s(tr: Any, now: int) -> float:
    """Seconds until the hedge venue's session next allows hedging (0 if it does now, inf if never)."""
    b, s, mask = tr.sess_boundaries, tr.sess_states, tr.hedge_mask
    k = int(np.searchsorted(b, now, side="right")) - 1
    for j in range(max(k, 0), len(s)):
        if mask[s[j]]:
            return max(0.0, (int(b[j]) - now) / 1e9) if j > k else 0.0
    return math.inf


def _dur(seconds: float) -> str:
    if seconds == 0:
        return "open now"
    if not math.isfinite(seconds):
        return "none ahead"
    h, rem = divmod(int(seconds), 3600)
    return f"in {h}h{rem // 60:02d}m" if h else f"in {rem // 60}m{rem % 60:02d}s"


def render(snap: dict[str, Any], core: Any) -> Group:
    """The view of one snapshot (a rich renderable)."""
    now = snap["now"]
    when = datetime.fromtimestamp(now / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = Text.assemble(
        ("stockbridge live  ", "bold"), f"{when}  session {STATE_NAMES[snap['session']]}  ",
        f"hedge window {_dur(next_hedge_window_s(core.tr, now))}  ",
        f"PnL {snap['pnl_raw']:+,.2f} raw / {snap['pnl_haircut']:+,.2f} after haircut  ",
        f"net delta {snap['net_delta']:+.2f} sh  fair {_px(snap['fair'])}  decisions {snap['decisions']:,}")
    t = Table(show_edge=False, pad_edge=False)
    for col, just in (("venue", "left"), ("mkt bid", "right"), ("mkt ask", "right"), ("our bid", "right"),
                      ("our ask", "right"), ("position", "right"), ("exposure / cap", "right"), ("fills", "right"),
                      ("orders open", "right"), ("status", "left")):
        t.add_column(col, justify=just)
    orders = snap["orders"]["orders"]
    guards = snap["guards"]["venues"]
    for name, v in snap["venues"].items():
        live = sum(n for st, n in orders.get(name, {}).items() if st in ("open", "partially_filled", "pending_cancel",
                                                                        "pending_new", "unknown"))
        status = v["status"]
        g = guards.get(name, {})
        if v["traded"] and g.get("balance", {}).get("reason"):
            status = "stopped: balance"
        style = "green" if status == "ok" else "dim" if not v["traded"] else "yellow"
        t.add_row(name, _px(v["bid"]), _px(v["ask"]), _px(v["our_bid"]), _px(v["our_ask"]),
                  f"{v['position']:+.4g}", f"{v['exposure']:,.0f} / {v['cap']:,.0f}", str(snap["fills"].get(name, 0)),
                  str(live), Text(status, style=style))
    dd = snap["guards"]["drawdown"]
    foot = Text(f"kill switch {dd['state']}  drawdown {dd['drawdown_raw']:,.2f} raw / {dd['drawdown_haircut']:,.2f} "
                f"after haircut (limits {dd['limit_raw']:,.0f} / {dd['limit_haircut']:,.0f})  "
                f"events {snap['events']:,}", style="dim")
    return Group(head, t, foot)


__all__ = ["next_hedge_window_s", "render"]
