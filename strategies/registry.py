"""Find strategies: built-ins and installed plugins, both through the ``stockbridge.strategies`` entry points.

A plugin distribution declares ``[project.entry-points."stockbridge.strategies"] <name> = "<pkg>:SPEC"``
where ``SPEC`` is a :class:`strategies.base.StrategySpec`. stockbridge declares its built-ins the
same way in its pyproject.toml; :data:`BUILTINS` is the same list, used instead of stockbridge's own
installed metadata so built-ins are found in a source checkout that was never installed, are listed
once, and are right even when the installed metadata is stale.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

from stockbridge.errors import ConfigError, StockbridgeError
from strategies.base import StrategyParams, StrategySpec

GROUP = "stockbridge.strategies"
BUILTIN_SOURCE = "built-in"
BUILTINS: dict[str, str] = {
    "fixed_spread": "strategies.fixed_spread:SPEC",
    "avellaneda_stoikov": "strategies.avellaneda_stoikov:SPEC",
    "glft": "strategies.glft:SPEC",
    "cross_venue_arb": "strategies.cross_venue_arb:SPEC",
}


class PluginError(StockbridgeError):
    """An installed strategy plugin cannot be loaded or clashes with another strategy."""


class UnknownStrategyError(StockbridgeError, LookupError):
    """No built-in or installed plugin has this name."""


@dataclass(frozen=True)
class Registered:
    spec: StrategySpec
    source: str  # "built-in" or "<distribution> <version>"


def available() -> dict[str, Registered]:
    """Every strategy: built-ins first (in :data:`BUILTINS` order), then plugins by name."""
    found = _entry_points()
    return {name: _load(name, *found[name]) for name in [*BUILTINS, *sorted(set(found) - set(BUILTINS))]}


def names() -> dict[str, str]:
    """name -> source of every strategy, without importing any plugin."""
    return {name: source for name, (_, source) in _entry_points().items()}


def get(name: str) -> StrategySpec:
    """The strategy called ``name``; loads only that plugin, so a broken unrelated plugin does not matter."""
    found = _entry_points()
    if name not in found:
        # repr: the name comes from a config or the command line, and may hold a line break
        raise UnknownStrategyError(f"unknown strategy {name!r} (available: {', '.join(found)})")
    return _load(name, *found[name]).spec


def from_config(config, path: str | Path = "<config>") -> tuple[StrategySpec, StrategyParams]:
    """The spec and validated params of ``config.strategy`` (a ``StockbridgeConfig``); errors name the key."""
    if config.strategy is None:
        raise ConfigError(str(path), "strategy", "no [strategy] table (set strategy.name, see `stockbridge strategies list`)")
    try:
        spec = get(config.strategy.name)
    except UnknownStrategyError as exc:
        raise ConfigError(str(path), "strategy.name", str(exc)) from None
    return spec, spec.parse_params(config.strategy.params, str(path))


def _entry_points() -> dict[str, tuple[str, str]]:
    """name -> (target 'module:attr', source) over built-ins and installed entry points, clashes refused."""
    found = {name: (target, BUILTIN_SOURCE) for name, target in BUILTINS.items()}
    for ep in md.entry_points(group=GROUP):
        if ep.dist is not None and ep.dist.name == "stockbridge":
            continue  # our own built-ins: BUILTINS is authoritative even if installed metadata is stale
        source = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        if name_taken := found.get(ep.name):
            target, other = name_taken
            if target == ep.value:
                continue  # one distribution seen on two sys.path entries
            what = "the built-in strategy" if other == BUILTIN_SOURCE else f"the strategy from {other}"
            raise PluginError(f"strategy plugin '{ep.name}' ({ep.value}, from {source}) clashes with {what} of the same name; uninstall one")
        found[ep.name] = (ep.value, source)
    return found


def _load(name: str, target: str, source: str) -> Registered:
    where = f"strategy plugin '{name}' ({target}, from {source})"
    try:
        obj = md.EntryPoint(name=name, value=target, group=GROUP).load()
    except Exception as exc:  # any import-time failure of third-party code must name the plugin
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(f"{where} failed to load: {type(exc).__name__}: {detail}") from exc
    if not isinstance(obj, StrategySpec):
        raise PluginError(f"{where} is a {type(obj).__name__}, expected a strategies.base.StrategySpec")
    if obj.name != name:
        raise PluginError(f"{where}: entry point name differs from the spec's name '{obj.name}'")
    return Registered(obj, source)
