"""Cost of one decision (strategy kernel + the core's finalize) per built-in strategy.

Run: ``python bench/strategy_kernels.py [--n 1000000] [--py-n 20000]``

Context: strategies.testing.example_context, AAPLx on three token venues plus the hedge venue,
20 tokens long, regular hours (for cross_venue_arb also a crossed book, so the takes path runs).
"compiled" is an @njit loop calling ``decide`` N times with the kernel passed as a first-class
function, as the backtest engine does; the fair value moves every call so each decision is fresh.
"Python" is one decision called from the interpreter, as the live runner does: core ``decide(ctx[0],
params, kernel, ...)`` directly, and the strategy's compiled ``spec.decider()`` wrapper.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numba
from numba import njit, types
from rich.console import Console
from rich.table import Table

from stockbridge.core.context import new_quotes, new_takes
from stockbridge.core.decide import CTX_TYPE, KERNEL_TYPE, PARAMS_TYPE, QUOTES_TYPE, TAKES_TYPE, decide
from strategies import registry
from strategies.testing import HEDGE_VENUE, example_context


@njit(types.float64(types.Array(CTX_TYPE, 1, "C"), PARAMS_TYPE, KERNEL_TYPE, QUOTES_TYPE, TAKES_TYPE, types.int64), cache=True)
def decide_loop(ctx, params, kernel, quotes, takes, n):
    """``n`` decisions with fair stepping through 7 values 0.1 cents apart; returns a checksum."""
    c = ctx[0]
    base = c.fair
    checksum = 0.0
    for i in range(n):
        c.fair = base + 0.001 * (i % 7)
        checksum += decide(c, params, kernel, quotes, takes) + quotes[0, 0, 0, 0]
    c.fair = base
    return checksum


def crossed_context():
    """kraken offers at 210.00 while bybit bids 211.00: a cross worth ~11.6 bps after fees."""
    ctx = example_context(net_delta=20.05)
    c = ctx[0]
    c["bid"][1], c["ask"][1] = 209.90, 210.00
    c["bid"][0], c["ask"][0] = 211.00, 211.10
    c["bid"][HEDGE_VENUE], c["ask"][HEDGE_VENUE] = 205.0, 215.0
    return ctx


def measure(spec, ctx, n, py_n):
    params = spec.params_model().to_array()
    quotes, takes = new_quotes(), new_takes()
    decide_loop(ctx, params, spec.kernel, quotes, takes, 10)  # compile / load from cache
    t0 = time.perf_counter_ns()
    decide_loop(ctx, params, spec.kernel, quotes, takes, n)
    compiled_ns = (time.perf_counter_ns() - t0) / n

    rec, kernel = ctx[0], spec.kernel
    decide(rec, params, kernel, quotes, takes)
    t0 = time.perf_counter_ns()
    for _ in range(py_n):
        decide(rec, params, kernel, quotes, takes)
    python_us = (time.perf_counter_ns() - t0) / py_n / 1e3

    decider = spec.decider()
    n_takes = decider(ctx, params, quotes, takes)
    t0 = time.perf_counter_ns()
    for _ in range(py_n):
        decider(ctx, params, quotes, takes)
    decider_us = (time.perf_counter_ns() - t0) / py_n / 1e3
    return compiled_ns, python_us, decider_us, n_takes, int((quotes[:, :, :, 1] > 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="decisions in the compiled loop")
    parser.add_argument("--py-n", type=int, default=20_000, help="decisions called from Python")
    args = parser.parse_args()

    cases = [(name, reg.spec, example_context(net_delta=20.05)) for name, reg in registry.available().items()]
    cases.append(("cross_venue_arb (crossed book)", registry.get("cross_venue_arb"), crossed_context()))

    table = Table(title=f"one decision = kernel + finalize; N = {args.n:,} compiled, {args.py_n:,} from Python", title_justify="left")
    table.add_column("strategy", no_wrap=True)
    for col in ("compiled ns/decision", "Python: decide() µs", "Python: spec.decider() µs", "takes", "live quotes"):
        table.add_column(col, justify="right")
    for label, spec, ctx in cases:
        compiled_ns, python_us, decider_us, n_takes, live = measure(spec, ctx, args.n, args.py_n)
        table.add_row(label, f"{compiled_ns:,.0f}", f"{python_us:,.1f}", f"{decider_us:,.2f}", str(n_takes), str(live))
    console = Console()
    console.print(table)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak_mb:,.0f} MB · numba {numba.__version__} · Python {platform.python_version()} · {platform.machine()}")


if __name__ == "__main__":
    main()
