"""Chaos runs: the live bot against the sandbox while random faults hit it (``stockbridge sandbox chaos``).

The sandbox runs in this process on a running clock; the bot is the real ``stockbridge live
--attach`` in a child process, so that a ``kill -9`` is one. A seeded :func:`plan` lays out faults
from issue 12's list over the run's wall time, one every ``gap`` seconds on a random venue: the
bot killed (and restarted from its journal), lost create/cancel answers and lost refusals, dropped
and flapping websockets, a frozen feed, 5xx answers and hanging calls, a rate-limit storm, the
venue's clock skewed by 2 s, a halted symbol, duplicate, reordered and lost fill messages, a
hedge the broker only half fills, and hostile market data (the ``garbage`` fault: truncated JSON,
NaN strings, negative sizes, crossed books, another market's data, oversized frames). (Not a default: it is final, and the venue would be gone for the
rest of the run; tests/faults/test_venue_errors.py covers it.)

After each fault ends (its timed part cleared, or the restarted bot running) the run measures the
*time to recover*: until the bot's journal and the venue agree on which orders of ours are open,
and, at a venue it quotes, a new order of ours has reached the venue. At the end the faults are
cleared, the bot's last run exits cleanly (cancel-all), and the ledger invariants
(execution.sandbox.invariants) are checked against every emulator's ledger.

Units: times are wall seconds from the run's start unless named ``_ns`` (data time, ns UTC).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execution.journal import Journal
from execution.sandbox.faults import GARBAGE_CHANNELS
from execution.sandbox.invariants import ledger_problems, ours, unresolved, venue_secrets
from execution.sandbox.state import write_state
from stockbridge.live_config import LiveVenueConfig

CRYPTO = ("bybit", "kraken")
FLAP_S = 3.0  # a flapping websocket drops this often (wall s)
STARTUP_S = 300.0  # the bot's first quotes, from its start (wall s)
# kind -> (emulator kinds it applies to, timed: the fault lasts a while and is then undone)
MENU: dict[str, tuple[tuple[str, ...], bool]] = {
    "kill": ((), False),
    "lost_ack": (CRYPTO + ("alpaca",), False),
    "lost_refusal": (CRYPTO, False),
    "lost_fill": (CRYPTO + ("alpaca",), False),
    "duplicate_fill": (CRYPTO + ("alpaca",), False),
    "reordered_fill": (CRYPTO + ("alpaca",), False),
    "drop_ws": (CRYPTO + ("alpaca",), False),
    "flapping_ws": (CRYPTO + ("alpaca",), True),
    "freeze_feed": (CRYPTO + ("alpaca",), True),
    "http_5xx": (CRYPTO + ("alpaca",), False),
    "rest_timeout": (CRYPTO + ("alpaca",), False),
    "rate_limit_storm": (CRYPTO, True),
    "clock_skew": (CRYPTO + ("alpaca",), True),
    "halt": (CRYPTO + ("alpaca",), True),
    "hedge_half_fill": (("alpaca",), False),
    "hostile_data": (CRYPTO, False),
}


@dataclass
class Fault:
    """One fault of a plan: ``kind`` (a key of :data:`MENU`) at ``venue`` (None: the bot) from
    ``at_s`` for ``for_s`` wall seconds (timed kinds), and what it measured."""

    kind: str
    venue: str | None
    at_s: float
    for_s: float = 0.0
    end_s: float | None = None        # when it was over (timed part undone, the restarted bot started)
    recovered_s: float | None = None  # time to recover after end_s
    detail: str = ""


def plan(seed: int, seconds: float, venues: dict[str, str], *, gap: tuple[float, float] = (6.0, 14.0),
         warmup_s: float = 20.0, quiet_s: float = 30.0) -> list[Fault]:
    """Faults for a run of ``seconds`` (wall) over ``venues`` (config name -> emulator kind): the
    first after ``warmup_s``, none in the last ``quiet_s``, each kind once before any twice; the
    same seed gives the same plan."""
    rng = random.Random(seed)
    menu = [k for k, (kinds, _) in sorted(MENU.items()) if k == "kill" or any(v in kinds for v in venues.values())]
    out: list[Fault] = []
    deck: list[str] = []
    t = warmup_s
    while t < seconds - quiet_s:
        if not deck:  # every kind once, in a random order, then again: a long run meets them all
            deck = rng.sample(menu, len(menu))
        kind = deck.pop()
        kinds, timed = MENU[kind]
        where = sorted(n for n, k in venues.items() if k in kinds)
        venue = None if kind == "kill" else rng.choice(where)
        f = Fault(kind, venue, round(t, 3), round(rng.uniform(5.0, 20.0), 3) if timed else 0.0)
        if kind == "clock_skew":
            f.detail = f"{rng.choice((-2000, 2000)):+d} ms"
        elif kind == "hostile_data":
            channel = rng.choice(sorted(GARBAGE_CHANNELS))
            f.detail = f"{rng.choice(GARBAGE_CHANNELS[channel])} {channel}"
        out.append(f)
        t += rng.uniform(*gap)
    return out


def _symbol(sv) -> str:
    return next(iter(sv.emu.markets))


def inject(f: Fault, sv, speed: float) -> None:
    """Set fault ``f`` at sandbox venue ``sv`` (the timed kinds are undone by :func:`undo`)."""
    k = f.kind
    if k == "lost_ack":
        sv.fault("lose", what="ack", count=1)
    elif k == "lost_refusal":
        sv.fault("lose", what="refusal", count=1)
    elif k == "lost_fill":
        sv.fault("lose", what="fill", count=1)
    elif k == "duplicate_fill":
        sv.fault("duplicate", count=3)
    elif k == "reordered_fill":
        sv.fault("reorder", count=2)
    elif k in ("drop_ws", "flapping_ws"):
        sv.fault("drop_ws", scope="all")
    elif k == "freeze_feed":
        sv.fault("freeze_feed")
    elif k == "http_5xx":
        sv.fault("http_error", status=503, count=5)
    elif k == "rest_timeout":
        sv.fault("timeout", count=2)
    elif k == "rate_limit_storm":
        sv.fault("rate_limit", seconds=f.for_s * speed)  # the storm's length in data time
    elif k == "clock_skew":
        sv.fault("skew_clock", ms=float(f.detail.split()[0]))
    elif k == "halt":
        sv.fault("halt", symbol=_symbol(sv))
    elif k == "hedge_half_fill":
        sv.fault("partial_fill", fraction=0.5, count=1)
    elif k == "hostile_data":
        what, channel = f.detail.split()
        sv.fault("garbage", what=what, channel=channel, count=3)
    else:
        raise ValueError(f"no injection for {k!r}")


def undo(f: Fault, sv) -> None:
    k = f.kind
    if k == "freeze_feed":
        sv.fault("unfreeze_feed")
    elif k == "clock_skew":
        sv.fault("skew_clock", ms=0.0)
    elif k == "halt":
        sv.fault("resume", symbol=_symbol(sv))
    # a storm ends by itself (data time); flapping stops when no more drops are sent


@dataclass
class ChaosResult:
    faults: list[Fault]
    fills: dict[str, int]
    restarts: int
    problems: list[str]               # invariant violations (and a bot that did not exit cleanly)
    exit_code: int | None
    seconds: float
    run_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def unrecovered(self) -> list[Fault]:
        """Faults after which the bot had not recovered by the end of the run."""
        return [f for f in self.faults if f.end_s is not None and f.recovered_s is None]

    def by_kind(self) -> list[tuple[str, int, int, float | None, float | None]]:
        """(kind, injected, recovered, p50, max time to recover in s) per kind, by kind."""
        rows = []
        for kind in sorted({f.kind for f in self.faults}):
            fs = [f for f in self.faults if f.kind == kind]
            rec = sorted(f.recovered_s for f in fs if f.recovered_s is not None)
            p50 = rec[(len(rec) - 1) // 2] if rec else None
            rows.append((kind, len(fs), len(rec), p50, rec[-1] if rec else None))
        return rows


class Bot:
    """The `stockbridge live --attach` child process, restarted after each kill; its output is
    appended to RUN/bot.log."""

    def __init__(self, config: Path, state: Path, run_dir: Path, env: dict[str, str], skip: list[str]):
        self.config, self.state, self.run_dir, self.env, self.skip = config, state, run_dir, env, skip
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, seconds: float) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / "bot.log", "ab")
        try:
            args = [sys.executable, "-m", "stockbridge.cli", "live", str(self.config), "--attach", str(self.state),
                    "--out", str(self.run_dir), "--duration", f"{max(seconds, 1.0):.0f}s", "--metrics-port", "-1"]
            for s in self.skip:
                args += ["--skip-venue", s]
            self.proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=asyncio.subprocess.STDOUT,
                                                             env=self.env)
        finally:
            log.close()
        self.starts += 1

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Recovery:
    """Whether the bot has recovered at a venue: its journal and the venue agree on which orders of
    ours are open, and (at a venue it quotes) an order of ours newer than the fault's end reached it."""

    def __init__(self, journal_path: Path):
        self.path = journal_path
        self.journal: Journal | None = None

    def _journal(self) -> Journal | None:
        if self.journal is None and self.path.exists():
            self.journal = Journal(self.path)
        return self.journal

    def ok(self, sv, since_ns: int, quotes: bool) -> bool:
        j = self._journal()
        if j is None:
            return False
        try:
            live = {o["client_id"] for o in j.open_orders(sv.name)}
        except Exception:  # the bot is writing; ask again at the next poll
            return False
        mine = ours(sv)
        open_here = {o.client_id for o in mine if not o.is_final}
        fresh = not quotes or any(o.created > since_ns for o in mine)
        return live == open_here and fresh

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


async def trading(bot: Bot, venues: list, within_s: float) -> bool:
    """Whether the bot has an order of ours at each of ``venues`` within ``within_s`` (it may compile
    its trader core first, from a cold numba cache a minute or more)."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        if not bot.alive():
            return False
        if all(ours(sv) for sv in venues):
            return True
        await asyncio.sleep(0.2)
    return False


async def run_chaos(cfg, config: Path, data: Path, out: Path, *, seconds: float, seed: int, speed: float,
                    start_ns: int | None, progress=None) -> ChaosResult:
    """Run the bot for ``seconds`` of wall time against a sandbox of ``cfg``'s emulated venues while
    :func:`plan`'s faults hit it; ``progress(done_s, total_s, last fault)`` a few times a second."""
    from execution.sandbox.sandbox import Sandbox, emulated_kind

    venues = [n for n, v in cfg.venues.items() if emulated_kind(v)]
    skip = [n for n in cfg.venues if n not in venues]
    sb = Sandbox(cfg, data, speed=speed, start_ns=start_ns, venues=venues, show_data_time=True)
    await sb.start()
    out.mkdir(parents=True, exist_ok=True)
    state, run_dir = out / "sandbox.json", out / "run"
    write_state(sb, state)
    env = dict(os.environ)
    for name, sv in sb.venues.items():
        names = LiveVenueConfig.attached_sandbox(name)
        env[names.api_key_env], env[names.api_secret_env] = sv.api_key, sv.secret
    kinds = {n: sv.kind for n, sv in sb.venues.items()}
    faults = plan(seed, seconds, kinds)
    bot = Bot(config, state, run_dir, env, skip)
    rec = Recovery(run_dir / cfg.live.journal)
    quoting = {n for n, k in kinds.items() if k != "alpaca"}  # the broker only hedges
    began = time.monotonic()
    now = lambda: time.monotonic() - began  # noqa: E731 - the plan's clock: from the bot's first quotes
    pending: list[tuple[Fault, int]] = []  # over, not yet recovered: (fault, data ns of its end)
    timed: list[Fault] = []
    flap: dict[int, float] = {}  # flapping fault -> when its next drop is due
    exit_code = None
    note = "starting the bot"
    try:
        await bot.start(seconds)
        if not await trading(bot, [sb[n] for n in quoting], STARTUP_S):
            return ChaosResult(faults, {}, 0, [f"the bot did not quote within {STARTUP_S:g} s of starting "
                                                f"(see {run_dir / 'bot.log'})"], bot.proc.returncode, 0.0, run_dir)
        began = time.monotonic()
        queue = list(faults)
        while now() < seconds:
            t = now()
            while queue and queue[0].at_s <= t:
                f = queue.pop(0)
                if f.kind == "kill":
                    await bot.kill()
                    await bot.start(seconds - now())
                    f.end_s = now()
                    pending.append((f, sb.clock.data_now()))
                else:
                    inject(f, sb[f.venue], speed)
                    if MENU[f.kind][1]:
                        timed.append(f)
                    else:
                        f.end_s = now()
                        pending.append((f, sb.clock.data_now()))
                note = f"{f.kind}" + (f" at {f.venue}" if f.venue else "")
            for f in list(timed):
                if f.kind == "flapping_ws" and t >= flap.get(id(f), f.at_s + FLAP_S) and t < f.at_s + f.for_s:
                    sb[f.venue].fault("drop_ws", scope="all")  # a drop every FLAP_S while it lasts
                    flap[id(f)] = t + FLAP_S
                if t >= f.at_s + f.for_s:
                    undo(f, sb[f.venue])
                    timed.remove(f)
                    f.end_s = now()
                    pending.append((f, sb.clock.data_now()))
            for f, since in list(pending):
                names = list(kinds) if f.venue is None else [f.venue]
                if all(rec.ok(sb[n], since, n in quoting) for n in names):
                    f.recovered_s = round(now() - f.end_s, 3)
                    pending.remove((f, since))
            if progress:
                progress(now(), seconds, note)
            if not bot.alive():
                exit_code = bot.proc.returncode if bot.proc else None
                break
            await asyncio.sleep(0.25 if not queue or queue[0].at_s - now() > 0.25 else max(queue[0].at_s - now(), 0.0))
        for f in timed:  # leave no fault behind for the clean exit
            undo(f, sb[f.venue])
        for sv in sb.venues.values():
            sv.fault("clear")
        if bot.proc is not None and exit_code is None:
            try:
                exit_code = await asyncio.wait_for(bot.proc.wait(), 180)
            except asyncio.TimeoutError:
                await bot.kill()
                exit_code = None
        rec.close()
        problems: list[str] = []
        if exit_code != 0:
            problems.append(f"the bot's last run did not exit cleanly (exit code {exit_code}; see {run_dir / 'bot.log'})")
        journal = Journal(run_dir / cfg.live.journal)
        try:
            problems += ledger_problems(sb.venues.values(), journal, run_dir, venue_secrets(sb.venues.values()))
            left_unknown = {n: len(unresolved(sv, journal)) for n, sv in sb.venues.items()}
        finally:
            journal.close()
        fills = {n: len(sv.account.fills) for n, sv in sb.venues.items()}
        return ChaosResult(faults, fills, bot.starts - 1, problems, exit_code, round(now(), 1), run_dir,
                           extra={"faults_by_venue": Counter(f.venue or "bot" for f in faults),
                                  "unresolved_at_exit": left_unknown})
    finally:
        await bot.kill()
        await asyncio.wait_for(sb.stop(), 10)
