"""A running sandbox: one emulator per configured venue that has one, on one replay clock.

:class:`Sandbox` is the Python handle tests and ``stockbridge sandbox up`` use: it builds each
venue's emulator from the config and the store, starts its server on a free loopback port, creates
the account it accepts (API key and secret printed by the CLI, never logged), and lets a test step
the clock, set faults and read the venue's ledger.

Which venues get an emulator: a venue whose ``ccxt_id`` is ``bybit``, ``kraken`` or ``alpaca``.

Opening balances per account: ``backtest.initial_cash`` of each quote currency and
``risk.max_position`` of each base token (so both sides can be quoted from the start).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execution.sandbox.clock import ReplayClock
from execution.sandbox.faults import FaultRecord
from execution.sandbox.ledger import Account
from execution.sandbox.server import VenueServer
from execution.sandbox.venue import VenueEmulator, data_start


def _kinds() -> dict[str, Any]:
    from execution.sandbox import bybit

    kinds: dict[str, Any] = {"bybit": (bybit.new_emulator, bybit.BybitServer)}
    try:
        from execution.sandbox import kraken

        kinds["kraken"] = (kraken.new_emulator, kraken.KrakenServer)
    except ImportError:
        pass
    try:
        from execution.sandbox import alpaca

        kinds["alpaca"] = (alpaca.new_emulator, alpaca.AlpacaServer)
    except ImportError:
        pass
    return kinds


def emulated_kind(venue) -> str | None:
    """The emulator kind for a config venue ('bybit', 'kraken', 'alpaca'), None if there is none."""
    return venue.ccxt_id if venue.ccxt_id in _kinds() else None


@dataclass
class SandboxVenue:
    """One emulated venue of a sandbox."""

    name: str           # config venue name
    kind: str           # bybit / kraken / alpaca
    emu: VenueEmulator
    server: VenueServer
    api_key: str
    secret: str

    @property
    def account(self) -> Account:
        return self.emu.accounts[self.api_key]

    def urls(self) -> dict[str, str]:
        return self.server.urls()

    def fault(self, kind: str, **params: Any) -> FaultRecord:
        """Set a fault now (execution/sandbox/faults.py lists the kinds)."""
        return self.emu.fault(kind, **params)

    def __repr__(self) -> str:
        return f"SandboxVenue({self.name!r}, kind={self.kind!r}, urls={self.urls()})"


def credentials(kind: str) -> tuple[str, str]:
    """A fresh API key and secret in the form the venue issues them (Kraken: base64 secret)."""
    key = f"sbx-{kind}-{secrets.token_hex(8)}"
    if kind == "kraken":
        return key, base64.b64encode(secrets.token_bytes(64)).decode()
    return key, secrets.token_hex(24)


class Sandbox:
    """Emulators for the venues of a config, replaying ``data_dir`` on one clock."""

    def __init__(self, cfg, data_dir: str | Path, *, speed: float = 1.0, stepped: bool = False,
                 start_ns: int | None = None, venues: list[str] | None = None, show_data_time: bool = False):
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        kinds = _kinds()
        chosen = venues if venues is not None else [n for n, v in cfg.venues.items() if v.ccxt_id in kinds]
        for n in chosen:
            if cfg.venues[n].ccxt_id not in kinds:
                raise ValueError(f"venue {n!r} (ccxt_id {cfg.venues[n].ccxt_id!r}) has no sandbox emulator "
                                 f"(available: {', '.join(kinds)})")
        self.names = chosen
        first = data_start(self.data_dir, cfg, chosen)
        self.clock = ReplayClock(first if start_ns is None else start_ns, speed=speed, stepped=stepped,
                                 show_data_time=show_data_time)
        self.venues: dict[str, SandboxVenue] = {}
        self._kinds = kinds

    async def start(self) -> "Sandbox":
        """Build each emulator (replaying the store up to the clock's start) and start its server."""
        for n in self.names:
            kind = self.cfg.venues[n].ccxt_id
            make, server_cls = self._kinds[kind]
            emu = await asyncio.to_thread(make, self.cfg, n, self.data_dir, self.clock)
            key, secret = credentials(kind)
            balances: dict[str, float] = {}
            for m in emu.markets.values():
                balances.setdefault(m.quote, self.cfg.backtest.initial_cash)
                balances.setdefault(m.base, self.cfg.risk.max_position)
            emu.add_account(key, secret, balances)
            server = server_cls(emu)
            await server.start()
            self.venues[n] = SandboxVenue(n, kind, emu, server, key, secret)
        return self

    async def stop(self) -> None:
        for v in self.venues.values():
            await v.server.stop()

    async def __aenter__(self) -> "Sandbox":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def step(self, seconds: float) -> int:
        """Move the stepped clock by ``seconds`` of market time, carry every venue to it, and let the
        servers' writers run once. Returns the new data time (ns UTC)."""
        t = self.clock.step(seconds)
        for v in self.venues.values():
            v.emu.advance()
        await asyncio.sleep(0)
        return t

    def release(self, speed: float | None = None) -> None:
        """Let a stepped sandbox's market run from where it stands (ReplayClock.release)."""
        self.clock.release(speed)
        for v in self.venues.values():
            v.server.drive()

    def __getitem__(self, name: str) -> SandboxVenue:
        return self.venues[name]
