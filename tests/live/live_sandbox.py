"""The live bot against the in-process emulators on a stepped clock: start a session, step the
market, stop, and read the emulator's ledger (the truth) to compare with the journal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execution.live import VenuePlan, build_session, close_adapters, open_adapters
from execution.sandbox.sandbox import Sandbox
from execution.sandbox.venue import data_start

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo.toml"
HOUR_NS = 3600 * 10**9
# Thu 2025-07-03 (the test store's day): the regular session opens at 13:30 UTC
REGULAR_H = 13.6


def with_live(cfg, **live: Any):
    """``cfg`` with ``[live]`` (and ``[live.guards]`` through ``guards=dict(...)``) keys replaced."""
    guards = live.pop("guards", {})
    lc = cfg.live.model_copy(update={**live, "guards": cfg.live.guards.model_copy(update=guards)})
    return cfg.model_copy(update={"live": lc})


@dataclass
class LiveRun:
    sb: Sandbox
    session: Any
    adapters: dict
    task: asyncio.Task | None = None

    @property
    def runner(self):
        return self.session.runner

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run(None))

    async def settle(self, wall_s: float = 3.0) -> None:
        """Let the bot finish reacting: until no call of it waits for a venue's answer (at most ``wall_s``
        of wall time: a stepped venue answers some calls only once its clock moves)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wall_s
        await asyncio.sleep(0.01)
        while loop.time() < until and (self.runner.submits or any(
                o.state.value in ("pending_new", "pending_cancel") for o in self.runner.om.orders.values())):
            await asyncio.sleep(0.005)

    async def step(self, n: int, seconds: float = 1.0) -> None:
        """``n`` steps of ``seconds`` of market time, letting the bot react after each."""
        for _ in range(n):
            await self.sb.step(seconds)
            await self.settle()
            if self.task is not None and self.task.done():
                self.task.result()  # a failure surfaces here

    async def stop(self, max_steps: int = 600) -> str:
        """Stop the run and keep the market moving until its cancel-all has finished."""
        self.runner.stop("test")
        for _ in range(max_steps):
            if self.task.done() or not self.sb.clock.stepped:  # a running clock moves by itself
                break
            await self.sb.step(0.2)
            await asyncio.sleep(0.01)
        return await asyncio.wait_for(self.task, 30)


async def start_live(cfg, store: Path, run_dir: Path, *, venues=("bybit", "kraken", "broker"),
                     start_h: float = REGULAR_H, sandbox: Sandbox | None = None, before=None) -> LiveRun:
    """A started sandbox (or ``sandbox``), the adapters and a reconciled session (not yet running).
    ``before(sb, adapters)``: a coroutine run after the adapters are open and before the session
    is built (to leave orders an earlier run would have left)."""
    venues = list(venues)
    if sandbox is None:
        t0 = data_start(store, cfg, venues)
        sandbox = Sandbox(cfg, store, stepped=True, start_ns=t0 + int(start_h * HOUR_NS), venues=venues,
                          show_data_time=True)
        await sandbox.start()
    plan = VenuePlan("sandbox", venues, {n: "not in this test" for n in cfg.venues if n not in venues})
    adapters = await open_adapters(cfg, plan, sandbox=sandbox, call_timeout_s=cfg.live.call_timeout_ms / 1000,
                                   rate_scale=50.0)
    if before is not None:
        await before(sandbox, adapters)
    secrets = [s for v in sandbox.venues.values() for s in (v.api_key, v.secret)]
    session = await build_session(cfg, str(CONFIG), run_dir, plan, adapters, clock=sandbox.clock.data_now,
                                  start_ns=sandbox.clock.data_now(), horizon_ns=6 * HOUR_NS, secrets=secrets)
    return LiveRun(sandbox, session, adapters)


async def close_live(run: LiveRun, stop_sandbox: bool = True) -> None:
    if run.task is not None and not run.task.done():
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
    await close_adapters(run.adapters)
    run.session.journal.close()
    if stop_sandbox:
        await asyncio.wait_for(run.sb.stop(), 10)
