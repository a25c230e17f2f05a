"""numba kernels only: every price and size stockbridge sends is decided here.

Modules import nothing from backtest/ or execution/. Functions are ``@njit(cache=True)`` over flat
numpy arrays and records, callable from other compiled code (the backtest engine) and from Python
(the live runner) alike.
"""
