"""The state file of a running sandbox (`stockbridge sandbox up`): what `stockbridge sandbox faults`
and `stockbridge live --attach` need to reach its venues from another process.

Per venue: its kind, control URL and client URLs. Not its API key and secret: keys never go into a
file; ``sandbox up`` prints them and a bot gets them from environment variables, as it would a real
venue's (``[live.venues.NAME]``). The clock: a data time
(ns UTC) and the ``CLOCK_MONOTONIC`` reading (ns) taken together, and the speed; a process on the
same machine computes the sandbox's data time from its own monotonic clock. A stepped clock moves
only when told through the control API, so a process attached to one cannot follow it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stockbridge.errors import ConfigError


def write_state(sandbox: Any, path: Path) -> None:
    """Write ``sandbox``'s (execution.sandbox.Sandbox, started) state to ``path``."""
    c = sandbox.clock
    state = {"clock": {"data_ns": c.data_now(), "mono_ns": time.monotonic_ns(), "speed": c.speed, "stepped": c.stepped,
                       "show_data_time": c.show_data_time},
             "venues": {v.name: {"kind": v.kind, "control": v.server.http_url, "urls": v.urls()}
                        for v in sandbox.venues.values()}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file


def read_state(path: Path) -> dict[str, Any]:
    """The state file's contents; a missing or unreadable one is a one-line error."""
    if not path.exists():
        raise ConfigError(str(path), None, "no running sandbox found (start one with `stockbridge sandbox up CONFIG`)")
    try:
        state = json.loads(path.read_text())
        state["venues"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(str(path), None, "not a sandbox state file (written by `stockbridge sandbox up`)") from None
    return state


@dataclass
class AttachedVenue:
    """A venue of a sandbox running in another process: what the clients need (as SandboxVenue)."""

    name: str
    kind: str
    api_key: str
    secret: str
    control: str
    _urls: dict[str, str]

    def urls(self) -> dict[str, str]:
        return dict(self._urls)


class AttachedClock:
    """The other process's replay clock, from this process's monotonic clock (ns UTC of data time)."""

    def __init__(self, data_ns: int, mono_ns: int, speed: float):
        self.speed, self._data_ns, self._mono_ns = float(speed), int(data_ns), int(mono_ns)

    def data_now(self) -> int:
        return self._data_ns + int((time.monotonic_ns() - self._mono_ns) * self.speed)


class AttachedSandbox:
    """The venues and clock of the sandbox whose state file is ``path`` (for ``stockbridge live --attach``);
    ``keys``: venue name -> (API key, secret), from the environment. The bot's trader core runs on
    data time, so the sandbox must show it (``sandbox up --data-time``)."""

    def __init__(self, path: Path, keys: dict[str, tuple[str, str]]):
        state = read_state(path)
        c = state.get("clock") or {}
        if c.get("stepped"):
            raise ConfigError(str(path), "clock", "the sandbox's clock is stepped; a bot in another process cannot follow it")
        if not c.get("show_data_time"):
            raise ConfigError(str(path), "clock", "the sandbox's venues show wall time; start it with "
                                                  "`stockbridge sandbox up CONFIG --data-time` for the live bot")
        self.clock = AttachedClock(c["data_ns"], c["mono_ns"], c["speed"])
        self.venues = {n: AttachedVenue(n, v["kind"], *keys[n], v["control"], v["urls"])
                       for n, v in state["venues"].items() if n in keys}
        self.path = path

    def __getitem__(self, name: str) -> AttachedVenue:
        if name not in self.venues:
            raise ConfigError(str(self.path), name, f"the running sandbox has no venue {name!r} "
                                                    f"(it has: {', '.join(self.venues)})")
        return self.venues[name]


__all__ = ["AttachedSandbox", "AttachedVenue", "read_state", "write_state"]
