"""Live trading (asyncio + uvloop, ccxt venues, order manager, SQLite journal, sandbox emulators).

The package exists so the distribution's top-level layout is complete; it holds no code yet.
"""

import stockbridge  # noqa: F401  (first: points numba's cache at the user cache dir, stockbridge/_cache.py)
