"""`stockbridge config check FILE`: validate a config and print it resolved (defaults filled in)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stockbridge.config import load_config


def check(file: Path = typer.Argument(..., help="TOML config file")) -> None:
    """Validate FILE and print the resolved configuration."""
    cfg = load_config(file)
    console = Console(width=160)
    venues = Table(title=f"{file}: venues", title_justify="left")
    for col in ("id", "venue", "kind", "instruments", "maker/taker bps", "tick", "lot", "hours", "haircut", "exposure cap"):
        venues.add_column(col)
    for vid, (name, v) in enumerate(cfg.venues.items()):
        venues.add_row(
            str(vid), name, v.kind.value, ", ".join(f"{k}={s}" for k, s in v.instruments.items()),
            f"{v.maker_fee_bps:g} / {v.taker_fee_bps:g}", f"{v.tick_size:g}", f"{v.lot_size:g}", v.hours,
            f"{v.haircut:.1%}", f"{v.exposure_cap:,.0f}",
        )
    console.print(venues)
    console.print_json(cfg.model_dump_json(exclude={"venues"}))


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)
    config_app.command("check")(check)
    app.add_typer(config_app, name="config")
