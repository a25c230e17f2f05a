"""Live trading (asyncio + uvloop, ccxt venues, order manager, SQLite journal, sandbox emulators).

The package exists so the distribution's top-level layout is complete; it holds no code yet.
"""
