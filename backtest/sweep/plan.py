"""Which runs a sweep wants, and in what order: grid, random and Optuna searches, and walk-forward.

A planner hands out :class:`Run` s (a parameter set, a seed, a window) when they are wanted and is
given each run's result row back. Grid and random searches want all their runs at once; an Optuna
search asks ``batch`` trials at a time and tells the study their objectives in ask order once the
whole batch is in, so the trials it proposes depend on the sampler seed and the batch size only,
never on how many workers there are or which run finished first (a rerun proposes the same trials
and finds them done). A walk-forward planner runs one search per fitting window and, when a fold's
search is complete, the best parameter set of window ``i`` on window ``i + 1``.

A parameter set's objective is the mean over its seeds, defined only when every seed's run
finished with a value (a set with a failed seed is not ranked).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from backtest.sweep.objective import better


@dataclass(eq=False)
class Run:
    point: dict[str, Any]
    seed: int
    window: int | None
    owner: "Planner"
    role: str = "search"  # "search" (in-sample when walking forward) or "test" (out-of-sample)


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


@dataclass
class SetResult:
    """One parameter set on one window: its runs by seed and the mean objective."""

    point: dict[str, Any]
    window: int | None
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def objective(self, seeds: list[int]) -> float | None:
        values = []
        for s in seeds:
            row = self.rows.get(s)
            if row is None or row.get("status") != "ok" or row.get("objective") is None:
                return None
            values.append(float(row["objective"]))
        return sum(values) / len(values)


class Planner(ABC):
    """What runs to do next: ``take`` the next batch, ``deliver`` each finished row, ``done`` at the end."""
    total: int = 0

    @abstractmethod
    def take(self) -> list[Run]: ...

    @abstractmethod
    def deliver(self, run: Run, row: dict[str, Any]) -> None: ...

    @property
    @abstractmethod
    def done(self) -> bool: ...


class FixedPlanner(Planner):
    """Every (point, seed) on one window, all at once: a grid, or random draws made up front."""

    def __init__(self, points: list[dict[str, Any]], seeds: list[int], window: int | None, direction: str):
        unique: dict[str, dict[str, Any]] = {}
        for p in points:
            unique.setdefault(point_key(p), p)
        self.points, self.seeds, self.window, self.direction = list(unique.values()), seeds, window, direction
        self.sets = {point_key(p): SetResult(p, window) for p in self.points}
        self.total = len(self.points) * len(seeds)
        self._given = False
        self._delivered = 0

    def take(self) -> list[Run]:
        if self._given:
            return []
        self._given = True
        return [Run(p, s, self.window, self) for p in self.points for s in self.seeds]

    def deliver(self, run: Run, row: dict[str, Any]) -> None:
        self.sets[point_key(run.point)].rows[run.seed] = row
        self._delivered += 1

    @property
    def done(self) -> bool:
        return self._given and self._delivered >= self.total

    def best(self) -> SetResult | None:
        """The best set (the first in plan order among equals); None if none has an objective."""
        top = None
        for s in self.sets.values():
            if better(s.objective(self.seeds), top.objective(self.seeds) if top else None, self.direction):
                top = s
        return top


class OptunaPlanner(Planner):
    """``trials`` parameter sets proposed by an Optuna study (TPE sampler seeded by ``sampler_seed``)."""

    def __init__(self, sweep, seeds: list[int], window: int | None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = sweep.spec
        self.sweep, self.seeds, self.window = sweep, seeds, window
        self.direction = spec.objective.direction
        self.trials, self.batch = spec.sweep.trials, spec.sweep.batch
        self.study = optuna.create_study(direction=self.direction,
                                         sampler=optuna.samplers.TPESampler(seed=spec.sweep.sampler_seed))
        self.total = self.trials * len(seeds)
        self.sets: dict[int, SetResult] = {}  # by trial number
        self._open: list[Any] = []  # the batch's trials, in ask order
        self._asked = 0
        self._told = 0

    def _suggest(self, trial) -> dict[str, Any]:
        spec, point = self.sweep.spec, {}
        for key in self.sweep.keys:
            if key in spec.grid:
                values = spec.grid[key]
                point[key] = values[trial.suggest_categorical(key, list(range(len(values))))]
                continue
            r = spec.ranges[key]
            if r.choices is not None:
                point[key] = r.choices[trial.suggest_categorical(key, list(range(len(r.choices))))]
            elif r.int:
                point[key] = trial.suggest_int(key, int(r.low), int(r.high), log=r.log, step=int(r.step or 1))
            else:
                point[key] = trial.suggest_float(key, float(r.low), float(r.high), log=r.log, step=r.step)
        return point

    def take(self) -> list[Run]:
        if self._open or self._asked >= self.trials:
            return []
        runs = []
        for _ in range(min(self.batch, self.trials - self._asked)):
            trial = self.study.ask()
            self._asked += 1
            self._open.append(trial)
            point = self._suggest(trial)
            self.sets[trial.number] = SetResult(point, self.window)
            runs += [Run(point, s, self.window, self, role=f"trial {trial.number}") for s in self.seeds]
        return runs

    def deliver(self, run: Run, row: dict[str, Any]) -> None:
        number = int(run.role.split()[1])
        self.sets[number].rows[run.seed] = row
        if all(len(self.sets[t.number].rows) == len(self.seeds) for t in self._open):
            from optuna.trial import TrialState

            for t in self._open:
                value = self.sets[t.number].objective(self.seeds)
                if value is None:
                    self.study.tell(t, state=TrialState.FAIL)
                else:
                    self.study.tell(t, value)
                self._told += 1
            self._open = []

    @property
    def done(self) -> bool:
        return self._told >= self.trials

    def best(self) -> SetResult | None:
        top = None
        for s in self.sets.values():
            if better(s.objective(self.seeds), top.objective(self.seeds) if top else None, self.direction):
                top = s
        return top


@dataclass
class Fold:
    index: int
    fit: int  # window index searched (in-sample)
    test: int  # window index the winner is tested on (out-of-sample)
    best: SetResult | None = None
    test_set: SetResult | None = None


class WalkForwardPlanner(Planner):
    """For each fold i: a search on window i; its best set then runs on window i + 1."""

    def __init__(self, n_windows: int, make_search, seeds: list[int]):
        self.seeds = seeds
        self.folds = [Fold(i, i, i + 1) for i in range(n_windows - 1)]
        self.searches = [make_search(f.fit) for f in self.folds]
        self.total = sum(s.total for s in self.searches) + len(self.folds) * len(seeds)
        self._tested: set[int] = set()

    def take(self) -> list[Run]:
        runs = []
        for fold, search in zip(self.folds, self.searches):
            runs += search.take()
            if search.done and fold.index not in self._tested:
                self._tested.add(fold.index)
                fold.best = search.best()
                if fold.best is None:  # nothing to test: count its runs as settled
                    self.total -= len(self.seeds)
                    continue
                fold.test_set = SetResult(fold.best.point, fold.test)
                runs += [Run(fold.best.point, s, fold.test, self, role=f"test {fold.index}") for s in self.seeds]
        return runs

    def deliver(self, run: Run, row: dict[str, Any]) -> None:
        fold = self.folds[int(run.role.split()[1])]
        fold.test_set.rows[run.seed] = row

    @property
    def done(self) -> bool:
        if not all(s.done for s in self.searches) or len(self._tested) < len(self.folds):
            return False
        return all(f.test_set is None or len(f.test_set.rows) == len(self.seeds) for f in self.folds)


def make_search(sweep, window: int | None) -> Planner:
    method, seeds, direction = sweep.method, sweep.seeds, sweep.spec.objective.direction
    if method == "grid":
        return FixedPlanner(sweep.grid_points(), seeds, window, direction)
    if method == "random":
        return FixedPlanner(sweep.random_points(), seeds, window, direction)
    return OptunaPlanner(sweep, seeds, window)
