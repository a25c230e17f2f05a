"""The ledger invariants of issue 12: what a run of the live bot wrote, checked against the emulators'
own ledgers (the truth), from the journal alone, so that they hold for a bot in another process
(``stockbridge sandbox chaos`` kills and restarts it) as for one in the test's own.

Each check returns a list of problems (one line each, naming the venue); empty means it holds:

- :func:`fill_problems`: every fill of ours at the venue is in the journal exactly once, under the
  trade id the venue's API shows, with its side, price, qty and fee (quote currency);
- :func:`sent_problems`: no two orders share a client id, every order the venue saw was a journalled
  intent, and none was sent twice for one intent (the venue never refused a duplicate client id);
- :func:`position_problems`: the journal's position (its fills, less fees taken in the base token) is
  the venue's base balance less the baseline the run recorded at start, to well inside a lot;
- :func:`journal_order_problems`: the orders the journal holds as live at the venue are the ones
  open there: none forgotten, none left "open" after the venue closed it;
- :func:`resting_problems`: after a clean exit nothing of ours rests at the venue;
- :func:`secret_problems`: no API key or secret in any file of the run directory (read as bytes).

``sv`` is a sandbox venue (``execution.sandbox.sandbox.SandboxVenue``); ``journal`` an open
:class:`execution.journal.Journal`. Units: prices and fees quote currency, sizes tokens (shares).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stockbridge.trader import CID_TEXT_PREFIX

QTY_TOL = 1e-9  # tokens: far inside any lot
FEE_TOL = 5e-9  # quote currency: Kraken shows a fill's fee to 8 decimals, the ledger keeps it unrounded


def ours(sv) -> list:
    """The venue's orders of our account that the bot sent (by its client-id prefix)."""
    return [o for o in sv.account.orders.values() if o.client_id.startswith(CID_TEXT_PREFIX)]


def ledger_fills(sv) -> dict[str, Any]:
    """The emulator's fills of our account by the trade id its API shows: the ledger's own id, or at
    Alpaca (whose API gives a fill no id that REST and the stream share) the order id with the order's
    cumulative filled qty after the fill (execution.alpaca_venue.fill_id)."""
    fills = sv.account.fills
    if sv.kind != "alpaca":
        return {f.trade_id: f for f in fills}
    from execution.alpaca_venue import fill_id

    out, cum = {}, {}
    for f in fills:
        cum[f.order_id] = cum.get(f.order_id, 0.0) + f.qty
        out[fill_id(f.order_id, cum[f.order_id])] = f
    return out


def fill_problems(sv, journal) -> list[str]:
    led = ledger_fills(sv)
    rows = journal.fills(sv.name)
    jr = {f["trade_id"]: f for f in rows}
    out = []
    if set(jr) != set(led):
        out.append(f"{sv.name}: journal and ledger fills differ: missing {sorted(set(led) - set(jr))}, "
                   f"extra {sorted(set(jr) - set(led))}")
    if len(rows) != len(jr):
        out.append(f"{sv.name}: {len(rows) - len(jr)} fill(s) in the journal twice")
    for tid in sorted(set(led) & set(jr)):
        f, j = led[tid], jr[tid]
        side = 1 if f.side == "buy" else -1
        if not (j["side"] == side and math.isclose(j["price"], f.price, rel_tol=1e-12)
                and math.isclose(j["qty"], f.qty, rel_tol=1e-12)
                and math.isclose(j["fee"], f.fee_quote, rel_tol=1e-9, abs_tol=FEE_TOL)):
            out.append(f"{sv.name}: fill {tid} journalled as {j['side']:+d} {j['qty']} @ {j['price']} fee {j['fee']}, "
                       f"the venue has {side:+d} {f.qty} @ {f.price} fee {f.fee_quote}")
    return out


def sent_problems(sv, journal) -> list[str]:
    news = [i["client_id"] for i in journal.intents() if i["action"] == "new"]
    ids = [o.client_id for o in ours(sv)]
    out = []
    if len(news) != len(set(news)):
        out.append("one client id journalled for two new orders")
    if len(ids) != len(set(ids)):
        out.append(f"{sv.name}: two orders share a client id")
    unjournalled = sorted(set(ids) - set(news))
    if unjournalled:
        out.append(f"{sv.name}: orders went out that were never journalled: {unjournalled[:5]}")
    dup = [e["client_id"] for e in journal.events() if e["venue"] == sv.name and e["kind"] == "reject"
           and "uplicate" in str(e["detail"])]
    if dup:
        out.append(f"{sv.name}: orders sent again under the same client id: {dup[:5]}")
    return out


def position_problems(sv, journal) -> list[str]:
    m = next(iter(sv.emu.markets.values()))
    fills = journal.fills(sv.name)
    booked = sum(f["side"] * f["qty"] for f in fills) - sum(f["fee_cost"] for f in fills if f["fee_currency"] == m.base)
    baseline = journal.meta(f"baseline.{sv.name}")
    if baseline is None:
        return [f"{sv.name}: the journal has no baseline position (the run never started trading there)"]
    held = sv.account.balance(m.base).total - float(baseline)
    if abs(held - booked) > QTY_TOL:
        return [f"{sv.name}: the journal's position {booked:.9g} {m.base} is not the venue's {held:.9g}"]
    return []


def resting_problems(sv) -> list[str]:
    left = [o.client_id for o in ours(sv) if not o.is_final]
    return [f"{sv.name}: orders of ours still resting after the exit: {left[:5]}"] if left else []


UNRESOLVED = ("pending_new", "unknown")  # the bot does not know yet: the next start looks them up


def unresolved(sv, journal) -> list[str]:
    """Orders whose create the journal never heard answered (a timeout, a lost reply, the exit came
    first): not a violation, the bot says it does not know, and the next start looks them up by
    client id; any fill of theirs the journal lacks shows in :func:`fill_problems`."""
    return sorted(o["client_id"] for o in journal.open_orders(sv.name) if o["state"] in UNRESOLVED)


def journal_order_problems(sv, journal) -> list[str]:
    """The orders the journal holds as live at the venue (open, partially filled, cancel sent) are
    the ones open there; those it does not know about yet (:func:`unresolved`) are not counted."""
    live = {o["client_id"]: o["state"] for o in journal.open_orders(sv.name) if o["state"] not in UNRESOLVED}
    open_here = {o.client_id for o in ours(sv) if not o.is_final}
    ghosts = sorted(c for c in live if c not in open_here)
    orphans = sorted(c for c in open_here if c not in live and c not in unresolved(sv, journal))
    out = []
    if ghosts:
        out.append(f"{sv.name}: the journal holds {len(ghosts)} order(s) as live that the venue has closed: "
                   + ", ".join(f"{c} ({live[c]})" for c in ghosts[:5]))
    if orphans:
        out.append(f"{sv.name}: open at the venue, not live in the journal: {orphans[:5]}")
    return out


def secret_problems(run_dir: Path, secrets: Mapping[str, str]) -> list[str]:
    """``secrets``: what each is ("the secret of bybit") -> its value."""
    out = []
    for f in sorted(Path(run_dir).rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            out += [f"{f} holds {what}" for what, s in secrets.items() if s and s.encode() in data]
    return out


def ledger_problems(venues: Iterable, journal, run_dir: Path, secrets: Mapping[str, str], *,
                    stopped: bool = True) -> list[str]:
    """Every check above for each sandbox venue of ``venues`` (``stopped``: the run has ended, its
    cancel-all done)."""
    journal.flush()
    out = []
    for sv in venues:
        out += (fill_problems(sv, journal) + sent_problems(sv, journal) + position_problems(sv, journal)
                + journal_order_problems(sv, journal))
        if stopped:
            out += resting_problems(sv)
    return out + secret_problems(run_dir, secrets)


def venue_secrets(venues: Iterable) -> dict[str, str]:
    """The API key and secret of each sandbox venue, by what they are."""
    return {f"{what} of {sv.name}": s for sv in venues for what, s in (("the API key", sv.api_key), ("the secret", sv.secret))}
