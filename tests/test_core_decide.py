"""decide(): one decision from Python and from compiled code, and its on-disk cache across processes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_ctx import TOKEN_A, TOKEN_B, make_ctx
from numba import njit, types

from stockbridge.core.context import ASK, BID, new_quotes, new_takes
from stockbridge.core.decide import CTX_TYPE, KERNEL_TYPE, PARAMS_TYPE, QUOTES_TYPE, TAKES_TYPE, decide


@njit
def kernel(ctx, params, quotes, takes):
    """A pair around fair +/- params[0] on TOKEN_A, one buy intent, and a stray row it does not count."""
    quotes[0, 0, 0, 0] = ctx.fair - params[0]
    quotes[0, 0, 0, 1] = 1.2345
    quotes[0, 1, 0, 0] = ctx.fair + params[0]
    quotes[0, 1, 0, 1] = 1.2345
    quotes[1, 0, 0, 0] = ctx.fair - params[0]  # TOKEN_B is made unquotable below
    quotes[1, 0, 0, 1] = 1.0
    takes[0, 0] = 0.0
    takes[0, 1] = 1.0
    takes[0, 2] = 100.017
    takes[0, 3] = 1.257
    takes[1, 0] = 0.0
    takes[1, 1] = -1.0
    takes[1, 2] = 99.0
    takes[1, 3] = 5.0
    return 1


def context():
    ctx = make_ctx()
    ctx[0]["quotable"][TOKEN_B] = 0
    return ctx


def check(quotes, takes, n):
    assert n == 1
    assert tuple(quotes[TOKEN_A, BID, 0]) == pytest.approx((99.73, 1.23))  # 100 - 0.2629, grid
    assert tuple(quotes[TOKEN_A, ASK, 0]) == pytest.approx((100.27, 1.23))
    assert not quotes[TOKEN_B].any()
    assert tuple(takes[0]) == pytest.approx((TOKEN_A, 1, 100.01, 1.25))
    assert not takes[1:].any()  # the row the kernel did not count is not sent


def test_decide_from_python_clears_stale_outputs():
    quotes, takes = new_quotes(), new_takes()
    quotes[:] = 7.0
    takes[:] = 7.0
    n = decide(context()[0], np.array([0.2629]), kernel, quotes, takes)
    check(quotes, takes, n)
    assert not quotes[2:].any()


@njit
def many_decisions(ctx_array, params, kern, quotes, takes, n):
    total = 0
    for _ in range(n):
        total += decide(ctx_array[0], params, kern, quotes, takes)
    return total


CTX_ARRAY = types.Array(CTX_TYPE, 1, "C")


@njit(types.int64(CTX_ARRAY, PARAMS_TYPE, KERNEL_TYPE, QUOTES_TYPE, TAKES_TYPE, types.int64))
def many_decisions_typed(ctx_array, params, kern, quotes, takes, n):
    total = 0
    for _ in range(n):
        total += decide(ctx_array[0], params, kern, quotes, takes)
    return total


@pytest.mark.parametrize("caller", [many_decisions, many_decisions_typed], ids=["dispatcher argument", "KERNEL_TYPE argument"])
def test_decide_from_compiled_code(caller):
    quotes, takes = new_quotes(), new_takes()
    total = caller(context(), np.array([0.2629]), kernel, quotes, takes, 5)
    assert total == 5
    check(quotes, takes, 1)


PROBE = """
import numpy as np
from stockbridge.core.decide import decide
print(sum(decide.stats.cache_hits.values()))
"""


def test_decide_is_compiled_once_and_reused_by_later_processes(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run():
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.split()[-1])

    def decide_cache_files():
        return sorted(p.name for p in Path(tmp_path).rglob("decide.decide-*"))

    assert run() == 0  # first process compiles and writes the cache
    files = decide_cache_files()
    assert files
    assert run() == 1  # a later process loads it
    assert decide_cache_files() == files  # and adds nothing to it
