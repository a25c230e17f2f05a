"""Live trading: the venue adapter protocol (venue), the order manager (one state machine per order,
by client id), the SQLite journal, the risk guards, and the sandbox emulators (sandbox/). The runner
that wires them to the trader core and the venues (`stockbridge live`) is not built yet.
"""

import stockbridge  # noqa: F401  (first: points numba's cache at the user cache dir, stockbridge/_cache.py)
