"""`stockbridge strategies list|new`: show the installed strategies and their params, scaffold a plugin."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from strategies import registry
from strategies.scaffold import new_plugin


def list_strategies() -> None:
    """Every built-in and installed plugin strategy with its parameters (type, default, unit, meaning)."""
    table = Table(title="strategies: choose one with \\[strategy] name = ... and set its params", title_justify="left")
    # Names are typed back into configs and pip: never cut them; the rest folds on a narrow terminal.
    for column in ("strategy", "source", "param"):
        table.add_column(column, no_wrap=True)
    for column in ("type", "default", "unit"):
        table.add_column(column, overflow="fold", justify="right" if column == "default" else "left")
    table.add_column("description", ratio=1, min_width=24)
    for name, reg in registry.available().items():
        # Plugin text is shown as is (Text, not markup): a "[...]" in a description stays visible.
        table.add_row(Text(name, style="bold"), Text(reg.source), "", "", "", "", Text(reg.spec.description, style="italic"))
        for p in reg.spec.params_model.describe():
            default = str(p.default).lower() if p.type == "bool" else f"{p.default:g}"
            cells = (p.name, f"{p.type} {p.bounds}".strip(), default, p.unit, p.description)
            table.add_row("", "", *(Text(c) for c in cells))
        table.add_section()
    Console().print(table)


def new_strategy(
    name: str = typer.Argument(..., help="strategy name, a Python identifier (e.g. my_skew)"),
    dir: Path = typer.Option(None, "--dir", help="the plugin package directory to create (then: pip install -e DIR); "
                             "default ./stockbridge-strategy-NAME"),
) -> None:
    """Write a plugin package (params model, njit kernel, test, pyproject) for strategy NAME into DIR."""
    root = new_plugin(name, dir)
    typer.echo(f"created {root}\nnext:\n  pip install -e {root}\n  stockbridge strategies list\n  pytest {root}")


def register(app: typer.Typer) -> None:
    strategies_app = typer.Typer(help="Quoting strategies: list them, scaffold a plugin.", no_args_is_help=True, rich_markup_mode=None)
    strategies_app.command("list")(list_strategies)
    strategies_app.command("new")(new_strategy)
    app.add_typer(strategies_app, name="strategies")
