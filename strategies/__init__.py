"""Quoting strategies: a params model plus an ``@njit`` kernel, found through entry points.

- :mod:`strategies.base` - :class:`StrategyParams`, :func:`param`, :class:`StrategySpec`.
- :mod:`strategies.registry` - ``available()``, ``get(name)``, ``from_config(cfg, path)``.
- Built-ins: ``fixed_spread``, ``avellaneda_stoikov``, ``glft``, ``cross_venue_arb``.
- :mod:`strategies.ladder` - the quote ladder the built-in market makers share.
- :mod:`strategies.testing` - a realistic decision context for kernel tests and benchmarks.
- :mod:`strategies.scaffold` - writes a new plugin package (``stockbridge strategies new``).

Plugin author's guide: docs/plugins.md.
"""

import stockbridge  # noqa: F401  (first: points numba's cache at the user cache dir, stockbridge/_cache.py)
