"""stockbridge: market making and cross-venue arbitrage for tokenized stocks.

Inside the framework time is int64 nanoseconds since the Unix epoch (UTC), prices are float64 in
the venue's quote currency and sizes are float64 in tokens (or shares for the underlying).
"""

__version__ = "0.1.0"
