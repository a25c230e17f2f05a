"""``stockbridge strategies new NAME``: write a plugin package that installs and tests out of the box.

Layout written into the package directory ``<root>`` (``--dir``; default
``./stockbridge-strategy-<name>``), so that ``pip install -e <root>`` installs it::

    pyproject.toml                       entry point  stockbridge.strategies: <name> = "<pkg>:SPEC"
    README.md
    stockbridge_strategy_<name>/__init__.py   params model + @njit kernel + SPEC
    tests/test_<name>.py                 the kernel through the core's decide() on a realistic context
"""

from __future__ import annotations

import keyword
from importlib.resources import files
from pathlib import Path
from string import Template

import stockbridge
from stockbridge.errors import StockbridgeError
from strategies import registry


class ScaffoldError(StockbridgeError):
    """The plugin cannot be written (bad name, name taken, target exists)."""


def plugin_names(name: str) -> tuple[str, str]:
    """(distribution name, import package name) of the plugin for strategy ``name``."""
    return f"stockbridge-strategy-{name}", f"stockbridge_strategy_{name}"


def new_plugin(name: str, root: str | Path | None = None) -> Path:
    """Write the plugin package for strategy ``name`` into the directory ``root`` (the package itself:
    ``pip install -e root`` installs it; default ``./stockbridge-strategy-<name>``); returns ``root``.

    ``root`` may exist only as an empty directory: nothing is ever overwritten.
    """
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        raise ScaffoldError(f"strategy name {name!r} must be an ASCII Python identifier (letters, digits, _), not a keyword")
    taken = registry.names()
    if name in taken:
        raise ScaffoldError(f"a strategy named '{name}' already exists ({taken[name]}); choose another name")
    dist, pkg = plugin_names(name)
    root = Path(dist) if root is None else Path(root)
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        raise ScaffoldError(f"{root}: already exists and is not an empty directory; refusing to overwrite it")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"{root}: cannot create ({exc.strerror})") from None
    values = {"name": name, "dist": dist, "pkg": pkg, "stockbridge_version": stockbridge.__version__}
    templates = files("strategies.templates")
    for template, target in (
        ("pyproject.toml.tmpl", "pyproject.toml"),
        ("README.md.tmpl", "README.md"),
        ("package_init.py.tmpl", f"{pkg}/__init__.py"),
        ("test_strategy.py.tmpl", f"tests/test_{name}.py"),
    ):
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(templates.joinpath(template).read_text()).substitute(values))
    return root
