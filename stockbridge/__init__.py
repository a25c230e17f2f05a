"""stockbridge: market making and cross-venue arbitrage for tokenized stocks.

Inside the framework time is int64 nanoseconds since the Unix epoch (UTC), prices are float64 in
the venue's quote currency and sizes are float64 in tokens (or shares for the underlying).
"""

from stockbridge._cache import configure_numba_cache, numba_cache_dir

__version__ = "0.1.0"

# Before anything imports numba: compiled code goes to a per-user cache, not into site-packages.
configure_numba_cache()

__all__ = ["__version__", "numba_cache_dir"]
