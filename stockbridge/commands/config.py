"""`stockbridge config check FILE`: validate a config as `backtest` does and print it resolved (defaults filled in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from stockbridge.commands.preflight import check_backtest_config, fee_warnings
from stockbridge.config import load_config


def check(file: Path = typer.Argument(..., help="TOML config file")) -> None:
    """Validate FILE as `backtest` does before it reads data (strategy name and params included); print it resolved."""
    cfg = load_config(file)
    params = None
    if cfg.strategy is None:
        print(f"warning: {file}: strategy: no [strategy] table: data commands can use this file, backtest cannot",
              file=sys.stderr)
    else:
        _, params = check_backtest_config(cfg, file)
    for line in fee_warnings(cfg, file):
        print(f"warning: {line}", file=sys.stderr)
    console = Console(width=100)
    venues = Table(title=f"{file}: venues", title_justify="left")
    for col in ("id", "venue", "kind", "instruments", "maker/taker bps", "tick", "lot", "hours", "haircut", "cap"):
        venues.add_column(col, overflow="fold")
    for vid, (name, v) in enumerate(cfg.venues.items()):
        venues.add_row(
            str(vid), name, v.kind.value, ", ".join(f"{k}={s}" for k, s in v.instruments.items()),
            f"{v.maker_fee_bps:g} / {v.taker_fee_bps:g}", f"{v.tick_size:g}", f"{v.lot_size:g}", v.hours,
            f"{v.haircut:.1%}", f"{v.exposure_cap:,.0f}",
        )
    console.print(venues)
    resolved = json.loads(cfg.model_dump_json(exclude={"venues"}))
    # the strategy's params as the backtest will use them: every field, defaults filled in
    if params is not None:
        resolved["strategy"]["params"] = params.model_dump()
    console.print_json(json.dumps(resolved))


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Configuration files.", no_args_is_help=True, rich_markup_mode=None)
    config_app.command("check")(check)
    app.add_typer(config_app, name="config")
