"""`stockbridge strategies list|new`: show the installed strategies and their params, scaffold a plugin."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from stockbridge.commands.tables_fit import WIDTH

from strategies import registry
from strategies.scaffold import new_plugin


def list_strategies() -> None:
    """Every built-in and installed plugin strategy with its parameters (type, default, unit, meaning)."""
    console = Console(width=max(Console().width, WIDTH))
    table = Table(title=Text("strategies: choose one with [strategy] name = ... and set its params"), title_justify="left",
                  width=min(console.width, WIDTH))
    # Names are typed back into configs and pip: never cut them; the rest folds within 100 columns.
    table.add_column("strategy / param", no_wrap=True)
    for column in ("type", "default", "unit"):
        table.add_column(column, overflow="fold", justify="right" if column == "default" else "left")
    found = registry.available()
    # the source ("<distribution> <version>") gets a line of its own; it wraps at the space, so the
    # distribution name pip knows stays whole
    table.add_column("source / description", ratio=1, min_width=24, overflow="fold")
    for name, reg in found.items():
        # Plugin text is shown as is (Text, not markup): a "[...]" in a description stays visible.
        table.add_row(Text(name, style="bold"), "", "", "", Text(reg.source, style="bold"))
        table.add_row("", "", "", "", Text(reg.spec.description, style="italic"))
        for p in reg.spec.params_model.describe():
            default = str(p.default).lower() if p.type == "bool" else f"{p.default:g}"
            cells = (f"  {p.name}", f"{p.type} {p.bounds}".strip(), default, p.unit, p.description)
            table.add_row(*(Text(c) for c in cells))
        table.add_section()
    console.print(table)


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
