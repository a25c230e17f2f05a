"""The layering of ARCHITECTURE.md, read from the imports of every module (ast, no import side effects):

- ``stockbridge/core`` (the trader core) imports nothing from ``backtest``, ``execution`` or ``data``;
- ``backtest`` never imports ``execution``;
- ``execution`` imports ``backtest`` only in ``execution/sandbox``, whose emulators match orders with
  ``backtest/matching`` (one matching engine for the backtest and the sandbox), and in
  ``execution/live_report.py``, which writes a live run's summary and report with the backtest's
  own ``backtest.metrics`` and ``backtest.report`` (one report for both).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports (absolute imports; relative ones stay in its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def violations(folder: str, forbidden: set[str], allowed_under: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(allowed_under):
            continue
        for pkg in sorted(imported_packages(path) & forbidden):
            bad.append(f"{rel} imports {pkg}")
    return bad


def test_the_trader_core_imports_no_engine_venue_or_data_code():
    assert list((ROOT / "stockbridge/core").glob("*.py")), "the core is where ARCHITECTURE.md says"
    assert violations("stockbridge/core", {"backtest", "execution", "data"}) == []


def test_the_backtester_never_imports_the_live_side():
    assert violations("backtest", {"execution"}) == []


def test_the_live_side_uses_the_backtester_only_for_the_sandbox_matching():
    assert violations("execution", {"backtest"}, allowed_under=("execution/sandbox/", "execution/live_report.py")) == []


def test_the_checker_sees_an_import_where_there_is_one(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("import os\nfrom backtest.matching import venue_advance\nfrom . import sibling\n")
    assert imported_packages(mod) == {"os", "backtest"}
