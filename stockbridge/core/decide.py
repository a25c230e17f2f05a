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
from numba.core import cgutils
from numba.extending import intrinsic

from stockbridge.core.context import CTX_DTYPE
from stockbridge.core.quoting import finalize_quotes, finalize_quotes_into, finalize_takes

CTX_TYPE = from_dtype(CTX_DTYPE)
PARAMS_TYPE = types.float64[::1]
QUOTES_TYPE = types.float64[:, :, :, ::1]
TAKES_TYPE = types.float64[:, ::1]
KERNEL_SIGNATURE = types.int64(CTX_TYPE, PARAMS_TYPE, QUOTES_TYPE, TAKES_TYPE)
KERNEL_TYPE = types.FunctionType(KERNEL_SIGNATURE)
WORK_TYPE = types.float64[:, ::1]


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


@njit(types.int64(CTX_TYPE, PARAMS_TYPE, KERNEL_TYPE, QUOTES_TYPE, TAKES_TYPE, WORK_TYPE), cache=True, _nrt=False)
def decide_into(ctx, params, kernel, quotes, takes, work):
    """:func:`decide` with ``work`` float64[4, MAX_VENUES] C-contiguous as finalize_quotes' scratch
    (quoting.finalize_quotes_into): the same result without an allocation per decision, and without
    reference counting (see backtest.engine's module doc; finalize_takes, which allocates when the
    kernel wrote takes, keeps its own)."""
    quotes[:] = 0.0
    takes[:] = 0.0
    n = kernel(ctx, params, quotes, takes)
    finalize_quotes_into(ctx, quotes, work)
    return finalize_takes(ctx, takes, n)


@intrinsic
def kernel_at(typingctx, c_addr, jit_addr):
    """A strategy kernel as a first-class function value, from its two compiled addresses
    (:func:`kernel_addresses`).

    numba unboxes a dispatcher passed from Python as a ``KERNEL_TYPE`` argument by looking up its
    compiled addresses in Python on every call: measured 80-130 µs a call, against the few µs of a
    whole decision. A Python caller that decides often (the live bot) looks them up once and passes
    the two integers; the value built here is the one that unboxing would have built, without the
    Python object (which only boxing a function value back to Python needs)."""
    sig = KERNEL_TYPE(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        voidptr = context.get_value_type(types.voidptr)
        fn = cgutils.create_struct_proxy(KERNEL_TYPE)(context, builder)
        fn.c_addr = builder.inttoptr(args[0], voidptr)
        fn.py_addr = voidptr(None)
        fn.jit_addr = builder.inttoptr(args[1], voidptr)
        return fn._getvalue()

    return sig, codegen


def kernel_addresses(kernel) -> tuple[int, int]:
    """(C wrapper, numba-ABI) addresses of a compiled strategy kernel for :func:`kernel_at`; valid in
    this process while ``kernel`` lives (keep a reference)."""
    from numba.experimental.function_type import _get_jit_address, _get_wrapper_address

    return _get_wrapper_address(kernel, KERNEL_SIGNATURE), _get_jit_address(kernel, KERNEL_SIGNATURE)
