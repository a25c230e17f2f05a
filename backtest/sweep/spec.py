"""The sweep file: what to vary, how to search, what to optimise, and the walk-forward windows.

A sweep file is TOML::

    [sweep]
    method = "grid"                 # grid | random | optuna
    seeds = [1, 2]                  # every parameter set runs once per seed (backtest.seed)
    trials = 20                     # random / optuna: parameter sets to try
    sampler_seed = 0                # random / optuna: seed of the sampler (same seed, same trials)
    batch = 4                       # optuna: trials asked at a time (results told in ask order)

    [objective]
    metric = "sharpe"               # see backtest.sweep.objective.METRICS, or any numeric summary key
    window_s = 3600                 # sharpe: seconds per return
    direction = "maximize"

    [grid]                          # dotted config keys -> the values to try
    "strategy.params.gamma" = [0.01, 0.05, 0.1]
    "venues.solana_dex.order_latency_ms" = [200, 400]

    [ranges]                        # random / optuna: dotted config keys -> a range or choices
    "strategy.params.k" = { low = 2.0, high = 40.0, log = true }
    "strategy.params.levels" = { low = 1, high = 3, int = true }

    [walk_forward]                  # optional: fit on window i, test on window i + 1
    windows = 4                     # equal windows over the replay range (or: bounds = [t0, t1, ...])

    [report]
    top = 5                         # equity curves of the best N parameter sets
    heatmap = ["strategy.params.gamma", "strategy.params.k"]

Keys are applied to the *validated* base config's dict (:func:`apply_point`) and the result is
validated again, by the config model and the strategy's params model, before anything runs: a key
that does not exist or a value the config refuses is one line naming the sweep file and the key.
Keys under ``[synth]`` are refused: the market data is made (or read) once and shared by every run.
In ``[grid]`` and ``[ranges]`` a key may be written quoted (``"risk.hedge_band"``) or as nested
tables (``risk.hedge_band``); list items are addressed by index (``backtest.scenarios.0.at``) and a
whole value may be a table or a list (``"backtest.scenarios" = [[], [{kind = "default", ...}]]``).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backtest.sweep.objective import METRICS, SUMMARY_METRICS
from stockbridge.config import StockbridgeConfig, parse_config
from stockbridge.errors import ConfigError
from stockbridge.instruments import to_ns

RANGE_KEYS = {"low", "high", "log", "int", "step", "choices"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """A search range: ``low``..``high`` (uniform, or log-uniform with ``log``; integers with ``int``,
    on a grid of ``step``), or a list of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "Range":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or choices)")
        if not self.high >= self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and not self.low > 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step:
            raise ValueError("a log range cannot have a step")
        if self.int and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int range needs whole-number low and high")
        return self

    def bounds(self) -> list[Any]:
        """The values validated before the sweep starts: both ends, or every choice."""
        if self.choices is not None:
            return list(self.choices)
        if self.int:
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def sample(self, rng: np.random.Generator) -> Any:
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        lo, hi = float(self.low), float(self.high)
        if self.int:
            if self.log:  # log-uniform over [lo, hi + 1), floored: each whole number gets its log-width
                return int(min(hi, max(lo, math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))
            step = int(self.step or 1)
            return int(lo) + step * int(rng.integers((int(hi) - int(lo)) // step + 1))
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.log else float(rng.uniform(lo, hi))
        if self.step:
            x = min(hi, lo + round((x - lo) / self.step) * self.step)
        return x


class SweepSection(_Strict):
    method: Literal["grid", "random", "optuna"] = "grid"
    seeds: list[int] | None = Field(default=None, min_length=1, description="default: the config's backtest.seed")
    trials: int | None = Field(default=None, ge=1, description="random / optuna: parameter sets to try")
    sampler_seed: int = 0
    batch: int = Field(default=4, ge=1, description="optuna: trials asked and told together")
    name: str | None = None


class ObjectiveSection(_Strict):
    metric: str = "pnl_after_haircut"
    direction: Literal["maximize", "minimize"] = "maximize"
    window_s: float = Field(default=3600.0, gt=0, description="sharpe: seconds per return")
    horizon_s: Literal[1, 10, 60] = Field(default=10, description="markout: seconds after the fill")


class WalkForwardSection(_Strict):
    windows: int | None = Field(default=None, ge=2, description="equal windows over the replay range")
    bounds: list[str] | None = Field(default=None, min_length=3, description="window edges, ISO-8601 with zone")

    @model_validator(mode="after")
    def _one(self) -> "WalkForwardSection":
        if (self.windows is None) == (self.bounds is None):
            raise ValueError("give either windows (a count) or bounds (window edges)")
        return self


class ReportSection(_Strict):
    top: int = Field(default=5, ge=1, le=50)
    heatmap: list[str] | None = Field(default=None, min_length=2, max_length=2)


class SweepFile(_Strict):
    sweep: SweepSection = Field(default_factory=SweepSection)
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    ranges: dict[str, Range] = Field(default_factory=dict)
    walk_forward: WalkForwardSection | None = None
    report: ReportSection = Field(default_factory=ReportSection)


class Sweep:
    """A validated sweep: the file's settings plus the base config every run starts from."""

    def __init__(self, path: str | Path, spec: SweepFile, base: StockbridgeConfig, config_path: str | Path):
        self.path, self.spec, self.base, self.config_path = str(path), spec, base, str(config_path)
        self.seeds: list[int] = list(spec.sweep.seeds) if spec.sweep.seeds else [base.backtest.seed]
        self.keys: list[str] = [*spec.grid, *(k for k in spec.ranges if k not in spec.grid)]

    def section_of(self, key: str) -> str:
        """``grid.KEY`` or ``ranges.KEY``: where the sweep file sets a key (for error messages)."""
        return f"grid.{key}" if key in self.spec.grid else f"ranges.{key}" if key in self.spec.ranges else key

    @property
    def method(self) -> str:
        return self.spec.sweep.method

    @property
    def name(self) -> str:
        return self.spec.sweep.name or Path(self.path).stem

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the ``[grid]`` values, first key slowest, in file order."""
        keys = list(self.spec.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.spec.grid[k] for k in keys))]

    def random_points(self) -> list[dict[str, Any]]:
        """``trials`` parameter sets drawn from ``[ranges]`` (and ``[grid]`` values as choices);
        the same ``sampler_seed`` draws the same sets, so a rerun finds its finished runs."""
        rng = np.random.default_rng(self.spec.sweep.sampler_seed)
        out = []
        for _ in range(self.spec.sweep.trials or 0):
            point = {}
            for key in self.keys:
                if key in self.spec.grid:
                    values = self.spec.grid[key]
                    point[key] = values[int(rng.integers(len(values)))]
                else:
                    point[key] = self.spec.ranges[key].sample(rng)
            out.append(point)
        return out

    def windows(self, start_ns: int, end_ns: int) -> list[tuple[str, str]] | None:
        """Walk-forward windows as (start, end) ISO strings (end exclusive), or None without walk-forward.
        ``start_ns``/``end_ns``: the replay range (the config's backtest.start/end, else the store's extent)."""
        wf = self.spec.walk_forward
        if wf is None:
            return None
        if wf.bounds is not None:
            edges = [to_ns(b) for b in wf.bounds]
        else:
            step = (end_ns - start_ns) // wf.windows
            edges = [start_ns + i * step for i in range(wf.windows)] + [end_ns]
        return [(iso(a), iso(b)) for a, b in zip(edges[:-1], edges[1:])]

    def run_config(self, point: dict[str, Any], seed: int, window: tuple[str, str] | None, *,
                   full: bool = True) -> StockbridgeConfig:
        """The base config with ``point`` applied, ``backtest.seed = seed`` and, for a walk-forward
        run, ``backtest.start``/``end`` set to the window; validated (ConfigError names the sweep key).
        ``full``: every check of ``stockbridge backtest`` (strategy params, venues, calendar); else the
        config model only (the worker validates the strategy params again before it runs)."""
        data = apply_point(self.base.model_dump(mode="json"), point, self.path, self.section_of)
        data["backtest"]["seed"] = seed
        if window is not None:
            data["backtest"]["start"], data["backtest"]["end"] = window
        return validate_point(data, point, self.path, self.config_path, full=full, section=self.section_of)


def iso(ns: int) -> str:
    """int ns UTC -> ISO-8601 with 'Z', to the microsecond (what to_ns reads back exactly)."""
    from datetime import datetime, timezone

    t = datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).replace(microsecond=(ns % 1_000_000_000) // 1000)
    return t.isoformat().replace("+00:00", "Z")


def apply_point(data: dict[str, Any], point: dict[str, Any], sweep_path: str, section=lambda key: key) -> dict[str, Any]:
    """A copy of the config dict ``data`` with every dotted key of ``point`` set to its value.

    A missing table key is created (the config model then says whether it exists); a list is
    indexed by a whole number within its length; anything else in the way is an error naming the key."""
    data = copy.deepcopy(data)
    for key, value in point.items():
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, dict):
                if last:
                    node[part] = copy.deepcopy(value)
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            elif isinstance(node, list):
                if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                    has = (f"{len(node)} item(s): address one by index 0..{len(node) - 1}" if node
                           else "no items (set the whole list instead)")
                    raise ConfigError(sweep_path, section(key), f"'{here}': the config has {has}")
                if last:
                    node[int(part)] = copy.deepcopy(value)
                else:
                    node = node[int(part)]
            else:
                raise ConfigError(sweep_path, section(key), f"'{'.'.join(parts[:depth])}' is a value ({node!r}), not a table")
    return data


def validate_point(data: dict[str, Any], point: dict[str, Any], sweep_path: str, config_path: str, *,
                   full: bool = True, section=lambda key: key) -> StockbridgeConfig:
    """Validate a run's config dict; a problem is a ConfigError naming the sweep file and key."""
    from stockbridge.commands.preflight import check_backtest_config

    try:
        cfg = parse_config(data, config_path)
        if full:
            check_backtest_config(cfg, config_path)
    except ConfigError as exc:
        key = _blame(exc.key, point)
        if not key:
            raise ConfigError(sweep_path, exc.key, f"{config_path}: {exc.message}") from None
        inner = "" if exc.key == key else f"{exc.key}: "
        value = "" if "(got " in exc.message and not inner else f"value {_short(point[key])}: "
        raise ConfigError(sweep_path, section(key), f"{value}{inner}{exc.message}") from None
    return cfg


def _blame(config_key: str, point: dict[str, Any]) -> str:
    """The sweep key that made the config refuse ``config_key`` (the same key, its table, or inside it)."""
    best = ""
    for key in point:
        if config_key == key or config_key.startswith(key + ".") or key.startswith(config_key + "."):
            if len(key) > len(best):
                best = key
    if not best and len(point) == 1:
        best = next(iter(point))
    return best


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def flatten(table: dict[str, Any], is_leaf, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf} of nested TOML tables; ``is_leaf(value)`` stops the descent."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not is_leaf(value):
            out.update(flatten(value, is_leaf, name + "."))
        else:
            out[name] = value
    return out


def _pydantic_error(path: str, exc: ValidationError) -> ConfigError:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbid" or err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            got = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(got, (dict, list)):
                msg += f" (got {got!r})"
        problems.append((loc, msg))
    (key, msg), *more = problems
    return ConfigError(path, key, msg, tuple(more))


def _read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"TOML syntax error: {exc}") from None


def load_sweep(path: str | Path, base: StockbridgeConfig, config_path: str | Path) -> Sweep:
    """Read, validate and check a sweep file against ``base``: every grid value and both ends of
    every range (every choice) are applied to the config and validated before anything runs."""
    path = str(path)
    raw = _read_toml(path)
    for section in ("grid", "ranges"):
        if isinstance(raw.get(section), dict):
            leaf = (lambda v: False) if section == "grid" else (lambda v: bool(RANGE_KEYS & set(v)))
            raw[section] = flatten(raw[section], leaf)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(path, exc) from None
    sweep = Sweep(path, spec, base, config_path)
    _check(sweep)
    return sweep


def _check(sweep: Sweep) -> None:
    spec, path = sweep.spec, sweep.path
    method = spec.sweep.method
    for key in sweep.keys:
        if key.split(".")[0] == "synth":
            section = "grid" if key in spec.grid else "ranges"
            raise ConfigError(path, f"{section}.{key}", "the market data is made once and shared by every run: "
                                                         "[synth] keys cannot be swept (sweep the replay: strategy, risk, venues, backtest)")
        if key in ("backtest.seed", "backtest.start", "backtest.end"):
            where = "[sweep] seeds" if key == "backtest.seed" else "[walk_forward]"
            raise ConfigError(path, f"grid.{key}" if key in spec.grid else f"ranges.{key}", f"set this through {where}")
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(path, f"grid.{key}", "an empty list of values")
    if method == "grid":
        if not spec.grid:
            raise ConfigError(path, "grid", "method 'grid' needs a [grid] table of dotted config keys and values")
        if spec.ranges:
            raise ConfigError(path, "ranges", "method 'grid' runs [grid] only: use method 'random' or 'optuna' for ranges")
        if spec.sweep.trials is not None:
            raise ConfigError(path, "sweep.trials", "method 'grid' runs every combination: trials is for 'random' or 'optuna'")
    else:
        if not sweep.keys:
            raise ConfigError(path, "ranges", f"method '{method}' needs a [ranges] table (or [grid] values as choices)")
        if spec.sweep.trials is None:
            raise ConfigError(path, "sweep.trials", f"method '{method}' needs a trial budget (trials = N)")
        if method == "optuna":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise ConfigError(path, "sweep.method", "optuna is not installed (pip install 'stockbridge[sweep]')") from None
    metric = spec.objective.metric
    if metric not in METRICS and metric not in SUMMARY_METRICS:
        raise ConfigError(path, "objective.metric", f"unknown metric {metric!r} (one of {', '.join(METRICS)}, "
                                                     f"or a summary figure: {', '.join(SUMMARY_METRICS)})")
    if spec.report.heatmap:
        for key in spec.report.heatmap:
            if key not in sweep.keys:
                raise ConfigError(path, "report.heatmap", f"'{key}' is not a swept key (swept: {', '.join(sweep.keys)})")
    if spec.walk_forward is not None and spec.walk_forward.bounds is not None:
        edges = []
        for i, b in enumerate(spec.walk_forward.bounds):
            try:
                edges.append(to_ns(b))
            except ValueError as exc:
                raise ConfigError(path, f"walk_forward.bounds.{i}", f"expected an ISO-8601 time with zone, got {b!r} ({exc})") from None
        if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
            raise ConfigError(path, "walk_forward.bounds", "window edges must increase")
    # every value the sweep can set, checked against the config now (a bad key fails here, not in run 37)
    for key in spec.grid:
        for value in spec.grid[key]:
            sweep.run_config({key: value}, sweep.seeds[0], None)
    for key, rng in spec.ranges.items():
        if key in spec.grid:
            raise ConfigError(path, f"ranges.{key}", "the key is in [grid] too")
        for value in rng.bounds():
            sweep.run_config({key: value}, sweep.seeds[0], None)
    if method == "grid":
        for point in sweep.grid_points():  # combinations can clash where single values do not (config model)
            sweep.run_config(point, sweep.seeds[0], None, full=False)

