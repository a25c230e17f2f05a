"""Deterministic random numbers for the simulated venues, with no global state.

A state is a ``uint64[N_STREAMS]`` array; each stream is an independent splitmix64 sequence, so the
latency draws do not shift when the queue model draws more or fewer numbers (and the reverse).
numba's own ``np.random`` is process-global, which would couple two replays in one process.
"""

from __future__ import annotations

import numpy as np
from numba import njit

RNG_LATENCY = 0
RNG_QUEUE = 1
N_STREAMS = 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi


def new_rng(seed: int) -> np.ndarray:
    """A fresh state for ``seed`` (any int); the same seed always gives the same sequences."""
    base = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    state = np.zeros(N_STREAMS, dtype=np.uint64)
    for i in range(N_STREAMS):
        state[i] = _splitmix_scalar(base ^ np.uint64(0x5851F42D4C957F2D * (i + 1) & 0xFFFFFFFFFFFFFFFF))
    return state


def _splitmix_scalar(x: np.uint64) -> np.uint64:
    with np.errstate(over="ignore"):
        z = np.uint64(x + _GOLDEN)
        z = np.uint64((z ^ (z >> np.uint64(30))) * _MIX1)
        z = np.uint64((z ^ (z >> np.uint64(27))) * _MIX2)
        return np.uint64(z ^ (z >> np.uint64(31)))


@njit(cache=True)
def next_u64(rng, stream):
    z = rng[stream] + _GOLDEN
    rng[stream] = z
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def uniform(rng, stream) -> float:
    """Uniform in (0, 1): 53 random bits, never exactly 0 (safe under log)."""
    return (np.float64(next_u64(rng, stream) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def normal(rng, stream) -> float:
    """Standard normal (Box-Muller, one of the pair)."""
    u1 = uniform(rng, stream)
    u2 = uniform(rng, stream)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
