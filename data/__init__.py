"""Tick data: one event schema, converters, validator, Parquet store, merged reader, synthetic market."""

import stockbridge  # noqa: F401  (first: points numba's cache at the user cache dir, stockbridge/_cache.py)
