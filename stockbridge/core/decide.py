"""One decision: zero the outputs, run a strategy kernel, pass its wishes through the core's rules.

``decide`` is compiled with an explicit signature in which the kernel is a numba first-class
function (``KERNEL_TYPE``), not a dispatcher. Measured with numba 0.68.1: an ``@njit(cache=True)``
function that takes a *dispatcher* argument never hits its cache. The dispatcher's type is keyed by
an object that is new in every process, so each run compiles again and adds one more file to
``__pycache__``. Typed as ``KERNEL_TYPE`` it is cached once and reused by every process, and it is
just as fast.

Callers:

- Python: ``decide(ctx_array[0], params, kernel, quotes, new_takes())`` with ``kernel`` any
  ``@njit`` function of signature ``KERNEL_SIGNATURE``; numba turns the dispatcher into a function
  value.
- compiled code: pass the kernel through. A compiled caller that should itself be cached declares
  its kernel argument as ``KERNEL_TYPE`` in an explicit signature, for the same reason.

Array layouts must match the signature exactly: ``params`` float64[::1], ``quotes``
float64[MAX_VENUES, 2, MAX_LEVELS, 2] C-contiguous, ``takes`` float64[MAX_TAKES, 4] C-contiguous
(context.new_quotes / new_takes), ``ctx`` a ``CTX_DTYPE`` record.
"""

from __future__ import annotations

from numba import from_dtype, njit, types

from stockbridge.core.context import CTX_DTYPE
from stockbridge.core.quoting import finalize_quotes, finalize_takes

CTX_TYPE = from_dtype(CTX_DTYPE)
PARAMS_TYPE = types.float64[::1]
QUOTES_TYPE = types.float64[:, :, :, ::1]
TAKES_TYPE = types.float64[:, ::1]
KERNEL_SIGNATURE = types.int64(CTX_TYPE, PARAMS_TYPE, QUOTES_TYPE, TAKES_TYPE)
KERNEL_TYPE = types.FunctionType(KERNEL_SIGNATURE)


@njit(types.int64(CTX_TYPE, PARAMS_TYPE, KERNEL_TYPE, QUOTES_TYPE, TAKES_TYPE), cache=True)
def decide(ctx, params, kernel, quotes, takes):
    """Run ``kernel(ctx, params, quotes, takes)`` on zeroed outputs, then finalize_quotes/finalize_takes.

    Returns the number of taker rows kept (packed at the front of ``takes``); ``quotes`` holds the
    final quotes (size 0 = no order).
    """
    quotes[:] = 0.0
    takes[:] = 0.0
    n = kernel(ctx, params, quotes, takes)
    finalize_quotes(ctx, quotes)
    return finalize_takes(ctx, takes, n)
