"""Where numba keeps compiled code: a per-user cache directory, never inside the installed package.

numba's default is a ``__pycache__`` next to each source file. For an installed stockbridge that is
``site-packages/<package>/...``: read-only in system installs and containers, and left behind by
``pip uninstall`` as folders without ``__init__.py``, which Python then imports as empty namespace
packages that shadow a later editable install (``cannot import name 'session_clock' from
'stockbridge.core' (unknown location)``).

numba reads ``NUMBA_CACHE_DIR`` once, when ``numba`` is first imported, and its cache locators read
``numba.config.CACHE_DIR`` when a function is decorated. :func:`configure_numba_cache` runs from the
``__init__`` of every top-level package (stockbridge, strategies, backtest, data, execution) before
any of them imports numba; it sets both. A ``NUMBA_CACHE_DIR`` the user set is left alone.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

ENV = "NUMBA_CACHE_DIR"


def default_cache_dir() -> Path:
    """``<user cache dir>/stockbridge/numba-<numba version>-py<major>.<minor>`` (platformdirs)."""
    from platformdirs import user_cache_dir

    try:
        numba_version = metadata.version("numba")
    except metadata.PackageNotFoundError:
        numba_version = "unknown"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(user_cache_dir("stockbridge", appauthor=False)) / f"numba-{numba_version}-py{py}-{source_stamp()}"


PACKAGES = ("stockbridge", "strategies", "backtest", "data", "execution")


def source_stamp() -> str:
    """A short digest of every source file of the framework (path, size, mtime).

    numba checks a cached function against its *own* file only, but the replay loop carries the code
    it calls from other modules (backtest/matching.py, book.py, stockbridge/core/...): after editing
    one of those, the cached loop would run the old code. A cache directory per version of the
    sources makes every edit a fresh compile; an installed release never changes, so users compile
    once."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=6)
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            st = f.stat()
            h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def numba_cache_dir() -> Path:
    """The directory numba caches stockbridge's compiled code in (the user's ``NUMBA_CACHE_DIR`` if set)."""
    chosen = os.environ.get(ENV)
    return Path(chosen) if chosen else default_cache_dir()


def configure_numba_cache() -> Path:
    """Point numba's on-disk cache at :func:`numba_cache_dir`; idempotent, cheap, imports nothing heavy."""
    path = numba_cache_dir()
    if not os.environ.get(ENV):
        os.environ[ENV] = str(path)
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before us: its config already read the environment
        config = getattr(getattr(numba, "core", None), "config", None)
        if config is not None and not getattr(config, "CACHE_DIR", ""):
            config.CACHE_DIR = str(path)
    return path
