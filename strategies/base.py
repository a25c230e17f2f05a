"""The strategy plugin API: a typed params model and an ``@njit`` kernel with one fixed signature.

A strategy is a :class:`StrategySpec`: a name, a :class:`StrategyParams` subclass and a kernel::

    @njit(cache=True)
    def kernel(ctx, params, quotes, takes) -> int:   # number of taker intents written to `takes`

- ``ctx``: one ``CTX_DTYPE`` record (fields and units: stockbridge/core/context.py),
- ``params``: float64 array, the params model in field order, then its derived constants
  (``StrategyParams.to_array``),
- ``quotes``: float64[MAX_VENUES, 2, MAX_LEVELS, 2], ``quotes[venue, side, level] = (price, size)``,
- ``takes``: float64[MAX_TAKES, 4], rows ``(venue, +1 buy / -1 sell, limit price, size)``.

The kernel writes *raw* wishes. ``stockbridge.core.decide.decide`` zeroes the outputs, calls the
kernel, then applies the core's rules (tick/lot grid, inventory bounds, exposure caps, no crossing,
off-hours size), so kernels stay simple and every strategy gets the same safety rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Mapping

import annotated_types
import numpy as np
from numba import njit
from numba.extending import is_jitted
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from stockbridge.core.decide import decide
from stockbridge.errors import ConfigError, key_path

_PARAM_TYPES = {float: "float", int: "int", bool: "bool"}


def param(
    default: float | int | bool,
    *,
    unit: str,
    description: str,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """Declare a strategy parameter: its default, unit (shown by ``strategies list``), description and bounds."""
    return Field(default, description=description, json_schema_extra={"unit": unit}, gt=gt, ge=ge, lt=lt, le=le)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter as ``stockbridge strategies list`` shows it."""

    name: str
    type: str
    default: float | int | bool
    unit: str
    description: str
    bounds: str


class StrategyParams(BaseModel):
    """Base of every params model: float, int or bool fields, each declared with :func:`param`.

    Validated from ``[strategy.params]`` in the TOML (unknown keys, wrong types, nan and inf are errors) and
    flattened to a float64 array for the kernel (bools as 0/1) in field order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True, allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Checked when the plugin is imported, so an author sees the problem before any backtest.
        for name, info in cls.model_fields.items():
            problem = _field_problem(info)
            if problem:
                raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{name}: {problem}")

    #: names of the constants :meth:`derived` returns, placed after the fields in :meth:`to_array`
    DERIVED: ClassVar[tuple[str, ...]] = ()

    def derived(self) -> tuple[float, ...]:
        """Constants the kernel needs that depend on the params alone, in ``DERIVED`` order (none by
        default). Computed once per run here instead of at every decision: a kernel runs millions of
        times in a replay, and a log or a power per call is a measurable share of it."""
        return ()

    def to_array(self) -> np.ndarray:
        """The params as float64[n_fields + len(DERIVED)]: the fields in order, then the derived
        constants; the layout the kernel indexes (:meth:`indices`)."""
        extra = tuple(self.derived())
        if len(extra) != len(self.DERIVED):
            raise TypeError(f"{type(self).__qualname__}.derived() gave {len(extra)} values for DERIVED {self.DERIVED}")
        values = [float(getattr(self, n)) for n in type(self).model_fields] + [float(x) for x in extra]
        return np.array(values, dtype=np.float64)

    @classmethod
    def indices(cls, *names: str) -> tuple[int, ...]:
        """Positions of ``names`` in :meth:`to_array`, for the kernel's constant indices."""
        order = list(cls.model_fields) + list(cls.DERIVED)
        missing = [n for n in names if n not in order]
        if missing:
            raise KeyError(f"{cls.__qualname__} has no field {', '.join(missing)} (fields: {', '.join(order)})")
        return tuple(order.index(n) for n in names)

    @classmethod
    def describe(cls) -> list[ParamInfo]:
        return [
            ParamInfo(
                name=name,
                type=_PARAM_TYPES[info.annotation],
                default=info.default,
                unit=info.json_schema_extra["unit"],
                description=info.description,
                bounds=_bounds_text(info),
            )
            for name, info in cls.model_fields.items()
        ]


def _field_problem(info: FieldInfo) -> str | None:
    if info.annotation not in _PARAM_TYPES:
        return f"type {info.annotation!r} is not allowed; a kernel reads float, int or bool"
    if info.is_required():
        return "needs a default (declare it with strategies.base.param)"
    if not info.description:
        return "needs a description (declare it with strategies.base.param)"
    extra = info.json_schema_extra
    if not isinstance(extra, dict) or not isinstance(extra.get("unit"), str) or not extra["unit"]:
        return "needs a unit (declare it with strategies.base.param)"
    return None


def _bounds_text(info: FieldInfo) -> str:
    symbols = (
        (annotated_types.Gt, "gt", ">"),
        (annotated_types.Ge, "ge", ">="),
        (annotated_types.Lt, "lt", "<"),
        (annotated_types.Le, "le", "<="),
    )
    parts = []
    for item in info.metadata:
        for kind, attr, symbol in symbols:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attr):g}")
    return ", ".join(parts)


@dataclass(frozen=True)
class StrategySpec:
    """What a plugin exports (``<pkg>:SPEC``) and the registry returns."""

    name: str
    params_model: type[StrategyParams]
    kernel: Any  # a numba dispatcher with the signature in the module docstring
    description: str

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"strategy name {self.name!r} must be a Python identifier")
        if not (isinstance(self.params_model, type) and issubclass(self.params_model, StrategyParams)):
            raise TypeError(f"strategy '{self.name}': params_model must subclass strategies.base.StrategyParams")
        if not is_jitted(self.kernel):
            raise TypeError(f"strategy '{self.name}': kernel must be a numba @njit function, got {type(self.kernel).__name__}")
        if not self.description:
            raise ValueError(f"strategy '{self.name}': description is empty")

    def decider(self) -> Any:
        """``f(ctx_array, params, quotes, takes) -> n_takes``: core ``decide`` with this kernel bound.

        For calling from Python (the live runner). ``decide(ctx[0], params, kernel, ...)`` called
        from the interpreter turns the kernel dispatcher into a function value and boxes the record
        on every call, ~40-100 µs measured; this compiled wrapper takes the one-element context
        array and costs under 1 µs (bench/strategy_kernels.py). Compiled on first use in each
        process (~0.4 s): it closes over the kernel, so numba cannot cache it on disk.
        """
        return _decider(self.kernel)

    def parse_params(self, raw: Mapping[str, Any] | None, path: str = "<config>") -> StrategyParams:
        """Validate ``[strategy.params]``; a problem raises ``ConfigError(path, 'strategy.params.<field>', ...)``."""
        try:
            return self.params_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            (field, message), *more = (self._describe(err) for err in exc.errors())
            raise ConfigError(path, key_path("strategy", "params", *field), message,
                              tuple((key_path("strategy", "params", *f), m) for f, m in more)) from None

    def _describe(self, err: Mapping[str, Any]) -> tuple[tuple, str]:
        field = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            known = ", ".join(self.params_model.model_fields)
            return field, f"unknown parameter of strategy '{self.name}' (known: {known})"
        got = err.get("input")
        return field, f"{err['msg']} (got {got!r})"


@lru_cache(maxsize=None)
def _decider(kernel: Any) -> Any:
    @njit
    def decide_with_kernel(ctx, params, quotes, takes):
        return decide(ctx[0], params, kernel, quotes, takes)

    return decide_with_kernel
