"""``jax.random.bits`` of a Threefry key, with the hash written out for XLA:CPU.

On CPU backends JAX lowers its Threefry-2x32 hash as a loop of five four-round iterations
(to keep compile times down), and XLA:CPU runs every iteration as its own passes over the
counters.  Written out in jnp, the twenty rounds fuse into one pass: on one core 3.9 M words
took 6-8 ms against 42-47 ms (docs/decisions.md#fpp-dropout-threefry).  :func:`bits` takes
the same counters and the same hash as ``jax.random.bits`` with
``jax_threefry_partitionable`` (JAX's default), so it returns the same words; for another
key implementation, or with that flag off, it is ``jax.random.bits`` itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Threefry-2x32 with 20 rounds (Salmon et al. 2011, the Random123 constants): the rotation
# of each round, in two alternating groups of four, and the key schedule's parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, d):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry_2x32(key, x0, x1):
    """The Threefry-2x32 hash of counters (x0, x1) (uint32 arrays of one shape) under
    ``key``, two uint32 words -> the two output words."""
    k0, k1 = key[0], key[1]
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + k0, x1 + k1
    for group in range(5):
        for rotation in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, rotation) ^ x0
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _threefry_words(key):
    """The key's two uint32 words, or None when ``jax.random.bits`` would not use this
    hash on them (another implementation, or ``jax_threefry_partitionable`` off)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        key = jax.random.key_data(key)
    elif key.shape != (2,) or key.dtype != jnp.uint32:
        return None  # raw data of another implementation's key
    if not jax.config.jax_threefry_partitionable:
        return None
    return key


def bits(key, n: int):
    """``jax.random.bits(key, (n,), jnp.uint32)`` for one key (typed or raw uint32 data):
    word j is the hash of the 64-bit counter j, its two output words XOR-ed."""
    words = _threefry_words(key)
    if words is None:
        return jax.random.bits(key, (n,), jnp.uint32)
    counters = jax.lax.iota(jnp.uint32, n)
    x0, x1 = threefry_2x32(words, jnp.zeros_like(counters), counters)
    return x0 ^ x1
