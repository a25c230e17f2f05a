"""The ``stockbridge`` command: thin wrappers that parse, call the library, and print.

User errors (bad config, bad data) print one line ``error: <file>: <where>: <what>`` and exit 2;
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback

import typer

from stockbridge.errors import StockbridgeError

app = typer.Typer(
    name="stockbridge",
    help="Market making and cross-venue arbitrage for tokenized stocks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[synth]" and "[strategy]" name TOML tables, not styles
)
data_app = typer.Typer(help="Tick data: convert, validate, synthesize, inspect.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="show the traceback instead of the one-line error; works anywhere on the command line"),
) -> None:
    """Market making and cross-venue arbitrage for tokenized stocks."""
    # main() takes --debug out of the arguments before typer parses them; it is declared here so --help lists it.


def _register_all() -> None:
    from stockbridge.commands import backtest, config, data_convert, data_synth, live, record, sandbox, strategies, sweep

    for module in (config, strategies, backtest, sweep, live, record, sandbox):
        module.register(app)
    for module in (data_convert, data_synth):
        module.register(data_app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args=args, prog_name="stockbridge")  # usage errors and --help are handled by typer itself
    except StockbridgeError as exc:
        if debug:
            traceback.print_exc()
        else:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                print(f"error: {line}", file=sys.stderr)  # one line per problem
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
