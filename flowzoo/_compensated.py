"""Error-free transformations: sums and products carried to twice the working precision.

Where the official Flow++ code uses float64 (the 1x1 convolution's log-determinant, the
importance-weighted log-mean-exp) and JAX runs without x64, these give float64-like accuracy
in float32: ``two_sum`` and ``two_product`` return a rounded result and its exact rounding
error (Knuth; Dekker with Veltkamp's split), so a sum or dot product can keep the error terms
and add them back at the end (Ogita, Rump and Oishi, "Accurate sum and dot product", 2005).
They rely on IEEE round-to-nearest arithmetic and on the compiler not re-associating
floating-point expressions, which XLA does not do; ``tests/bijectors`` checks the results
against float64.
"""

from __future__ import annotations

import jax.numpy as jnp


def two_sum(a, b):
    """(s, e) with s = fl(a + b) and a + b = s + e exactly."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _split(a):
    """(hi, lo) with a = hi + lo and hi holding the upper half of the significand."""
    bits = jnp.finfo(a.dtype).nmant + 1
    c = (2.0 ** ((bits + 1) // 2) + 1.0) * a
    hi = c - (c - a)
    return hi, a - hi


def two_product(a, b):
    """(p, e) with p = fl(a * b) and a * b = p + e exactly (no overflow assumed)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def accurate_sum(x, axis=0):
    """Sum over ``axis`` as if computed in twice the precision, then rounded: a pairwise
    tree of ``two_sum`` whose error terms are summed alongside."""
    x = jnp.moveaxis(x, axis, 0)
    n = x.shape[0]
    size = 1 << max(n - 1, 0).bit_length()
    x = jnp.concatenate([x, jnp.zeros((size - n,) + x.shape[1:], x.dtype)])
    err = jnp.zeros_like(x)
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        x, e = two_sum(x[:half], x[half:])
        err = err[:half] + err[half:] + e
    return (x + err)[0]


def residual_of_product(target, left, right):
    """``target - left @ right`` for (..., n, k) @ (..., k, m), accurate even when the
    residual is far below the rounding error of ``left @ right`` (Dot2)."""
    total = jnp.zeros(target.shape, target.dtype)
    err = jnp.zeros(target.shape, target.dtype)
    for j in range(left.shape[-1]):
        p, e_prod = two_product(left[..., :, j:j + 1], right[..., j:j + 1, :])
        total, e_sum = two_sum(total, p)
        err = err + (e_prod + e_sum)
    diff, e_diff = two_sum(target, -total)
    return diff + (e_diff - err)
