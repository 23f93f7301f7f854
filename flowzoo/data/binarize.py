"""Stochastic binarization with counter-based randomness (pure functions of their keys).

Each example gets a 64-bit key from (seed, stream, epoch, example index) through the
SplitMix64 finalizer; pixel ``j`` of that example draws ``r = mix(key + (j + 1) * golden) >> 32``,
a uniform 32-bit integer, and becomes 1 iff ``r * (L - 1) < x * 2**32`` -- a Bernoulli draw with
probability ``x / (L - 1)`` (exactly 0 for x = 0 and exactly 1 for x = L - 1; within 2**-32
otherwise).  So a draw depends only on its key and the pixel, never on batch composition,
process count or call order, and it is vectorized.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

STATIC = 1   # stream for static binarization: key (seed, STATIC, 0, index)
DYNAMIC = 2  # stream for dynamic binarization: key (seed, DYNAMIC, epoch, index)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (a bijection on uint64 with full avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def example_keys(seed: int, stream: int, epoch: int, index: np.ndarray) -> np.ndarray:
    """uint64 (n,) keys for example indices ``index`` (n,)."""
    with np.errstate(over="ignore"):
        k = np.zeros(np.shape(index), np.uint64)
        for word in (seed, stream, epoch):
            k = _mix(k + _GOLDEN + np.uint64(int(word) % 2**64))
        return _mix(k + _GOLDEN + np.asarray(index).astype(np.uint64))


def bernoulli(images: np.ndarray, num_levels: int, keys: np.ndarray) -> np.ndarray:
    """uint8 0/1 of ``images``' shape (n, ...), pixel ~ Bernoulli(x / (num_levels - 1)).

    ``images`` holds integer levels in [0, num_levels); ``keys`` is uint64 (n,).
    """
    n = images.shape[0]
    x = images.reshape(n, -1).astype(np.uint64)
    with np.errstate(over="ignore"):
        counters = np.arange(1, x.shape[1] + 1, dtype=np.uint64) * _GOLDEN
        r = _mix(keys[:, None] + counters[None, :]) >> np.uint64(32)
        bits = r * np.uint64(num_levels - 1) < (x << np.uint64(32))
    return bits.astype(np.uint8).reshape(images.shape)
