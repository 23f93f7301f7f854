"""Input validation shared by bijectors and distributions.

Every check runs at trace time on static shapes and dtypes, so it costs nothing
inside ``jit`` and fails before any computation with a message naming the fix.
"""

from __future__ import annotations

import jax.numpy as jnp


def check_float(x, what: str) -> None:
    """Raises TypeError unless ``x`` has a floating dtype."""
    dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{what} expects a floating-point array, got dtype {dtype}; "
            f"cast it first, e.g. x.astype(jnp.float32)."
        )


def check_min_ndim(x, min_ndim: int, what: str, layout: str) -> None:
    """Raises ValueError unless ``x`` has at least ``min_ndim`` axes."""
    if x.ndim < min_ndim:
        raise ValueError(
            f"{what} expects an array of rank >= {min_ndim} laid out as {layout}, "
            f"got shape {tuple(x.shape)}."
        )


def check_even(size: int, axis_name: str, what: str, shape) -> None:
    """Raises ValueError unless ``size`` is even."""
    if size % 2:
        raise ValueError(
            f"{what} needs an even {axis_name}, got {axis_name}={size} in shape "
            f"{tuple(shape)}; crop or pad the input to an even {axis_name}."
        )


def sum_last(x, ndims: int):
    """Sums the trailing ``ndims`` axes (``ndims == 0`` returns ``x``)."""
    if ndims == 0:
        return x
    return jnp.sum(x, axis=tuple(range(x.ndim - ndims, x.ndim)))
