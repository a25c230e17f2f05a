"""Tick-replay backtester: simulated venues (books, orders, latency, matching, fees) driven by the
event stream, and the engine that runs a strategy kernel over them."""

import stockbridge  # noqa: F401  (first: points numba's cache at the user cache dir, stockbridge/_cache.py)
