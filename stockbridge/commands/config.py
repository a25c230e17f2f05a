"""`stockbridge config check FILE`: validate a config as `backtest` does and print it resolved (defaults filled in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from stockbridge.commands.preflight import check_backtest_config, fee_warnings
from stockbridge.commands.tables_fit import WIDTH, Col, fitted_tables, legend
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
    console = Console(width=max(Console().width, WIDTH))
    cols = [Col("kind", "kind", justify="left"), Col("symbols", "symbols", "instrument=venue symbol", "left"),
            Col("fees", "fees bps", "maker / taker fee, bps of notional (negative: rebate)"), Col("tick", "tick"),
            Col("lot", "lot"), Col("hours", "hours", justify="left"), Col("haircut", "haircut"), Col("cap", "cap", "exposure cap, quote ccy")]
    rows = {
        f"{vid} {name}": {
            "kind": v.kind.value, "symbols": ", ".join(f"{k}={sym}" for k, sym in v.instruments.items()),
            "fees": f"{v.maker_fee_bps:g} / {v.taker_fee_bps:g}", "tick": f"{v.tick_size:g}", "lot": f"{v.lot_size:g}",
            "hours": v.hours, "haircut": f"{v.haircut:.1%}", "cap": f"{v.exposure_cap:,.0f}",
        }
        for vid, (name, v) in enumerate(cfg.venues.items())
    }
    console.print(*fitted_tables(f"{file}: venues", "id venue", rows, cols, width=min(console.width, WIDTH)))
    legend(cols, console)
    resolved = json.loads(cfg.model_dump_json(exclude={"venues"}))
    # the strategy's params as the backtest will use them: every field, defaults filled in
    if params is not None:
        resolved["strategy"]["params"] = params.model_dump()
    console.print_json(json.dumps(resolved))


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Configuration files.", no_args_is_help=True, rich_markup_mode=None)
    config_app.command("check")(check)
    app.add_typer(config_app, name="config")
