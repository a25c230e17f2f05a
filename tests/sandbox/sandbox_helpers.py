"""Bounded waits for the sandbox tests."""

from __future__ import annotations

import asyncio


async def within(seconds: float, coro):
    """Await ``coro`` for at most ``seconds``."""
    return await asyncio.wait_for(coro, seconds)


async def step_until(sb: Sandbox, done, step_s: float = 5.0, max_steps: int = 400) -> int:
    """Step the clock until ``done()`` is true (a sync predicate); returns the steps taken."""
    for k in range(max_steps):
        if done():
            return k
        await sb.step(step_s)
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met after {max_steps} steps of {step_s} s")


async def subscribed(server, topic: str, seconds: float = 5.0) -> None:
    """Wait until some websocket connection of ``server`` is subscribed to ``topic``."""
    async def wait():
        while not any(topic in c.topics for c in server.conns):
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), seconds)
